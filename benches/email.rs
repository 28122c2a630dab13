//! Email queue benchmark: `cargo bench --bench email` (Postgres at BENCH_DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres, where a scratch database is created and dropped;
//! Redis at BENCH_REDIS_URL under a fresh prefix). The sandbox runs as its own process.
//!
//! For 10,000 and 100,000 recipients with no added latency, and 100,000 with 100 ms added to
//! every Send call, prints: the time to store the request (one transaction), the time until
//! every recipient is `sent`, recipients/s, Send calls, and the worker's peak RSS during the
//! send (VmHWM of a fresh process per case; the recipients are seeded by SQL). Targets: ≥ 5,000 recipients/s with no
//! latency; the peak RSS for 100,000 within 20 % of that for 10,000.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use campaign_sync::store::audit::Actor;
use campaign_sync::store::email_requests::{self, EmailRequestInput, RecipientInput};
use common::{
    Worker, control, drop_database, peak_rss_mib, redis, requests_to, reset_peak_rss, sandbox,
    sandbox_worker_settings, scratch_database,
};
use serde_json::{Map, Value, json};

const TEMPLATE: i64 = 4_000_000;

/// The campaign and template a request needs.
async fn seed(db: &sqlx::PgPool) {
    sqlx::query("INSERT INTO campaigns (id, name) VALUES ('bench', 'Bench')")
        .execute(db)
        .await
        .expect("campaign");
    sqlx::query("INSERT INTO email_templates (id, name) VALUES ($1, 'Bench')")
        .bind(TEMPLATE)
        .execute(db)
        .await
        .expect("template");
}

async fn run_case(admin: &str, redis_url: &str, recipients: usize, latency_ms: u64) {
    let sandbox = sandbox(&["--campaigns", "1", "--users", "1", "--templates", "1"]).await;
    if latency_ms > 0 {
        control(
            &sandbox.base,
            reqwest::Method::POST,
            "/_sandbox/faults",
            Some(json!({ "endpoint": "mailjet.send", "latency_ms": latency_ms })),
        )
        .await;
    }
    let (name, db_url, db) = scratch_database(admin).await;
    seed(&db).await;
    // Seeded by SQL, so that this process holds nothing of the list when the send starts.
    sqlx::query("INSERT INTO email_requests (idempotency_key, request_hash, campaign_id, template_id, recipient_count) VALUES ('bench', 'x', 'bench', $1, $2)")
        .bind(TEMPLATE)
        .bind(recipients as i32)
        .execute(&db)
        .await
        .expect("request");
    sqlx::query("INSERT INTO email_sends (request_id, email, name, variables) SELECT (SELECT id FROM email_requests), 'r' || i || '@example.com', 'Recipient ' || i, jsonb_build_object('first_name', 'R' || i) FROM generate_series(1, $1) i")
        .bind(recipients as i32)
        .execute(&db)
        .await
        .expect("recipients");
    let prefix = format!("bench:{}", uuid::Uuid::new_v4().simple());
    let settings = sandbox_worker_settings(
        &sandbox,
        &db_url,
        redis_url,
        &prefix,
        &[
            ("DATABASE_MAX_CONNECTIONS", "30"),
            ("MAILJET_ADAPTER", "rest"),
            ("MAILJET_RATE_PER_SEC", "1000"),
        ],
    );
    let redis = redis(redis_url).await;
    let (before, limited_before) = requests_to(&sandbox.base, "mailjet.send").await;
    reset_peak_rss();
    let started = Instant::now();
    let worker = Worker::start(settings, campaign_sync::jobs::builtin());
    campaign_sync::jobs::process_email_queue::kick(redis, &prefix, None, "manual")
        .await
        .expect("kick");
    loop {
        let done: bool = sqlx::query_scalar("SELECT status = 'completed' FROM email_requests")
            .fetch_one(&db)
            .await
            .expect("poll");
        if done {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            panic!("the send did not finish in 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    let (calls, limited) = requests_to(&sandbox.base, "mailjet.send").await;
    let (calls, limited) = (calls - before, limited - limited_before);
    let (sent, others): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status <> 'sent') FROM email_sends",
    )
    .fetch_one(&db)
    .await
    .expect("counts");
    let sends = control(
        &sandbox.base,
        reqwest::Method::GET,
        "/_sandbox/sends?list=false",
        None,
    )
    .await;
    println!(
        "{recipients:>7} recipients, {latency_ms:>3} ms per call: sent {sent} (other {others}; Mailjet got {} messages, {} twice) in {wall:6.2} s = {:7.0} recipients/s, {calls} Send calls ({limited} answered 429), worker peak RSS {peak:6.1} MiB",
        sends["messages"],
        sends["duplicates"],
        sent as f64 / wall,
    );
    worker.stop().await;
    db.close().await;
    drop_database(admin, &name).await;
}

#[tokio::main]
async fn main() {
    let admin = common::admin_url();
    let redis_url = common::redis_url();
    let cases = [(10_000, 0), (100_000, 0), (100_000, 100)];
    // Each case runs in a fresh process, so one case's memory does not count in the next.
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--case") {
        let index: usize = args[at + 1].parse().expect("case index");
        match cases.get(index) {
            Some((recipients, latency)) => {
                run_case(&admin, &redis_url, *recipients, *latency).await
            }
            None => store(&admin, 100_000).await,
        }
        return;
    }
    let me = std::env::current_exe().expect("own path");
    for index in 0..=cases.len() {
        let status = std::process::Command::new(&me)
            .args(["--case", &index.to_string()])
            .status()
            .expect("run a case");
        assert!(status.success(), "case {index} failed");
    }
}

/// The time to check and store one request (what `POST /api/email-requests` and `send` do).
async fn store(admin: &str, recipients: usize) {
    let (name, _, db) = scratch_database(admin).await;
    seed(&db).await;
    let input = EmailRequestInput {
        campaign_id: "bench".to_owned(),
        template_id: TEMPLATE,
        recipients: (0..recipients)
            .map(|i| {
                let mut variables = Map::new();
                variables.insert("first_name".to_owned(), Value::String(format!("R{i}")));
                RecipientInput {
                    email: format!("r{i}@example.com"),
                    name: format!("Recipient {i}"),
                    variables,
                }
            })
            .collect(),
        scheduled_at: None,
        test_mode: false,
    };
    let started = Instant::now();
    let problems = input.validate(recipients);
    assert!(problems.is_empty());
    let checked = started.elapsed().as_secs_f64();
    email_requests::accept(&db, "bench", &input, &Actor::new("bench"), |_| {})
        .await
        .expect("store the request");
    println!(
        "{recipients:>7} recipients checked in {checked:5.2} s and stored (one transaction) in {:5.2} s",
        started.elapsed().as_secs_f64() - checked
    );
    db.close().await;
    drop_database(admin, &name).await;
}
