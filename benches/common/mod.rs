//! What the benchmarks share: the sandbox as its own process (so a benchmark's peak RSS is
//! its own), a scratch database, the sandbox's request counts and peak RSS.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

/// Where scratch databases are created (`BENCH_DATABASE_URL`).
pub fn admin_url() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The Redis benchmarks use, under a fresh prefix each (`BENCH_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub struct Sandbox {
    child: Child,
    pub base: String,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `campaign-sync sandbox` with `args` on a free port and waits until it answers.
pub async fn sandbox(args: &[&str]) -> Sandbox {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new(env!("CARGO_BIN_EXE_campaign-sync"))
        .args(["sandbox", "--port", &port.to_string()])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the sandbox");
    let sandbox = Sandbox {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        let ready = http
            .get(format!("{}/_sandbox/requests", sandbox.base))
            .send()
            .await;
        if ready.is_ok() {
            return sandbox;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the sandbox did not start");
}

pub async fn control(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request
        .send()
        .await
        .expect("control")
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// Calls the sandbox answered on `endpoint` (`mailjet.send`, …), and how many of them with 429.
pub async fn requests_to(base: &str, endpoint: &str) -> (u64, u64) {
    let stats = control(base, reqwest::Method::GET, "/_sandbox/requests", None).await;
    let of = |field: &str| stats["endpoints"][endpoint][field].as_u64().unwrap_or(0);
    (of("count"), of("rate_limited"))
}

/// Calls the sandbox answered, on every endpoint.
pub async fn requests(base: &str) -> u64 {
    let stats = control(base, reqwest::Method::GET, "/_sandbox/requests", None).await;
    stats["endpoints"]
        .as_object()
        .map(|e| e.values().filter_map(|v| v["count"].as_u64()).sum())
        .unwrap_or(0)
}

/// Peak resident set size of this process in MiB, since the last reset.
pub fn peak_rss_mib() -> f64 {
    peak_rss_mib_of("self")
}

/// Peak resident set size in MiB of process `pid` (`self` for this one).
pub fn peak_rss_mib_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Resets the peak RSS to the current RSS (Linux: `echo 5 > /proc/self/clear_refs`).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub async fn scratch_database(admin: &str) -> (String, String, PgPool) {
    let name = format!("bench_syncs_{}", uuid::Uuid::new_v4().simple());
    let admin_pool = PgPool::connect(admin).await.expect("connect to Postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&admin_pool)
        .await
        .expect("create database");
    let mut url = url::Url::parse(admin).expect("BENCH_DATABASE_URL");
    url.set_path(&name);
    let pool = PgPool::connect(url.as_str()).await.expect("connect");
    campaign_sync::store::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate");
    (name, url.to_string(), pool)
}

pub async fn drop_database(admin: &str, name: &str) {
    if let Ok(pool) = PgPool::connect(admin).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
        )))
        .execute(&pool)
        .await;
    }
}

/// Worker settings from `pairs` (environment variables; `APP_ENV=test` and `LOG_LEVEL=warn`
/// unless given).
pub fn worker_settings(pairs: &[(&str, &str)]) -> campaign_sync::config::Settings {
    let mut env: std::collections::HashMap<String, String> =
        [("APP_ENV", "test"), ("LOG_LEVEL", "warn")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    env.extend(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    campaign_sync::config::load_from(
        &env,
        campaign_sync::config::Process::Worker,
        &campaign_sync::jobs::schedulable(),
    )
    .expect("bench configuration")
}

/// Worker settings against `sandbox` (both Mailjet adapters and Slack, with the sandbox's
/// credentials), the database at `db_url` and Redis at `redis_url` under `prefix`, every
/// schedule off (a benchmark enqueues what it measures, and nothing else runs beside it),
/// then `pairs` (which win).
pub fn sandbox_worker_settings(
    sandbox: &Sandbox,
    db_url: &str,
    redis_url: &str,
    prefix: &str,
    pairs: &[(&str, &str)],
) -> campaign_sync::config::Settings {
    let slack_api = format!("{}/api", sandbox.base);
    let mut all = vec![
        ("DATABASE_URL", db_url),
        ("REDIS_URL", redis_url),
        ("REDIS_KEY_PREFIX", prefix),
        ("WORKER_LEASE_SECS", "60"),
        ("MAILJET_API_URL", sandbox.base.as_str()),
        ("MAILJET_API_KEY", "sandbox-key"),
        ("MAILJET_API_SECRET", "sandbox-secret"),
        ("MAILJET_MCP_URL", sandbox.base.as_str()),
        ("MAILJET_MCP_TOKEN", "sandbox-mcp-signing-secret"),
        ("SLACK_API_URL", slack_api.as_str()),
        ("SLACK_BOT_TOKEN", "sandbox-bot-token"),
    ];
    let schedules: Vec<String> = campaign_sync::jobs::schedulable()
        .iter()
        .map(|job| format!("SCHEDULE_{}", job.name.to_uppercase()))
        .collect();
    all.extend(schedules.iter().map(|name| (name.as_str(), "off")));
    all.extend_from_slice(pairs);
    worker_settings(&all)
}

/// A worker running in this process.
pub struct Worker {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    /// Runs `registry`'s jobs and schedules under `settings`.
    pub fn start(
        settings: campaign_sync::config::Settings,
        registry: campaign_sync::queue::job::Registry,
    ) -> Self {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(campaign_sync::worker::run(settings, registry, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        Worker { stop, handle }
    }

    /// Stops it and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// A Redis connection to `url`.
pub async fn redis(url: &str) -> redis::aio::ConnectionManager {
    redis::Client::open(url)
        .expect("redis url")
        .get_connection_manager()
        .await
        .expect("redis")
}

/// p50 and p99 (nearest rank) of `times`, in the unit they are in; sorts them.
pub fn p50_p99(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    (at(0.5), at(0.99))
}
