//! Each Slack message exactly once, with workers killed (-9) mid-delivery: 1,000 notifications
//! across 50 channels, two worker processes of the binary, one killed and restarted every few
//! seconds while Slack answers slowly (so posts are in flight when the kill lands). Counted
//! from the sandbox's record of what was posted: every notification once, none lost, none
//! twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::chaos::WorkerProcess;
use crate::slack_workflows::{recorded, world_with};

const NOTIFICATIONS: usize = 1_000;
const CHANNELS: usize = 50;

#[tokio::test]
async fn killed_workers_neither_lose_nor_repeat_a_slack_message() {
    let w = world_with(80, |env| {
        env.insert("UPSTREAM_TIMEOUT_SECS".into(), "2".into());
        env.insert("WORKER_LEASE_SECS".into(), "5".into());
    })
    .await;
    // The in-process worker of the world stays out of it: separate processes do the work.
    w.worker.stop().await;
    let channels: Vec<String> = w.channels.iter().take(CHANNELS).cloned().collect();
    assert_eq!(channels.len(), CHANNELS, "the sandbox has enough channels");
    let (status, _) = w
        .app
        .put_json(
            "/api/campaigns/bulk",
            &json!({ "name": "Bulk", "status": "active" }),
        )
        .await;
    assert_eq!(status, 201);
    let client = &w.app.client;
    for i in 0..NOTIFICATIONS {
        let body = json!({ "type": "milestone_reached", "campaignId": "bulk", "campaignName": "Bulk",
            "channelId": channels[i % CHANNELS], "message": format!("milestone {i}") });
        let r = client
            .post(w.app.url("/api/notifications"))
            .bearer_auth(&w.app.env["API_TOKEN"])
            .header("idempotency-key", format!("bulk-{i}"))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 202);
    }
    // Slow answers, so a kill lands while posts are in flight; and 3 % of answers lost after
    // the message was posted, so some posts are ambiguous without any kill.
    reqwest::Client::new()
        .post(format!("{}/_sandbox/faults", w.sandbox.base_url()))
        .json(&json!({ "endpoint": "slack.chat.postMessage", "latency_ms": 150, "jitter_ms": 100, "drop_after_rate": 0.03 }))
        .send()
        .await
        .expect("fault");
    let mut env = w.app.env.clone();
    env.insert("LOG_LEVEL".into(), "info".into());
    let mut a = WorkerProcess::spawn(&env);
    let mut b = WorkerProcess::spawn(&env);
    let started = Instant::now();
    let mut kills = 0;
    while kills < 6 {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        if kills % 2 == 0 {
            a.kill_9();
            a = WorkerProcess::spawn(&env);
        } else {
            b.kill_9();
            b = WorkerProcess::spawn(&env);
        }
        kills += 1;
    }
    let sent = wait_all_sent(&w.app.db, started).await;
    let rec = recorded(&w.sandbox).await;
    let mut per_post: HashMap<String, usize> = HashMap::new();
    for m in rec["messages"].as_array().into_iter().flatten() {
        if let Some(id) = m
            .pointer("/metadata/event_payload/post_id")
            .and_then(Value::as_str)
        {
            *per_post.entry(id.to_owned()).or_default() += 1;
        }
    }
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM slack_posts WHERE notification_id IS NOT NULL AND campaign_id = 'bulk'",
    )
    .fetch_all(&w.app.db)
    .await
    .expect("ids");
    let lost = ids.iter().filter(|id| !per_post.contains_key(*id)).count();
    let twice: Vec<(&String, &usize)> = per_post.iter().filter(|(_, n)| **n > 1).collect();
    let reconciled: (i64, i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum((counts->>'found_in_history')::bigint), 0)::bigint, coalesce(sum((counts->>'reposted')::bigint), 0)::bigint,
                coalesce(sum((counts->>'handed_on')::bigint), 0)::bigint
         FROM sync_runs WHERE job = 'deliver_slack_posts'",
    )
    .fetch_one(&w.app.db)
    .await
    .expect("runs");
    println!(
        "{NOTIFICATIONS} notifications, {CHANNELS} channels, {kills} kill -9: all sent in {:.1} s; lost {lost}, twice {}; posts whose call had begun: found in Slack's history {}, not found and posted again {}; claimed but not begun, handed on {}",
        sent.as_secs_f64(),
        twice.len(),
        reconciled.0,
        reconciled.1,
        reconciled.2
    );
    assert_eq!(ids.len(), NOTIFICATIONS);
    assert_eq!(lost, 0, "every notification reached Slack");
    assert!(twice.is_empty(), "posted twice: {twice:?}\n{}", a.log());
}

/// Waits until every notification post is `sent`; how long it took.
async fn wait_all_sent(db: &sqlx::PgPool, started: Instant) -> Duration {
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM slack_posts WHERE notification_id IS NOT NULL AND status <> 'sent'",
        )
        .fetch_one(db)
        .await
        .expect("count");
        if left == 0 {
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(240) {
            let rows: Vec<(String, i32, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT status, attempts, reason, slack_channel FROM slack_posts WHERE notification_id IS NOT NULL AND status <> 'sent'",
            )
            .fetch_all(db)
            .await
            .expect("rows");
            panic!("{left} notifications not sent after 4 minutes: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
