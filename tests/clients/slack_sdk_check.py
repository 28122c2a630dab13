"""Slack's own Python client (slack_sdk) against the sandbox: every method the service and
its Slack workflows use, called as a real integration calls it. Exits non-zero on the first
call the client cannot use. Usage: slack_sdk_check.py SLACK_API_URL TOKEN"""

import json
import sys

from slack_sdk import WebClient


def main(api_url: str, token: str) -> int:
    client = WebClient(token=token, base_url=api_url.rstrip("/") + "/")
    calls = 0

    def call(method, **kwargs):
        nonlocal calls
        calls += 1
        return getattr(client, method)(**kwargs)

    assert call("auth_test")["team_id"]
    members = call("users_list", limit=50)["members"]
    person = next(u for u in members if not u["is_bot"] and not u["deleted"] and u["profile"].get("email"))
    assert call("users_info", user=person["id"])["user"]["id"] == person["id"]
    found = call("users_lookupByEmail", email=person["profile"]["email"].upper())
    assert found["user"]["id"] == person["id"], found
    channels = call("conversations_list", types="public_channel,private_channel", limit=200)["channels"]
    for c in channels:
        assert c["is_channel"] == c["id"].startswith("C"), c
    public = next(c for c in channels if not c["is_private"])
    dm = call("conversations_open", users=person["id"])["channel"]["id"]
    assert dm.startswith("D"), dm
    metadata = {"event_type": "campaign_notification", "event_payload": {"notification_id": "sdk-1"}}
    posted = call("chat_postMessage", channel=dm, text="Approve?", metadata=metadata)
    assert posted["message"]["metadata"]["event_payload"]["notification_id"] == "sdk-1", posted
    reply = call("chat_postMessage", channel=dm, text="Reminder", thread_ts=posted["ts"])
    assert reply["message"]["thread_ts"] == posted["ts"], reply
    history = call("conversations_history", channel=dm, include_all_metadata=True, limit=10)
    assert history["messages"][0]["metadata"]["event_type"] == "campaign_notification", history
    replies = call("conversations_replies", channel=dm, ts=posted["ts"], include_all_metadata=True,
                   oldest=str(float(posted["ts"]) - 1))
    assert [m["ts"] for m in replies["messages"]] == [posted["ts"], reply["ts"]], replies
    attachments = [{"color": "good", "fallback": "Open rate: 41%", "fields": [{"title": "Open rate", "value": "41%", "short": True}]}]
    card = call("chat_postMessage", channel=public["id"], text="Card", attachments=attachments)
    assert card["message"]["attachments"][0]["color"] == "good", card
    assert call("pins_add", channel=public["id"], timestamp=card["ts"])["ok"]
    groups = call("usergroups_list")["usergroups"]
    assert call("usergroups_users_list", usergroup=groups[0]["id"])["users"], groups[0]
    updated = call("chat_update", channel=dm, ts=posted["ts"], text="Approved by Ada")
    assert updated["text"] == "Approved by Ada", updated
    link = call("chat_getPermalink", channel=dm, message_ts=posted["ts"])["permalink"]
    assert posted["ts"].replace(".", "") in link, link
    member = call("conversations_members", channel=public["id"])["members"][0]
    assert call("chat_postEphemeral", channel=public["id"], user=member, text="not yours")["message_ts"]
    view = {"type": "modal", "callback_id": "changes", "title": {"type": "plain_text", "text": "Request changes"},
            "blocks": [{"type": "input", "block_id": "c", "label": {"type": "plain_text", "text": "What?"},
                        "element": {"type": "plain_text_input", "action_id": "c"}}]}
    assert call("views_open", trigger_id="12345.67890.abc", view=view)["view"]["id"]
    print(json.dumps({"slack_sdk_calls_ok": calls}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
