//! Audit-trail benchmark: `cargo bench --bench audit` (Postgres at BENCH_DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres, where a scratch database is created and
//! dropped; `BENCH_AUDIT_ROWS` sets the rows, default 10,000,000; `BENCH_KEEP=1` keeps the
//! database and `BENCH_AUDIT_REUSE=<database>` measures one so kept again without seeding).
//!
//! Seeds a year of audit entries (the migration's indexes dropped during the load and built
//! again from their own definitions, as a restore would), starts the release binary's `web`
//! as its own process and prints p50/p99 of `GET /api/audit` for each kind of filter, first
//! pages and pages deep in the trail (target p99 ≤ 100 ms), then the table's and indexes' size.

#[path = "common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{drop_database, peak_rss_mib_of, scratch_database};
use serde_json::Value;
use sqlx::PgPool;

const TOKEN: &str = "bench-api-token-0123456789abcdef";
const SAMPLES: usize = 200;
const ACTIONS: [&str; 12] = [
    "campaign.upsert",
    "team_member.upsert",
    "email_request.accepted",
    "email_request.completed",
    "mailjet.send",
    "slack.post",
    "slack.update",
    "notification.accepted",
    "approval.requested",
    "approval.approved",
    "slack.token_refresh",
    "person.erase",
];
const ACTORS: [&str; 6] = [
    "api",
    "worker",
    "cli",
    "slack",
    "dashboard:admin:Ops",
    "dashboard:viewer:Ann",
];

