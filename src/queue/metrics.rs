//! Queue metrics. Each worker publishes its own metrics (job durations, schedule lag, …) to
//! Redis every few seconds; the web process's `/metrics` serves its own, every live worker's
//! (labelled `process`), and the queues' sizes and counters read from Redis, so one scrape of
//! the web dyno sees the whole deployment.

use std::fmt::Write as _;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::watch;

use super::Queue;

const PUBLISH_EVERY: Duration = Duration::from_secs(5);
const PUBLISH_TTL_SECS: u64 = 30;

fn process_key(prefix: &str, process: &str) -> String {
    format!("{prefix}:metrics:process:{process}")
}

/// Publishes this process's metrics to Redis every 5 s until `stop` turns true.
pub async fn publish(
    conn: ConnectionManager,
    prefix: String,
    process: String,
    mut stop: watch::Receiver<bool>,
) {
    let key = process_key(&prefix, &process);
    loop {
        let text = format!(
            "# instance {}\n{}",
            *crate::telemetry::INSTANCE,
            crate::telemetry::prometheus().render()
        );
        let mut c = conn.clone();
        let stored: Result<(), redis::RedisError> = redis::cmd("SET")
            .arg(&key)
            .arg(text)
            .arg("EX")
            .arg(PUBLISH_TTL_SECS)
            .query_async(&mut c)
            .await;
        if let Err(e) = stored {
            tracing::debug!(error = %e, "publishing metrics failed");
        }
        crate::telemetry::timeline::flush(&mut c, &prefix).await;
        let stopped = tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            () = tokio::time::sleep(PUBLISH_EVERY) => false,
        };
        if stopped {
            crate::telemetry::timeline::flush(&mut c, &prefix).await;
            let _ = redis::cmd("DEL").arg(&key).query_async::<()>(&mut c).await;
            return;
        }
    }
}

/// The metrics every live worker published, each labelled with its process name.
pub async fn collect_published(conn: &mut ConnectionManager, prefix: &str) -> Vec<String> {
    let pattern = process_key(prefix, "*");
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let reply: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await;
        let Ok((next, batch)) = reply else { break };
        keys.extend(batch);
        cursor = next;
        if cursor == 0 || keys.len() > 1000 {
            break;
        }
    }
    let mut parts = Vec::new();
    for key in keys {
        let process = key.rsplit(':').next().unwrap_or("unknown").to_owned();
        let text: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap_or(None);
        // This process's own metrics are rendered directly (the demo's worker shares them).
        let own = format!("# instance {}\n", *crate::telemetry::INSTANCE);
        if let Some(text) = text.filter(|t| !t.starts_with(&own)) {
            parts.push(crate::telemetry::with_label(&text, "process", &process));
        }
    }
    parts
}

/// Sizes and counters of `queues` as Prometheus text: `queue_tasks{queue,state}` gauges and
/// `queue_jobs_total{queue,job,outcome}` counters (totals across every worker, from Redis).
pub async fn render_queues(queues: &[(Queue, Vec<String>)]) -> String {
    let mut up = String::new();
    let mut tasks = String::new();
    let mut totals = String::new();
    for (queue, jobs) in queues {
        let name = queue.keys().name();
        let Ok(counts) = queue.counts().await else {
            let _ = writeln!(up, "queue_up{{queue=\"{name}\"}} 0");
            continue;
        };
        let _ = writeln!(up, "queue_up{{queue=\"{name}\"}} 1");
        for (state, n) in [
            ("waiting", counts.waiting),
            ("in_flight", counts.in_flight),
            ("delayed", counts.delayed),
            ("dead", counts.dead),
        ] {
            let _ = writeln!(
                tasks,
                "queue_tasks{{queue=\"{name}\",state=\"{state}\"}} {n}"
            );
        }
        // Every job's failures and dead letters from 0, so alert rules see the series early.
        let mut series: std::collections::BTreeMap<(String, String), u64> = jobs
            .iter()
            .flat_map(|job| ["retried", "dead"].map(|o| ((job.clone(), o.to_owned()), 0)))
            .collect();
        for (key, n) in &counts.counters {
            if let Some((outcome, job)) = key.split_once(':') {
                series.insert((job.to_owned(), outcome.to_owned()), *n);
            }
        }
        for ((job, outcome), n) in series {
            let _ = writeln!(
                totals,
                "queue_jobs_total{{queue=\"{name}\",job=\"{job}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    format!(
        "# HELP queue_up 1 when the queue's Redis answered this scrape.\n# TYPE queue_up gauge\n{up}\
         # HELP queue_tasks Tasks of each queue by state (waiting, in_flight, delayed, dead).\n# TYPE queue_tasks gauge\n{tasks}\
         # HELP queue_jobs_total Task outcomes counted by every worker, from Redis, by queue, job and outcome.\n# TYPE queue_jobs_total counter\n{totals}"
    )
}
