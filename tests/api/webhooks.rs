//! The webhook receiver with real-shaped callbacks: Mailjet events posted by the sandbox with
//! Basic auth, Slack events and interactions signed as Slack signs them.

use std::net::SocketAddr;
use std::time::Duration;

use campaign_sync::sandbox::{EventRates, Sandbox, SandboxConfig, SeedSpec, slack_signature};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::chaos::OwnRedis;
use crate::helpers::{
    TestApp, TestWorker, closed_port, eventually, migrated_database, redis_conn, spawn_app,
    spawn_app_with, worker_settings,
};

const SECS_20: Duration = Duration::from_secs(20);

/// The worker of the same deployment as `app` (its database, Redis prefix and settings).
fn worker_for(app: &TestApp) -> TestWorker {
    TestWorker::start(worker_settings(&app.env), campaign_sync::jobs::builtin())
}

fn mailjet_auth(app: &TestApp) -> (String, String) {
    (
        app.env["MAILJET_WEBHOOK_USER"].clone(),
        app.env["MAILJET_WEBHOOK_PASSWORD"].clone(),
    )
}

async fn post_mailjet(app: &TestApp, body: &Value) -> u16 {
    let (user, password) = mailjet_auth(app);
    app.client
        .post(app.url("/webhooks/mailjet"))
        .basic_auth(user, Some(password))
        .json(body)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

async fn count(db: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect("count")
}

/// A send row for `email`, as the email queue would have written it; returns its id (CustomID).
async fn a_send(db: &PgPool, email: &str) -> uuid::Uuid {
    sqlx::query("INSERT INTO campaigns (id, name) VALUES ('cmp', 'C') ON CONFLICT DO NOTHING")
        .execute(db)
        .await
        .expect("campaign");
    let request: uuid::Uuid = sqlx::query_scalar("INSERT INTO email_requests (idempotency_key, request_hash, campaign_id, template_id, recipient_count) VALUES (gen_random_uuid()::text, 'h', 'cmp', 1, 1) RETURNING id")
        .fetch_one(db).await.expect("request");
    sqlx::query_scalar("INSERT INTO email_sends (request_id, email, status) VALUES ($1, $2, 'sending') RETURNING id").bind(request).bind(email).fetch_one(db).await.expect("send")
}

fn event(kind: &str, message_id: i64, email: &str, custom_id: &str, extra: Value) -> Value {
    let mut e = json!({ "event": kind, "time": 1_795_000_000, "MessageID": message_id, "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0ab1c2d",
        "email": email, "mj_campaign_id": 7257, "mj_contact_id": 4, "customcampaign": "", "CustomID": custom_id, "Payload": "" });
    if let (Some(e), Some(x)) = (e.as_object_mut(), extra.as_object()) {
        e.extend(x.clone());
    }
    e
}

#[tokio::test]
async fn mailjet_events_posted_by_the_sandbox_update_the_send_once_each() {
    let app = spawn_app().await;
    let worker = worker_for(&app);
    let send = a_send(&app.db, "reader@example.com").await;
    let (user, password) = mailjet_auth(&app);
    let sandbox = Sandbox::start(
        SandboxConfig {
            seed: SeedSpec {
                seed: 1,
                campaigns: 1,
                templates: 1,
                users: 1,
                channels: 1,
            },
            mailjet_webhook_url: Some(format!(
                "http://{user}:{password}@127.0.0.1:{}/webhooks/mailjet",
                app.port
            )),
            event_delay: Duration::from_millis(10),
            mailjet_group_window: Duration::from_millis(50),
            event_rates: EventRates {
                open: 1.0,
                click: 1.0,
                bounce: 0.0,
                spam: 0.0,
                blocked: 0.0,
                unsub: 0.0,
            },
            ..SandboxConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("sandbox");
    let message = json!({ "Messages": [{ "From": { "Email": "news@example.com" }, "To": [{ "Email": "reader@example.com" }], "TextPart": "hi", "CustomID": send.to_string() }] });
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/v3.1/send", sandbox.base_url()))
        .basic_auth("sandbox-key", Some("sandbox-secret"))
        .json(&message)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let message_id = answer["Messages"][0]["To"][0]["MessageID"]
        .as_i64()
        .expect("id");
    eventually(SECS_20, "sent, open and click applied", || async {
        count(
            &app.db,
            "SELECT count(*) FROM email_events WHERE send_id IS NOT NULL",
        )
        .await
            == 3
            && count(
                &app.db,
                "SELECT count(*) FROM webhook_events WHERE status = 'processed'",
            )
            .await
                == 3
    })
    .await;
    worker.stop().await;
    let row = sqlx::query_as::<_, (String, Option<i64>, i32, i32, bool)>("SELECT status, mailjet_message_id, open_count, click_count, history::text LIKE '%reconciled%' FROM email_sends WHERE id = $1")
        .bind(send).fetch_one(&app.db).await.expect("send row");
    assert_eq!(
        row,
        ("sent".to_owned(), Some(message_id), 1, 1, true),
        "a send left `sending` is reconciled by its sent event"
    );
}

#[tokio::test]
async fn a_repeated_delivery_has_exactly_one_effect_and_unknown_types_are_kept_but_ignored() {
    let app = spawn_app().await;
    let send = a_send(&app.db, "r@example.com").await;
    let batch = json!([
        event(
            "open",
            42,
            "r@example.com",
            &send.to_string(),
            json!({ "ip": "127.0.0.1", "geo": "FR", "agent": "x" })
        ),
        event("mystery", 42, "r@example.com", &send.to_string(), json!({})),
    ]);
    assert_eq!(post_mailjet(&app, &batch).await, 200);
    assert_eq!(
        post_mailjet(&app, &batch).await,
        200,
        "a redelivery is acknowledged"
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM webhook_events").await,
        2,
        "and stored once"
    );
    let worker = worker_for(&app);
    eventually(SECS_20, "both processed", || async {
        count(
            &app.db,
            "SELECT count(*) FROM webhook_events WHERE status IN ('processed', 'ignored')",
        )
        .await
            == 2
    })
    .await;
    worker.stop().await;
    let (processed, ignored): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT sum((counts->>'processed')::bigint)::bigint, sum((counts->>'ignored')::bigint)::bigint FROM sync_runs WHERE job = 'process_webhook_events'",
    )
    .fetch_one(&app.db)
    .await
    .expect("runs");
    assert_eq!(
        (processed, ignored),
        (Some(1), Some(1)),
        "the runs are recorded with their counts"
    );
    assert_eq!(
        count(&app.db, "SELECT open_count::bigint FROM email_sends").await,
        1
    );
    assert_eq!(count(&app.db, "SELECT count(*) FROM webhook_events WHERE event_type = 'mystery' AND status = 'ignored'").await, 1);
    let metrics = app.metrics().await;
    for series in [
        "webhook_requests_total{source=\"mailjet\",outcome=\"accepted\"}",
        "webhook_events_total{source=\"mailjet\",type=\"mystery\"}",
        "webhook_events_duplicate_total{source=\"mailjet\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }
}

#[tokio::test]
async fn hard_bounces_spam_complaints_and_unsubscribes_suppress_the_address() {
    let app = spawn_app().await;
    let batch = json!([
        event(
            "bounce",
            1,
            "Hard@Example.com",
            "",
            json!({ "blocked": false, "hard_bounce": true, "error_related_to": "recipient", "error": "user unknown", "comment": "" })
        ),
        event(
            "bounce",
            2,
            "soft@example.com",
            "",
            json!({ "blocked": false, "hard_bounce": false, "error_related_to": "recipient", "error": "quota exceeded", "comment": "" })
        ),
        event(
            "spam",
            3,
            "spam@example.com",
            "",
            json!({ "source": "JMRPP" })
        ),
        event(
            "unsub",
            4,
            "unsub@example.com",
            "",
            json!({ "mj_list_id": 1, "ip": "127.0.0.1", "geo": "FR", "agent": "x" })
        ),
        event(
            "blocked",
            5,
            "blocked@example.com",
            "",
            json!({ "error_related_to": "recipient", "error": "blacklisted" })
        ),
    ]);
    assert_eq!(post_mailjet(&app, &batch).await, 200);
    let worker = worker_for(&app);
    eventually(SECS_20, "all processed", || async {
        count(
            &app.db,
            "SELECT count(*) FROM webhook_events WHERE status = 'processed'",
        )
        .await
            == 5
    })
    .await;
    worker.stop().await;
    let suppressed: Vec<(String, String)> =
        sqlx::query_as("SELECT email, reason FROM email_suppressions ORDER BY email")
            .fetch_all(&app.db)
            .await
            .expect("rows");
    assert_eq!(
        suppressed,
        [
            ("hard@example.com".into(), "hard_bounce".into()),
            ("spam@example.com".into(), "spam".into()),
            ("unsub@example.com".into(), "unsubscribe".into())
        ]
    );
}

#[tokio::test]
async fn bad_mailjet_requests_are_refused_and_store_nothing() {
    let (url, db) = migrated_database().await;
    let app = spawn_app_with(url, db, |env| {
        env.insert("BODY_LIMIT_BYTES".into(), "2048".into());
    })
    .await;
    let one = json!([event("open", 1, "a@example.com", "", json!({}))]);
    let wrong = app
        .client
        .post(app.url("/webhooks/mailjet"))
        .basic_auth("mailjet", Some("wrong-password"))
        .json(&one)
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), 401);
    let none = app
        .client
        .post(app.url("/webhooks/mailjet"))
        .json(&one)
        .send()
        .await
        .expect("post");
    assert_eq!(none.status(), 401);
    let (user, password) = mailjet_auth(&app);
    let malformed = app
        .client
        .post(app.url("/webhooks/mailjet"))
        .basic_auth(&user, Some(&password))
        .body("[{\"event\":")
        .send()
        .await
        .expect("post");
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("body is not JSON")),
        "{body}"
    );
    let not_events = app
        .client
        .post(app.url("/webhooks/mailjet"))
        .basic_auth(&user, Some(&password))
        .body("42")
        .send()
        .await
        .expect("post");
    assert_eq!(not_events.status(), 400, "neither an event nor a group");
    let big: Vec<Value> = (0..40)
        .map(|i| event("open", i, "a@example.com", "", json!({})))
        .collect();
    assert_eq!(post_mailjet(&app, &json!(big)).await, 413);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM webhook_events").await,
        0
    );
}

