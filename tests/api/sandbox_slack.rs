//! The sandbox's Slack methods the workflows use, as Slack documents them: look-ups by id
//! and email, DMs, threads, message metadata read back through history, ephemerals, modals
//! and permalinks — and the control API's record of everything posted.

use serde_json::{Value, json};

use crate::sandbox::{slack, start};

const TOKEN: &str = "sandbox-bot-token";

async fn call(
    sandbox: &campaign_sync::sandbox::Sandbox,
    method: &str,
    form: &[(&str, &str)],
) -> Value {
    let (status, _, body) = slack(sandbox, method, TOKEN, form).await;
    assert_eq!(status, 200, "{method}: Slack answers errors at 200");
    body
}

/// The error Slack answers `method` with (`ok: false`).
async fn error_of(
    sandbox: &campaign_sync::sandbox::Sandbox,
    method: &str,
    form: &[(&str, &str)],
) -> String {
    let body = call(sandbox, method, form).await;
    assert_eq!(body["ok"], false, "{method} {form:?}: {body}");
    body["error"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn users_are_found_by_id_and_email_and_private_channels_say_is_channel() {
    let sandbox = start(|_| {}).await;
    let users = call(&sandbox, "users.list", &[("limit", "50")]).await;
    let user = users["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|u| u["is_bot"] == false && u["deleted"] == false)
        .expect("a person")
        .clone();
    let id = user["id"].as_str().expect("id");
    let info = call(&sandbox, "users.info", &[("user", id)]).await;
    assert_eq!(
        (info["ok"].clone(), info["user"]["id"].clone()),
        (json!(true), json!(id))
    );
    let email = user["profile"]["email"]
        .as_str()
        .expect("email")
        .to_uppercase();
    let found = call(&sandbox, "users.lookupByEmail", &[("email", &email)]).await;
    assert_eq!(
        found["user"]["id"], id,
        "emails match ignoring case: {found}"
    );
    assert_eq!(
        error_of(&sandbox, "users.info", &[("user", "U0NOBODY")]).await,
        "user_not_found"
    );
    assert_eq!(
        error_of(
            &sandbox,
            "users.lookupByEmail",
            &[("email", "nobody@example.com")]
        )
        .await,
        "users_not_found"
    );
    let private = call(
        &sandbox,
        "conversations.list",
        &[("types", "private_channel"), ("limit", "200")],
    )
    .await;
    for channel in private["channels"].as_array().expect("channels") {
        let c_id = channel["id"].as_str().is_some_and(|i| i.starts_with('C'));
        assert_eq!(
            (
                channel["is_private"].clone(),
                channel["is_channel"].clone(),
                channel["is_group"].clone()
            ),
            (json!(true), json!(c_id), json!(!c_id)),
            "{channel}"
        );
    }
}

#[tokio::test]
async fn a_dm_thread_and_metadata_are_posted_and_read_back_through_history() {
    let sandbox = start(|c| c.slack_post_per_channel_per_sec = 100).await;
    let users = call(&sandbox, "users.list", &[("limit", "50")]).await;
    let user = users["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|u| u["is_bot"] == false && u["deleted"] == false)
        .expect("a person")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let opened = call(&sandbox, "conversations.open", &[("users", &user)]).await;
    let dm = opened["channel"]["id"].as_str().expect("dm id").to_owned();
    assert!(dm.starts_with('D'), "{opened}");
    assert_eq!(
        call(&sandbox, "conversations.open", &[("users", &user)]).await["channel"]["id"],
        dm.as_str(),
        "the same DM again"
    );
    let metadata = json!({ "event_type": "campaign_notification", "event_payload": { "notification_id": "n-1" } }).to_string();
    let parent = call(
        &sandbox,
        "chat.postMessage",
        &[
            ("channel", &dm),
            ("text", "Approve?"),
            ("metadata", &metadata),
        ],
    )
    .await;
    assert_eq!(
        parent["message"]["metadata"]["event_payload"]["notification_id"], "n-1",
        "{parent}"
    );
    let ts = parent["ts"].as_str().expect("ts").to_owned();
    let reply = call(
        &sandbox,
        "chat.postMessage",
        &[("channel", &dm), ("text", "Reminder"), ("thread_ts", &ts)],
    )
    .await;
    assert_eq!(reply["message"]["thread_ts"], ts.as_str(), "{reply}");
    assert_eq!(
        error_of(
            &sandbox,
            "chat.postMessage",
            &[("channel", &dm), ("text", "x"), ("thread_ts", "1.000001")]
        )
        .await,
        "thread_not_found"
    );
    assert_eq!(
        error_of(
            &sandbox,
            "chat.postMessage",
            &[
                ("channel", &dm),
                ("text", "x"),
                ("metadata", "{\"event_type\":1}")
            ]
        )
        .await,
        "invalid_metadata_format"
    );
    let history = call(
        &sandbox,
        "conversations.history",
        &[
            ("channel", &dm),
            ("include_all_metadata", "true"),
            ("limit", "10"),
        ],
    )
    .await;
    let messages = history["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "replies stay in their thread: {history}");
    assert_eq!(
        messages[0]["metadata"]["event_type"],
        "campaign_notification"
    );
    let bare = call(&sandbox, "conversations.history", &[("channel", &dm)]).await;
    assert!(
        bare["messages"][0]["metadata"].is_null(),
        "metadata only when asked for: {bare}"
    );
    let link = call(
        &sandbox,
        "chat.getPermalink",
        &[("channel", &dm), ("message_ts", &ts)],
    )
    .await;
    assert_eq!(
        link["permalink"],
        format!(
            "https://sandbox.slack.com/archives/{dm}/p{}",
            ts.replace('.', "")
        )
    );
    let record: Value = reqwest::get(format!("{}/_sandbox/slack/messages", sandbox.base_url()))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let posted = record["messages"].as_array().expect("messages");
    assert_eq!(posted.len(), 2, "{record}");
    assert!(posted.iter().any(|m| m["thread_ts"] == ts.as_str()));
}

#[tokio::test]
async fn history_pages_newest_first_and_ephemerals_and_modals_are_recorded() {
    let sandbox = start(|c| c.slack_post_per_channel_per_sec = 100).await;
    let channels = call(&sandbox, "conversations.list", &[("limit", "10")]).await;
    let channel = channels["channels"][0]["id"]
        .as_str()
        .expect("channel")
        .to_owned();
    for i in 0..5 {
        call(
            &sandbox,
            "chat.postMessage",
            &[("channel", &channel), ("text", &format!("m{i}"))],
        )
        .await;
    }
    let first = call(
        &sandbox,
        "conversations.history",
        &[("channel", &channel), ("limit", "3")],
    )
    .await;
    let texts: Vec<&str> = first["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(
        (texts, first["has_more"].clone()),
        (vec!["m4", "m3", "m2"], json!(true))
    );
    let cursor = first["response_metadata"]["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let second = call(
        &sandbox,
        "conversations.history",
        &[("channel", &channel), ("limit", "3"), ("cursor", &cursor)],
    )
    .await;
    assert_eq!(second["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(second["has_more"], false);
    let info = call(&sandbox, "conversations.members", &[("channel", &channel)]).await;
    let member = info["members"][0].as_str().expect("member").to_owned();
    let ephemeral = call(
        &sandbox,
        "chat.postEphemeral",
        &[
            ("channel", &channel),
            ("user", &member),
            ("text", "not yours"),
        ],
    )
    .await;
    assert!(ephemeral["message_ts"].is_string(), "{ephemeral}");
    assert_eq!(
        error_of(
            &sandbox,
            "chat.postEphemeral",
            &[("channel", &channel), ("user", "U0OUTSIDER"), ("text", "x")]
        )
        .await,
        "user_not_in_channel"
    );
    let view = json!({ "type": "modal", "callback_id": "changes", "title": { "type": "plain_text", "text": "Request changes" },
        "blocks": [{ "type": "input", "block_id": "comment", "label": { "type": "plain_text", "text": "What should change?" },
        "element": { "type": "plain_text_input", "action_id": "comment", "multiline": true } }] }).to_string();
    let opened = call(
        &sandbox,
        "views.open",
        &[("trigger_id", "12345.98765.abcd"), ("view", &view)],
    )
    .await;
    assert!(
        opened["view"]["id"]
            .as_str()
            .is_some_and(|i| i.starts_with('V')),
        "{opened}"
    );
    assert_eq!(
        error_of(&sandbox, "views.open", &[("view", &view)]).await,
        "invalid_trigger_id"
    );
    assert_eq!(
        error_of(
            &sandbox,
            "views.open",
            &[("trigger_id", "1.2.3"), ("view", "{\"type\":\"home\"}")]
        )
        .await,
        "invalid_arguments"
    );
    let record: Value = reqwest::get(format!("{}/_sandbox/slack/messages", sandbox.base_url()))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(record["ephemerals"][0]["user"], member.as_str());
    assert_eq!(record["views"][0]["callback_id"], "changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slacks_own_python_client_uses_every_method_the_workflows_need() {
    let sandbox = start(|c| c.slack_post_per_channel_per_sec = 100).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/slack_sdk_check.py"
    );
    let api = sandbox.slack_api_url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &api, TOKEN])
            .output()
            .expect("python3 with slack_sdk (scripts/services.sh installs it)")
    })
    .await
    .expect("join");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "slack_sdk against the sandbox:\n{said}"
    );
    assert!(said.contains("\"slack_sdk_calls_ok\": 19"), "{said}");
}
