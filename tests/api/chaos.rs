//! The worker binary under the bad things that happen in production: kill -9 mid-job, SIGTERM
//! with work running, a Redis restart under load, several workers racing for schedule ticks,
//! and TLS to Redis. Each test counts what was lost or duplicated.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use campaign_sync::jobs::diagnostics_probe;
use campaign_sync::queue::{EnqueueOptions, Queue};
use serde_json::json;

use crate::helpers::{closed_port, eventually, migrated_database, redis_conn, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-sync");

/// A worker process whose log goes to a file (shown when a test fails).
pub(crate) struct WorkerProcess {
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    pub(crate) fn spawn(env: &HashMap<String, String>) -> Self {
        let log =
            std::env::temp_dir().join(format!("cs-worker-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .env_clear()
            .envs(env)
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn worker");
        WorkerProcess { child, log }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// SIGTERM, then the exit status and how long it took.
    pub(crate) fn terminate(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("worker did not exit within {limit:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A worker's environment with every schedule off (a test that wants one turns it on): a
/// scheduled tick landing mid-test would add a task the test does not count.
fn worker_env(db_url: &str) -> HashMap<String, String> {
    let mut env = test_env(db_url);
    env.insert("LOG_LEVEL".into(), "info".into());
    for job in campaign_sync::jobs::schedulable() {
        env.insert(
            format!("SCHEDULE_{}", job.name.to_uppercase()),
            "off".into(),
        );
    }
    env
}

async fn probe_counts(prefix: &str, tag: &str) -> (u64, u64) {
    let mut conn = redis_conn().await;
    let (started, finished): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
        .arg(diagnostics_probe::counter_key(prefix, tag))
        .arg("started")
        .arg("finished")
        .query_async(&mut conn)
        .await
        .expect("hmget");
    (started.unwrap_or(0), finished.unwrap_or(0))
}

async fn enqueue_probe(queue: &Queue, tag: &str, sleep_ms: u64) -> String {
    let args = json!({ "tag": tag, "sleep_ms": sleep_ms });
    queue
        .enqueue(diagnostics_probe::NAME, args, EnqueueOptions::default())
        .await
        .expect("enqueue")
        .id
}

#[tokio::test]
async fn a_job_of_a_worker_killed_with_sigkill_is_finished_by_another_after_the_lease() {
    let env = worker_env("postgres://postgres@127.0.0.1:5432/unused");
    let prefix = env["REDIS_KEY_PREFIX"].clone();
    let queue = Queue::new(redis_conn().await, &prefix, "default");
    enqueue_probe(&queue, "k9", 3000).await;
    let mut first = WorkerProcess::spawn(&env);
    eventually(
        Duration::from_secs(20),
        "the first worker to start the job",
        || async { probe_counts(&prefix, "k9").await.0 == 1 },
    )
    .await;
    first.kill_9();
    let _second = WorkerProcess::spawn(&env);
    eventually(
        Duration::from_secs(30),
        "the second worker to finish the job",
        || async { probe_counts(&prefix, "k9").await.1 == 1 },
    )
    .await;
    let (started, finished) = probe_counts(&prefix, "k9").await;
    assert_eq!(
        (started, finished),
        (2, 1),
        "run once by each worker, finished once"
    );
    let counts = queue.counts().await.expect("counts");
    assert_eq!(counts.counters.get("succeeded").copied(), Some(1));
    assert_eq!((counts.dead, counts.waiting, counts.in_flight), (0, 0, 0));
}

#[tokio::test]
async fn a_live_job_longer_than_its_lease_keeps_it_and_runs_once() {
    let env = worker_env("postgres://postgres@127.0.0.1:5432/unused");
    let prefix = env["REDIS_KEY_PREFIX"].clone();
    let queue = Queue::new(redis_conn().await, &prefix, "default");
    let _a = WorkerProcess::spawn(&env);
    let _b = WorkerProcess::spawn(&env);
    // The lease is 2 s in the test configuration: this job holds it for 3 leases.
    enqueue_probe(&queue, "long", 6000).await;
    eventually(Duration::from_secs(30), "the job to finish", || async {
        probe_counts(&prefix, "long").await.1 == 1
    })
    .await;
    assert_eq!(
        probe_counts(&prefix, "long").await,
        (1, 1),
        "never started twice while its worker lived"
    );
}

#[tokio::test]
async fn sigterm_lets_running_jobs_finish_and_hands_back_the_rest_within_the_grace_period() {
    let mut env = worker_env("postgres://postgres@127.0.0.1:5432/unused");
    env.insert("WORKER_SHUTDOWN_TIMEOUT_SECS".into(), "3".into());
    env.insert("WORKER_LEASE_SECS".into(), "60".into());
    let prefix = env["REDIS_KEY_PREFIX"].clone();
    let queue = Queue::new(redis_conn().await, &prefix, "default");
    let mut worker = WorkerProcess::spawn(&env);
    enqueue_probe(&queue, "short", 1000).await;
    enqueue_probe(&queue, "long", 30_000).await;
    eventually(Duration::from_secs(20), "both jobs to start", || async {
        probe_counts(&prefix, "short").await.0 == 1 && probe_counts(&prefix, "long").await.0 == 1
    })
    .await;
    let (status, took) = worker.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit {status:?}; log:\n{}", worker.log());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        probe_counts(&prefix, "short").await,
        (1, 1),
        "the short job finished"
    );
    assert_eq!(probe_counts(&prefix, "long").await, (1, 0));
    let counts = queue.counts().await.expect("counts");
    assert_eq!(
        (counts.waiting, counts.in_flight),
        (1, 0),
        "the unfinished job is back in the queue at once, not after its 60 s lease"
    );
    assert!(worker.log().contains("handed back"), "{}", worker.log());
}

/// A redis-server of the test's own, with AOF (fsync always), that can be restarted.
pub(crate) struct OwnRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    pub(crate) fn start() -> Self {
        let port = closed_port();
        let dir = std::env::temp_dir().join(format!("cs-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = OwnRedis {
            port,
            dir,
            child: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        self.child = Some(child);
        wait_port(self.port);
    }

    /// Stops the server (SIGTERM: it flushes its AOF).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub(crate) fn start_again(&mut self) {
        self.spawn();
    }

    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: Redis flushes its AOF and exits.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        std::thread::sleep(Duration::from_millis(500));
        self.spawn();
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

async fn own_conn(url: &str) -> redis::aio::ConnectionManager {
    let client = redis::Client::open(url).expect("url");
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    client
        .get_connection_manager_with_config(config)
        .await
        .expect("connect")
}

#[tokio::test]
async fn workers_ride_out_a_redis_restart_under_load_and_lose_nothing_acknowledged() {
    let mut redis = OwnRedis::start();
    let mut env = worker_env("postgres://postgres@127.0.0.1:5432/unused");
    env.insert("REDIS_URL".into(), redis.url());
    let prefix = env["REDIS_KEY_PREFIX"].clone();
    let mut a = WorkerProcess::spawn(&env);
    let mut b = WorkerProcess::spawn(&env);
    let queue = Queue::new(own_conn(&redis.url()).await, &prefix, "default");
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0..600 {
        if i == 200 || i == 400 {
            redis.restart();
        }
        let tag = format!("r{i}");
        let args = json!({ "tag": tag, "sleep_ms": 2 });
        match queue
            .enqueue(diagnostics_probe::NAME, args, EnqueueOptions::default())
            .await
        {
            Ok(_) => acknowledged.push(tag),
            Err(_) => refused += 1,
        }
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        acknowledged.len() >= 500,
        "only {} enqueues acknowledged ({refused} refused)",
        acknowledged.len()
    );
    let mut conn = own_conn(&redis.url()).await;
    let mut lost = acknowledged.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lost.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for tag in lost {
            let finished: Option<u64> = redis::cmd("HGET")
                .arg(diagnostics_probe::counter_key(&prefix, &tag))
                .arg("finished")
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            if finished.unwrap_or(0) == 0 {
                still.push(tag);
            }
        }
        lost = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged tasks never ran: {:?}; dead letters: {}; logs:\n{}\n---\n{}",
        lost.len(),
        &lost[..lost.len().min(10)],
        queue.counts().await.map(|c| c.dead).unwrap_or(0),
        a.log(),
        b.log()
    );
    assert!(a.alive() && b.alive(), "no worker died; log:\n{}", a.log());
    assert!(a.terminate(Duration::from_secs(20)).0.success());
    assert!(b.terminate(Duration::from_secs(20)).0.success());
}

#[tokio::test]
async fn three_workers_enqueue_each_schedule_tick_exactly_once() {
    let (db_url, pool) = migrated_database().await;
    let mut env = worker_env(&db_url);
    env.insert("SCHEDULE_PURGE_EXPIRED_DATA".into(), "* * * * * *".into());
    env.insert("LOG_LEVEL".into(), "warn".into());
    let prefix = env["REDIS_KEY_PREFIX"].clone();
    let mut workers: Vec<WorkerProcess> = (0..3).map(|_| WorkerProcess::spawn(&env)).collect();
    tokio::time::sleep(Duration::from_secs(56)).await;
    for worker in &mut workers {
        assert!(
            worker.terminate(Duration::from_secs(20)).0.success(),
            "{}",
            worker.log()
        );
    }
    let queue = Queue::new(redis_conn().await, &prefix, "default");
    let counts = queue.counts().await.expect("counts");
    let enqueued = counts
        .counters
        .get("enqueued:purge_expired_data")
        .copied()
        .unwrap_or(0);
    let ticks: Vec<(chrono::DateTime<chrono::Utc>,)> = sqlx::query_as(
        "SELECT scheduled_for FROM sync_runs WHERE job = 'purge_expired_data' AND trigger = 'schedule' ORDER BY scheduled_for",
    )
    .fetch_all(&pool)
    .await
    .expect("runs");
    let left_in_queue = counts.waiting + counts.in_flight;
    assert!(ticks.len() >= 50, "only {} ticks ran", ticks.len());
    assert_eq!(
        enqueued,
        ticks.len() as u64 + left_in_queue,
        "each enqueued tick ran once"
    );
    let first = ticks.first().expect("ticks").0;
    let last = ticks.last().expect("ticks").0;
    assert_eq!(
        (last - first).num_seconds() + 1,
        ticks.len() as i64,
        "no tick was missed or run twice"
    );
}

fn make_certificate(dir: &Path) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=campaign-sync-test",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (scripts/services.sh installs it)");
    assert!(status.success());
}

#[tokio::test]
async fn rediss_with_a_self_signed_certificate_works_only_with_the_opt_in() {
    let dir = std::env::temp_dir().join(format!("cs-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    make_certificate(&dir);
    let port = closed_port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--tls-auth-clients",
            "no",
        ])
        .arg("--tls-cert-file")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key-file")
        .arg(dir.join("key.pem"))
        .arg("--tls-ca-cert-file")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    wait_port(port);
    let (db_url, _pool) = migrated_database().await;
    let mut env = worker_env(&db_url);
    env.insert("REDIS_URL".into(), format!("rediss://127.0.0.1:{port}"));
    let doctor = |env: &HashMap<String, String>| {
        Command::new(BIN)
            .env_clear()
            .envs(env)
            .arg("doctor")
            .output()
            .expect("doctor")
    };
    let refused = doctor(&env);
    let text = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert!(
        text.contains("Redis\n  FAIL  cannot connect"),
        "an unverifiable certificate is refused by default:\n{text}"
    );
    env.insert("REDIS_TLS_INSECURE".into(), "true".into());
    let accepted = doctor(&env);
    let text = String::from_utf8_lossy(&accepted.stdout).into_owned();
    assert!(
        text.contains("TLS in use, self-signed certificate accepted"),
        "{text}"
    );
    // A job runs end to end over TLS.
    let prefix = env["REDIS_KEY_PREFIX"].clone();
    let _worker = WorkerProcess::spawn(&env);
    let client = redis::Client::open(format!("rediss://127.0.0.1:{port}/#insecure")).expect("url");
    let conn = client
        .get_connection_manager()
        .await
        .expect("tls connection");
    let queue = Queue::new(conn.clone(), &prefix, "default");
    enqueue_probe(&queue, "tls", 0).await;
    eventually(Duration::from_secs(20), "the job to run over TLS", || {
        let mut conn = conn.clone();
        let key = diagnostics_probe::counter_key(&prefix, "tls");
        async move {
            let finished: Option<u64> = redis::cmd("HGET")
                .arg(key)
                .arg("finished")
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            finished == Some(1)
        }
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
