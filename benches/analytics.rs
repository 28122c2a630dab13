//! Analytics benchmark: `cargo bench --bench analytics` (Postgres at BENCH_DATABASE_URL,
//! default postgres://postgres@127.0.0.1:5432/postgres, where scratch databases are created
//! and dropped; `BENCH_ANALYTICS_CAMPAIGNS` sets the large case's campaigns, default 10,000;
//! `BENCH_KEEP=1` keeps the databases and `BENCH_ANALYTICS_REUSE=<database>` measures the large
//! case again on one so kept, without seeding).
//!
//! Seeds, by SQL, campaigns with 90 days of half-hourly Mailjet snapshots (4,320 each), the
//! service's own sends with about 500 recipient events per campaign (5,000,000 for 10,000
//! campaigns), a Slack channel per campaign with messages and approvals. Then prints: the full
//! backfill's time and this process's peak RSS (for a tenth of the campaigns too, to show it
//! does not grow with the data), the hourly incremental run after one more hour of data
//! (target ≤ 5 s), and p50/p99 of each analytics endpoint at that size over HTTP (target
//! p99 ≤ 50 ms).

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::Instant;

use campaign_sync::config::{self, Process};
use campaign_sync::jobs::rollup_metrics::{OVERLAP, Plan};
use campaign_sync::startup::Application;
use chrono::Utc;
use common::{drop_database, peak_rss_mib, reset_peak_rss, scratch_database};
use sqlx::PgPool;

const DAYS: i64 = 90;
const SNAPSHOTS_PER_DAY: i64 = 48;
const SENDS_PER_CAMPAIGN: i64 = 130;
const CHUNK: i64 = 500;

