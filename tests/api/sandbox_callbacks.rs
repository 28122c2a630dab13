//! What the sandbox sends us: Mailjet events and Slack events and clicks, signed and retried as
//! the real senders do, and response URLs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use campaign_sync::sandbox::{EventRates, Sandbox};
use campaign_sync::webhooks::slack_signature;
use serde_json::{Value, json};

use crate::helpers::eventually;
use crate::sandbox::{client, message, send, slack, start};

#[tokio::test]
async fn mailjet_events_are_posted_grouped_with_basic_auth_and_retried_until_200() {
    let (receiver, host) = Receiver::start(1).await;
    let sandbox = start(|c| {
        c.mailjet_webhook_url = Some(format!("http://mailjet:hook%20pw@{host}/webhooks/mailjet"));
        c.event_delay = Duration::from_millis(10);
        c.mailjet_group_window = Duration::from_millis(50);
        c.mailjet_retry_interval = Duration::from_millis(100);
        c.event_rates = EventRates {
            open: 1.0,
            click: 0.0,
            bounce: 0.0,
            spam: 0.0,
            blocked: 0.0,
            unsub: 0.0,
        };
    })
    .await;
    let (status, _) = send(
        &sandbox,
        json!({ "Messages": [message("a@example.com", "e-1"), message("b@example.com", "e-2")] }),
    )
    .await;
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(10),
        "four events delivered after a failure",
        || async {
            let delivered: usize = receiver
                .requests()
                .iter()
                .skip(1)
                .map(|(_, b)| {
                    serde_json::from_slice::<Value>(b)
                        .ok()
                        .and_then(|v| v.as_array().map(Vec::len))
                        .unwrap_or(0)
                })
                .sum();
            delivered >= 4
        },
    )
    .await;
    let requests = receiver.requests();
    let (headers, body) = &requests[1];
    let expected = format!("Basic {}", base64_encode("mailjet:hook pw"));
    assert_eq!(headers["authorization"], expected.as_str());
    let first: Value = serde_json::from_slice(&requests[0].1).expect("json");
    let retried: Value = serde_json::from_slice(body).expect("json");
    assert_eq!(
        first, retried,
        "the failed delivery was sent again as it was"
    );
    let events: Vec<Value> = requests
        .iter()
        .skip(1)
        .flat_map(|(_, b)| {
            serde_json::from_slice::<Value>(b)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
        })
        .collect();
    let sent = events
        .iter()
        .find(|e| e["event"] == "sent" && e["CustomID"] == "e-1")
        .expect("sent event");
    for field in [
        "time",
        "email",
        "mj_campaign_id",
        "mj_contact_id",
        "customcampaign",
        "MessageID",
        "Message_GUID",
        "Payload",
        "smtp_reply",
    ] {
        assert!(sent.get(field).is_some(), "{field} missing in {sent}");
    }
    assert!(sent["MessageID"].as_i64().is_some_and(|id| id > 1 << 53));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "open" && e["ip"].is_string())
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn slack_events_are_signed_so_our_verifier_accepts_them_and_retried_with_their_number() {
    let (receiver, host) = Receiver::start(1).await;
    let sandbox = start(|c| {
        c.slack_events_url = Some(format!("http://{host}/webhooks/slack/events"));
        c.slack_retry_delays = vec![Duration::from_millis(50), Duration::from_millis(50)];
    })
    .await;
    let r: Value = client()
        .post(format!("{}/_sandbox/slack/events", sandbox.base_url()))
        .json(&json!({ "type": "channel_rename", "channel": "C20000000", "name": "campaign-renamed" }))
        .send()
        .await
        .expect("emit")
        .json()
        .await
        .expect("json");
    assert_eq!(r["first_delivery"]["status"], 500);
    eventually(Duration::from_secs(5), "the retry", || async {
        receiver.requests().len() >= 2
    })
    .await;
    let requests = receiver.requests();
    let now = chrono::Utc::now().timestamp();
    for (headers, body) in &requests {
        let ts = headers
            .get("x-slack-request-timestamp")
            .and_then(|v| v.to_str().ok());
        let sig = headers
            .get("x-slack-signature")
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            slack_signature::verify(b"sandbox-signing-secret", ts, sig, body, now),
            Ok(())
        );
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            slack_signature::verify(b"sandbox-signing-secret", ts, sig, &tampered, now),
            Err(slack_signature::SignatureError::Mismatch)
        );
    }
    assert!(requests[0].0.get("x-slack-retry-num").is_none());
    assert_eq!(requests[1].0["x-slack-retry-num"], "1");
    assert_eq!(requests[1].0["x-slack-retry-reason"], "http_error");
    let first: Value = serde_json::from_slice(&requests[0].1).expect("json");
    let second: Value = serde_json::from_slice(&requests[1].1).expect("json");
    assert_eq!(
        first["event_id"], second["event_id"],
        "a retry carries the same event_id"
    );
    assert_eq!(first["event"]["channel"]["name"], "campaign-renamed");
    let (_, _, info) = slack(
        &sandbox,
        "conversations.info",
        "sandbox-bot-token",
        &[("channel", "C20000000")],
    )
    .await;
    assert_eq!(
        info["channel"]["name"], "campaign-renamed",
        "the sandbox's own workspace changed too"
    );
}