async fn exec(db: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// A year of entries, newest at now; the indexes are built after the load.
async fn seed(db: &PgPool, rows: i64) {
    let started = Instant::now();
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'audit_log' AND indexname <> 'audit_log_pkey'",
    )
    .fetch_all(db)
    .await
    .expect("indexes");
    for (name, _) in &indexes {
        exec(db, &format!("DROP INDEX {name}")).await;
    }
    let actions = ACTIONS.map(|a| format!("'{a}'")).join(",");
    let actors = ACTORS.map(|a| format!("'{a}'")).join(",");
    let chunk = 1_000_000;
    for start in (0..rows).step_by(chunk as usize) {
        let end = (start + chunk).min(rows);
        exec(db, &format!("
            SET synchronous_commit = off;
            INSERT INTO audit_log (occurred_at, actor, action, entity_type, entity_id, request_id, outcome, details)
            SELECT now() - make_interval(secs => (({rows} - i)::float8 * 31536000 / {rows})),
                   (ARRAY[{actors}])[1 + i % 6], (ARRAY[{actions}])[1 + (i / 7) % 12],
                   (ARRAY['campaign','team_member','email_request','email_batch','slack_post','approval','slack_workspace','person'])[1 + i % 8],
                   'e' || (i % 100000), md5(i::text), CASE WHEN i % 97 = 0 THEN 'failed' ELSE 'ok' END,
                   jsonb_build_object('n', i)
            FROM generate_series({start} + 1, {end}) i")).await;
    }
    let loaded = started.elapsed();
    for (_, definition) in &indexes {
        exec(db, definition).await;
    }
    exec(db, "VACUUM ANALYZE audit_log").await;
    println!(
        "  seeded {rows} entries over a year in {:.0} s, {} indexes built in {:.0} s",
        loaded.as_secs_f64(),
        indexes.len(),
        (started.elapsed() - loaded).as_secs_f64()
    );
}

struct Web {
    child: std::process::Child,
    base: String,
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn web(db_url: &str) -> Web {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut child = Command::new(env!("CARGO_BIN_EXE_campaign-sync"))
        .env_clear()
        .envs([
            ("APP_ENV", "test"),
            ("DATABASE_URL", db_url),
            ("REDIS_URL", &common::redis_url()),
            (
                "REDIS_KEY_PREFIX",
                &format!("bench:{}", uuid::Uuid::new_v4().simple()),
            ),
            ("API_TOKEN", TOKEN),
            ("METRICS_TOKEN", TOKEN),
            ("PORT", &port.to_string()),
            ("MAILJET_WEBHOOK_USER", "mailjet"),
            ("MAILJET_WEBHOOK_PASSWORD", TOKEN),
            ("SLACK_SIGNING_SECRET", TOKEN),
            ("LOG_LEVEL", "warn"),
        ])
        .arg("web")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("web");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..300 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            return Web { child, base };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("web did not start");
}

/// p50 and p99 of `SAMPLES` pages whose query `make` builds from a sample number.
async fn measure(http: &reqwest::Client, base: &str, label: &str, make: impl Fn(usize) -> String) {
    let mut times = Vec::with_capacity(SAMPLES);
    let mut rows = 0;
    for i in 0..SAMPLES {
        let url = format!("{base}/api/audit?{}", make(i));
        let started = Instant::now();
        let page: Value = http
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        rows += page["items"].as_array().map_or(0, Vec::len);
        assert!(page["items"].is_array(), "{url}: {page}");
    }
    let (p50, p99) = common::p50_p99(&mut times);
    println!(
        "  {label:<46} p50 {p50:>6.1} ms  p99 {p99:>6.1} ms  ({:.0} entries a page)",
        rows as f64 / SAMPLES as f64
    );
}

/// A cursor `days` back in the trail (the page boundary a reader deep in it would hold).
async fn cursor_at(db: &PgPool, days: i64) -> String {
    let (at, id): (chrono::DateTime<chrono::Utc>, i64) = sqlx::query_as(
        "SELECT occurred_at, id FROM audit_log WHERE occurred_at < now() - make_interval(days => $1::int) ORDER BY occurred_at DESC, id DESC LIMIT 1",
    )
    .bind(days as i32)
    .fetch_one(db)
    .await
    .expect("cursor");
    format!("{}_{id}", at.timestamp_micros())
}

async fn pages(db: &PgPool, base: &str) {
    let http = reqwest::Client::new();
    // A day-long window, 1 to 360 days back.
    let window = |i: usize| {
        let until = chrono::Utc::now() - chrono::Duration::days(1 + (i as i64 * 7) % 360);
        let since = until - chrono::Duration::days(1);
        let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        format!("since={}&until={}", at(since), at(until))
    };
    measure(&http, base, "newest 100, no filter", |_| "limit=100".into()).await;
    measure(&http, base, "by action", |i| {
        format!("action={}", ACTIONS[i % 12])
    })
    .await;
    measure(&http, base, "by actor", |i| {
        format!("actor={}", ACTORS[i % 6].replace(':', "%3A"))
    })
    .await;
    measure(&http, base, "by subject (type and id)", |i| {
        format!("subjectType=campaign&subjectId=e{}", (i * 8) % 100000)
    })
    .await;
    measure(&http, base, "failures (outcome=failed)", |_| {
        "outcome=failed".into()
    })
    .await;
    measure(&http, base, "one day, months back (since/until)", window).await;
    let deep = cursor_at(db, 180).await;
    measure(&http, base, "six months deep (before=cursor)", |_| {
        format!("before={deep}")
    })
    .await;
    measure(&http, base, "six months deep, by action", |i| {
        format!("before={deep}&action={}", ACTIONS[i % 12])
    })
    .await;
}

#[tokio::main]
async fn main() {
    let admin = common::admin_url();
    let rows: i64 = std::env::var("BENCH_AUDIT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    println!("audit trail, {rows} entries:");
    let (name, db_url, db) = match std::env::var("BENCH_AUDIT_REUSE") {
        Ok(name) => {
            let mut url = url::Url::parse(&admin).expect("BENCH_DATABASE_URL");
            url.set_path(&name);
            let db = PgPool::connect(url.as_str()).await.expect("connect");
            println!("  reusing the seeded database {name}");
            (name, url.to_string(), db)
        }
        Err(_) => {
            let (name, url, db) = scratch_database(&admin).await;
            campaign_sync::store::MIGRATOR
                .run(&db)
                .await
                .expect("migrate");
            seed(&db, rows).await;
            (name, url, db)
        }
    };
    let server = web(&db_url).await;
    pages(&db, &server.base).await;
    let (table, indexes): (String, String) = sqlx::query_as(
        "SELECT pg_size_pretty(pg_table_size('audit_log')), pg_size_pretty(pg_indexes_size('audit_log'))",
    )
    .fetch_one(&db)
    .await
    .expect("size");
    println!(
        "  table {table}, indexes {indexes}; web peak RSS {:.0} MiB",
        peak_rss_mib_of(&server.child.id().to_string())
    );
    drop(server);
    db.close().await;
    if std::env::var("BENCH_KEEP").is_err() && std::env::var("BENCH_AUDIT_REUSE").is_err() {
        drop_database(&admin, &name).await;
    }
}