async fn exec(db: &PgPool, sql: &str, binds: &[i64]) {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for b in binds {
        q = q.bind(*b);
    }
    q.execute(db).await.unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// Everything the rollups read, for `campaigns` campaigns over the 90 days before `end_hours`
/// hours ago.
async fn seed(db: &PgPool, campaigns: i64) {
    let started = Instant::now();
    exec(db, "SET synchronous_commit = off", &[]).await;
    exec(db, "INSERT INTO campaigns (id, name, status) SELECT 'c' || lpad(c::text, 5, '0'), 'Campaign ' || c, 'active' FROM generate_series(1, $1) c", &[campaigns]).await;
    exec(db, "INSERT INTO email_templates (id, name, category, variables) SELECT 4000 + t, 'Template ' || t, (ARRAY['newsletter','promotion','onboarding'])[1 + t % 3], '{first_name}' FROM generate_series(0, 99) t", &[]).await;
    let steps = DAYS * SNAPSHOTS_PER_DAY;
    for from in (1..=campaigns).step_by(CHUNK as usize) {
        let to = (from + CHUNK - 1).min(campaigns);
        exec(db, "INSERT INTO email_statistics (campaign_id, mailjet_campaign_id, sent, delivered, opened, clicked, bounced, spam, blocked, unsubscribed, open_rate, click_rate, engagement_score, recorded_at)
             SELECT 'c' || lpad(c::text, 5, '0'), 100000 + c, s * 20, s * 19, s * 6 + (c % 7) * s / 10, s * 2 + (c % 5) * s / 10, s / 10, s / 200, 0, s / 100, 0.3, 0.1, 20,
                    now() - interval '1 hour' - ($3 - s) * interval '30 minutes'
             FROM generate_series($1::bigint, $2::bigint) c, generate_series(1, $3::bigint) s", &[from, to, steps]).await;
        eprint!(
            "\r  snapshots: campaigns {to}/{campaigns} ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    exec(db, "INSERT INTO email_requests (idempotency_key, request_hash, campaign_id, template_id, recipient_count, status)
              SELECT 'k' || c, 'h', 'c' || lpad(c::text, 5, '0'), 4000 + c % 100, $2, 'completed' FROM generate_series(1, $1) c", &[campaigns, SENDS_PER_CAMPAIGN]).await;
    exec(db, "INSERT INTO email_sends (request_id, email, status, sent_at, delivered_at, first_opened_at, first_clicked_at, bounced_at)
              SELECT r.id, 'r' || i || '@example.com', 'sent', t, t + interval '1 minute',
                     CASE WHEN i % 3 <> 0 THEN t + interval '1 hour' END, CASE WHEN i % 5 = 0 THEN t + interval '3 hours' END,
                     CASE WHEN i % 50 = 0 THEN t + interval '2 minutes' END
              FROM email_requests r, generate_series(1, $1) i,
                   LATERAL (SELECT now() - interval '1 hour' - ((hashint8(i * 7919 + length(r.campaign_id)) & 2147483647) % ($2 * 86400 - 14400) + 14400) * interval '1 second' AS t) x", &[SENDS_PER_CAMPAIGN, DAYS]).await;
    exec(db, "INSERT INTO email_events (send_id, event_type, occurred_at, created_at) SELECT id, 'sent', delivered_at, delivered_at FROM email_sends", &[]).await;
    exec(db, "INSERT INTO email_events (send_id, event_type, occurred_at, created_at) SELECT s.id, 'open', s.first_opened_at + d * interval '1 day', s.first_opened_at + d * interval '1 day' FROM email_sends s, generate_series(0, 3) d WHERE s.first_opened_at IS NOT NULL", &[]).await;
    exec(db, "INSERT INTO email_events (send_id, event_type, occurred_at, created_at) SELECT id, 'click', first_clicked_at, first_clicked_at FROM email_sends WHERE first_clicked_at IS NOT NULL", &[]).await;
    exec(db, "INSERT INTO email_events (send_id, event_type, occurred_at, created_at) SELECT id, 'bounce', bounced_at, bounced_at FROM email_sends WHERE bounced_at IS NOT NULL", &[]).await;
    exec(db, "INSERT INTO team_members (id, email, name) SELECT 'tm' || u, 'u' || u || '@example.com', 'User ' || u FROM generate_series(1, 200) u", &[]).await;
    exec(db, "INSERT INTO slack_integrations (team_member_id, workspace_id, slack_user_id, slack_username) SELECT 'tm' || u, 'T1', 'U' || u, 'user' || u FROM generate_series(1, 200) u", &[]).await;
    exec(db, "INSERT INTO slack_channels (id, workspace_id, name, campaign_id) SELECT 'C' || c, 'T1', 'campaign-' || c, 'c' || lpad(c::text, 5, '0') FROM generate_series(1, $1) c", &[campaigns]).await;
    exec(db, "INSERT INTO slack_messages (channel_id, ts, user_id, thread_ts, posted_at, created_at)
              SELECT 'C' || (1 + m % $1), m || '.000100', 'U' || (1 + m % 200), CASE WHEN m % 4 = 0 THEN (m - 1) || '.000100' END,
                     now() - interval '1 hour' - (m % ($2 * 86400)) * interval '1 second', now() - interval '1 hour' - (m % ($2 * 86400)) * interval '1 second'
              FROM generate_series(1, $1 * 30) m", &[campaigns, DAYS]).await;
    exec(db, "INSERT INTO approvals (id, campaign_id, stage, approver_id, deadline, status, decided_at, decided_by, created_at)
              SELECT 'a' || a, 'c' || lpad((1 + a % $1)::text, 5, '0'), 'copy', 'tm' || (1 + a % 200), now() + interval '10 days',
                     CASE WHEN a % 10 = 0 THEN 'pending' ELSE 'approved' END,
                     CASE WHEN a % 10 = 0 THEN NULL ELSE now() - interval '1 hour' - (a % ($2 * 86400)) * interval '1 second' + (a % 7200) * interval '1 second' END,
                     CASE WHEN a % 10 = 0 THEN NULL ELSE 'U' || (1 + a % 200) END,
                     now() - interval '1 hour' - (a % ($2 * 86400)) * interval '1 second'
              FROM generate_series(1, $1 * 2) a", &[campaigns, DAYS]).await;
    // Rows arrive when they happen: nothing seeded is newer than an hour ago.
    exec(
        db,
        "UPDATE approvals SET updated_at = coalesce(decided_at, created_at)",
        &[],
    )
    .await;
    exec(db, "ANALYZE", &[]).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM email_events")
        .fetch_one(db)
        .await
        .expect("count");
    let snapshots: i64 = sqlx::query_scalar("SELECT count(*) FROM email_statistics")
        .fetch_one(db)
        .await
        .expect("count");
    println!(
        "  seeded {campaigns} campaigns: {snapshots} snapshots, {events} recipient events, {} messages, {} approvals in {:.0} s",
        campaigns * 30,
        campaigns * 2,
        started.elapsed().as_secs_f64()
    );
}

/// One more hour: two snapshots per campaign, an hour's sends with their events, messages.
async fn one_more_hour(db: &PgPool, campaigns: i64) {
    exec(db, "INSERT INTO email_statistics (campaign_id, mailjet_campaign_id, sent, delivered, opened, clicked, bounced, spam, blocked, unsubscribed, open_rate, click_rate, engagement_score, recorded_at)
              SELECT campaign_id, mailjet_campaign_id, sent + 20 * k, delivered + 19 * k, opened + 6 * k, clicked + 2 * k, bounced, spam, blocked, unsubscribed, 0.3, 0.1, 20, now() - (2 - k) * interval '25 minutes'
              FROM (SELECT DISTINCT ON (campaign_id) * FROM email_statistics ORDER BY campaign_id, recorded_at DESC) last, generate_series(1, 2) k", &[]).await;
    let per_hour = (campaigns * SENDS_PER_CAMPAIGN / (DAYS * 24)).max(1);
    exec(db, "WITH r AS (SELECT id FROM email_requests ORDER BY campaign_id LIMIT $1),
              s AS (INSERT INTO email_sends (request_id, email, status, sent_at, delivered_at, first_opened_at)
                    SELECT r.id, 'late' || r.id || '@example.com', 'sent', now() - interval '30 minutes', now() - interval '29 minutes', now() - interval '10 minutes' FROM r RETURNING id, delivered_at, first_opened_at)
              INSERT INTO email_events (send_id, event_type, occurred_at) SELECT id, 'sent', delivered_at FROM s UNION ALL SELECT id, 'open', first_opened_at FROM s", &[per_hour]).await;
    // Late events: opens and clicks of sends from the days before.
    exec(db, "INSERT INTO email_events (send_id, event_type, occurred_at) SELECT id, 'open', now() - interval '5 minutes' FROM email_sends WHERE sent_at < now() - interval '3 days' LIMIT $1", &[per_hour * 3]).await;
    exec(db, "INSERT INTO slack_messages (channel_id, ts, user_id, posted_at) SELECT 'C' || (1 + m % $1), 'late' || m, 'U' || (1 + m % 200), now() - (m % 3600) * interval '1 second' FROM generate_series(1, $1 / 30 + 10) m", &[campaigns]).await;
}

fn env_for(db_url: &str) -> HashMap<String, String> {
    let secret = |s: &str| format!("{s}-{}", uuid::Uuid::new_v4().simple());
    [
        ("APP_ENV", "test".to_owned()),
        ("DATABASE_URL", db_url.to_owned()),
        ("REDIS_URL", common::redis_url()),
        (
            "REDIS_KEY_PREFIX",
            format!("bench:{}", uuid::Uuid::new_v4().simple()),
        ),
        ("API_TOKEN", secret("api")),
        ("METRICS_TOKEN", secret("metrics")),
        ("MAILJET_WEBHOOK_USER", "mailjet".to_owned()),
        ("MAILJET_WEBHOOK_PASSWORD", secret("password")),
        ("SLACK_SIGNING_SECRET", secret("signing")),
        ("LOG_LEVEL", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// p50 and p99 in ms of `n` sequential GETs of `path`.
async fn latency(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    n: usize,
) -> (f64, f64) {
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let t = Instant::now();
        let response = client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        let status = response.status();
        let _ = response.bytes().await;
        assert!(status.is_success(), "{path}: {status}");
        if i >= 10 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    common::p50_p99(&mut times)
}

async fn case(admin: &str, campaigns: i64, endpoints: bool) {
    println!("{campaigns} campaigns:");
    let (name, db_url, db) = match std::env::var("BENCH_ANALYTICS_REUSE") {
        // A database a run kept (BENCH_KEEP) or left behind, seeded for `campaigns`: its
        // rollups are emptied and the figures measured again without seeding for 20 minutes.
        Ok(name) => {
            let mut url = url::Url::parse(admin).expect("BENCH_DATABASE_URL");
            url.set_path(&name);
            let db = sqlx::PgPool::connect(url.as_str()).await.expect("connect");
            campaign_sync::store::MIGRATOR
                .run(&db)
                .await
                .expect("migrate");
            exec(&db, "TRUNCATE metric_rollups", &[]).await;
            println!("  reusing the seeded database {name}");
            (name, url.to_string(), db)
        }
        Err(_) => {
            let (name, db_url, db) = scratch_database(admin).await;
            seed(&db, campaigns).await;
            (name, db_url, db)
        }
    };
    reset_peak_rss();
    let rss_before = peak_rss_mib();
    let started = Instant::now();
    let plan = Plan::everything(&db).await.expect("plan");
    let done = plan.run(&db, |_| {}).await.expect("backfill");
    println!(
        "  full backfill: {} days, {} rows in {:.1} s; peak RSS {:.1} MiB (at start {:.1} MiB)",
        plan.email_days.len(),
        done.rows,
        started.elapsed().as_secs_f64(),
        peak_rss_mib(),
        rss_before
    );
    let since = Utc::now() - chrono::Duration::minutes(60);
    one_more_hour(&db, campaigns).await;
    let started = Instant::now();
    let plan = Plan::changed_since(&db, since - OVERLAP)
        .await
        .expect("plan");
    let done = plan.run(&db, |_| {}).await.expect("incremental");
    println!(
        "  hourly incremental run: {} email days, {} team days, {} rows in {:.2} s (target ≤ 5 s)",
        plan.email_days.len(),
        plan.team_days.len(),
        done.rows,
        started.elapsed().as_secs_f64()
    );
    if endpoints {
        let env = env_for(&db_url);
        let settings = config::load_from(&env, Process::Web, &campaign_sync::jobs::schedulable())
            .expect("settings");
        let app = Application::build(settings).await.expect("app");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let client = reqwest::Client::new();
        let today = Utc::now().date_naive();
        let week_ago = today - chrono::Days::new(7);
        for path in [
            "/api/analytics/email?period=daily".to_owned(),
            "/api/analytics/email?period=weekly".to_owned(),
            "/api/analytics/email?period=monthly".to_owned(),
            format!(
                "/api/analytics/email?period=daily&from={}&to={today}",
                today - chrono::Days::new(365)
            ),
            format!("/api/campaigns/c{:05}/metrics?period=daily", campaigns / 2),
            format!(
                "/api/campaigns/c{:05}/metrics?period=weekly&historyLimit=1000",
                campaigns / 2
            ),
            "/api/analytics/team?period=daily".to_owned(),
            "/api/analytics/team?period=weekly&campaignId=c00042".to_owned(),
            format!("/api/analytics/top-content?period=weekly&start={week_ago}"),
            format!(
                "/api/analytics/top-content?period=monthly&start={week_ago}&limit=100&minDelivered=1"
            ),
            "/api/templates?sort=performance&limit=200".to_owned(),
        ] {
            let (p50, p99) = latency(&client, &base, &env["API_TOKEN"], &path, 200).await;
            println!("  GET {path:<78} p50 {p50:6.2} ms  p99 {p99:6.2} ms");
        }
    }
    db.close().await;
    if std::env::var("BENCH_KEEP").is_ok() {
        println!("  kept database {name}");
    } else {
        drop_database(admin, &name).await;
    }
}

#[tokio::main]
async fn main() {
    let admin = common::admin_url();
    let campaigns: i64 = std::env::var("BENCH_ANALYTICS_CAMPAIGNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    if std::env::var("BENCH_ANALYTICS_REUSE").is_err() {
        case(&admin, (campaigns / 10).max(1), false).await;
    }
    case(&admin, campaigns, true).await;
}