#[tokio::test]
async fn a_group_with_bad_events_stores_the_good_ones_and_keeps_the_bad_ones_for_replay() {
    let app = spawn_app().await;
    let send = a_send(&app.db, "g@example.com").await;
    let custom = send.to_string();
    let client = json!({ "ip": "127.0.0.1", "geo": "FR", "agent": "phone" });
    let group = json!([
        event("sent", 7, "g@example.com", &custom, json!({})),
        { "event": "open", "time": 1 },
        event("open", 7, "g@example.com", &custom, client),
        // The same second, another device: a second open, not a redelivery.
        event("open", 7, "g@example.com", &custom, json!({ "ip": "10.1.1.1", "geo": "DE", "agent": "desktop" })),
        "not an event",
        // U+0000 (which PostgreSQL cannot store) in a field: stored with U+FFFD.
        event("click", 7, "g@example.com", &custom, json!({ "url": "https://example.com/a\u{0}b", "agent": "x" })),
    ]);
    let (user, password) = mailjet_auth(&app);
    let answer = |body: Value| {
        app.client
            .post(app.url("/webhooks/mailjet"))
            .basic_auth(user.clone(), Some(password.clone()))
            .json(&body)
            .send()
    };
    let r = answer(group.clone()).await.expect("post");
    assert_eq!(r.status(), 200, "the good events go through at once");
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(4), Some(2)),
        "{body}"
    );
    assert_eq!(body["rejections"][0]["index"], 1);
    assert!(
        body["rejections"][0]["reason"]
            .as_str()
            .is_some_and(|m| m.contains("event 1") && m.contains("MessageID")),
        "{body}"
    );
    assert!(
        body["rejections"][1]["reason"]
            .as_str()
            .is_some_and(|m| m.contains("not an object")),
        "{body}"
    );
    // Mailjet delivering the same group again changes nothing.
    assert_eq!(answer(group).await.expect("post").status(), 200);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM webhook_events").await,
        4,
        "each event once"
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM webhook_rejections").await,
        2,
        "each rejection once"
    );
    assert_eq!(count(&app.db, "SELECT count(*) FROM webhook_events WHERE payload->>'url' = 'https://example.com/a\u{FFFD}b'").await, 1);
    let raw: Vec<u8> = sqlx::query_scalar("SELECT raw FROM webhook_rejections ORDER BY id LIMIT 1")
        .fetch_one(&app.db)
        .await
        .expect("raw");
    assert_eq!(
        serde_json::from_slice::<Value>(&raw).expect("kept as JSON"),
        json!({ "event": "open", "time": 1 })
    );
    let worker = worker_for(&app);
    eventually(SECS_20, "the good events processed", || async {
        count(
            &app.db,
            "SELECT count(*) FROM webhook_events WHERE status = 'processed'",
        )
        .await
            == 4
    })
    .await;
    worker.stop().await;
    let (status, opens, clicks): (String, i32, i32) =
        sqlx::query_as("SELECT status, open_count, click_count FROM email_sends WHERE id = $1")
            .bind(send)
            .fetch_one(&app.db)
            .await
            .expect("send");
    assert_eq!((status.as_str(), opens, clicks), ("sent", 2, 1));
}

