//! The test harness: every test gets its own Postgres database (migrated) and its own Redis
//! key prefix, and talks to a real app over HTTP.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use campaign_sync::config::{self, Process, Settings};
use campaign_sync::startup::Application;
use campaign_sync::store;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// The server databases are created on; override with TEST_DATABASE_URL.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The Redis tests use; override with TEST_REDIS_URL.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// An app running in this test's runtime. Some fields serve only some test modules.
#[allow(dead_code)]
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db: PgPool,
    pub db_url: String,
    pub redis_prefix: String,
    pub settings: Settings,
    pub env: HashMap<String, String>,
    pub client: reqwest::Client,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    /// `method path` with the API token and a JSON body (when given): the status and the JSON
    /// answer (`null` when the answer is not JSON).
    pub async fn call_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.env["API_TOKEN"]);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request failed");
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// `GET path` with the API token.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        self.call_json(reqwest::Method::GET, path, None).await
    }

    /// `PUT path` with the API token and `body`.
    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.call_json(reqwest::Method::PUT, path, Some(body)).await
    }

    /// `POST path` with the API token and `body`.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.call_json(reqwest::Method::POST, path, Some(body))
            .await
    }

    pub fn metrics_token(&self) -> &str {
        &self.env["METRICS_TOKEN"]
    }

    /// One scrape of `/metrics` with the metrics token.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .bearer_auth(self.metrics_token())
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

/// A fresh, empty database; its name carries its creation time so later runs drop leftovers.
pub async fn create_database() -> (String, String) {
    static CLEANUP: OnceCell<()> = OnceCell::const_new();
    let admin = admin_database_url();
    CLEANUP
        .get_or_init(|| drop_stale_databases(admin.clone()))
        .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let name = format!("cs_test_{now}_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("cannot reach the test Postgres");
    conn.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin).expect("admin URL");
    url.set_path(&name);
    (url.to_string(), name)
}

/// A fresh database with every migration applied.
pub async fn migrated_database() -> (String, PgPool) {
    let (url, _) = create_database().await;
    let pool = PgPool::connect(&url)
        .await
        .expect("connect to test database");
    store::MIGRATOR.run(&pool).await.expect("migrate");
    (url, pool)
}

async fn drop_stale_databases(admin: String) {
    let Ok(mut conn) = PgConnection::connect(&admin).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'cs_test_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for name in names {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > 2 * 3600 {
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                )))
                .await;
        }
    }
}

/// The environment of a test process: APP_ENV=test, the given database, a fresh Redis key
/// prefix, and random secrets (never a real one).
pub fn test_env(db_url: &str) -> HashMap<String, String> {
    let prefix = format!("test:{}", Uuid::new_v4().simple());
    let secret = || Uuid::new_v4().simple().to_string();
    [
        ("APP_ENV", "test".to_owned()),
        ("DATABASE_URL", db_url.to_owned()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", prefix),
        ("API_TOKEN", secret()),
        ("METRICS_TOKEN", secret()),
        ("MAILJET_WEBHOOK_USER", "mailjet".to_owned()),
        ("MAILJET_WEBHOOK_PASSWORD", secret()),
        ("SLACK_SIGNING_SECRET", secret()),
        ("MAILJET_MCP_URL", "http://127.0.0.1:9/".to_owned()),
        ("MAILJET_MCP_TOKEN", secret()),
        ("SLACK_BOT_TOKEN", format!("test-bot-{}", secret())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Starts the web app on port 0 against a fresh database and Redis prefix.
pub async fn spawn_app() -> TestApp {
    let (db_url, db) = migrated_database().await;
    spawn_app_with(db_url, db, |_| {}).await
}

/// Like [`spawn_app`], with a chance to change the environment first.
pub async fn spawn_app_with(
    db_url: String,
    db: PgPool,
    adjust: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let mut env = test_env(&db_url);
    adjust(&mut env);
    let settings = config::load_from(&env, Process::Web, &campaign_sync::jobs::schedulable())
        .expect("test configuration is valid");
    let app = Application::build(settings.clone())
        .await
        .expect("build app");
    let port = app.port();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db,
        db_url,
        redis_prefix: env["REDIS_KEY_PREFIX"].clone(),
        settings,
        env,
        client,
    }
}

/// A TCP port nobody listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Settings of a worker process for `env`.
pub fn worker_settings(env: &HashMap<String, String>) -> Settings {
    config::load_from(env, Process::Worker, &campaign_sync::jobs::schedulable())
        .expect("worker configuration is valid")
}

/// A worker running in this test's runtime with `registry`; stop it by sending `true`.
pub struct TestWorker {
    pub stop: tokio::sync::watch::Sender<bool>,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestWorker {
    pub fn start(settings: Settings, registry: campaign_sync::queue::job::Registry) -> Self {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let handle = tokio::spawn(campaign_sync::worker::run(settings, registry, shutdown));
        TestWorker { stop, handle }
    }

    /// Stops the worker and waits for it; fails the test if it failed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.handle
            .await
            .expect("worker task")
            .expect("worker ended cleanly");
    }
}

/// Polls `check` every 20 ms until it returns true; fails after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A Redis connection for assertions.
pub async fn redis_conn() -> redis::aio::ConnectionManager {
    let client = redis::Client::open(redis_url()).expect("redis url");
    client
        .get_connection_manager()
        .await
        .expect("connect to test redis")
}

/// Entries in a queue's stream (finished tasks are deleted, so 0 once drained).
pub async fn stream_len(queue: &campaign_sync::queue::Queue) -> u64 {
    let mut conn = redis_conn().await;
    redis::cmd("XLEN")
        .arg(queue.keys().stream())
        .query_async(&mut conn)
        .await
        .expect("xlen")
}

/// A sandbox (Mailjet and Slack) on a free local port, seeded by `seed`, with the rest of its
/// configuration as `adjust` leaves it.
pub async fn spawn_sandbox(
    seed: campaign_sync::sandbox::SeedSpec,
    adjust: impl FnOnce(&mut campaign_sync::sandbox::SandboxConfig),
) -> campaign_sync::sandbox::Sandbox {
    let mut config = campaign_sync::sandbox::SandboxConfig {
        seed,
        ..campaign_sync::sandbox::SandboxConfig::default()
    };
    adjust(&mut config);
    campaign_sync::sandbox::Sandbox::start(config, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("sandbox")
}

/// Waits until every queue of `queues` has nothing waiting, in flight or delayed, then fails
/// the test if any task ended dead or in the dead letters (as crates.io's job runner checks
/// `check_for_failed_jobs`): a test that drains the queue cannot pass over a failed job.
pub async fn drain_and_assert_no_failures(
    queues: &[&campaign_sync::queue::Queue],
    limit: Duration,
) {
    for queue in queues {
        eventually(limit, "the queue to drain", || async {
            let counts = queue.counts().await.expect("queue counts");
            counts.waiting == 0 && counts.in_flight == 0 && counts.delayed == 0
        })
        .await;
        let counts = queue.counts().await.expect("queue counts");
        let dead_total = counts.counters.get("dead").copied().unwrap_or(0);
        assert_eq!(
            (counts.dead, dead_total),
            (0, 0),
            "queue {} has failed jobs: {:?}",
            queue.keys().name(),
            counts.counters
        );
    }
}
