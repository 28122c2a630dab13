//! Queue benchmark: `cargo bench --bench queue` (Redis at BENCH_REDIS_URL, default
//! redis://127.0.0.1:6379; keys under a fresh prefix, deleted at the end).
//!
//! Prints: enqueue jobs/s (one by one, and in bulk), drain jobs/s of one worker with a 5,000
//! and a 50,000 backlog, p50/p99 enqueue-to-start latency at low load, and Redis memory while
//! 1,000,000 jobs pass through (BENCH_MILLION=0 skips that part).

#[path = "common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use campaign_sync::config::Settings;
use campaign_sync::queue::job::Registry;
use campaign_sync::queue::{EnqueueOptions, Queue};
use common::Worker;
use serde_json::{Value, json};

const CONCURRENCY: &str = "200";

fn settings(redis_url: &str, prefix: &str) -> Settings {
    common::worker_settings(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/unused"),
        ("REDIS_URL", redis_url),
        ("REDIS_KEY_PREFIX", prefix),
        ("WORKER_CONCURRENCY", CONCURRENCY),
        ("WORKER_LEASE_SECS", "60"),
        ("MAILJET_MCP_URL", "http://127.0.0.1:9/"),
        ("MAILJET_MCP_TOKEN", "bench-signing-secret-0000"),
        ("SLACK_BOT_TOKEN", "bench"),
    ])
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn start_worker(settings: Settings, latencies: Arc<Mutex<Vec<u64>>>) -> Worker {
    let mut registry = Registry::new();
    registry.register("noop", "default", |_ctx, _args: Value| async { Ok(()) });
    registry.register("timed", "default", move |_ctx, args: Value| {
        let latencies = latencies.clone();
        async move {
            let sent = args["sent_us"].as_u64().unwrap_or(0);
            if let Ok(mut l) = latencies.lock() {
                l.push(now_us().saturating_sub(sent));
            }
            Ok(())
        }
    });
    Worker::start(settings, registry)
}

async fn succeeded(queue: &Queue) -> u64 {
    queue
        .counts()
        .await
        .ok()
        .and_then(|c| c.counters.get("succeeded").copied())
        .unwrap_or(0)
}

async fn wait_succeeded(queue: &Queue, target: u64) {
    while succeeded(queue).await < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn used_memory(conn: &mut redis::aio::ConnectionManager) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn noop_batch(n: usize) -> Vec<(String, Value)> {
    (0..n)
        .map(|i| ("noop".to_owned(), json!({ "i": i })))
        .collect()
}

async fn drain(settings: &Settings, queue: &Queue, backlog: usize) -> f64 {
    let before = succeeded(queue).await;
    queue
        .enqueue_bulk(&noop_batch(backlog), &EnqueueOptions::default())
        .await
        .expect("bulk");
    let worker = start_worker(settings.clone(), Arc::new(Mutex::new(Vec::new())));
    let started = Instant::now();
    wait_succeeded(queue, before + backlog as u64).await;
    let rate = backlog as f64 / started.elapsed().as_secs_f64();
    worker.stop().await;
    rate
}

#[tokio::main]
async fn main() {
    let redis_url = common::redis_url();
    let prefix = format!("bench:{}", uuid::Uuid::new_v4().simple());
    let settings = settings(&redis_url, &prefix);
    let mut conn = common::redis(&redis_url).await;
    let queue = Queue::new(conn.clone(), &prefix, "default");
    println!("queue benchmark (worker concurrency {CONCURRENCY}, Redis {redis_url})");

    let n = 20_000;
    let started = Instant::now();
    for i in 0..n {
        queue
            .enqueue("noop", json!({ "i": i }), EnqueueOptions::default())
            .await
            .expect("enqueue");
    }
    println!(
        "enqueue one by one (sequential): {:>9.0} jobs/s ({n} jobs)",
        n as f64 / started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let producers: Vec<_> = (0..16)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                for i in 0..n / 16 {
                    queue
                        .enqueue("noop", json!({ "i": i }), EnqueueOptions::default())
                        .await
                        .expect("enqueue");
                }
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer");
    }
    println!(
        "enqueue one by one (16 producers): {:>7.0} jobs/s ({n} jobs)",
        n as f64 / started.elapsed().as_secs_f64()
    );
    let bulk = 50_000;
    let started = Instant::now();
    queue
        .enqueue_bulk(&noop_batch(bulk), &EnqueueOptions::default())
        .await
        .expect("bulk");
    println!(
        "enqueue in bulk:                   {:>7.0} jobs/s ({bulk} jobs)",
        bulk as f64 / started.elapsed().as_secs_f64()
    );
    // Drain what the enqueue tests left (90,000) before measuring clean backlogs.
    let worker = start_worker(settings.clone(), Arc::new(Mutex::new(Vec::new())));
    wait_succeeded(&queue, (n + n / 16 * 16 + bulk) as u64).await;
    worker.stop().await;

    for backlog in [5_000, 50_000] {
        let rate = drain(&settings, &queue, backlog).await;
        println!(
            "process, backlog {backlog:>6}:           {rate:>7.0} jobs/s (one worker process)"
        );
    }

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let worker = start_worker(settings.clone(), latencies.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = 2_000;
    for _ in 0..samples {
        queue
            .enqueue(
                "timed",
                json!({ "sent_us": now_us() }),
                EnqueueOptions::default(),
            )
            .await
            .expect("enqueue");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while latencies.lock().map(|l| l.len()).unwrap_or(0) < samples {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.stop().await;
    let mut sorted = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    sorted.sort_unstable();
    let pct =
        |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1000.0;
    println!(
        "enqueue-to-start latency, ~500 jobs/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({samples} jobs)",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );

    if std::env::var("BENCH_MILLION").as_deref() != Ok("0") {
        let worker = start_worker(settings.clone(), Arc::new(Mutex::new(Vec::new())));
        let base = succeeded(&queue).await;
        let memory_before = used_memory(&mut conn).await;
        println!(
            "Redis used_memory before 1,000,000 jobs: {:.1} MiB",
            memory_before as f64 / 1048576.0
        );
        let started = Instant::now();
        for round in 1..=10u64 {
            queue
                .enqueue_bulk(&noop_batch(100_000), &EnqueueOptions::default())
                .await
                .expect("bulk");
            wait_succeeded(&queue, base + round * 100_000).await;
            println!(
                "  after {:>9} jobs: used_memory {:.1} MiB",
                round * 100_000,
                used_memory(&mut conn).await as f64 / 1048576.0
            );
        }
        println!(
            "1,000,000 jobs processed in {:.1} s ({:.0} jobs/s, enqueue included)",
            started.elapsed().as_secs_f64(),
            1e6 / started.elapsed().as_secs_f64()
        );
        worker.stop().await;
    }

    // Clean up the benchmark's keys.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for key in keys {
        let _: Result<(), _> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
    }
}