#[tokio::test]
async fn block_actions_arrive_form_encoded_and_signed() {
    let (receiver, host) = Receiver::start(0).await;
    let sandbox = start(|c| {
        c.slack_interactions_url = Some(format!("http://{host}/webhooks/slack/interactions"))
    })
    .await;
    let (posted, r) = post_and_approve(&sandbox, "Approval requested", "req-42").await;
    assert_eq!(r["delivery"]["acknowledged"], true);
    let (headers, body) = receiver.requests().pop().expect("delivered");
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    let now = chrono::Utc::now().timestamp();
    let ok = slack_signature::verify(
        b"sandbox-signing-secret",
        headers["x-slack-request-timestamp"].to_str().ok(),
        headers["x-slack-signature"].to_str().ok(),
        &body,
        now,
    );
    assert_eq!(ok, Ok(()));
    let payload = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .expect("payload=");
    let payload: Value = serde_json::from_str(&payload).expect("json payload");
    assert_eq!(payload["type"], "block_actions");
    assert_eq!(payload["actions"][0]["action_id"], "approve");
    assert_eq!(payload["container"]["message_ts"], posted["ts"]);
    assert_eq!(payload["message"]["text"], "Approval requested");
}

#[tokio::test]
async fn a_response_url_replaces_the_message_up_to_five_times() {
    let (receiver, host) = Receiver::start(0).await;
    let sandbox = start(|c| c.slack_interactions_url = Some(format!("http://{host}/i"))).await;
    let (posted, click) = post_and_approve(&sandbox, "Approve?", "req-1").await;
    assert_eq!(receiver.requests().len(), 1);
    let url = click["payload"]["response_url"]
        .as_str()
        .expect("response_url")
        .to_owned();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let text = format!("Approved ({i})");
        statuses.push(
            client()
                .post(&url)
                .json(&json!({ "replace_original": true, "text": text }))
                .send()
                .await
                .expect("respond")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 404]);
    let (_, _, update) = slack(
        &sandbox,
        "chat.update",
        "sandbox-bot-token",
        &[
            ("channel", posted["channel"].as_str().unwrap_or("")),
            ("ts", posted["ts"].as_str().unwrap_or("")),
        ],
    )
    .await;
    assert_eq!(update["text"], "Approved (4)");
}

#[tokio::test]
async fn a_failing_primary_webhook_is_suspended_and_the_backup_url_takes_over() {
    let (primary, primary_host) = Receiver::start(usize::MAX).await;
    let (backup, backup_host) = Receiver::start(0).await;
    let sandbox = start(|c| {
        c.mailjet_webhook_url = Some(format!("http://u:p@{primary_host}/a"));
        c.mailjet_webhook_backup_url = Some(format!("http://u:p@{backup_host}/b"));
        c.mailjet_suspend_after = 2;
        c.event_delay = Duration::from_millis(10);
        c.mailjet_group_window = Duration::from_millis(50);
        c.mailjet_retry_interval = Duration::from_millis(50);
    })
    .await;
    send(
        &sandbox,
        json!({ "Messages": [message("a@example.com", "f-1")] }),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the backup to receive the events",
        || async { !backup.requests().is_empty() },
    )
    .await;
    assert!(primary.requests().len() >= 2);
}

/// A receiver that records every request and fails the first `fail_first` with 500.
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    fail_first: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, String) {
        let receiver = Receiver {
            fail_first: Arc::new(Mutex::new(fail_first)),
            ..Default::default()
        };
        let state = receiver.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                state.requests.lock().expect("lock").push((headers, body));
                let mut fail = state.fail_first.lock().expect("lock");
                if *fail > 0 {
                    *fail -= 1;
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, format!("127.0.0.1:{port}"))
    }

    fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.requests.lock().expect("lock").clone()
    }
}

/// Posts `text` to campaign-1 as the bot, and has U10000001 click "approve" (value `value`) on
/// it: the posted message and the sandbox's answer to the click.
async fn post_and_approve(sandbox: &Sandbox, text: &str, value: &str) -> (Value, Value) {
    let (_, _, posted) = slack(
        sandbox,
        "chat.postMessage",
        "sandbox-bot-token",
        &[("channel", "campaign-1"), ("text", text)],
    )
    .await;
    let click = client()
        .post(format!("{}/_sandbox/slack/interactions", sandbox.base_url()))
        .json(&json!({ "action_id": "approve", "value": value, "channel": posted["channel"], "message_ts": posted["ts"], "user": "U10000001" }))
        .send()
        .await
        .expect("click")
        .json()
        .await
        .expect("json");
    (posted, click)
}
