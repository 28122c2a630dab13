//! Webhook receiver benchmark: `cargo bench --bench webhooks` (PostgreSQL at
//! BENCH_DATABASE_URL, default postgres://postgres:postgres@127.0.0.1:5432/postgres, where a
//! throw-away database is created; Redis at BENCH_REDIS_URL). The web server runs in this
//! process on the same 2 cores as the load.
//!
//! Prints, for `POST /webhooks/mailjet` with 100-event arrays and for signed
//! `POST /webhooks/slack/events`: accepted events/s at saturation (32 connections), then
//! p50/p99 latency at half of that rate (open loop). Postgres keeps its default durability.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use campaign_sync::config::{self, Process};
use campaign_sync::sandbox::slack_signature;
use campaign_sync::startup::Application;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};

const SATURATION: Duration = Duration::from_secs(10);
const CONNECTIONS: usize = 32;

static NEXT: AtomicU64 = AtomicU64::new(1);

fn mailjet_batch() -> Vec<u8> {
    let base = NEXT.fetch_add(100, Ordering::Relaxed) as i64;
    let events: Vec<Value> = (0..100)
        .map(|i| json!({ "event": "open", "time": 1_795_000_000, "MessageID": 19_421_777_835_146_490i64 + base + i, "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0ab1c2d",
            "email": "reader@example.com", "mj_campaign_id": 7257, "mj_contact_id": 4, "customcampaign": "", "CustomID": "", "Payload": "",
            "ip": "127.0.0.1", "geo": "FR", "agent": "Mozilla/5.0" }))
        .collect();
    serde_json::to_vec(&events).unwrap_or_default()
}

fn slack_event() -> Vec<u8> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    serde_json::to_vec(&json!({ "token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback", "event_id": format!("EvBENCH{n}"), "event_time": 1_795_000_000,
        "event": { "type": "member_joined_channel", "user": "U1", "channel": "C1", "channel_type": "C", "team": "T1", "event_ts": "1795000000.000100" } }))
    .unwrap_or_default()
}

#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    base: String,
    basic: (String, String),
    signing_secret: String,
}

impl Target {
    async fn mailjet(&self) -> bool {
        let r = self
            .client
            .post(format!("{}/webhooks/mailjet", self.base))
            .basic_auth(&self.basic.0, Some(&self.basic.1))
            .header("content-type", "application/json")
            .body(mailjet_batch())
            .send()
            .await;
        r.is_ok_and(|r| r.status() == 200)
    }

    async fn slack(&self) -> bool {
        let body = slack_event();
        let ts = chrono::Utc::now().timestamp();
        let sig = slack_signature(&self.signing_secret, ts, &body);
        let r = self
            .client
            .post(format!("{}/webhooks/slack/events", self.base))
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        r.is_ok_and(|r| r.status() == 200)
    }

    async fn hit(&self, mailjet: bool) -> bool {
        if mailjet {
            self.mailjet().await
        } else {
            self.slack().await
        }
    }

    async fn interaction(&self) -> bool {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let payload = json!({ "type": "block_actions", "user": { "id": "U1" }, "trigger_id": format!("{n}.bench"),
            "container": { "type": "message", "message_ts": "1795000000.000100", "channel_id": "C1" },
            "actions": [{ "type": "button", "action_id": "approve", "value": "req-none", "action_ts": format!("1795000000.{n:06}") }] });
        let body = format!(
            "payload={}",
            url::form_urlencoded::byte_serialize(payload.to_string().as_bytes())
                .collect::<String>()
        )
        .into_bytes();
        let ts = chrono::Utc::now().timestamp();
        let sig = slack_signature(&self.signing_secret, ts, &body);
        let r = self
            .client
            .post(format!("{}/webhooks/slack/interactions", self.base))
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        r.is_ok_and(|r| r.status() == 200)
    }
}

