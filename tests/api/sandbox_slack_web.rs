//! The sandbox's Slack Web API as Slack answers: tokens, paging, tiers, messages, OAuth rotation.

use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::sandbox::{client, slack, start};

#[tokio::test]
async fn slack_refuses_missing_and_unknown_tokens_at_http_200() {
    let sandbox = start(|_| {}).await;
    let r = client()
        .get(format!("{}/auth.test", sandbox.slack_api_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({ "ok": false, "error": "not_authed" })
    );
    let (status, _, body) = slack(&sandbox, "auth.test", "not-a-token", &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (200, Some("invalid_auth"))
    );
    // The token may also come as a parameter, and GET works.
    let r = client()
        .get(format!(
            "{}/auth.test?token=sandbox-bot-token",
            sandbox.slack_api_url()
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(r.json::<Value>().await.expect("json")["ok"], true);
}

#[tokio::test]
async fn slack_users_list_pages_by_cursor_to_an_empty_cursor() {
    let sandbox = start(|c| c.slack_tiers_per_minute = [100, 100, 100, 100]).await;
    let mut cursor = String::new();
    let mut ids = Vec::new();
    loop {
        let (_, _, page) = slack(
            &sandbox,
            "users.list",
            "sandbox-bot-token",
            &[("limit", "100"), ("cursor", &cursor)],
        )
        .await;
        assert_eq!(page["ok"], true, "{page}");
        ids.extend(
            page["members"]
                .as_array()
                .expect("members")
                .iter()
                .map(|m| m["id"].as_str().unwrap_or("").to_owned()),
        );
        cursor = page["response_metadata"]["next_cursor"]
            .as_str()
            .expect("next_cursor")
            .to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(ids.len(), 250);
    let (_, _, bad) = slack(
        &sandbox,
        "users.list",
        "sandbox-bot-token",
        &[("cursor", "garbage")],
    )
    .await;
    assert_eq!(bad["error"], "invalid_cursor");
    let (_, _, bad) = slack(
        &sandbox,
        "conversations.list",
        "sandbox-bot-token",
        &[("limit", "1000")],
    )
    .await;
    assert_eq!(bad["error"], "invalid_limit");
}

#[tokio::test]
async fn slack_tiers_answer_429_with_retry_after_and_post_message_is_paced_per_channel() {
    let sandbox = start(|c| c.slack_tiers_per_minute = [1, 3, 50, 100]).await;
    let mut last = (0, HeaderMap::new(), Value::Null);
    for _ in 0..4 {
        last = slack(
            &sandbox,
            "users.list",
            "sandbox-bot-token",
            &[("limit", "10")],
        )
        .await;
    }
    assert_eq!(last.0, 429);
    assert_eq!(last.2["error"], "ratelimited");
    let wait: u64 = last
        .1
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&wait));
    let mut statuses = Vec::new();
    for i in 0..6 {
        let text = format!("hello {i}");
        statuses.push(
            slack(
                &sandbox,
                "chat.postMessage",
                "sandbox-bot-token",
                &[("channel", "campaign-1"), ("text", &text)],
            )
            .await
            .0,
        );
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "a short burst is allowed");
    assert!(
        statuses.contains(&429),
        "then about one per second: {statuses:?}"
    );
    let (_, _, other) = slack(
        &sandbox,
        "chat.postMessage",
        "sandbox-bot-token",
        &[("channel", "campaign-2"), ("text", "hi")],
    )
    .await;
    assert_eq!(other["ok"], true, "another channel has its own pace");
}

#[tokio::test]
async fn slack_messages_can_be_updated_and_reacted_to() {
    let sandbox = start(|_| {}).await;
    let (_, _, posted) = slack(
        &sandbox,
        "chat.postMessage",
        "sandbox-bot-token",
        &[("channel", "#campaign-1"), ("text", "Approve?")],
    )
    .await;
    let ts = posted["ts"].as_str().expect("ts").to_owned();
    assert!(
        ts.len() == 17 && ts.as_bytes()[10] == b'.',
        "ts looks like 1234567890.123456: {ts}"
    );
    let channel = posted["channel"].as_str().expect("channel").to_owned();
    let (_, _, updated) = slack(
        &sandbox,
        "chat.update",
        "sandbox-bot-token",
        &[("channel", &channel), ("ts", &ts), ("text", "Approved")],
    )
    .await;
    assert_eq!(updated["text"], "Approved");
    let (_, _, reacted) = slack(
        &sandbox,
        "reactions.add",
        "sandbox-bot-token",
        &[
            ("channel", &channel),
            ("timestamp", &ts),
            ("name", "white_check_mark"),
        ],
    )
    .await;
    assert_eq!(reacted["ok"], true);
    let (_, _, again) = slack(
        &sandbox,
        "reactions.add",
        "sandbox-bot-token",
        &[
            ("channel", &channel),
            ("timestamp", &ts),
            ("name", "white_check_mark"),
        ],
    )
    .await;
    assert_eq!(again["error"], "already_reacted");
    let (_, _, missing) = slack(
        &sandbox,
        "chat.update",
        "sandbox-bot-token",
        &[("channel", &channel), ("ts", "1.000001"), ("text", "x")],
    )
    .await;
    assert_eq!(missing["error"], "message_not_found");
    let (_, _, created) = slack(
        &sandbox,
        "conversations.create",
        "sandbox-bot-token",
        &[("name", "Campaign X")],
    )
    .await;
    assert_eq!(created["error"], "invalid_name_specials");
    let (_, _, taken) = slack(
        &sandbox,
        "conversations.create",
        "sandbox-bot-token",
        &[("name", "campaign-1")],
    )
    .await;
    assert_eq!(taken["error"], "name_taken");
}

#[tokio::test]
async fn oauth_rotation_issues_single_use_refresh_tokens_and_expired_tokens_say_so() {
    let sandbox = start(|c| c.slack_token_ttl = Duration::from_secs(3600)).await;
    let oauth = |form: Vec<(&'static str, String)>| {
        let url = format!("{}/oauth.v2.access", sandbox.slack_api_url());
        async move {
            client()
                .post(url)
                .basic_auth("1111.2222", Some("sandbox-client-secret"))
                .form(&form)
                .send()
                .await
                .expect("request")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let installed = oauth(vec![("code", "sandbox-code-1".into())]).await;
    assert_eq!(installed["expires_in"], 3600);
    let access = installed["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let refresh = installed["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_eq!(
        slack(&sandbox, "auth.test", &access, &[]).await.2["ok"],
        true
    );
    assert_eq!(
        oauth(vec![("code", "sandbox-code-1".into())]).await["error"],
        "invalid_code",
        "a code is single use"
    );
    let rotated = oauth(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
    ])
    .await;
    let new_access = rotated["access_token"]
        .as_str()
        .expect("new access")
        .to_owned();
    assert_ne!(new_access, access);
    let reused = oauth(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh),
    ])
    .await;
    assert_eq!(
        reused["error"], "invalid_refresh_token",
        "the old refresh token is revoked"
    );
    let r = client()
        .post(format!("{}/_sandbox/faults", sandbox.base_url()))
        .json(&json!({ "expire_tokens": true }))
        .send()
        .await
        .expect("expire");
    assert_eq!(r.status(), 200);
    assert_eq!(
        slack(&sandbox, "auth.test", &new_access, &[]).await.2["error"],
        "token_expired"
    );
    let bad_client = client()
        .post(format!("{}/oauth.v2.access", sandbox.slack_api_url()))
        .basic_auth("1111.2222", Some("nope"))
        .form(&[("code", "sandbox-code-2")])
        .send()
        .await
        .expect("r")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(bad_client["error"], "bad_client_secret");
}
