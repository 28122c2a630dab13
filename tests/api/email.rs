//! Email requests and the email queue: validation that stores nothing, idempotency, and sends
//! that happen exactly once under kill -9, 429 storms, 5xx bursts and a Postgres restart —
//! counted by the sandbox's record of every message it accepted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use campaign_sync::sandbox::Sandbox;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::chaos::WorkerProcess;
use crate::clients::control;
use crate::helpers::{
    TestApp, TestWorker, closed_port, eventually, migrated_database, spawn_app_with, test_env,
    worker_settings,
};

pub(crate) const TEMPLATE: i64 = 4_000_000;

pub(crate) async fn sandbox() -> Sandbox {
    let seed = campaign_sync::sandbox::SeedSpec {
        seed: 3,
        campaigns: 1,
        templates: 2,
        users: 1,
        channels: 1,
    };
    crate::helpers::spawn_sandbox(seed, |_| {}).await
}

/// A campaign and the sandbox's first template, as the API needs them.
pub(crate) async fn seed(db: &PgPool) {
    sqlx::query("INSERT INTO campaigns (id, name) VALUES ('spring', 'Spring')")
        .execute(db)
        .await
        .expect("campaign");
    sqlx::query("INSERT INTO email_templates (id, name) VALUES ($1, 'Newsletter')")
        .bind(TEMPLATE)
        .execute(db)
        .await
        .expect("template");
}

/// Settings for sending through the sandbox's REST API, reconciled quickly.
pub(crate) fn mailjet_env(env: &mut HashMap<String, String>, sandbox: &Sandbox) {
    env.insert("MAILJET_ADAPTER".into(), "rest".into());
    env.insert("MAILJET_API_URL".into(), sandbox.base_url());
    env.insert("MAILJET_API_KEY".into(), "sandbox-key".into());
    env.insert("MAILJET_API_SECRET".into(), "sandbox-secret".into());
    env.insert("MAILJET_RATE_PER_SEC".into(), "400".into());
    env.insert("UPSTREAM_TIMEOUT_SECS".into(), "1".into());
    env.insert("EMAIL_RECONCILE_AFTER_SECS".into(), "7".into());
    env.insert("EMAIL_MAX_ATTEMPTS".into(), "20".into());
    env.insert(
        "SCHEDULE_PROCESS_EMAIL_QUEUE".into(),
        "*/2 * * * * *".into(),
    );
}

pub(crate) async fn app(
    sandbox: &Sandbox,
    adjust: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let (url, db) = migrated_database().await;
    seed(&db).await;
    spawn_app_with(url, db, |env| {
        mailjet_env(env, sandbox);
        adjust(env);
    })
    .await
}

pub(crate) async fn post(app: &TestApp, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/api/email-requests"))
        .bearer_auth(&app.env["API_TOKEN"])
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) fn recipients(n: usize, domain: &str) -> Vec<Value> {
    (0..n)
        .map(|i| json!({ "email": format!("r{i}@{domain}"), "name": format!("R {i}"), "variables": { "first_name": format!("R{i}") } }))
        .collect()
}

pub(crate) fn request(recipients: Vec<Value>) -> Value {
    json!({ "campaignId": "spring", "templateId": TEMPLATE, "recipients": recipients })
}

async fn stored(db: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM email_requests), (SELECT count(*) FROM email_sends)",
    )
    .fetch_one(db)
    .await
    .expect("counts")
}

