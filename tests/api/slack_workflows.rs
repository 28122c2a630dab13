//! Slack workflows end to end, against the sandbox over real HTTP: notifications to a
//! channel and as DMs, approvals decided by clicks (and refused to others), "request changes"
//! through its modal, reminders and expiry, muted DMs, status cards, and the signed webhook
//! to the Campaign Manager.

use std::net::SocketAddr;
use std::time::Duration;

use campaign_sync::sandbox::{Sandbox, SandboxConfig, SeedSpec};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestWorker, closed_port, eventually, migrated_database, spawn_app_with,
    worker_settings,
};

const WAIT: Duration = Duration::from_secs(60);

/// The app, a worker and a sandbox wired to each other.
pub struct World {
    pub app: TestApp,
    pub worker: TestWorker,
    pub sandbox: Sandbox,
    /// Sandbox channel ids of campaign-1.., and (user id, email) of a few sandbox users.
    pub channels: Vec<String>,
    pub users: Vec<(String, String)>,
}

pub async fn world(adjust: impl FnOnce(&mut std::collections::HashMap<String, String>)) -> World {
    world_with(6, adjust).await
}

/// A world whose sandbox has `channels` seeded channels.
pub async fn world_with(
    channels: usize,
    adjust: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> World {
    let port = closed_port();
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let sandbox = Sandbox::start(
        SandboxConfig {
            seed: SeedSpec {
                seed: 11,
                campaigns: 1,
                templates: 1,
                users: 20,
                channels,
            },
            slack_signing_secret: secret.clone(),
            slack_interactions_url: Some(format!(
                "http://127.0.0.1:{port}/webhooks/slack/interactions"
            )),
            slack_events_url: Some(format!("http://127.0.0.1:{port}/webhooks/slack/events")),
            ..SandboxConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("sandbox");
    let (db_url, db) = migrated_database().await;
    let slack_url = sandbox.slack_api_url();
    let app = spawn_app_with(db_url, db, |env| {
        env.insert("PORT".into(), port.to_string());
        env.insert("SLACK_API_URL".into(), slack_url);
        env.insert("SLACK_BOT_TOKEN".into(), "sandbox-bot-token".into());
        env.insert("SLACK_SIGNING_SECRET".into(), secret);
        adjust(env);
    })
    .await;
    let worker = TestWorker::start(worker_settings(&app.env), campaign_sync::jobs::builtin());
    let listed = slack(&sandbox, "conversations.list", &[("limit", "200")]).await;
    let mut channels: Vec<(String, String)> = listed["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["is_archived"] == false)
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_owned(),
                c["id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    channels.sort();
    let users_page = slack(&sandbox, "users.list", &[("limit", "50")]).await;
    let users = users_page["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["is_bot"] == false && u["deleted"] == false)
        .filter_map(|u| {
            Some((
                u["id"].as_str()?.to_owned(),
                u.pointer("/profile/email")?.as_str()?.to_owned(),
            ))
        })
        .take(5)
        .collect();
    World {
        app,
        worker,
        sandbox,
        channels: channels.into_iter().map(|(_, id)| id).collect(),
        users,
    }
}

/// Calls a sandbox Slack method as the bot.
pub async fn slack(sandbox: &Sandbox, method: &str, params: &[(&str, &str)]) -> Value {
    reqwest::Client::new()
        .post(format!("{}/{method}", sandbox.slack_api_url()))
        .bearer_auth("sandbox-bot-token")
        .form(params)
        .send()
        .await
        .expect("slack call")
        .json()
        .await
        .expect("json")
}

/// What the sandbox recorded: messages, ephemerals, modals.
pub async fn recorded(sandbox: &Sandbox) -> Value {
    reqwest::get(format!("{}/_sandbox/slack/messages", sandbox.base_url()))
        .await
        .expect("messages")
        .json()
        .await
        .expect("json")
}

/// A campaign `id` whose channel is the sandbox channel `channel`, and team member `member`
/// with `email`.
pub(crate) async fn seed(w: &World, id: &str, channel: &str, member: &str, email: &str) {
    let app = &w.app;
    let (status, put) = app
        .put_json(
            &format!("/api/campaigns/{id}"),
            &json!({ "name": format!("Campaign {id}"), "status": "draft" }),
        )
        .await;
    assert!(status < 300, "{put}");
    sqlx::query("INSERT INTO slack_channels (id, workspace_id, name, campaign_id) VALUES ($1, 'T0SANDBOX', $2, $3)")
        .bind(channel)
        .bind(format!("campaign-{id}"))
        .bind(id)
        .execute(&app.db)
        .await
        .expect("channel mapping");
    let (status, put) = app
        .put_json(
            &format!("/api/team-members/{member}"),
            &json!({ "email": email, "name": "Ada Approver" }),
        )
        .await;
    assert!(status < 300, "{put}");
}

fn messages_in<'a>(rec: &'a Value, channel: &str) -> Vec<&'a Value> {
    rec["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["channel"] == channel)
        .collect()
}

async fn post_notification(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/api/notifications"))
        .bearer_auth(&app.env["API_TOKEN"])
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_notification_reaches_the_campaign_channel_and_a_dm_once_each() {
    let w = world(|_| {}).await;
    let (user, email) = w.users[0].clone();
    let channel = w.channels[0].clone();
    seed(&w, "spring", &channel, "tm-ada", &email).await;
    let body = json!({ "type": "milestone_reached", "campaignId": "spring", "campaignName": "Spring <launch>",
        "message": "10,000 opens & counting", "attachments": [{"title": "Open rate", "value": "41%", "color": "good"}],
        "actions": [{"type": "button", "text": "Report", "url": "https://cm.example.com/r/1"}] });
    let (status, first) = post_notification(&w.app, "n-1", &body).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = post_notification(&w.app, "n-1", &body).await;
    assert_eq!(
        (status, &again["id"]),
        (202, &first["id"]),
        "a replay answers the first"
    );
    let (status, conflict) = post_notification(&w.app, "n-1", &json!({ "type": "status_change", "campaignId": "spring", "campaignName": "S", "message": "other" })).await;
    assert_eq!(status, 409, "{conflict}");
    let dm = json!({ "type": "task_assigned", "campaignId": "spring", "campaignName": "Spring", "userId": "tm-ada", "message": "Write the copy" });
    let (status, task) = post_notification(&w.app, "n-2", &dm).await;
    assert_eq!(status, 202, "{task}");
    let id = first["id"].as_str().expect("id").to_owned();
    let task_id = task["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "both notifications to be sent", || async {
        let (_, a) = w.app.get_json(&format!("/api/notifications/{id}")).await;
        let (_, b) = w
            .app
            .get_json(&format!("/api/notifications/{task_id}"))
            .await;
        a["status"] == "sent" && b["status"] == "sent"
    })
    .await;
    let rec = recorded(&w.sandbox).await;
    let in_channel = messages_in(&rec, &channel);
    let milestone: Vec<&&Value> = in_channel
        .iter()
        .filter(|m| m["text"].as_str().unwrap_or("").contains("10,000 opens"))
        .collect();
    assert_eq!(milestone.len(), 1, "posted once: {in_channel:?}");
    let m = milestone[0];
    assert_eq!(m["metadata"]["event_type"], "campaign_sync_post");
    assert_eq!(m["attachments"][0]["color"], "good", "{m}");
    let text = m["blocks"][0]["text"]["text"].as_str().unwrap_or("");
    assert!(
        text.contains("Spring &lt;launch&gt;") && text.contains("&amp; counting"),
        "escaped: {text}"
    );
    assert_eq!(
        m["blocks"][1]["elements"][0]["url"],
        "https://cm.example.com/r/1"
    );
    // The task went to the assignee's DM and to the campaign's task thread.
    let dm_channel = format!("D{}", user.trim_start_matches(['U', 'W']));
    let dms = messages_in(&rec, &dm_channel);
    assert_eq!(dms.len(), 1, "one DM: {rec}");
    assert!(
        dms[0]["blocks"].to_string().contains("mute_dms"),
        "every DM can be muted"
    );
    let thread_parent = in_channel
        .iter()
        .find(|m| m["text"].as_str().unwrap_or("").starts_with("Tasks of"))
        .expect("task thread");
    let replies: Vec<&&Value> = in_channel
        .iter()
        .filter(|m| m["thread_ts"] == thread_parent["ts"])
        .collect();
    assert_eq!(
        replies.len(),
        1,
        "the task is in the thread: {in_channel:?}"
    );
    let (_, view) = w
        .app
        .get_json(&format!("/api/notifications/{task_id}"))
        .await;
    assert_eq!(
        view["deliveries"].as_array().map(Vec::len),
        Some(2),
        "{view}"
    );
    let (_, list) = w
        .app
        .get_json("/api/notifications?campaignId=spring&type=task_assigned")
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    w.worker.stop().await;
}

#[tokio::test]
async fn a_muted_member_gets_no_dm_and_an_unknown_campaign_is_refused() {
    let w = world(|_| {}).await;
    let (_, email) = w.users[1].clone();
    seed(&w, "muted", &w.channels[1], "tm-bo", &email).await;
    let (status, put) = w
        .app
        .put_json(
            "/api/team-members/tm-bo",
            &json!({ "email": email, "slackDmsMuted": true }),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    let (status, n) = post_notification(&w.app, "m-1", &json!({ "type": "status_change", "campaignId": "muted", "campaignName": "M", "userId": "tm-bo", "message": "hi" })).await;
    assert_eq!(status, 202, "{n}");
    let id = n["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "the DM to be skipped", || async {
        w.app.get_json(&format!("/api/notifications/{id}")).await.1["status"] == "skipped"
    })
    .await;
    let (_, view) = w.app.get_json(&format!("/api/notifications/{id}")).await;
    assert!(
        view["deliveries"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("muted"),
        "{view}"
    );
    let (status, refused) = post_notification(&w.app, "m-2", &json!({ "type": "status_change", "campaignId": "nope", "campaignName": "N", "message": "hi" })).await;
    assert_eq!(status, 422, "{refused}");
    let (status, bad) = post_notification(&w.app, "m-3", &json!({ "type": "party", "campaignId": "muted", "campaignName": "N", "message": "", "channelId": "x" })).await;
    assert_eq!(status, 400, "{bad}");
    let fields: Vec<&str> = bad["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"type") && fields.contains(&"message") && fields.contains(&"channelId"),
        "{bad}"
    );
    w.worker.stop().await;
}

async fn click(
    w: &World,
    action: &str,
    approval: &str,
    channel: &str,
    ts: &str,
    user: &str,
) -> Value {
    reqwest::Client::new()
        .post(format!("{}/_sandbox/slack/interactions", w.sandbox.base_url()))
        .json(&json!({ "action_id": action, "value": approval, "channel": channel, "message_ts": ts, "user": user }))
        .send()
        .await
        .expect("click")
        .json()
        .await
        .expect("json")
}

async fn ask_approval(
    w: &World,
    id: &str,
    deadline: chrono::DateTime<chrono::Utc>,
) -> (u16, Value) {
    let body = json!({ "approvalId": id, "campaignId": "launch", "stage": "final copy", "approverId": "tm-ada", "deadline": deadline.to_rfc3339() });
    let r = w
        .app
        .client
        .post(w.app.url("/api/approvals"))
        .bearer_auth(&w.app.env["API_TOKEN"])
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn only_the_approver_decides_and_everyone_hears_of_it() {
    // The Campaign Manager is down for the first two deliveries.
    let (hook_url, mut hook_rx) = campaign_manager(2).await;
    let w = world(|env| {
        env.insert("CAMPAIGN_MANAGER_WEBHOOK_URL".into(), hook_url);
        env.insert(
            "CAMPAIGN_MANAGER_WEBHOOK_SECRET".into(),
            "cm-webhook-secret-0123456789".into(),
        );
    })
    .await;
    let (approver, email) = w.users[0].clone();
    let (stranger, _) = w.users[2].clone();
    let channel = w.channels[2].clone();
    seed(&w, "launch", &channel, "tm-ada", &email).await;
    let deadline = chrono::Utc::now() + chrono::Duration::hours(30);
    let (status, created) = ask_approval(&w, "apr-1", deadline).await;
    assert_eq!(status, 201, "{created}");
    let (status, _) = ask_approval(&w, "apr-1", deadline).await;
    assert_eq!(status, 200, "asking again answers the stored approval");
    let (status, _) = ask_approval(&w, "apr-1", deadline + chrono::Duration::hours(1)).await;
    assert_eq!(status, 409, "another body under the same id is refused");
    let (status, _) = ask_approval(
        &w,
        "apr-old",
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    assert_eq!(status, 422, "a deadline in the past");
    eventually(WAIT, "the approver's DM", || async {
        w.app.get_json("/api/approvals/apr-1").await.1["slackTs"].is_string()
    })
    .await;
    let (_, a) = w.app.get_json("/api/approvals/apr-1").await;
    let (dm, ts) = (
        a["slackChannel"].as_str().unwrap_or("").to_owned(),
        a["slackTs"].as_str().unwrap_or("").to_owned(),
    );
    assert_eq!(
        a["slackUserId"],
        approver.as_str(),
        "found by the approver's email"
    );
    // Someone else clicks: nothing changes, they are told, it is audited.
    let c = click(&w, "approve", "apr-1", &dm, &ts, &stranger).await;
    assert_eq!(c["delivery"]["acknowledged"], true, "{c}");
    eventually(WAIT, "the stranger to be told", || async {
        recorded(&w.sandbox).await["ephemerals"]
            .to_string()
            .contains("not yours")
    })
    .await;
    assert_eq!(
        w.app.get_json("/api/approvals/apr-1").await.1["status"],
        "pending"
    );
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'approval.unauthorized_click' AND entity_id = 'apr-1'")
        .fetch_one(&w.app.db).await.expect("audit");
    assert_eq!(audited, 1);
    // The approver approves.
    click(&w, "approve", "apr-1", &dm, &ts, &approver).await;
    eventually(
        WAIT,
        "the approval to be approved and announced",
        || async {
            let rec = recorded(&w.sandbox).await;
            let updated = messages_in(&rec, &dm)
                .iter()
                .any(|m| m["ts"] == ts.as_str() && m["updates"] == 1);
            let told = messages_in(&rec, &channel).iter().any(|m| {
                m["thread_ts"].is_string()
                    && m["text"].as_str().unwrap_or("").starts_with("Approved")
            });
            updated && told
        },
    )
    .await;
    let (_, a) = w.app.get_json("/api/approvals/apr-1").await;
    assert_eq!(
        (a["status"].as_str(), a["decidedBy"].as_str()),
        (Some("approved"), Some(approver.as_str()))
    );
    let rec = recorded(&w.sandbox).await;
    let message = messages_in(&rec, &dm)
        .into_iter()
        .find(|m| m["ts"] == ts.as_str())
        .expect("dm")
        .clone();
    assert!(
        !message["blocks"].to_string().contains("\"approve\""),
        "the buttons are gone: {message}"
    );
    assert!(
        message["blocks"].to_string().contains("Approved"),
        "{message}"
    );
    // A second click on a decided approval is answered and changes nothing.
    click(&w, "reject", "apr-1", &dm, &ts, &approver).await;
    eventually(WAIT, "the late click to be answered", || async {
        recorded(&w.sandbox).await["ephemerals"]
            .to_string()
            .contains("already decided")
    })
    .await;
    assert_eq!(
        w.app.get_json("/api/approvals/apr-1").await.1["status"],
        "approved"
    );
    // The Campaign Manager heard, signed, after two failed deliveries were retried.
    let hook = tokio::time::timeout(WAIT, hook_rx.recv())
        .await
        .expect("a webhook in time")
        .expect("webhook");
    assert_eq!(hook.body["type"], "approval.approved", "{:?}", hook.body);
    assert_eq!(hook.body["data"]["approvalId"], "apr-1");
    assert!(hook.signature_ok, "the signature verifies");
    // The receiver saw it before its 204 was read and recorded.
    eventually(WAIT, "the webhook to be recorded as delivered", || async {
        let row: Option<(String, i32)> =
            sqlx::query_as("SELECT status, attempts FROM outgoing_webhooks")
                .fetch_optional(&w.app.db)
                .await
                .expect("outbox");
        row.is_some_and(|(status, attempts)| status == "delivered" && attempts == 3)
    })
    .await;
    let (_, list) = w
        .app
        .get_json("/api/approvals?campaignId=launch&status=approved")
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    w.worker.stop().await;
}

#[tokio::test]
async fn request_changes_opens_a_modal_whose_comment_decides_the_approval() {
    let w = world(|_| {}).await;
    let (approver, email) = w.users[0].clone();
    seed(&w, "launch", &w.channels[3], "tm-ada", &email).await;
    let (status, _) =
        ask_approval(&w, "apr-2", chrono::Utc::now() + chrono::Duration::hours(2)).await;
    assert_eq!(status, 201);
    eventually(WAIT, "the approver's DM", || async {
        w.app.get_json("/api/approvals/apr-2").await.1["slackTs"].is_string()
    })
    .await;
    let (_, a) = w.app.get_json("/api/approvals/apr-2").await;
    let (dm, ts) = (
        a["slackChannel"].as_str().unwrap_or("").to_owned(),
        a["slackTs"].as_str().unwrap_or("").to_owned(),
    );
    let c = click(&w, "request_changes", "apr-2", &dm, &ts, &approver).await;
    assert_eq!(c["delivery"]["acknowledged"], true, "{c}");
    let views = recorded(&w.sandbox).await["views"].clone();
    let view = views
        .as_array()
        .and_then(|v| v.last())
        .cloned()
        .expect("a modal was opened before the click was answered");
    assert_eq!(view["private_metadata"], "apr-2");
    let submitted: Value = reqwest::Client::new()
        .post(format!("{}/_sandbox/slack/view_submission", w.sandbox.base_url()))
        .json(&json!({ "view_id": view["id"], "user": approver, "values": { "comment": { "comment_text": "Shorter subject, please" } } }))
        .send().await.expect("submit").json().await.expect("json");
    assert_eq!(submitted["delivery"]["acknowledged"], true, "{submitted}");
    eventually(WAIT, "changes to be requested", || async {
        w.app.get_json("/api/approvals/apr-2").await.1["status"] == "changes_requested"
    })
    .await;
    assert_eq!(
        w.app.get_json("/api/approvals/apr-2").await.1["comment"],
        "Shorter subject, please"
    );
    w.worker.stop().await;
}

/// One webhook the Campaign Manager received.
pub struct Received {
    pub body: Value,
    pub signature_ok: bool,
}

/// A stand-in for the Campaign Manager's webhook endpoint (not ours: the far end of the
/// outgoing webhook), verifying the signature with the test's secret.
async fn campaign_manager(
    fail_first: usize,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                let seen = seen.clone();
                async move {
                    if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail_first {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let signature = headers
                        .get("x-campaign-sync-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let t: i64 = signature
                        .split(',')
                        .next()
                        .and_then(|p| p.strip_prefix("t="))
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0);
                    let expected = campaign_sync::jobs::deliver_outgoing_webhooks::signature(
                        b"cm-webhook-secret-0123456789",
                        t,
                        &body,
                    );
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let _ = tx.send(Received {
                        body,
                        signature_ok: expected == signature,
                    });
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hooks"), rx)
}
