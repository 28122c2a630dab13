//! `campaign-sync jobs …` and the queue metrics on `/metrics`.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use campaign_sync::queue::job::{JobError, Registry};
use campaign_sync::queue::{EnqueueOptions, Queue};
use serde_json::{Value, json};

use crate::helpers::{
    TestWorker, eventually, migrated_database, redis_conn, spawn_app_with, test_env,
    worker_settings,
};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-sync");

fn jobs(env: &HashMap<String, String>, args: &[&str]) -> Output {
    Command::new(BIN)
        .env_clear()
        .envs(env)
        .arg("jobs")
        .args(args)
        .output()
        .expect("run jobs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn jobs_run_enqueues_a_known_job_and_refuses_an_unknown_one_listing_the_valid_names() {
    let env = test_env("postgres://postgres@127.0.0.1:5432/unused");
    let unknown = jobs(&env, &["run", "sync_everything"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains(
            "unknown job \"sync_everything\"; valid names: deliver_outgoing_webhooks, deliver_slack_posts, diagnostics_probe, evaluate_alerts, process_email_queue, process_webhook_events, purge_expired_data, rollup_metrics, send_approval_reminders, sync_mailjet_stats, sync_mailjet_templates, sync_slack_users, update_slack_channels"
        ),
        "{}",
        stderr(&unknown)
    );
    let bad_args = jobs(&env, &["run", "diagnostics_probe", "--args", "{"]);
    assert_eq!(bad_args.status.code(), Some(2));
    let ok = jobs(
        &env,
        &["run", "diagnostics_probe", "--args", r#"{"tag":"cli"}"#],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).starts_with("enqueued diagnostics_probe on queue default as "));
    let queue = Queue::new(redis_conn().await, &env["REDIS_KEY_PREFIX"], "default");
    assert_eq!(queue.counts().await.expect("counts").waiting, 1);
}

#[tokio::test]
async fn jobs_list_shows_schedules_queues_and_counters() {
    let (db_url, _pool) = migrated_database().await;
    let env = test_env(&db_url);
    let queue = Queue::new(redis_conn().await, &env["REDIS_KEY_PREFIX"], "default");
    queue
        .enqueue(
            "diagnostics_probe",
            json!({"tag": "x"}),
            EnqueueOptions::default(),
        )
        .await
        .expect("enqueue");
    let out = jobs(&env, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    assert!(
        row("purge_expired_data")
            .is_some_and(|r| r.starts_with("purge_expired_data 0 30 3 * * * 20")),
        "{text}"
    );
    assert!(
        row("sync_slack_users").is_some_and(
            |r| r.starts_with("sync_slack_users 0 0 * * * * 20") && r.ends_with("never")
        ),
        "{text}"
    );
    assert!(
        row("send_approval_reminders")
            .is_some_and(|r| r.starts_with("send_approval_reminders 0 */15 * * * * ")
                && !r.contains("not in this build")
                && r.ends_with("never")),
        "{text}"
    );
    assert!(
        row("rollup_metrics").is_some_and(|r| r.starts_with("rollup_metrics 0 5 * * * * 20") && r.ends_with("never")),
        "every job of the product is in this build: {text}"
    );
    assert!(!text.contains("not in this build"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["default", "1", "0", "0", "0"]),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("diagnostics_probe") && l.split_whitespace().nth(1) == Some("1")), "{text}");
}

#[tokio::test]
async fn jobs_dead_lists_shows_retries_and_purges_dead_tasks() {
    let env = test_env("postgres://postgres@127.0.0.1:5432/unused");
    let queue = Queue::new(redis_conn().await, &env["REDIS_KEY_PREFIX"], "default");
    let mut registry = Registry::new();
    registry.register("diagnostics_probe", "default", |_ctx, _args: Value| async {
        Err(JobError::permanent("rejected by test"))
    });
    let worker = TestWorker::start(worker_settings(&env), registry);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            queue
                .enqueue(
                    "diagnostics_probe",
                    json!({ "tag": i }),
                    EnqueueOptions::default(),
                )
                .await
                .expect("enqueue")
                .id,
        );
    }
    eventually(Duration::from_secs(10), "three dead tasks", || async {
        queue.counts().await.map(|c| c.dead).unwrap_or(0) == 3
    })
    .await;
    worker.stop().await;

    let list = jobs(&env, &["dead", "list"]);
    assert!(list.status.success());
    let text = stdout(&list);
    for id in &ids {
        assert!(text.contains(id.as_str()), "{text}");
    }
    assert!(text.contains("rejected by test"));
    let show = jobs(&env, &["dead", "show", &ids[0]]);
    let shown: Value = serde_json::from_slice(&show.stdout).expect("json");
    assert_eq!(shown["reason"], "rejected by test");
    assert_eq!(shown["task"]["args"]["tag"], 0);
    assert_eq!(shown["queue"], "default");
    let died = shown["died"].as_str().expect("died as a time");
    assert!(
        chrono::DateTime::parse_from_rfc3339(died).is_ok() && died.ends_with('Z'),
        "{shown}"
    );
    assert!(
        shown["task"]["enqueued"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{shown}"
    );
    let missing = jobs(&env, &["dead", "show", "no-such-id"]);
    assert_eq!(missing.status.code(), Some(1));

    assert!(jobs(&env, &["dead", "retry", &ids[0]]).status.success());
    assert_eq!(
        jobs(&env, &["dead", "retry", &ids[0]]).status.code(),
        Some(1),
        "already re-driven"
    );
    let counts = queue.counts().await.expect("counts");
    assert_eq!((counts.dead, counts.waiting), (2, 1));
    let all = jobs(&env, &["dead", "retry", "--all"]);
    assert!(
        stdout(&all).contains("sent 2 dead tasks back"),
        "{}",
        stdout(&all)
    );
    assert_eq!(queue.counts().await.expect("counts").waiting, 3);

    let worker = TestWorker::start(worker_settings(&env), {
        let mut r = Registry::new();
        r.register("diagnostics_probe", "default", |_ctx, _args: Value| async {
            Err(JobError::permanent("again"))
        });
        r
    });
    eventually(Duration::from_secs(10), "three dead again", || async {
        queue.counts().await.map(|c| c.dead).unwrap_or(0) == 3
    })
    .await;
    worker.stop().await;
    let purge = jobs(&env, &["dead", "purge"]);
    assert!(
        stdout(&purge).contains("deleted 3 dead tasks"),
        "{}",
        stdout(&purge)
    );
    assert_eq!(queue.counts().await.expect("counts").dead, 0);
}

#[tokio::test]
async fn metrics_show_queue_sizes_job_totals_and_every_workers_own_metrics() {
    let (db_url, pool) = migrated_database().await;
    let app = spawn_app_with(db_url.clone(), pool, |_| {}).await;
    let mut worker_env = test_env(&db_url);
    worker_env.insert("REDIS_KEY_PREFIX".into(), app.redis_prefix.clone());
    worker_env.insert("LOG_LEVEL".into(), "warn".into());
    for job in campaign_sync::jobs::schedulable() {
        worker_env.insert(
            format!("SCHEDULE_{}", job.name.to_uppercase()),
            "off".into(),
        );
    }
    // A worker process of its own: its metrics reach /metrics only through Redis, labelled
    // with its process (a worker inside the web's process is counted there once, unlabelled).
    let worker = crate::chaos::WorkerProcess::spawn(&worker_env);
    let queue = Queue::new(redis_conn().await, &app.redis_prefix, "default");
    queue
        .enqueue(
            "diagnostics_probe",
            json!({"tag": "m"}),
            EnqueueOptions::default(),
        )
        .await
        .expect("enqueue");
    queue
        .enqueue(
            "diagnostics_probe",
            json!({"tag": "m", "sleep_ms": 60_000}),
            EnqueueOptions::default(),
        )
        .await
        .expect("enqueue");
    let scrape = || app.metrics();
    eventually(Duration::from_secs(60), "worker metrics to be published", || async {
        let text = scrape().await;
        text.contains("queue_jobs_total{queue=\"default\",job=\"diagnostics_probe\",outcome=\"succeeded\"} 1")
            && text.contains("job_duration_seconds_bucket{process=")
    })
    .await;
    let text = scrape().await;
    assert!(
        text.contains("queue_tasks{queue=\"default\",state=\"in_flight\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("queue_tasks{queue=\"default\",state=\"dead\"} 0"),
        "{text}"
    );
    assert!(text.contains("jobs_started_total{process="), "{text}");
    assert_eq!(
        text.matches("# TYPE job_duration_seconds histogram")
            .count(),
        1,
        "{text}"
    );
    drop(worker);
}