#[tokio::test]
async fn bad_requests_get_precise_400s_or_422s_and_store_nothing() {
    let sandbox = sandbox().await;
    let app = app(&sandbox, |env| {
        env.insert("EMAIL_MAX_RECIPIENTS".into(), "5".into());
        env.insert("EMAIL_BODY_LIMIT_BYTES".into(), "4096".into());
    })
    .await;
    let (status, body) = post(&app, None, &request(recipients(1, "example.com"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("Idempotency-Key"),
        "{body}"
    );

    let mut bad = recipients(4, "example.com");
    bad[1]["email"] = json!("not-an-address");
    bad[3]["email"] = json!("R0@EXAMPLE.com");
    let (status, body) = post(&app, Some("k-bad"), &request(bad)).await;
    assert_eq!(status, 400, "{body}");
    let items = body["error"]["items"].as_array().expect("items by index");
    let indexes: Vec<u64> = items.iter().filter_map(|i| i["index"].as_u64()).collect();
    assert_eq!(indexes, [1, 3], "{body}");
    assert!(
        items[1]["errors"][0]["problem"]
            .as_str()
            .unwrap_or("")
            .contains("duplicate of recipients[0]"),
        "{body}"
    );
    // Only repeats: the body has the documented form, and is refused for what it says.
    let mut repeated = recipients(3, "example.com");
    repeated[2]["email"] = json!("R0@example.COM");
    let (status, body) = post(&app, Some("k-repeat"), &request(repeated)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unprocessable_entity", "{body}");
    assert_eq!(body["error"]["items"][0]["index"], 2, "{body}");

    for (what, body, expected) in [
        ("empty", request(vec![]), "recipients"),
        (
            "over the cap",
            request(recipients(6, "example.com")),
            "at most 5",
        ),
        (
            "unknown campaign",
            json!({ "campaignId": "nope", "templateId": TEMPLATE, "recipients": recipients(1, "example.com") }),
            "422 no campaign",
        ),
        (
            "unknown template",
            json!({ "campaignId": "spring", "templateId": 42, "recipients": recipients(1, "example.com") }),
            "422 no Mailjet template 42",
        ),
        (
            "unknown field",
            json!({ "campaignId": "spring", "templateId": TEMPLATE, "recipients": recipients(1, "example.com"), "priority": 1 }),
            "priority",
        ),
        (
            "bad time",
            json!({ "campaignId": "spring", "templateId": TEMPLATE, "recipients": recipients(1, "example.com"), "scheduledAt": "tomorrow" }),
            "scheduledAt",
        ),
        (
            "NUL in an address",
            json!({ "campaignId": "spring", "templateId": TEMPLATE, "recipients": [{ "email": "a\u{0}@example.com" }] }),
            "recipients[0].email",
        ),
        (
            "NUL in a name",
            json!({ "campaignId": "spring", "templateId": TEMPLATE, "recipients": [{ "email": "a@example.com", "name": "A\u{0}da" }] }),
            "recipients[0].name",
        ),
        (
            "NUL in a variable",
            json!({ "campaignId": "spring", "templateId": TEMPLATE, "recipients": [{ "email": "a@example.com", "variables": { "first_name": ["\u{0}"] } }] }),
            "recipients[0].variables.first_name[0]",
        ),
        (
            "a zero-width space in an address",
            json!({ "campaignId": "spring", "templateId": TEMPLATE, "recipients": [{ "email": "ad\u{200B}a@example.com" }] }),
            "U+200B",
        ),
        (
            "a control character in an address",
            json!({ "campaignId": "spring", "templateId": TEMPLATE, "recipients": [{ "email": "ada@example.com\u{7}" }] }),
            "U+0007",
        ),
    ] {
        let (status, answer) =
            post(&app, Some(&format!("k-{}", what.replace(' ', "-"))), &body).await;
        let (want, expected) = match expected.strip_prefix("422 ") {
            Some(rest) => (422, rest),
            None => (400, expected),
        };
        assert_eq!(status, want, "{what}: {answer}");
        assert!(answer.to_string().contains(expected), "{what}: {answer}");
    }
    let (status, _) = post(
        &app,
        Some("k-big"),
        &request(recipients(5, &"x".repeat(900))),
    )
    .await;
    assert_eq!(status, 413, "over EMAIL_BODY_LIMIT_BYTES");
    assert_eq!(
        stored(&app.db).await,
        (0, 0),
        "nothing stored for any of them"
    );
}

#[tokio::test]
async fn the_same_key_returns_the_first_answer_and_another_body_is_a_conflict() {
    let sandbox = sandbox().await;
    let app = app(&sandbox, |_| {}).await;
    let body = request(recipients(30, "example.com"));
    // Five at once with one key: one request is stored, all get its answer.
    let answers =
        futures_util::future::join_all((0..5).map(|_| post(&app, Some("key-1"), &body))).await;
    for (status, answer) in &answers {
        assert_eq!(*status, 202, "{answer}");
        assert_eq!(answer["id"], answers[0].1["id"]);
        assert_eq!(answer["recipients"], 30);
    }
    let (status, answer) = post(&app, Some("key-1"), &request(recipients(31, "example.com"))).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("different request"),
        "{answer}"
    );
    assert_eq!(stored(&app.db).await, (1, 30));

    // Status: counts and pages of recipients.
    let id = answers[0].1["id"].as_str().expect("id");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("/api/email-requests/{id}?limit=7");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value = app
            .client
            .get(app.url(&url))
            .bearer_auth(&app.env["API_TOKEN"])
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(
            page["counts"]["pending"].as_i64().unwrap_or(0)
                + page["counts"]["sending"].as_i64().unwrap_or(0)
                + page["counts"]["sent"].as_i64().unwrap_or(0),
            30,
            "{page}"
        );
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["email"].clone()),
        );
        match page["nextAfter"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 30, "every recipient once across pages");
    let response = app
        .client
        .get(app.url(&format!("/api/email-requests/{id}?limit=0")))
        .bearer_auth(&app.env["API_TOKEN"])
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 400);
    let response = app
        .client
        .get(app.url("/api/email-requests/00000000-0000-0000-0000-000000000000"))
        .bearer_auth(&app.env["API_TOKEN"])
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 404);
}

