//! The service's own alerts, end to end across two worker processes of the service binary
//! (the one cargo builds for the tests) racing to evaluate them (every 2 s, and a burst of
//! manual runs on top): a failing sync, a stale sync, a dead letter and a stuck email request
//! each fire once, repeat at the cooldown
//! and resolve once in the ops channel of the sandbox's Slack; `GET /api/alerts` lists them.
//! And the `/campaign-sync` slash command: signed like events, acknowledged at once, answered
//! through its `response_url` by the job, `retry-dead` for admins only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use campaign_sync::queue::{EnqueueOptions, Queue};
use campaign_sync::sandbox::{Sandbox, SandboxConfig, SeedSpec};
use serde_json::{Value, json};

use crate::chaos::WorkerProcess;
use crate::helpers::{
    TestApp, closed_port, eventually, migrated_database, redis_conn, spawn_app_with,
};
use crate::slack_workflows::{recorded, slack};

const WAIT: Duration = Duration::from_secs(90);
const ADMIN: &str = "U0ADMIN01";

struct Ops {
    app: TestApp,
    sandbox: Sandbox,
    channel: String,
    workers: Vec<WorkerProcess>,
}

/// The app (web) and two workers; the jobs that would touch what the test sets up are off,
/// and two syncs are scheduled so their rules watch them.
async fn ops() -> Ops {
    let port = closed_port();
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let sandbox = Sandbox::start(
        SandboxConfig {
            seed: SeedSpec {
                seed: 5,
                campaigns: 1,
                templates: 1,
                users: 5,
                channels: 2,
            },
            slack_signing_secret: secret.clone(),
            slack_commands_url: Some(format!("http://127.0.0.1:{port}/webhooks/slack/commands")),
            ..SandboxConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("sandbox");
    let listed = slack(&sandbox, "conversations.list", &[("limit", "200")]).await;
    let channel = listed["channels"][0]["id"]
        .as_str()
        .expect("a channel")
        .to_owned();
    let (db_url, db) = migrated_database().await;
    let slack_url = sandbox.slack_api_url();
    let alerts_channel = channel.clone();
    let app = spawn_app_with(db_url, db, |env| {
        env.insert("PORT".into(), port.to_string());
        env.insert("SLACK_API_URL".into(), slack_url);
        env.insert("SLACK_BOT_TOKEN".into(), "sandbox-bot-token".into());
        env.insert("SLACK_SIGNING_SECRET".into(), secret);
        env.insert("SLACK_ALERTS_CHANNEL".into(), alerts_channel);
        env.insert("SLACK_COMMAND_ADMINS".into(), ADMIN.into());
        env.insert("ALERT_REPEAT_AFTER".into(), "6s".into());
        env.insert("PUBLIC_URL".into(), "https://ops.example.org".into());
        schedules(env);
    })
    .await;
    let workers = (0..2).map(|_| WorkerProcess::spawn(&app.env)).collect();
    Ops {
        app,
        sandbox,
        channel,
        workers,
    }
}

fn schedules(env: &mut HashMap<String, String>) {
    for job in campaign_sync::jobs::ALL
        .iter()
        .filter(|j| j.schedule.is_some())
    {
        let expression = match job.name {
            "evaluate_alerts" => "*/2 * * * * *",
            "deliver_slack_posts" | "process_webhook_events" => continue,
            // Watched by the rules, never due during the test.
            "sync_mailjet_stats" => "0 0 0 1 1 *",
            "sync_slack_users" => "0 0 * * * *",
            _ => "off",
        };
        env.insert(
            format!("SCHEDULE_{}", job.name.to_uppercase()),
            expression.to_owned(),
        );
    }
}

async fn exec(ops: &Ops, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&ops.app.db)
        .await
        .expect("sql");
}

/// Three failed runs of a scheduled sync, a sync whose last success is 3 h old (it runs
/// hourly), a dead-lettered task, and an email request due 2 h ago with a recipient unsent.
async fn break_things(ops: &Ops) -> String {
    exec(ops, "
        INSERT INTO sync_runs (job, trigger, status, started_at, finished_at, error)
        SELECT 'sync_mailjet_stats', 'manual', 'failed', now() - make_interval(mins => n), now() - make_interval(mins => n), 'mailjet /statcounters: HTTP 500'
        FROM generate_series(1, 3) n;
        INSERT INTO sync_runs (job, trigger, status, started_at, finished_at)
        VALUES ('sync_slack_users', 'manual', 'succeeded', now() - interval '3 hours', now() - interval '3 hours');
        INSERT INTO campaigns (id, name, status, slug) VALUES ('gala', 'Spring gala', 'active', 'spring-gala');
        INSERT INTO email_requests (id, idempotency_key, request_hash, campaign_id, template_id, recipient_count, created_at)
        VALUES ('00000000-0000-0000-0000-00000000a1e7', 'stuck-1', 'h', 'gala', 1, 1, now() - interval '2 hours');
        INSERT INTO email_sends (request_id, email) VALUES ('00000000-0000-0000-0000-00000000a1e7', 'ann@example.org');
    ").await;
    poison(ops).await;
    campaign_sync::queue::job::DEFAULT_QUEUE.to_owned()
}

fn default_queue(conn: redis::aio::ConnectionManager, ops: &Ops) -> Queue {
    Queue::new(
        conn,
        &ops.app.redis_prefix,
        campaign_sync::queue::job::DEFAULT_QUEUE,
    )
}

/// A task of a job this build no longer has: a worker dead-letters it at once.
async fn poison(ops: &Ops) {
    let queue = default_queue(redis_conn().await, ops);
    let options = EnqueueOptions {
        trigger: Some("manual".to_owned()),
        ..Default::default()
    };
    queue
        .enqueue("retired_job", Value::Null, options)
        .await
        .expect("enqueue");
    eventually(WAIT, "the task dead-lettered", || async {
        queue.counts().await.is_ok_and(|c| c.dead == 1)
    })
    .await;
}

/// On top of the schedule, a burst of evaluations on both workers at once.
async fn burst(ops: &Ops) {
    let queue = Queue::new(
        redis_conn().await,
        &ops.app.redis_prefix,
        campaign_sync::queue::job::DEFAULT_QUEUE,
    );
    for _ in 0..6 {
        let options = EnqueueOptions {
            trigger: Some("manual".to_owned()),
            ..Default::default()
        };
        queue
            .enqueue("evaluate_alerts", Value::Null, options)
            .await
            .expect("enqueue");
    }
}

async fn alerts(ops: &Ops) -> Value {
    let (status, body) = ops.app.get_json("/api/alerts?hours=1").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn keyed(list: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or("").to_owned(),
                a["subject"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The ops channel's messages that start with `prefix` and mention `rule`.
async fn posted(ops: &Ops, prefix: &str, rule: &str) -> usize {
    recorded(&ops.sandbox).await["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["channel"] == ops.channel.as_str())
        .filter(|m| {
            let text = m["text"].as_str().unwrap_or("");
            text.starts_with(prefix) && text.contains(&format!("`{rule}`"))
        })
        .count()
}

const RULES: [&str; 4] = ["dead_letters", "email_stuck", "sync_failing", "sync_stale"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alert_fires_once_repeats_and_resolves_once_across_two_workers() {
    let ops = ops().await;
    let queue = break_things(&ops).await;
    burst(&ops).await;
    let expected = vec![
        ("dead_letters".to_owned(), queue.clone()),
        (
            "email_stuck".to_owned(),
            "00000000-0000-0000-0000-00000000a1e7".to_owned(),
        ),
        ("sync_failing".to_owned(), "sync_mailjet_stats".to_owned()),
        ("sync_stale".to_owned(), "sync_slack_users".to_owned()),
    ];
    eventually(WAIT, "the four alerts firing", || async {
        let a = alerts(&ops).await;
        keyed(&a["firing"]) == expected
    })
    .await;
    let firing = alerts(&ops).await["firing"].clone();
    let failing = firing
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["rule"] == "sync_failing")
        .cloned()
        .unwrap_or_default();
    assert_eq!(failing["severity"], "critical");
    assert!(
        failing["summary"]
            .as_str()
            .unwrap_or("")
            .contains("HTTP 500"),
        "{failing}"
    );
    assert_eq!(failing["link"], "/dashboard/schedules#sync_mailjet_stats");
    // Each one posted, linking to its dashboard page.
    for rule in RULES {
        eventually(WAIT, "the alert posted", || async {
            posted(&ops, ":", rule).await >= 1
        })
        .await;
    }
    let text = recorded(&ops.sandbox).await.to_string();
    assert!(
        text.contains("https://ops.example.org/dashboard/dead?queue=default"),
        "{text}"
    );
    // Lasting past the cooldown, each is posted again (more evaluations racing meanwhile).
    burst(&ops).await;
    for rule in RULES {
        eventually(WAIT, "the alert repeated", || async {
            posted(&ops, ":repeat:", rule).await >= 1
        })
        .await;
    }
    // Cleared: a run succeeds for each sync, an admin retries the dead letters from Slack, the
    // recipient is sent.
    exec(&ops, "
        INSERT INTO sync_runs (job, trigger, status, started_at, finished_at)
        VALUES ('sync_mailjet_stats', 'manual', 'succeeded', now(), now()), ('sync_slack_users', 'manual', 'succeeded', now(), now());
        UPDATE email_sends SET status = 'sent', sent_at = now(), mailjet_message_id = 1;
        UPDATE email_requests SET status = 'completed', completed_at = now();
    ").await;
    // An operator purges the dead letters (the dashboard's button).
    let queue = default_queue(redis_conn().await, &ops);
    campaign_sync::queue::dead::purge(&queue)
        .await
        .expect("purge");
    burst(&ops).await;
    eventually(WAIT, "every alert resolved", || async {
        let body = alerts(&ops).await;
        body["firing"].as_array().is_some_and(Vec::is_empty) && keyed(&body["recent"]) == expected
    })
    .await;
    for rule in RULES {
        eventually(WAIT, "the resolution posted", || async {
            posted(&ops, ":white_check_mark:", rule).await >= 1
        })
        .await;
    }
    // Let a few more evaluations run on both workers: nothing more is posted.
    burst(&ops).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let recent = alerts(&ops).await["recent"].clone();
    for rule in RULES {
        let fired =
            posted(&ops, ":rotating_light:", rule).await + posted(&ops, ":warning:", rule).await;
        let repeats = posted(&ops, ":repeat:", rule).await;
        let resolved = posted(&ops, ":white_check_mark:", rule).await;
        let episode = recent
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["rule"] == rule)
            .cloned()
            .unwrap_or_default();
        let notices = episode["notifications"].as_i64().unwrap_or(0) as usize;
        assert_eq!((fired, resolved), (1, 1), "{rule}: fired and resolved once");
        assert_eq!(
            repeats + 1,
            notices,
            "{rule}: each repeat posted once ({episode})"
        );
        assert!(repeats >= 1, "{rule} repeated");
    }
    let episodes: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts")
        .fetch_one(&ops.app.db)
        .await
        .expect("count");
    assert_eq!(
        episodes, 4,
        "one episode per alert, however many evaluations raced"
    );
    for w in &ops.workers {
        assert!(!w.log().contains("panicked"), "{}", w.log());
    }
}

/// Types `/campaign-sync TEXT` as `user` in the sandbox: the service's immediate answer.
async fn command(ops: &Ops, user: &str, text: &str) -> Value {
    reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/slack/commands",
            ops.sandbox.base_url()
        ))
        .json(&json!({ "user": user, "channel": ops.channel, "text": text }))
        .send()
        .await
        .expect("command")
        .json()
        .await
        .expect("json")
}

/// What `user` was shown ephemerally through a response_url.
async fn ephemerals(ops: &Ops, user: &str) -> Vec<String> {
    recorded(&ops.sandbox).await["ephemerals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["user"] == user && e["via"] == "response_url")
        .map(|e| e["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slash_command_answers_at_once_then_through_its_response_url() {
    let ops = ops().await;
    exec(&ops, "
        INSERT INTO campaigns (id, name, status, slug) VALUES ('gala', 'Spring gala', 'active', 'spring-gala');
        INSERT INTO email_statistics (campaign_id, mailjet_campaign_id, sent, delivered, opened, clicked, open_rate, click_rate)
        VALUES ('gala', 7001, 1000, 980, 400, 90, 40.8, 9.2);
    ").await;
    let help = command(&ops, "U0SOMEONE", "").await;
    assert_eq!(help["status"], 200, "{help}");
    assert_eq!(help["answer"]["response_type"], "ephemeral");
    assert!(
        help["answer"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("campaign SLUG"),
        "{help}"
    );
    let acked = command(&ops, "U0SOMEONE", "status").await;
    assert_eq!(acked["status"], 200, "{acked}");
    assert!(
        acked["elapsedMs"].as_u64().unwrap_or(u64::MAX) < 3000,
        "within Slack's 3 s: {acked}"
    );
    eventually(WAIT, "the status through the response_url", || async {
        ephemerals(&ops, "U0SOMEONE").await.iter().any(|t| {
            t.contains("*Schedules*")
                && t.contains("`evaluate_alerts` `*/2 * * * * *`")
                && t.contains("*Queues*")
                && t.contains("*Alerts firing*")
        })
    })
    .await;
    command(&ops, "U0SOMEONE", "campaign spring-gala").await;
    eventually(WAIT, "the campaign's figures", || async {
        ephemerals(&ops, "U0SOMEONE").await.iter().any(|t| {
            t.contains("*Spring gala*")
                && t.contains("opened 400 (40.8%)")
                && t.contains("No approvals.")
        })
    })
    .await;
    command(&ops, "U0SOMEONE", "campaign nope").await;
    eventually(WAIT, "an unknown campaign named", || async {
        ephemerals(&ops, "U0SOMEONE")
            .await
            .iter()
            .any(|t| t.contains("No campaign has the slug or id `nope`"))
    })
    .await;
    // Not an admin: refused at once, nothing stored for the job.
    let refused = command(&ops, "U0SOMEONE", "retry-dead").await;
    assert!(
        refused["answer"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("Only the admins"),
        "{refused}"
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_events WHERE source = 'slack_commands' AND event_type = 'retry-dead'",
    )
        .fetch_one(&ops.app.db).await.expect("count");
    assert_eq!(stored, 0);
    let answered: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE source = 'slack_commands' AND status = 'processed'")
        .fetch_one(&ops.app.db).await.expect("count");
    assert_eq!(answered, 3, "status and both campaign look-ups");
    // An admin sends the dead letters back, and is told how many; the audit trail says who.
    poison(&ops).await;
    let acked = command(&ops, ADMIN, "retry-dead").await;
    assert_eq!(
        acked["answer"]["text"], "Retrying the dead letters…",
        "{acked}"
    );
    eventually(WAIT, "the admin told what was retried", || async {
        ephemerals(&ops, ADMIN).await.iter().any(|t| {
            t.starts_with("Sent 1 dead-lettered task(s) back") && t.contains("`default`: 1")
        })
    })
    .await;
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE actor = $1 AND action = 'dead.retry_all' AND outcome = 'ok'",
    )
    .bind(format!("slack:{ADMIN}"))
    .fetch_one(&ops.app.db)
    .await
    .expect("audit");
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn an_unsigned_stale_or_incomplete_command_is_refused() {
    let (db_url, db) = migrated_database().await;
    let app = spawn_app_with(db_url, db, |_| {}).await;
    let secret = app.env["SLACK_SIGNING_SECRET"].clone();
    let body = "command=%2Fcampaign-sync&text=status&user_id=U1&channel_id=C1&response_url=http%3A%2F%2F127.0.0.1%3A9%2Fr&trigger_id=1.2.3";
    let post = |ts: i64, signature: String, body: &'static str| {
        app.client
            .post(app.url("/webhooks/slack/commands"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", signature)
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp();
    let sign =
        |ts: i64, body: &str| campaign_sync::sandbox::slack_signature(&secret, ts, body.as_bytes());
    let r = post(now, "v0=00".to_owned(), body).await.expect("post");
    assert_eq!(r.status().as_u16(), 401);
    let r = post(now - 600, sign(now - 600, body), body)
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401, "outside the 300 s window");
    let partial = "command=%2Fcampaign-sync&text=status&user_id=U1";
    let r = post(now, sign(now, partial), partial).await.expect("post");
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap_or_default().contains("channel_id"));
    let r = post(now, sign(now, body), body).await.expect("post");
    assert_eq!(r.status().as_u16(), 200);
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE source = 'slack_commands'")
            .fetch_one(&app.db)
            .await
            .expect("count");
    assert_eq!(stored, 1, "only the signed, complete command is kept");
}