async fn saturate(target: &Target, mailjet: bool) -> (f64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (target, ok, failed) = (target.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while started.elapsed() < SATURATION {
                    if target.hit(mailjet).await {
                        ok.fetch_add(1, Ordering::Relaxed)
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed)
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    (
        ok.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed),
    )
}

async fn at_rate(target: &Target, mailjet: bool, per_second: f64) -> (f64, f64, usize) {
    open_loop(
        target,
        per_second,
        move |t| async move { t.hit(mailjet).await },
    )
    .await
}

/// Sends `call` at a fixed rate (open loop: a late tick fires at once, so a stall shows as
/// latency) for the phase's duration; returns p50, p99 (ms) and failures.
async fn open_loop<F, Fut>(target: &Target, per_second: f64, call: F) -> (f64, f64, usize)
where
    F: Fn(Target) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second.max(1.0)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut handles = Vec::new();
    while started.elapsed() < SATURATION {
        tick.tick().await;
        let request = call(target.clone());
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            (request.await, t.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for h in handles {
        match h.await {
            Ok((true, d)) => latencies.push(d),
            _ => failures += 1,
        }
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    (pct(0.5), pct(0.99), failures)
}

async fn interactions_at(target: &Target, per_second: f64) -> (f64, f64, usize) {
    open_loop(target, per_second, |t| async move { t.interaction().await }).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned());
    let redis =
        std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let name = format!("cs_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await?;
    let mut url = url::Url::parse(&admin)?;
    url.set_path(&name);
    let pool = sqlx::PgPool::connect(url.as_str()).await?;
    campaign_sync::store::MIGRATOR.run(&pool).await?;
    let secret = |s: &str| format!("{s}-{}", uuid::Uuid::new_v4().simple());
    let env: HashMap<String, String> = [
        ("APP_ENV", "test".to_owned()),
        ("DATABASE_URL", url.to_string()),
        ("REDIS_URL", redis),
        (
            "REDIS_KEY_PREFIX",
            format!("bench:{}", uuid::Uuid::new_v4().simple()),
        ),
        ("DATABASE_MAX_CONNECTIONS", "20".to_owned()),
        ("API_TOKEN", secret("api")),
        ("METRICS_TOKEN", secret("metrics")),
        ("MAILJET_WEBHOOK_USER", "mailjet".to_owned()),
        ("MAILJET_WEBHOOK_PASSWORD", secret("password")),
        ("SLACK_SIGNING_SECRET", secret("signing")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = config::load_from(&env, Process::Web, &campaign_sync::jobs::schedulable())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let target = Target {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(CONNECTIONS)
            .build()?,
        base,
        basic: (
            "mailjet".to_owned(),
            env["MAILJET_WEBHOOK_PASSWORD"].clone(),
        ),
        signing_secret: env["SLACK_SIGNING_SECRET"].clone(),
    };
    println!(
        "webhook receiver benchmark ({CONNECTIONS} connections, {}s per phase, server in-process)",
        SATURATION.as_secs()
    );
    for (label, mailjet, events_per_request) in [
        ("POST /webhooks/mailjet, 100-event arrays", true, 100.0),
        ("POST /webhooks/slack/events, signed", false, 1.0),
    ] {
        let (requests_per_second, failed) = saturate(&target, mailjet).await;
        println!(
            "{label}: saturation {:.0} requests/s = {:.0} events/s accepted ({failed} failed)",
            requests_per_second,
            requests_per_second * events_per_request
        );
        let (p50, p99, failures) = at_rate(&target, mailjet, requests_per_second / 2.0).await;
        println!(
            "{label}: at half load ({:.0} requests/s) p50 {p50:.2} ms, p99 {p99:.2} ms ({failures} failed)",
            requests_per_second / 2.0
        );
    }
    for rate in [50.0, 200.0] {
        let (p50, p99, failures) = interactions_at(&target, rate).await;
        println!(
            "POST /webhooks/slack/interactions at {rate:.0} clicks/s: p50 {p50:.2} ms, p99 {p99:.2} ms ({failures} failed)"
        );
    }
    for rate in [100.0, 300.0, 600.0] {
        let (p50, p99, failures) = at_rate(&target, false, rate).await;
        println!(
            "POST /webhooks/slack/events at {rate:.0} requests/s: p50 {p50:.2} ms, p99 {p99:.2} ms ({failures} failed)"
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(&pool)
        .await?;
    println!("stored events: {stored}");
    pool.close().await;
    // The bench's queue keys (nothing consumed them) go away with its database.
    let client = redis::Client::open(env["REDIS_URL"].as_str())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{}*", env["REDIS_KEY_PREFIX"]))
        .query_async(&mut redis)
        .await?;
    for key in keys {
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut redis)
            .await?;
    }
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE \"{name}\" WITH (FORCE)"
    )))
    .await?;
    Ok(())
}