/// What the sandbox accepted: (distinct messages, duplicates).
pub(crate) async fn sandbox_sends(sandbox: &Sandbox) -> (u64, u64) {
    let sends = control(
        sandbox,
        reqwest::Method::GET,
        "/_sandbox/sends?list=false",
        None,
    )
    .await;
    (
        sends["messages"].as_u64().unwrap_or(0),
        sends["duplicates"].as_u64().unwrap_or(0),
    )
}

pub(crate) async fn statuses(db: &PgPool) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM email_sends GROUP BY status")
            .fetch_all(db)
            .await
            .expect("statuses");
    rows.into_iter().collect()
}

pub(crate) async fn wait_all_settled(db: &PgPool, n: i64, limit: Duration) {
    eventually(limit, &format!("{n} recipients settled"), || async {
        let s = statuses(db).await;
        s.get("pending").copied().unwrap_or(0) == 0
            && s.get("sending").copied().unwrap_or(0) == 0
            && s.values().sum::<i64>() == n
    })
    .await;
}

#[tokio::test]
async fn recipients_are_sent_once_with_per_message_errors_suppressions_and_test_mode() {
    let sandbox = sandbox().await;
    let app = app(&sandbox, |_| {}).await;
    sqlx::query(
        "INSERT INTO email_suppressions (email, reason) VALUES ('r7@example.com', 'hard_bounce')",
    )
    .execute(&app.db)
    .await
    .expect("suppression");
    let mut list = recipients(120, "example.com");
    // Passes our check (320 characters at most), refused by Mailjet (254 at most, mj-0013)
    // inside a mixed HTTP 400 answer.
    list[10]["email"] = json!(format!("{}@example.com", "a".repeat(280)));
    let (status, answer) = post(&app, Some("send-1"), &request(list)).await;
    assert_eq!(status, 202, "{answer}");
    let mut test = request(recipients(3, "test.example.com"));
    test["testMode"] = json!(true);
    let (status, _) = post(&app, Some("send-2"), &test).await;
    assert_eq!(status, 202);
    let worker = TestWorker::start(worker_settings(&app.env), campaign_sync::jobs::builtin());
    wait_all_settled(&app.db, 123, Duration::from_secs(60)).await;
    let conn = crate::helpers::redis_conn().await;
    let queue = campaign_sync::queue::Queue::new(conn, &app.redis_prefix, "default");
    crate::helpers::drain_and_assert_no_failures(&[&queue], Duration::from_secs(30)).await;
    worker.stop().await;
    // Every run is recorded, the runs of a minute in one row.
    let (rows, runs, sent): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT count(*), sum((counts->>'runs')::bigint)::bigint, sum((counts->>'sent')::bigint)::bigint FROM sync_runs WHERE job = 'process_email_queue'",
    )
    .fetch_one(&app.db)
    .await
    .expect("runs");
    assert!(
        rows >= 1 && runs.unwrap_or(0) >= rows,
        "{rows} rows, {runs:?} runs"
    );
    assert!(
        sent.unwrap_or(0) >= 1,
        "the sent recipients are counted: {sent:?}"
    );
    let s = statuses(&app.db).await;
    let failed = s.get("failed").copied().unwrap_or(0);
    assert_eq!(s.get("suppressed"), Some(&1), "{s:?}");
    assert_eq!(s.get("sent").copied().unwrap_or(0) + failed, 122, "{s:?}");
    let (messages, duplicates) = sandbox_sends(&sandbox).await;
    assert_eq!(duplicates, 0);
    assert_eq!(
        messages as i64,
        122 - failed,
        "every sent recipient reached Mailjet once"
    );
    let sandboxed = campaign_sync::sandbox::Sandbox::sends(&sandbox)
        .iter()
        .filter(|s| s.sandbox_mode)
        .count();
    assert_eq!(sandboxed, 3, "testMode → SandboxMode");
    let (with_id, custom_ok): (i64, bool) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE mailjet_message_id IS NOT NULL), bool_and(status <> 'sent' OR sent_at IS NOT NULL) FROM email_sends WHERE email LIKE '%@example.com'",
    )
    .fetch_one(&app.db)
    .await
    .expect("ids");
    assert_eq!(failed, 1, "{s:?}");
    assert_eq!(
        with_id, 118,
        "every sent recipient has its Mailjet message id"
    );
    assert!(custom_ok);
    let error: String =
        sqlx::query_scalar("SELECT last_error FROM email_sends WHERE status = 'failed'")
            .fetch_one(&app.db)
            .await
            .expect("error");
    assert!(error.contains("mj-0013"), "{error}");
    let completed: i64 = sqlx::query_scalar("SELECT count(*) FROM email_requests WHERE status = 'completed' AND completed_at IS NOT NULL")
        .fetch_one(&app.db)
        .await
        .expect("completed");
    assert_eq!(completed, 2);
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action IN ('email_request.accepted', 'email_request.completed')")
        .fetch_one(&app.db)
        .await
        .expect("audit");
    assert_eq!(audit, 4);
}

