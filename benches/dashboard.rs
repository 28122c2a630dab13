//! Dashboard benchmark: `cargo bench --bench dashboard` (Postgres at BENCH_DATABASE_URL,
//! default postgres://postgres@127.0.0.1:5432/postgres, where a scratch database is created
//! and dropped; Redis at BENCH_REDIS_URL, default redis://127.0.0.1:6379, under a fresh prefix).
//!
//! Seeds 10,000 campaigns with 30 days of statistics, 1,000,000 sends in 2,000 requests, a day
//! of webhook intake and runs, and 100,000 dead letters; starts the release binary's `web` as
//! its own process, signs in, and prints p50/p99 of each page and of each page's live update
//! (target p99 ≤ 100 ms), then the web process's peak RSS.

#[path = "common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use campaign_sync::queue::dead::DeadTask;
use campaign_sync::queue::{Queue, TaskEnvelope};
use common::{drop_database, peak_rss_mib_of, scratch_database};
use sqlx::PgPool;

const CAMPAIGNS: i64 = 10_000;
const REQUESTS: i64 = 2_000;
const SENDS_PER_REQUEST: i64 = 500;
const DEAD: usize = 100_000;
const ADMIN: &str = "bench-admin-token-0123456789";
const SAMPLES: usize = 100;

async fn exec(db: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

async fn seed_database(db: &PgPool) -> String {
    let started = Instant::now();
    exec(db, &format!("
        SET synchronous_commit = off;
        INSERT INTO campaigns (id, name, status) SELECT 'c' || lpad(c::text, 5, '0'), 'Campaign ' || c, 'active' FROM generate_series(1, {CAMPAIGNS}) c;
        INSERT INTO mcp_integrations (service, external_id, internal_id, last_synced)
            SELECT 'mailjet', (100000 + c)::text, 'c' || lpad(c::text, 5, '0'), now() FROM generate_series(1, {CAMPAIGNS}) c;
        INSERT INTO email_statistics (campaign_id, mailjet_campaign_id, sent, delivered, opened, clicked, bounced, open_rate, click_rate, engagement_score, recorded_at)
            SELECT 'c' || lpad(c::text, 5, '0'), 100000 + c, 100 * d, 95 * d, 30 * d, 9 * d, 5 * d, 0.31, 0.09, 20, now() - make_interval(days => 30 - d)
            FROM generate_series(1, {CAMPAIGNS}) c, generate_series(1, 30) d;
        INSERT INTO email_templates (id, name) VALUES (4242, 'Bench');
        INSERT INTO email_requests (idempotency_key, request_hash, campaign_id, template_id, recipient_count, status, created_at)
            SELECT 'k' || r, 'h', 'c' || lpad((1 + r % {CAMPAIGNS})::text, 5, '0'), 4242, {SENDS_PER_REQUEST},
                   CASE WHEN r % 10 = 0 THEN 'sending' ELSE 'completed' END, now() - make_interval(mins => r)
            FROM generate_series(1, {REQUESTS}) r;
        INSERT INTO email_sends (request_id, email, status, sent_at)
            SELECT r.id, 'r' || i || '.' || r.idempotency_key || '@example.com',
                   CASE WHEN r.status = 'sending' AND i % 2 = 0 THEN 'pending' WHEN i % 97 = 0 THEN 'failed' ELSE 'sent' END, now()
            FROM email_requests r, generate_series(1, {SENDS_PER_REQUEST}) i;
        INSERT INTO webhook_events (source, external_id, event_type, payload, status, received_at)
            SELECT 'mailjet', 'e' || e, (ARRAY['sent','open','click','bounce'])[1 + e % 4], '{{}}', 'processed', now() - make_interval(secs => e % 86400)
            FROM generate_series(1, 200000) e;
        INSERT INTO sync_runs (job, trigger, status, started_at, finished_at, items_synced)
            SELECT (ARRAY['sync_mailjet_stats','sync_mailjet_templates','update_slack_channels'])[1 + r % 3], 'schedule', 'succeeded',
                   now() - make_interval(mins => r), now() - make_interval(mins => r) + interval '2 seconds', 10
            FROM generate_series(1, 20000) r;
    ")).await;
    // As autovacuum would have by then: statistics, and the visibility map index-only scans use.
    exec(db, "VACUUM ANALYZE").await;
    let sends: i64 = sqlx::query_scalar("SELECT count(*) FROM email_sends")
        .fetch_one(db)
        .await
        .expect("count");
    println!(
        "  seeded {CAMPAIGNS} campaigns (30 days of statistics), {REQUESTS} requests with {sends} sends, 200,000 webhook events, 20,000 runs in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    sqlx::query_scalar("SELECT id::text FROM email_requests WHERE status = 'sending' LIMIT 1")
        .fetch_one(db)
        .await
        .expect("a request")
}

/// Dead letters written straight into the queue's layout (`docs/queue.md`), as burying them
/// one by one through workers would take hours.
async fn seed_dead(queue: &Queue) {
    let started = Instant::now();
    let mut conn = queue.connection();
    let now = campaign_sync::queue::now_ms();
    for chunk in (0..DEAD).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let mut task = TaskEnvelope::new(
                "diagnostics_probe",
                serde_json::json!({"tag": format!("t{i}")}),
            );
            for _ in 0..3 {
                task.record_failure(format!("upstream answered 503 on attempt for t{i}"));
            }
            let record = DeadTask {
                id: task.id.clone(),
                job: Some(task.job.clone()),
                reason: format!("failed 3 of 3 attempts; last error: upstream answered 503 (t{i})"),
                died_at: now - *i as i64 * 1000,
                attempts: 3,
                payload: task.encode(),
            };
            pipe.hset(
                queue.keys().dead(),
                &record.id,
                serde_json::to_string(&record).expect("json"),
            )
            .ignore();
            pipe.zadd(queue.keys().dead_index(), &record.id, record.died_at)
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.expect("bury");
    }
    println!(
        "  buried {DEAD} dead letters in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn latency(client: &reqwest::Client, url: &str, cookie: &str, fragment: bool) -> (f64, f64) {
    let mut times = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES + 5 {
        let mut request = client.get(url).header("cookie", cookie);
        if fragment {
            request = request.header("x-dashboard-fragment", "1");
        }
        let t = Instant::now();
        let response = request.send().await.expect("GET");
        let status = response.status();
        let _ = response.bytes().await;
        assert!(status.is_success(), "{url}: {status}");
        if i >= 5 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    common::p50_p99(&mut times)
}

#[tokio::main]
async fn main() {
    let admin = common::admin_url();
    let redis_url = common::redis_url();
    let (name, db_url, db) = scratch_database(&admin).await;
    let prefix = format!("bench:{}", uuid::Uuid::new_v4().simple());
    let redis = redis::Client::open(redis_url.as_str()).expect("redis url");
    let conn = redis::aio::ConnectionManager::new(redis)
        .await
        .expect("redis");
    println!("dashboard benchmark:");
    let request = seed_database(&db).await;
    let queue = Queue::new(conn.clone(), &prefix, "default");
    seed_dead(&queue).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut web = Command::new(env!("CARGO_BIN_EXE_campaign-sync"))
        .arg("web")
        .env_clear()
        .env("APP_ENV", "test")
        .env("LOG_LEVEL", "warn")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", &db_url)
        .env("REDIS_URL", &redis_url)
        .env("REDIS_KEY_PREFIX", &prefix)
        .env("API_TOKEN", "bench-api-token-0123456789")
        .env("METRICS_TOKEN", "bench-metrics-token-0123456789")
        .env("MAILJET_WEBHOOK_USER", "mailjet")
        .env("MAILJET_WEBHOOK_PASSWORD", "bench-webhook-0123456789")
        .env("SLACK_SIGNING_SECRET", "bench-signing-0123456789")
        .env("DASHBOARD_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("web");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for _ in 0..300 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signed = client
        .post(format!("{base}/dashboard/login"))
        .form(&[("name", "bench"), ("token", ADMIN)])
        .send()
        .await
        .expect("sign in");
    let cookie = signed.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let pages = [
        "/dashboard".to_owned(),
        "/dashboard/schedules".to_owned(),
        "/dashboard/schedules?job=sync_mailjet_stats".to_owned(),
        "/dashboard/queues".to_owned(),
        "/dashboard/dead".to_owned(),
        "/dashboard/dead?offset=50000".to_owned(),
        "/dashboard/dead?job=diagnostics_probe".to_owned(),
        "/dashboard/email-requests".to_owned(),
        format!("/dashboard/email-requests/{request}"),
        format!("/dashboard/email-requests/{request}?email=r1"),
        "/dashboard/campaigns".to_owned(),
        "/dashboard/campaigns?offset=9950".to_owned(),
        "/dashboard/campaigns?q=Campaign%20999".to_owned(),
        "/dashboard/campaigns/c05000".to_owned(),
        "/dashboard/webhooks".to_owned(),
        "/dashboard/approvals".to_owned(),
        "/dashboard/analytics".to_owned(),
        "/dashboard/audit".to_owned(),
    ];
    println!(
        "  {:<60} {:>18} {:>22}",
        "page", "page p50 / p99", "live update p50 / p99"
    );
    for page in &pages {
        let url = format!("{base}{page}");
        let (p50, p99) = latency(&client, &url, &cookie, false).await;
        let (l50, l99) = latency(&client, &url, &cookie, true).await;
        println!("  {page:<60} {p50:7.1} / {p99:6.1} ms {l50:9.1} / {l99:6.1} ms");
    }
    println!(
        "  web process peak RSS: {:.1} MiB",
        peak_rss_mib_of(&web.id().to_string())
    );
    let _ = web.kill();
    let _ = web.wait();
    let mut c = conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}:*"))
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    for key in keys {
        let _: Result<(), _> = redis::cmd("UNLINK").arg(&key).query_async(&mut c).await;
    }
    drop(db);
    drop_database(&admin, &name).await;
}