fn cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_campaign-sync"))
        .env_clear()
        .envs(&app.env)
        .args(args)
        .output()
        .expect("run");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn an_operator_lists_shows_and_replays_rejected_events() {
    let app = spawn_app().await;
    let send = a_send(&app.db, "late@example.com").await;
    let bad = json!([{ "event": "open", "time": "yesterday", "MessageID": 1 }]);
    assert_eq!(post_mailjet(&app, &bad).await, 200);
    // As an older build would have kept it: bytes that today's rules accept.
    let good = event(
        "blocked",
        77,
        "late@example.com",
        &send.to_string(),
        json!({}),
    );
    sqlx::query("INSERT INTO webhook_rejections (source, position, raw, reason, digest) VALUES ('mailjet', 0, $1, 'event 0: an older rule', repeat('a', 64))")
        .bind(serde_json::to_vec(&good).expect("bytes"))
        .execute(&app.db)
        .await
        .expect("rejection");
    let (ok, listed) = cli(&app, &["webhooks", "rejected"]);
    assert!(
        ok && listed.contains("\"time\" is missing or not an integer")
            && listed.contains("2 rejected events shown"),
        "{listed}"
    );
    let id: i64 = sqlx::query_scalar("SELECT min(id) FROM webhook_rejections")
        .fetch_one(&app.db)
        .await
        .expect("id");
    let (ok, shown) = cli(&app, &["webhooks", "show", &id.to_string()]);
    assert!(
        ok && shown.contains("yesterday"),
        "the bytes as received: {shown}"
    );
    let (ok, replayed) = cli(&app, &["webhooks", "replay", "--all"]);
    assert!(ok, "{replayed}");
    assert!(
        replayed.contains("still rejected")
            && replayed.contains("stored as event")
            && replayed.contains("2 replayed, 1 stored"),
        "{replayed}"
    );
    let worker = worker_for(&app);
    eventually(SECS_20, "the replayed event applied", || async {
        count(
            &app.db,
            "SELECT count(*) FROM email_sends WHERE status = 'sent' AND blocked_at IS NOT NULL",
        )
        .await
            == 1
    })
    .await;
    worker.stop().await;
    let (_, again) = cli(&app, &["webhooks", "replay", "--all"]);
    assert!(
        again.contains("still rejected") && again.contains("1 replayed, 0 stored"),
        "only the open one is left: {again}"
    );
    let (ok, missing) = cli(&app, &["webhooks", "replay", "999999"]);
    assert!(
        !ok && missing.contains("no such rejected event"),
        "{missing}"
    );
}