#[tokio::test]
async fn a_scheduled_request_waits_for_its_time() {
    let sandbox = sandbox().await;
    let app = app(&sandbox, |_| {}).await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(4);
    let mut body = request(recipients(5, "example.com"));
    body["scheduledAt"] = json!(at.to_rfc3339());
    let (status, _) = post(&app, Some("later"), &body).await;
    assert_eq!(status, 202);
    let worker = TestWorker::start(worker_settings(&app.env), campaign_sync::jobs::builtin());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sandbox_sends(&sandbox).await.0,
        0,
        "nothing before scheduledAt"
    );
    wait_all_settled(&app.db, 5, Duration::from_secs(30)).await;
    worker.stop().await;
    let first: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT min(sent_at) FROM email_sends")
            .fetch_one(&app.db)
            .await
            .expect("sent");
    assert!(first >= at, "sent at {first}, scheduled {at}");
}

/// A request of `n` recipients at example.com stored through the store (as the API does).
pub(crate) async fn store_request(db: &PgPool, key: &str, n: usize) {
    store_recipients(db, key, recipients(n, "example.com")).await;
}

/// A request of `recipients` stored through the store.
pub(crate) async fn store_recipients(db: &PgPool, key: &str, recipients: Vec<Value>) {
    let input: campaign_sync::store::email_requests::EmailRequestInput =
        serde_json::from_value(request(recipients)).expect("input");
    campaign_sync::store::email_requests::accept(
        db,
        key,
        &input,
        &campaign_sync::store::audit::Actor::new("test"),
        |_| {},
    )
    .await
    .expect("stored");
}

async fn exactly_once(sandbox: &Sandbox, db: &PgPool, n: i64) {
    let s = statuses(db).await;
    assert_eq!(s.get("sent").copied().unwrap_or(0), n, "all sent: {s:?}");
    let (messages, duplicates) = sandbox_sends(sandbox).await;
    assert_eq!(
        (messages as i64, duplicates),
        (n, 0),
        "each recipient reached Mailjet exactly once"
    );
}

