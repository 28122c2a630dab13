//! Sync benchmark: `cargo bench --bench syncs` (Postgres at BENCH_DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres, where a scratch database is created and dropped;
//! Redis at BENCH_REDIS_URL under a fresh prefix). The sandbox runs as its own process
//! (`campaign-sync sandbox`), so this process's peak RSS is the sync's alone.
//!
//! Prints, for a small and a large data set each: wall time, upstream requests/s and the peak
//! RSS of the run (VmHWM, reset before each case) of
//! - `sync_mailjet_stats` over 1,000 and 10,000 active mapped campaigns, 50 ms added to every
//!   statistics request, MAILJET_RATE_PER_SEC=500 (target: 10,000 in ≤ 30 s);
//! - `sync_slack_users` over 5,000 and 50,000 users, 999 a page (target: 50,000 in ≤ 10 s);
//! - `sync_mailjet_stats` matching 200 unmapped campaigns by subject among 5,000 Mailjet
//!   campaigns through the REST adapter (each match pages through Mailjet's list).

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{
    Worker, control, drop_database, peak_rss_mib, redis, requests, reset_peak_rss, sandbox,
    sandbox_worker_settings, scratch_database,
};

use campaign_sync::queue::{EnqueueOptions, Queue};
use serde_json::{Value, json};

struct Case {
    job: &'static str,
    campaigns: u32,
    users: u32,
    /// Of the campaigns, this many are not mapped and are matched by subject through the REST
    /// adapter (which pages through Mailjet's campaigns, 1,000 at a time, to find each one).
    by_subject: u32,
}

async fn run_case(admin: &str, redis_url: &str, case: &Case) {
    let sandbox = sandbox(&[
        "--campaigns",
        &case.campaigns.max(1).to_string(),
        "--users",
        &case.users.max(1).to_string(),
        "--channels",
        "10",
        "--templates",
        "1",
        "--slack-tier-scale",
        "1000",
    ])
    .await;
    let (name, db_url, db) = scratch_database(admin).await;
    if let Some(step) = case.campaigns.checked_div(case.by_subject) {
        // Subjects spread over Mailjet's list, so a match pages half-way through it on average.
        let mut subjects = Vec::new();
        let step = step.max(1) as usize;
        let mut offset = 0;
        loop {
            let page: Value = reqwest::Client::new()
                .get(format!(
                    "{}/v3/REST/campaign?Limit=1000&Offset={offset}",
                    sandbox.base
                ))
                .basic_auth("sandbox-key", Some("sandbox-secret"))
                .send()
                .await
                .expect("campaigns")
                .json()
                .await
                .expect("json");
            let rows = page["Data"].as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                break;
            }
            offset += rows.len();
            subjects.extend(
                rows.iter()
                    .filter_map(|r| r["Subject"].as_str().map(str::to_owned)),
            );
        }
        let subjects: Vec<String> = subjects
            .into_iter()
            .step_by(step)
            .take(case.by_subject as usize)
            .collect();
        sqlx::query("INSERT INTO campaigns (id, name, subject) SELECT 's' || lpad(n::text, 6, '0'), 'By subject ' || n, subject FROM unnest($1::text[]) WITH ORDINALITY AS t(subject, n)")
            .bind(&subjects)
            .execute(&db)
            .await
            .expect("campaigns by subject");
    } else if case.campaigns > 0 {
        sqlx::query("INSERT INTO campaigns (id, name, subject) SELECT 'c' || lpad(i::text, 6, '0'), 'Campaign ' || i, 'Subject ' || i FROM generate_series(0, $1 - 1) i")
            .bind(case.campaigns as i32)
            .execute(&db)
            .await
            .expect("campaigns");
        sqlx::query("INSERT INTO mcp_integrations (service, external_id, internal_id) SELECT 'mailjet', (7000000 + i)::text, 'c' || lpad(i::text, 6, '0') FROM generate_series(0, $1 - 1) i")
            .bind(case.campaigns as i32)
            .execute(&db)
            .await
            .expect("mappings");
        control(
            &sandbox.base,
            reqwest::Method::POST,
            "/_sandbox/faults",
            Some(json!({ "endpoint": "mailjet.agent.campaigns.statistics", "latency_ms": 50 })),
        )
        .await;
    }
    let prefix = format!("bench:{}", uuid::Uuid::new_v4().simple());
    let settings = sandbox_worker_settings(
        &sandbox,
        &db_url,
        redis_url,
        &prefix,
        &[
            ("DATABASE_MAX_CONNECTIONS", "20"),
            ("MAILJET_RATE_PER_SEC", "500"),
            ("SLACK_TIER2_PER_MIN", "6000"),
            ("SLACK_PAGE_SIZE", "999"),
            (
                "MAILJET_ADAPTER",
                if case.by_subject > 0 { "rest" } else { "agent" },
            ),
        ],
    );
    let worker = Worker::start(settings, campaign_sync::jobs::builtin());
    let redis = redis(redis_url).await;
    let queue = Queue::new(redis, &prefix, "default");
    let before = requests(&sandbox.base).await;
    reset_peak_rss();
    let started = Instant::now();
    queue
        .enqueue(case.job, Value::Null, EnqueueOptions::default())
        .await
        .expect("enqueue");
    let (status, synced, failed): (String, i32, i32) = loop {
        let row: Option<(String, i32, i32)> = sqlx::query_as(
            "SELECT status, items_synced, items_failed FROM sync_runs WHERE job = $1 AND status <> 'running'",
        )
        .bind(case.job)
        .fetch_optional(&db)
        .await
        .expect("poll");
        if let Some(row) = row {
            break row;
        }
        if started.elapsed() > Duration::from_secs(600) {
            panic!("{} did not finish in 10 minutes", case.job);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    let calls = requests(&sandbox.base).await - before;
    let size = if case.by_subject > 0 {
        format!(
            "{:>6} campaigns matched by subject among {} (REST)",
            case.by_subject, case.campaigns
        )
    } else if case.campaigns > 0 {
        format!("{:>6} campaigns", case.campaigns)
    } else {
        format!("{:>6} users    ", case.users)
    };
    println!(
        "{:<18} {size}: {status}, {synced} synced / {failed} failed in {wall:6.2} s, {calls:>6} requests ({:7.1}/s), peak RSS {peak:6.1} MiB",
        case.job,
        calls as f64 / wall,
    );
    worker.stop().await;
    db.close().await;
    drop_database(admin, &name).await;
    drop(sandbox);
}

#[tokio::main]
async fn main() {
    let admin = common::admin_url();
    let redis_url = common::redis_url();
    let cases = [
        Case {
            job: "sync_mailjet_stats",
            campaigns: 1_000,
            users: 0,
            by_subject: 0,
        },
        Case {
            job: "sync_mailjet_stats",
            campaigns: 10_000,
            users: 0,
            by_subject: 0,
        },
        Case {
            job: "sync_slack_users",
            campaigns: 0,
            users: 5_000,
            by_subject: 0,
        },
        Case {
            job: "sync_slack_users",
            campaigns: 0,
            users: 50_000,
            by_subject: 0,
        },
        Case {
            job: "sync_mailjet_stats",
            campaigns: 5_000,
            users: 0,
            by_subject: 200,
        },
    ];
    for case in &cases {
        run_case(&admin, &redis_url, case).await;
    }
}
