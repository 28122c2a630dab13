//! The faults a chaos run injects, each from outside the service: signals to its processes,
//! its Redis and its PostgreSQL, faults of the sandbox (the upstreams), and deliveries to its
//! webhook receiver.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::Deployment;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// kill -9 of a random worker, twice, each restarted 1–3 s later.
    KillWorkers,
    /// Redis SIGTERM (its AOF keeps the data), 3 s down.
    RedisRestart,
    /// Redis kill -9 with its data thrown away: streams, groups, retries, schedule marks gone.
    RedisWipe,
    /// PostgreSQL `stop -m fast`, 10 s down.
    PostgresRestart,
    /// Every Mailjet call answered 429 for 10 s.
    RateLimitStorm,
    /// 30 % of Send calls answered 500 and 10 % 503, for 15 s.
    Upstream5xx,
    /// 20 % of Send calls cut before Mailjet acts, for 15 s.
    DroppedConnections,
    /// 20 % of Send calls accepted by Mailjet and their answer lost, for 15 s.
    LostAnswers,
    /// Send calls 3–7 s slow against a 5 s timeout, for 15 s.
    Latency,
    /// 200 stored Mailjet events delivered again, as Mailjet's retries do.
    WebhookReplay,
    /// Poison input to every receiver and the API: NUL, broken JSON, bad events, huge bodies.
    Poison,
}