#[tokio::test]
async fn postgres_down_is_a_503_so_the_sender_retries() {
    let (_, db) = migrated_database().await;
    let down = format!("postgres://postgres@127.0.0.1:{}/none", closed_port());
    let app = spawn_app_with(down.clone(), db, |env| {
        env.insert("DATABASE_URL".into(), down);
        env.insert("DATABASE_CONNECT_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    assert_eq!(
        post_mailjet(
            &app,
            &json!(event("open", 1, "a@example.com", "", json!({})))
        )
        .await,
        503
    );
}

#[tokio::test]
async fn with_redis_down_events_are_still_accepted_and_swept_into_the_queue_later() {
    let mut redis = OwnRedis::start();
    let (url, db) = migrated_database().await;
    let redis_url = redis.url();
    let app = spawn_app_with(url, db, |env| {
        env.insert("REDIS_URL".into(), redis_url);
    })
    .await;
    redis.stop();
    assert_eq!(
        post_mailjet(
            &app,
            &json!(event("open", 1, "a@example.com", "", json!({})))
        )
        .await,
        200,
        "stored in Postgres, acknowledged"
    );
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM webhook_events WHERE status = 'received'"
        )
        .await,
        1
    );
    redis.start_again();
    let worker = worker_for(&app);
    eventually(
        Duration::from_secs(40),
        "the sweeper to enqueue it and the worker to process it",
        || async {
            count(
                &app.db,
                "SELECT count(*) FROM webhook_events WHERE status = 'processed'",
            )
            .await
                == 1
        },
    )
    .await;
    worker.stop().await;
}