#[tokio::test]
async fn five_thousand_recipients_survive_three_kill_9s_exactly_once() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    let mut env = test_env(&url);
    mailjet_env(&mut env, &sandbox);
    env.insert("LOG_LEVEL".into(), "info".into());
    // Ten batches in flight (500 recipients claimed at a time), so each worker has plenty
    // left to do when it is killed.
    env.insert("MAILJET_RATE_PER_SEC".into(), "40".into());
    // Slow sends, so that kills land mid-batch.
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(json!({ "endpoint": "mailjet.send", "latency_ms": 40 })),
    )
    .await;
    store_request(&db, "chaos", 5_000).await;
    let mut kills = 0;
    for _ in 0..3 {
        let mut worker = WorkerProcess::spawn(&env);
        let before = sandbox_sends(&sandbox).await.0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while sandbox_sends(&sandbox).await.0 <= before + 300 {
            if std::time::Instant::now() > deadline {
                let log = worker.log();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                panic!(
                    "the worker sent nothing; the end of its log:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worker.kill_9();
        kills += 1;
    }
    let sending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM email_sends WHERE status = 'sending'")
            .fetch_one(&db)
            .await
            .expect("sending");
    let worker = WorkerProcess::spawn(&env);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let s = statuses(&db).await;
        if s.get("sent") == Some(&5_000) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let log = worker.log();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            panic!(
                "not all sent: {s:?}; the end of the worker's log:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = worker.log();
    drop(worker);
    assert_eq!(kills, 3);
    exactly_once(&sandbox, &db, 5_000).await;
    let reconciled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_sends WHERE history::text LIKE '%reconciled%' OR resent",
    )
    .fetch_one(&db)
    .await
    .expect("reconciled");
    assert!(
        reconciled >= sending.min(1),
        "rows left sending were reconciled ({sending} left, {reconciled} reconciled); log:\n{log}"
    );
}

// Multi-threaded: the sandbox runs in this test's runtime and must answer while the test
// waits for the worker to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_send_finishes_the_calls_in_hand_and_leaves_the_rest_pending() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    let mut env = test_env(&url);
    mailjet_env(&mut env, &sandbox);
    env.insert("MAILJET_RATE_PER_SEC".into(), "40".into());
    env.insert("WORKER_SHUTDOWN_TIMEOUT_SECS".into(), "10".into());
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(json!({ "endpoint": "mailjet.send", "latency_ms": 300 })),
    )
    .await;
    store_request(&db, "deploy", 3_000).await;
    let mut worker = WorkerProcess::spawn(&env);
    eventually(Duration::from_secs(30), "some sends", || async {
        sandbox_sends(&sandbox).await.0 >= 200
    })
    .await;
    let (status, took) = tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(20)));
    assert!(status.success(), "exit {status:?}; log:\n{}", worker.log());
    assert!(
        took < Duration::from_secs(10),
        "stopped within the grace period ({took:?})"
    );
    let s = statuses(&db).await;
    let errors: Vec<Option<String>> =
        sqlx::query_scalar("SELECT DISTINCT last_error FROM email_sends WHERE status = 'sending'")
            .fetch_all(&db)
            .await
            .expect("errors");
    assert_eq!(
        s.get("sending"),
        None,
        "nothing cut off mid-call: {s:?} {errors:?}; log:\n{}",
        worker.log()
    );
    assert!(
        s.get("pending").copied().unwrap_or(0) > 0,
        "the rest waits: {s:?}"
    );
    drop(worker);
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    wait_all_settled(&db, 3_000, Duration::from_secs(90)).await;
    worker.stop().await;
    exactly_once(&sandbox, &db, 3_000).await;
}

#[tokio::test]
async fn a_429_storm_and_5xx_bursts_neither_lose_nor_duplicate() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    let mut env = test_env(&url);
    mailjet_env(&mut env, &sandbox);
    store_request(&db, "storm", 2_000).await;
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(
            json!({ "endpoint": "mailjet.send", "rate_limit_for_secs": 3, "retry_after_secs": 1 }),
        ),
    )
    .await;
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(json!({ "endpoint": "mailjet.send", "error_rate": 0.3, "error_status": 500 })),
    )
    .await;
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(json!({ "endpoint": "mailjet.send", "error_rate": 0.1, "error_status": 503 })),
    )
    .await;
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    eventually(
        Duration::from_secs(30),
        "some sends through the faults",
        || async { sandbox_sends(&sandbox).await.0 > 500 },
    )
    .await;
    control(&sandbox, reqwest::Method::DELETE, "/_sandbox/faults", None).await;
    wait_all_settled(&db, 2_000, Duration::from_secs(90)).await;
    worker.stop().await;
    let stats = control(&sandbox, reqwest::Method::GET, "/_sandbox/requests", None).await;
    assert!(
        stats["endpoints"]["mailjet.send"]["rate_limited"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{stats}"
    );
    exactly_once(&sandbox, &db, 2_000).await;
    let resent: i64 = sqlx::query_scalar("SELECT count(*) FROM email_sends WHERE resent")
        .fetch_one(&db)
        .await
        .expect("resent");
    assert!(resent > 0, "the ambiguous 500s were reconciled and resent");
}

