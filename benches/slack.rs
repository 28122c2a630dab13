//! Slack delivery benchmark: `cargo bench --bench slack` (Postgres at BENCH_DATABASE_URL,
//! default postgres://postgres@127.0.0.1:5432/postgres, where a scratch database is created
//! and dropped; Redis at BENCH_REDIS_URL under a fresh prefix). The sandbox runs as its own
//! process, with Slack's ≈1 message per second per channel.
//!
//! 1,000 notifications across 50 channels (20 each), stored through the same code as
//! `POST /api/notifications`: the time until every one is `sent` (the physical limit is
//! 20 messages at 1/s per channel, so ≈ 20 s), notifications per minute, the 429s Slack
//! answered (target 0), the messages Slack holds per notification (target exactly 1), and the
//! worker's peak RSS (VmHWM of this process, reset before the run).

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use campaign_sync::jobs::support::workflow;
use campaign_sync::store::audit::Actor;
use campaign_sync::store::notifications::NotificationInput;
use common::{
    Worker, control, drop_database, peak_rss_mib, redis, requests_to, reset_peak_rss, sandbox,
    sandbox_worker_settings, scratch_database,
};
use serde_json::Value;

const NOTIFICATIONS: usize = 1_000;
const CHANNELS: usize = 50;

async fn channel_ids(base: &str) -> Vec<String> {
    let listed: Value = reqwest::Client::new()
        .post(format!("{base}/api/conversations.list"))
        .bearer_auth("sandbox-bot-token")
        .form(&[("limit", "200")])
        .send()
        .await
        .expect("conversations.list")
        .json()
        .await
        .expect("json");
    let mut ids: Vec<String> = listed["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["is_archived"] == false)
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.truncate(CHANNELS);
    assert_eq!(
        ids.len(),
        CHANNELS,
        "the sandbox has {CHANNELS} open channels"
    );
    ids
}

#[tokio::main]
async fn main() {
    let admin = common::admin_url();
    let redis_url = common::redis_url();
    let sandbox = sandbox(&["--campaigns", "1", "--users", "20", "--channels", "80"]).await;
    let channels = channel_ids(&sandbox.base).await;
    let (name, db_url, db) = scratch_database(&admin).await;
    sqlx::query(
        "INSERT INTO campaigns (id, name, announced_status) VALUES ('bench', 'Bench', 'draft')",
    )
    .execute(&db)
    .await
    .expect("campaign");
    let stored = Instant::now();
    for i in 0..NOTIFICATIONS {
        let input = NotificationInput {
            kind: "milestone_reached".to_owned(),
            campaign_id: "bench".to_owned(),
            campaign_name: "Bench".to_owned(),
            channel_id: Some(channels[i % CHANNELS].clone()),
            user_id: None,
            message: format!("milestone {i}"),
            attachments: Vec::new(),
            actions: Vec::new(),
        };
        workflow::accept_notification(&db, &format!("bench-{i}"), &input, &Actor::new("bench"))
            .await
            .expect("stored");
    }
    let store_secs = stored.elapsed().as_secs_f64();
    let prefix = format!("bench:{}", uuid::Uuid::new_v4().simple());
    let settings = sandbox_worker_settings(&sandbox, &db_url, &redis_url, &prefix, &[]);
    let (before, limited_before) = requests_to(&sandbox.base, "slack.chat.postMessage").await;
    reset_peak_rss();
    let started = Instant::now();
    let worker = Worker::start(settings, campaign_sync::jobs::builtin());
    campaign_sync::jobs::deliver_slack_posts::kick(
        redis(&redis_url).await,
        &prefix,
        None,
        "manual",
    )
    .await
    .expect("kick");
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM slack_posts WHERE kind = 'notification' AND status <> 'sent'",
        )
        .fetch_one(&db)
        .await
        .expect("poll");
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not delivered in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    let (calls, limited) = requests_to(&sandbox.base, "slack.chat.postMessage").await;
    let recorded = control(
        &sandbox.base,
        reqwest::Method::GET,
        "/_sandbox/slack/messages",
        None,
    )
    .await;
    let mut per_post = std::collections::HashMap::<String, usize>::new();
    for m in recorded["messages"].as_array().into_iter().flatten() {
        if let Some(id) = m
            .pointer("/metadata/event_payload/post_id")
            .and_then(Value::as_str)
        {
            *per_post.entry(id.to_owned()).or_default() += 1;
        }
    }
    let twice = per_post.values().filter(|n| **n > 1).count();
    println!(
        "{NOTIFICATIONS} notifications across {CHANNELS} channels: stored in {store_secs:.2} s; all sent in {wall:.2} s = {:.0} notifications/min; chat.postMessage calls {} ({} answered 429); messages in Slack {} for {} posts, {twice} twice; worker peak RSS {peak:.1} MiB",
        NOTIFICATIONS as f64 / wall * 60.0,
        calls - before,
        limited - limited_before,
        per_post.values().sum::<usize>(),
        per_post.len(),
    );
    worker.stop().await;
    db.close().await;
    drop_database(&admin, &name).await;
}
