//! Reconciliation of sends a crash left `sending`: every kind of evidence is weighed before
//! anything is sent again, and any Mailjet event settles its send whatever state it is in.

use std::collections::HashMap;
use std::time::Duration;

use campaign_sync::jobs::process_email_queue::reconcile::{self, Windows};
use campaign_sync::sandbox::Sandbox;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::email::{mailjet_env, sandbox, sandbox_sends, seed, store_request};
use crate::helpers::{
    TestWorker, eventually, migrated_database, redis_conn, spawn_app_with, test_env,
    worker_settings,
};

/// A Mailjet event as the receiver stores it, not yet applied; returns its row id.
pub(crate) async fn store_event(db: &PgPool, kind: &str, custom: Option<Uuid>, time: i64) -> i64 {
    let payload = json!({ "event": kind, "time": time, "MessageID": 19_000_000_000_i64 + fastrand::i64(0..1_000_000),
        "email": "someone@example.com", "CustomID": custom.map(|c| c.to_string()).unwrap_or_default(), "Payload": "" });
    sqlx::query_scalar("INSERT INTO webhook_events (source, external_id, event_type, payload) VALUES ('mailjet', gen_random_uuid()::text, $1, $2) RETURNING id")
        .bind(kind)
        .bind(payload)
        .fetch_one(db)
        .await
        .expect("event")
}

fn agent_env(sandbox: &Sandbox, db_url: &str) -> HashMap<String, String> {
    let mut env = test_env(db_url);
    mailjet_env(&mut env, sandbox);
    env.insert("MAILJET_ADAPTER".into(), "agent".into());
    env.insert("MAILJET_MCP_URL".into(), sandbox.base_url());
    env.insert(
        "MAILJET_MCP_TOKEN".into(),
        "sandbox-mcp-signing-secret".into(),
    );
    env
}

/// `n` sends whose only attempt started `ago` and never settled, in email order.
async fn stale_sends(db: &PgPool, n: usize, ago: chrono::TimeDelta) -> Vec<Uuid> {
    store_request(db, "stale", n).await;
    sqlx::query("UPDATE email_sends SET status = 'sending', attempts = 1, sending_started_at = $1")
        .bind(chrono::Utc::now() - ago)
        .execute(db)
        .await
        .expect("stale");
    sqlx::query_scalar("SELECT id FROM email_sends ORDER BY email")
        .fetch_all(db)
        .await
        .expect("ids")
}

async fn reconcile_once(env: &HashMap<String, String>, db: &PgPool) -> u64 {
    let settings = worker_settings(env);
    let client = campaign_sync::clients::mailjet_from_settings(&settings, redis_conn().await)
        .expect("client");
    // Each call judges every stale row again, as if its grace window had passed.
    sqlx::query("UPDATE email_sends SET reconcile_at = NULL")
        .execute(db)
        .await
        .expect("reset");
    let windows = Windows {
        grace: settings.email.reconcile_after,
        upstream_timeout: settings.upstream_timeout,
        max_attempts: settings.email.max_attempts,
    };
    reconcile::reconcile(db, &client, windows)
        .await
        .expect("reconcile")
}

async fn rows(db: &PgPool) -> Vec<(String, bool, String)> {
    sqlx::query_as("SELECT status, resent, history::text FROM email_sends ORDER BY email")
        .fetch_all(db)
        .await
        .expect("rows")
}

#[tokio::test]
async fn a_stored_event_of_any_type_settles_a_stale_send_before_any_resend_even_unapplied() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    let env = agent_env(&sandbox, &url);
    let ids = stale_sends(&db, 4, chrono::TimeDelta::hours(1)).await;
    let now = chrono::Utc::now().timestamp();
    // Stored by the receiver, still waiting in the webhooks queue (a backlog after an outage).
    store_event(&db, "blocked", Some(ids[0]), now).await;
    store_event(&db, "bounce", Some(ids[1]), now).await;
    store_event(&db, "open", Some(ids[2]), now).await;
    assert_eq!(reconcile_once(&env, &db).await, 4);
    let r = rows(&db).await;
    for (i, kind) in ["blocked", "bounce", "open"].iter().enumerate() {
        assert_eq!((r[i].0.as_str(), r[i].1), ("sent", false), "{r:?}");
        assert!(r[i].2.contains(&format!("a {kind} event")), "{r:?}");
    }
    // The fourth has no event while Mailjet's events reached us past its attempt: resent.
    assert_eq!((r[3].0.as_str(), r[3].1), ("pending", true), "{r:?}");
    assert_eq!(
        sandbox_sends(&sandbox).await,
        (0, 0),
        "reconciliation itself sends nothing"
    );
}