#[tokio::test]
async fn sends_go_on_exactly_once_across_a_postgres_restart() {
    let sandbox = sandbox().await;
    // A PostgreSQL server of our own (the chaos harness's), to restart mid-send.
    let dir = std::env::temp_dir().join(format!("cs-pg-{}", uuid::Uuid::new_v4().simple()));
    let mut pg = campaign_sync::chaos::cluster::Postgres::start(&dir).expect("own postgres");
    let admin = PgPool::connect(&pg.url("postgres"))
        .await
        .expect("own postgres");
    sqlx::query("CREATE DATABASE cs")
        .execute(&admin)
        .await
        .expect("create");
    admin.close().await;
    let url = pg.url("cs");
    let db = PgPool::connect(&url).await.expect("connect");
    campaign_sync::store::MIGRATOR
        .run(&db)
        .await
        .expect("migrate");
    seed(&db).await;
    store_request(&db, "restart", 3_000).await;
    db.close().await;
    let mut env = test_env(&url);
    mailjet_env(&mut env, &sandbox);
    // About 500 recipients a second, so the restart lands mid-send.
    env.insert("MAILJET_RATE_PER_SEC".into(), "10".into());
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    eventually(Duration::from_secs(30), "some sends", || async {
        sandbox_sends(&sandbox).await.0 > 500
    })
    .await;
    pg.stop_fast();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = sandbox_sends(&sandbox).await.0;
    pg.resume().expect("postgres again");
    let db = PgPool::connect(&url).await.expect("reconnect");
    wait_all_settled(&db, 3_000, Duration::from_secs(120)).await;
    worker.stop().await;
    assert!(
        during < 3_000,
        "the restart happened mid-send ({during} sent by then)"
    );
    exactly_once(&sandbox, &db, 3_000).await;
    db.close().await;
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_send_command_stores_a_csv_once_and_refuses_a_bad_one() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    let mut env = test_env(&url);
    mailjet_env(&mut env, &sandbox);
    // No Redis: the request is still stored; the schedule would send it.
    env.insert(
        "REDIS_URL".into(),
        format!("redis://127.0.0.1:{}", closed_port()),
    );
    let dir = std::env::temp_dir().join(format!("cs-send-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join("list.csv");
    let mut csv = String::from("email,name,first_name,offer\n");
    for i in 0..250 {
        csv.push_str(&format!("p{i}@example.com,P {i},P{i},{}\n", i % 3));
    }
    std::fs::write(&good, csv).expect("csv");
    let send = |file: &PathBuf| {
        Command::new(env!("CARGO_BIN_EXE_campaign-sync"))
            .env_clear()
            .envs(&env)
            .args([
                "send",
                "--campaign",
                "spring",
                "--template",
                &TEMPLATE.to_string(),
                "--file",
            ])
            .arg(file)
            .output()
            .expect("send")
    };
    let first = send(&good);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("250 recipients"));
    let again = send(&good);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already stored"));
    assert_eq!(
        stored(&db).await,
        (1, 250),
        "the same file twice stores it once"
    );
    let variables: Value =
        sqlx::query_scalar("SELECT variables FROM email_sends WHERE email = 'p4@example.com'")
            .fetch_one(&db)
            .await
            .expect("variables");
    assert_eq!(variables, json!({ "first_name": "P4", "offer": "1" }));

    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "email,name\nok@example.com,A\nbroken,B\n").expect("csv");
    let out = send(&bad);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("recipient 1 (CSV line 3)") && stderr.contains("\"broken\""),
        "{stderr}"
    );
    assert_eq!(stored(&db).await, (1, 250), "nothing stored for a bad file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn without_a_message_search_a_stale_send_is_resent_once_then_left_dead_for_a_person() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    let mut env = test_env(&url);
    mailjet_env(&mut env, &sandbox);
    // The MCP agent cannot look messages up: only a `sent` event is evidence.
    env.insert("MAILJET_ADAPTER".into(), "agent".into());
    env.insert("MAILJET_MCP_URL".into(), sandbox.base_url());
    env.insert(
        "MAILJET_MCP_TOKEN".into(),
        "sandbox-mcp-signing-secret".into(),
    );
    store_request(&db, "stale", 3).await;
    // As a crash leaves them: two never resent, one already resent once.
    sqlx::query("UPDATE email_sends SET status = 'sending', attempts = 1, sending_started_at = now() - interval '1 hour'")
        .execute(&db)
        .await
        .expect("stale");
    sqlx::query("UPDATE email_sends SET resent = true WHERE email = 'r2@example.com'")
        .execute(&db)
        .await
        .expect("resent");
    // Mailjet's events have reached us past the attempt (another message's, just now), and
    // none names these sends: that absence is the evidence.
    crate::reconcile::store_event(&db, "sent", None, chrono::Utc::now().timestamp()).await;
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    wait_all_settled(&db, 3, Duration::from_secs(30)).await;
    worker.stop().await;
    let rows: Vec<(String, String, bool, String)> = sqlx::query_as(
        "SELECT email, status, resent, history::text FROM email_sends ORDER BY email",
    )
    .fetch_all(&db)
    .await
    .expect("rows");
    assert_eq!(rows[0].0, "r0@example.com");
    assert_eq!((rows[0].1.as_str(), rows[0].2), ("sent", true), "{rows:?}");
    assert!(rows[0].3.contains("resent once"), "{rows:?}");
    assert_eq!((rows[2].1.as_str(), rows[2].2), ("dead", true), "{rows:?}");
    assert!(rows[2].3.contains("check Mailjet"), "{rows:?}");
    assert_eq!(
        sandbox_sends(&sandbox).await,
        (2, 0),
        "two resent, the dead one not"
    );
}