impl Scenario {
    /// Every scenario, in the order `--scenarios all` runs them.
    pub const ALL: [Scenario; 11] = [
        Scenario::KillWorkers,
        Scenario::RedisRestart,
        Scenario::PostgresRestart,
        Scenario::LostAnswers,
        Scenario::RateLimitStorm,
        Scenario::RedisWipe,
        Scenario::Upstream5xx,
        Scenario::DroppedConnections,
        Scenario::Latency,
        Scenario::WebhookReplay,
        Scenario::Poison,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::KillWorkers => "kill-workers",
            Scenario::RedisRestart => "redis-restart",
            Scenario::RedisWipe => "redis-wipe",
            Scenario::PostgresRestart => "postgres-restart",
            Scenario::RateLimitStorm => "rate-limit-storm",
            Scenario::Upstream5xx => "upstream-5xx",
            Scenario::DroppedConnections => "dropped-connections",
            Scenario::LostAnswers => "lost-answers",
            Scenario::Latency => "latency",
            Scenario::WebhookReplay => "webhook-replay",
            Scenario::Poison => "poison",
        }
    }

    /// The scenarios named in a comma-separated list (`all` for every one).
    pub fn parse_list(names: &[String]) -> Result<Vec<Scenario>, String> {
        let mut out = Vec::new();
        for name in names {
            if name == "all" {
                out.extend(Scenario::ALL);
                continue;
            }
            match Scenario::ALL.iter().find(|s| s.name() == name) {
                Some(s) => out.push(*s),
                None => {
                    let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    return Err(format!(
                        "unknown scenario {name:?}; known: all, {}",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Injects `scenario` into `d` and returns when the fault is over.
pub async fn inject(d: &mut Deployment, scenario: Scenario) -> anyhow::Result<()> {
    match scenario {
        Scenario::KillWorkers => kill_workers(d).await,
        Scenario::RedisRestart => {
            let started = std::time::Instant::now();
            d.redis.terminate();
            tokio::time::sleep(Duration::from_secs(3)).await;
            d.redis.resume()?;
            d.outage(started);
            Ok(())
        }
        Scenario::RedisWipe => {
            let started = std::time::Instant::now();
            d.redis.crash_and_forget();
            tokio::time::sleep(Duration::from_secs(2)).await;
            d.redis.resume()?;
            d.outage(started);
            Ok(())
        }
        Scenario::PostgresRestart => {
            let started = std::time::Instant::now();
            d.pg.stop_fast();
            tokio::time::sleep(Duration::from_secs(10)).await;
            d.pg.resume()?;
            d.outage(started);
            Ok(())
        }
        Scenario::RateLimitStorm => {
            upstream_fault(
                d,
                json!({ "endpoint": "mailjet", "rate_limit_for_secs": 10, "retry_after_secs": 2 }),
                10,
            )
            .await
        }
        Scenario::Upstream5xx => {
            let send = d.send_endpoint;
            let faults = json!([
                { "endpoint": send, "error_rate": 0.3, "error_status": 500 },
                { "endpoint": send, "error_rate": 0.1, "error_status": 503 },
            ]);
            upstream_fault(d, faults, 15).await
        }
        Scenario::DroppedConnections => {
            let fault = json!({ "endpoint": d.send_endpoint, "drop_rate": 0.2 });
            upstream_fault(d, fault, 15).await
        }
        Scenario::LostAnswers => {
            let fault = json!({ "endpoint": d.send_endpoint, "drop_after_rate": 0.2 });
            upstream_fault(d, fault, 15).await
        }
        Scenario::Latency => {
            let fault =
                json!({ "endpoint": d.send_endpoint, "latency_ms": 3000, "jitter_ms": 4000 });
            upstream_fault(d, fault, 15).await
        }
        Scenario::WebhookReplay => replay_webhooks(d).await,
        Scenario::Poison => poison(d).await,
    }
}

async fn kill_workers(d: &mut Deployment) -> anyhow::Result<()> {
    for _ in 0..2 {
        let i = d.rng.usize(..d.workers.len());
        d.workers[i].kill_9();
        d.kills += 1;
        tokio::time::sleep(Duration::from_millis(d.rng.u64(1000..3000))).await;
        d.workers[i].start()?;
        tokio::time::sleep(Duration::from_millis(d.rng.u64(500..2500))).await;
    }
    Ok(())
}

async fn upstream_fault(d: &mut Deployment, faults: Value, secs: u64) -> anyhow::Result<()> {
    let url = format!("{}/_sandbox/faults", d.sandbox_url);
    d.http
        .post(&url)
        .json(&faults)
        .send()
        .await?
        .error_for_status()?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    d.http.delete(&url).send().await?.error_for_status()?;
    Ok(())
}

/// Mailjet delivering again what it delivered before (a retry after a lost answer).
async fn replay_webhooks(d: &mut Deployment) -> anyhow::Result<()> {
    let payloads = crate::store::invariants::random_mailjet_payloads(&d.db, 200)
        .await
        .context("reading events to replay")?;
    for group in payloads.chunks(50) {
        let status = d.post_mailjet(&Value::Array(group.to_vec())).await?;
        d.answers.record("webhook replay", status);
        d.replayed += group.len() as u64;
    }
    Ok(())
}

/// Poison to every entry point: each must be answered without a 5xx and lose nothing else.
async fn poison(d: &mut Deployment) -> anyhow::Result<()> {
    // Harness-made events are addressed to poison…@example.com, so the counts leave them out.
    let id = d.rng.i64(1..1_000_000_000);
    let nul_event = json!({ "event": "open", "time": chrono::Utc::now().timestamp(), "MessageID": id, "email": "poison\u{0}@example.com", "CustomID": "", "agent": "x\u{0}" });
    let group = json!([nul_event, { "event": "open" }, "a string", 12, { "event": "click", "time": "soon", "MessageID": id }]);
    let status = d.post_mailjet(&group).await?;
    d.answers
        .record("mailjet group with NUL and bad events", status);
    for (what, body) in [
        ("mailjet broken JSON", b"[{\"event\":".to_vec()),
        ("mailjet raw NUL byte", b"[{\"event\":\"open\0\"}]".to_vec()),
        ("mailjet not an event", b"\"hello\"".to_vec()),
        ("mailjet 3 MB body", vec![b' '; 3 * 1024 * 1024]),
    ] {
        let status = d.post_mailjet_bytes(body).await?;
        d.answers.record(what, status);
    }
    let envelope = json!({ "type": "event_callback", "event_id": format!("EvPoison{id}"), "team_id": "T0", "event": { "type": "channel_created", "channel": { "id": "C0POISON", "name": "po\u{0}ison" } } });
    let status = d.post_slack_event(&envelope).await?;
    d.answers.record("slack event with NUL", status);
    let bad_request = json!({ "campaignId": "chaos", "templateId": d.template_id, "recipients": [{ "email": "a@example.com", "name": "N\u{0}UL" }, { "email": "b\u{200B}@example.com" }] });
    let status = d
        .api_post("/api/email-requests", &bad_request, Some("poison-request"))
        .await?;
    d.answers
        .record("email request with NUL and a zero-width space", status);
    let status = d
        .api_put(
            "/api/campaigns/poison",
            &json!({ "name": "P\u{0}", "subject": "s" }),
        )
        .await?;
    d.answers.record("campaign with NUL", status);
    let status = d.api_get("/api/campaigns?page=9223372036854775807").await?;
    d.answers.record("page past the last", status);
    Ok(())
}