#[tokio::test]
async fn the_agent_resends_only_once_mailjets_events_have_passed_the_attempt() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    let env = agent_env(&sandbox, &url);
    let attempt = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    stale_sends(&db, 1, chrono::TimeDelta::hours(1)).await;
    assert_eq!(reconcile_once(&env, &db).await, 0, "no events at all: wait");
    // An event of a message accepted right after the attempt: its own could still be coming.
    store_event(&db, "sent", None, attempt.timestamp() + 2).await;
    assert_eq!(
        reconcile_once(&env, &db).await,
        0,
        "not past the attempt yet: wait"
    );
    assert_eq!(rows(&db).await[0].0, "sending");
    let waiting: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT reconcile_at FROM email_sends")
            .fetch_one(&db)
            .await
            .expect("reconcile_at");
    assert!(
        waiting.is_some_and(|at| at > chrono::Utc::now()),
        "looked at again later"
    );
    store_event(&db, "open", None, chrono::Utc::now().timestamp()).await;
    assert_eq!(reconcile_once(&env, &db).await, 1);
    let r = rows(&db).await;
    assert_eq!((r[0].0.as_str(), r[0].1), ("pending", true), "{r:?}");
    assert!(r[0].2.contains("resent once"), "{r:?}");
}

#[tokio::test]
async fn with_no_events_for_a_day_the_agent_resends_once() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    let env = agent_env(&sandbox, &url);
    stale_sends(&db, 1, chrono::TimeDelta::hours(25)).await;
    assert_eq!(
        reconcile_once(&env, &db).await,
        1,
        "Mailjet's 24 h of event retries are over"
    );
    assert_eq!(rows(&db).await[0].0, "pending");
}

#[tokio::test]
async fn an_event_settles_its_send_as_sent_whatever_a_crash_or_reconciliation_left_it() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    store_request(&db, "states", 5).await;
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM email_sends ORDER BY email")
        .fetch_all(&db)
        .await
        .expect("ids");
    for (id, status) in ids
        .iter()
        .zip(["sending", "pending", "dead", "failed", "suppressed"])
    {
        sqlx::query("UPDATE email_sends SET status = $2, attempts = 1 WHERE id = $1")
            .bind(id)
            .bind(status)
            .execute(&db)
            .await
            .expect("state");
    }
    let app = spawn_app_with(url, db, |env| mailjet_env(env, &sandbox)).await;
    let events: Vec<serde_json::Value> = ids
        .iter()
        .zip(["blocked", "sent", "bounce", "spam", "open"])
        .enumerate()
        .map(|(i, (id, kind))| json!({ "event": kind, "time": 1_795_000_000 + i as i64, "MessageID": 5_000 + i as i64,
            "email": format!("r{i}@example.com"), "CustomID": id.to_string(), "Payload": "", "hard_bounce": true }))
        .collect();
    let answer = app
        .client
        .post(app.url("/webhooks/mailjet"))
        .basic_auth(
            &app.env["MAILJET_WEBHOOK_USER"],
            Some(&app.env["MAILJET_WEBHOOK_PASSWORD"]),
        )
        .json(&events)
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 200);
    let worker = TestWorker::start(worker_settings(&app.env), campaign_sync::jobs::builtin());
    eventually(Duration::from_secs(20), "every event applied", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM email_sends WHERE status = 'sent'")
            .fetch_one(&app.db)
            .await
            .expect("count")
            == 5
    })
    .await;
    worker.stop().await;
    let r = rows(&app.db).await;
    for (row, was) in r
        .iter()
        .zip(["sending", "pending", "dead", "failed", "suppressed"])
    {
        assert!(row.2.contains(&format!("(was {was})")), "{r:?}");
    }
    let ids_and_messages: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_sends WHERE mailjet_message_id BETWEEN 5000 AND 5004",
    )
    .fetch_one(&app.db)
    .await
    .expect("message ids");
    assert_eq!(ids_and_messages, 5, "the message id comes with the event");
}