fn signed(app: &TestApp, body: &[u8], timestamp: i64) -> reqwest::RequestBuilder {
    let signature = slack_signature(&app.env["SLACK_SIGNING_SECRET"], timestamp, body);
    app.client
        .post(app.url("/webhooks/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header("x-slack-signature", signature)
        .body(body.to_vec())
}

#[tokio::test]
async fn a_slack_event_holding_nul_is_stored_with_a_replacement_character_and_applied() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let event = br#"{"type":"event_callback","event_id":"EvNUL","team_id":"T1","event":{"type":"channel_created","channel":{"id":"C0NUL","name":"launch\u0000room"}}}"#;
    let status = signed(&app, event, now)
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status, 200, "not a 503 that Slack would retry");
    assert_eq!(
        status,
        signed(&app, event, now)
            .send()
            .await
            .expect("post")
            .status(),
        "a retry is a duplicate"
    );
    let worker = worker_for(&app);
    eventually(SECS_20, "the channel stored", || async {
        count(&app.db, "SELECT count(*) FROM slack_channels WHERE id = 'C0NUL' AND name = 'launch\u{FFFD}room'").await == 1
    })
    .await;
    worker.stop().await;
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM webhook_events").await,
        1
    );
}

#[tokio::test]
async fn slack_url_verification_is_answered_and_bad_or_stale_signatures_are_401() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let answer: Value = signed(&app, body, now)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let event = br#"{"type":"event_callback","event_id":"Ev1","team_id":"T1","event":{"type":"channel_created","channel":{"id":"C1","name":"x"}}}"#;
    assert_eq!(
        signed(&app, event, now - 301)
            .send()
            .await
            .expect("post")
            .status(),
        401,
        "stale"
    );
    let tampered = signed(&app, event, now)
        .body(br#"{"type":"event_callback","event_id":"Ev2"}"#.to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(tampered.status(), 401);
    let unsigned = app
        .client
        .post(app.url("/webhooks/slack/events"))
        .body(event.to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(unsigned.status(), 401);
    assert_eq!(
        signed(&app, b"{not json", now)
            .send()
            .await
            .expect("post")
            .status(),
        400
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM webhook_events").await,
        0
    );
}

async fn sandbox_for(app: &TestApp) -> Sandbox {
    Sandbox::start(
        SandboxConfig {
            seed: SeedSpec {
                seed: 3,
                campaigns: 1,
                templates: 1,
                users: 20,
                channels: 4,
            },
            slack_signing_secret: app.env["SLACK_SIGNING_SECRET"].clone(),
            slack_events_url: Some(format!(
                "http://127.0.0.1:{}/webhooks/slack/events",
                app.port
            )),
            slack_interactions_url: Some(format!(
                "http://127.0.0.1:{}/webhooks/slack/interactions",
                app.port
            )),
            ..SandboxConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("sandbox")
}

#[tokio::test]
async fn slack_events_from_the_sandbox_update_users_and_channels_once_and_invalidate_the_cache() {
    // The deployment serves the sandbox's workspace: rows and cache keys are keyed by it.
    let (url, db) = crate::helpers::migrated_database().await;
    let app = crate::helpers::spawn_app_with(url, db, |env| {
        env.insert("SLACK_WORKSPACE_ID".into(), "T0SANDBOX1".into());
    })
    .await;
    let worker = worker_for(&app);
    let sandbox = sandbox_for(&app).await;
    sqlx::query("INSERT INTO team_members (id, email, name) VALUES ('tm-1', 'grace.hopper@example.com', 'Grace')").execute(&app.db).await.expect("member");
    sqlx::query("INSERT INTO campaigns (id, name) VALUES ('cmp', 'C')")
        .execute(&app.db)
        .await
        .expect("campaign");
    sqlx::query("INSERT INTO slack_channels (id, workspace_id, name, campaign_id) VALUES ('C20000000', 'T0SANDBOX1', 'campaign-1', 'cmp')").execute(&app.db).await.expect("channel");
    let mut conn = redis_conn().await;
    let old_key = campaign_sync::clients::slack::cache::channel_by_name(
        &app.redis_prefix,
        "T0SANDBOX1",
        "campaign-1",
    );
    let _: () = redis::cmd("SET")
        .arg(&old_key)
        .arg("C20000000")
        .query_async(&mut conn)
        .await
        .expect("set");
    let emit = |body: Value| {
        let url = format!("{}/_sandbox/slack/events", sandbox.base_url());
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("emit")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let renamed = emit(
        json!({ "type": "channel_rename", "channel": "C20000000", "name": "campaign-spring" }),
    )
    .await;
    assert_eq!(renamed["first_delivery"]["status"], 200);
    let joined = emit(json!({ "type": "user_change", "user": "U10000001", "email": "Grace.Hopper@Example.com", "real_name": "Grace Hopper" })).await;
    assert_eq!(joined["first_delivery"]["status"], 200);
    // Slack retries with the same event_id: acknowledged, not processed twice.
    let replay = emit(json!({ "type": "channel_rename", "replay": renamed["envelope"] })).await;
    assert_eq!(replay["first_delivery"]["status"], 200);
    eventually(SECS_20, "both events processed", || async {
        count(
            &app.db,
            "SELECT count(*) FROM webhook_events WHERE status = 'processed'",
        )
        .await
            == 2
    })
    .await;
    worker.stop().await;
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM webhook_events").await,
        2
    );
    let channel: (String, Option<String>) =
        sqlx::query_as("SELECT name, campaign_id FROM slack_channels WHERE id = 'C20000000'")
            .fetch_one(&app.db)
            .await
            .expect("channel");
    assert_eq!(
        channel,
        ("campaign-spring".to_owned(), Some("cmp".to_owned())),
        "renamed, mapping kept"
    );
    let linked: Option<String> = sqlx::query_scalar(
        "SELECT team_member_id FROM slack_integrations WHERE slack_user_id = 'U10000001'",
    )
    .fetch_one(&app.db)
    .await
    .expect("identity");
    assert_eq!(
        linked.as_deref(),
        Some("tm-1"),
        "matched by email, ignoring case"
    );
    let cached: Option<String> = redis::cmd("GET")
        .arg(&old_key)
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(cached, None, "the stale look-up was invalidated");
}

#[tokio::test]
async fn an_approvers_click_is_acknowledged_and_decides_the_approval() {
    let app = spawn_app().await;
    let worker = worker_for(&app);
    let sandbox = sandbox_for(&app).await;
    sqlx::query("INSERT INTO campaigns (id, name) VALUES ('cmp', 'C')")
        .execute(&app.db)
        .await
        .expect("campaign");
    sqlx::query("INSERT INTO team_members (id, email) VALUES ('tm-1', 'a@example.com')")
        .execute(&app.db)
        .await
        .expect("member");
    sqlx::query("INSERT INTO approvals (id, campaign_id, stage, approver_id, slack_user_id, deadline) VALUES ('req-42', 'cmp', 'final', 'tm-1', 'U10000002', now() + interval '1 day')").execute(&app.db).await.expect("approval");
    let posted: Value = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", sandbox.slack_api_url()))
        .bearer_auth("sandbox-bot-token")
        .form(&[("channel", "campaign-1"), ("text", "Approval requested")])
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let click: Value = reqwest::Client::new()
        .post(format!("{}/_sandbox/slack/interactions", sandbox.base_url()))
        .json(&json!({ "action_id": "approve", "value": "req-42", "channel": posted["channel"], "message_ts": posted["ts"], "user": "U10000002" }))
        .send().await.expect("click").json().await.expect("json");
    assert_eq!(click["delivery"]["acknowledged"], true, "{click}");
    eventually(SECS_20, "the approval to be decided", || async {
        count(
            &app.db,
            "SELECT count(*) FROM approvals WHERE status = 'approved'",
        )
        .await
            == 1
    })
    .await;
    worker.stop().await;
    let decided_by: Option<String> =
        sqlx::query_scalar("SELECT decided_by FROM approvals WHERE id = 'req-42'")
            .fetch_one(&app.db)
            .await
            .expect("row");
    assert_eq!(decided_by.as_deref(), Some("U10000002"));
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM audit_log WHERE action = 'approval.decided'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn bad_interactions_are_refused_and_store_nothing() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let post = |body: &'static [u8], timestamp: i64, secret: &str| {
        let signature = slack_signature(secret, timestamp, body);
        app.client
            .post(app.url("/webhooks/slack/interactions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", signature)
            .body(body)
            .send()
    };
    let secret = app.env["SLACK_SIGNING_SECRET"].clone();
    assert_eq!(
        post(b"nothing=here", now, &secret)
            .await
            .expect("post")
            .status(),
        400,
        "no payload field"
    );
    assert_eq!(
        post(b"payload=%7Bnot-json", now, &secret)
            .await
            .expect("post")
            .status(),
        400
    );
    let ok_body = b"payload=%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A%5B%5D%7D";
    assert_eq!(
        post(ok_body, now, "another-secret-entirely")
            .await
            .expect("post")
            .status(),
        401
    );
    assert_eq!(
        post(ok_body, now - 600, &secret)
            .await
            .expect("post")
            .status(),
        401,
        "stale"
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM webhook_events").await,
        0
    );
    assert_eq!(
        post(ok_body, now, &secret).await.expect("post").status(),
        200
    );
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM webhook_events WHERE source = 'slack_interactions'"
        )
        .await,
        1
    );
}