#[tokio::test]
async fn a_request_of_only_suppressed_addresses_completes_and_the_next_batch_still_goes() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    let mut env = test_env(&url);
    mailjet_env(&mut env, &sandbox);
    // The first 300 (more than one claim) are suppressed; the rest are not.
    sqlx::query("INSERT INTO email_suppressions (email, reason) SELECT 'r' || i || '@example.com', 'unsubscribe' FROM generate_series(0, 299) i")
        .execute(&db)
        .await
        .expect("suppressions");
    store_request(&db, "suppressed", 300).await;
    store_recipients(&db, "later", recipients(20, "other.example.com")).await;
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    wait_all_settled(&db, 320, Duration::from_secs(30)).await;
    eventually(
        Duration::from_secs(10),
        "both requests completed",
        || async { count_completed(&db).await == 2 },
    )
    .await;
    worker.stop().await;
    let s = statuses(&db).await;
    assert_eq!(
        (s.get("suppressed"), s.get("sent")),
        (Some(&300), Some(&20)),
        "{s:?}"
    );
    assert_eq!(sandbox_sends(&sandbox).await, (20, 0));
}

async fn count_completed(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM email_requests WHERE status = 'completed'")
        .fetch_one(db)
        .await
        .expect("completed")
}

/// Mailjet refusing our credentials refuses the call before anything is sent: every
/// recipient goes back to `pending` without spending an attempt, to be tried in a minute.
#[tokio::test]
async fn credentials_mailjet_refuses_leave_every_recipient_pending_without_spending_an_attempt() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    seed(&db).await;
    let mut env = test_env(&url);
    mailjet_env(&mut env, &sandbox);
    env.insert("MAILJET_API_SECRET".into(), "not-the-secret".into());
    store_request(&db, "refused", 120).await;
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    let refused = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM email_sends WHERE status = 'pending' AND attempts = 0
               AND last_error LIKE '%Invalid credentials%' AND next_attempt_at > now() + interval '30 seconds'",
        )
        .fetch_one(&db)
        .await
        .expect("refused")
    };
    eventually(
        Duration::from_secs(15),
        "every recipient refused and pending",
        || async { refused().await == 120 },
    )
    .await;
    worker.stop().await;
    assert_eq!(statuses(&db).await.get("pending"), Some(&120));
    assert_eq!(
        sandbox_sends(&sandbox).await,
        (0, 0),
        "nothing reached Mailjet"
    );
    assert_eq!(count_completed(&db).await, 0);
}
