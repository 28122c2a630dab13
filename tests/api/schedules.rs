//! The scheduler's guarantees: a missed tick is caught up once, a run never overlaps the
//! previous one, and a huge backlog of due tasks drains.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use campaign_sync::config::Schedule;
use campaign_sync::jobs::support::runs::{self, RunSummary};
use campaign_sync::queue::job::{JobError, Registry};
use campaign_sync::queue::{EnqueueOptions, Queue};
use campaign_sync::scheduler::Scheduler;
use serde_json::{Value, json};

use crate::helpers::{
    TestWorker, eventually, migrated_database, redis_conn, stream_len, test_env, worker_settings,
};

fn schedule(expression: &str) -> Schedule {
    Schedule {
        expression: expression.to_owned(),
        cron: Some(cron::Schedule::from_str(expression).expect("cron")),
    }
}

fn noop_registry(job: &str) -> Registry {
    let mut registry = Registry::new();
    registry.register(job, "default", |_ctx, _args: Value| async { Ok(()) });
    registry
}

#[tokio::test]
async fn a_tick_missed_while_every_worker_was_down_is_caught_up_exactly_once() {
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let conn = redis_conn().await;
    let queue = Queue::new(conn.clone(), &prefix, "default");
    let queues = BTreeMap::from([("default".to_owned(), queue.clone())]);
    let schedules = BTreeMap::from([("sync_slack_users".to_owned(), schedule("0 0 * * * *"))]);
    let registry = noop_registry("sync_slack_users");
    // The last tick enqueued was three hours ago: two or three hourly ticks were missed.
    let three_hours_ago = chrono::Utc::now() - chrono::Duration::hours(3);
    let mut c = conn.clone();
    let _: () = redis::cmd("SET")
        .arg(queue.keys().schedule("sync_slack_users"))
        .arg(three_hours_ago.timestamp_millis())
        .query_async(&mut c)
        .await
        .expect("set");
    // Three workers start at once.
    let mut schedulers: Vec<Scheduler> = (0..3)
        .map(|_| Scheduler::new(&schedules, &registry, &queues))
        .collect();
    let (a, rest) = schedulers.split_at_mut(1);
    let (b, c3) = rest.split_at_mut(1);
    let (ra, rb, rc) = tokio::join!(a[0].catch_up(), b[0].catch_up(), c3[0].catch_up());
    ra.and(rb).and(rc).expect("catch up");
    let counts = queue.counts().await.expect("counts");
    assert_eq!(
        counts.waiting, 1,
        "one catch-up tick, not one per missed tick or per worker"
    );
    // A later pass before the next tick enqueues nothing more.
    for scheduler in &mut schedulers {
        scheduler.pass().await.expect("pass");
    }
    assert_eq!(queue.counts().await.expect("counts").waiting, 1);
}

#[tokio::test]
async fn a_first_start_schedules_from_now_without_a_catch_up() {
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let queue = Queue::new(redis_conn().await, &prefix, "default");
    let queues = BTreeMap::from([("default".to_owned(), queue.clone())]);
    let schedules = BTreeMap::from([("sync_slack_users".to_owned(), schedule("0 0 * * * *"))]);
    let mut scheduler = Scheduler::new(&schedules, &noop_registry("sync_slack_users"), &queues);
    scheduler.catch_up().await.expect("catch up");
    scheduler.pass().await.expect("pass");
    assert_eq!(queue.counts().await.expect("counts").waiting, 0);
}

#[tokio::test]
async fn a_run_that_outlasts_its_interval_is_never_overlapped_and_the_tick_is_recorded_skipped() {
    let (db_url, pool) = migrated_database().await;
    let mut env = test_env(&db_url);
    env.insert("SCHEDULE_SYNC_SLACK_USERS".into(), "* * * * * *".into());
    let mut registry = Registry::new();
    registry.register(
        "sync_slack_users",
        "default",
        |ctx, _args: Value| async move {
            runs::recorded(ctx, "sync_slack_users", |_ctx, _run| async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                Ok::<_, JobError>(RunSummary::default())
            })
            .await
        },
    );
    let worker = TestWorker::start(worker_settings(&env), registry);
    let count = |status: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM sync_runs WHERE job = 'sync_slack_users' AND status = $1",
            )
            .bind(status)
            .fetch_one(&pool)
            .await
            .expect("count")
        }
    };
    eventually(
        Duration::from_secs(20),
        "a finished run and skipped ticks",
        || async { count("succeeded").await >= 1 && count("skipped").await >= 2 },
    )
    .await;
    worker.stop().await;
    // No two runs overlapped: each run started after the previous one finished.
    let runs: Vec<(chrono::DateTime<chrono::Utc>, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        "SELECT started_at, finished_at FROM sync_runs WHERE job = 'sync_slack_users' AND status <> 'skipped' ORDER BY started_at",
    )
    .fetch_all(&pool)
    .await
    .expect("runs");
    for pair in runs.windows(2) {
        let previous_end = pair[0].1.expect("a later run exists, so this one finished");
        assert!(pair[1].0 >= previous_end, "runs overlapped: {runs:?}");
    }
    let skipped_reason: String =
        sqlx::query_scalar("SELECT error FROM sync_runs WHERE status = 'skipped' LIMIT 1")
            .fetch_one(&pool)
            .await
            .expect("reason");
    assert_eq!(skipped_reason, "the previous run is still running");
}

#[tokio::test]
async fn a_run_left_running_by_a_dead_worker_does_not_block_the_next_one_forever() {
    let (db_url, pool) = migrated_database().await;
    sqlx::query("INSERT INTO sync_runs (job, trigger, heartbeat_at) VALUES ('sync_slack_users', 'manual', now() - interval '10 minutes')")
        .execute(&pool)
        .await
        .expect("stale run");
    let env = test_env(&db_url);
    let mut registry = Registry::new();
    registry.register(
        "sync_slack_users",
        "default",
        |ctx, _args: Value| async move {
            runs::recorded(ctx, "sync_slack_users", |_ctx, _run| async {
                Ok::<_, JobError>(RunSummary {
                    items_synced: 7,
                    ..Default::default()
                })
            })
            .await
        },
    );
    let worker = TestWorker::start(worker_settings(&env), registry);
    let queue = Queue::new(redis_conn().await, &env["REDIS_KEY_PREFIX"], "default");
    queue
        .enqueue("sync_slack_users", json!(null), EnqueueOptions::default())
        .await
        .expect("enqueue");
    eventually(
        Duration::from_secs(10),
        "the new run to succeed",
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM sync_runs WHERE status = 'succeeded' AND items_synced = 7",
            )
            .fetch_one(&pool)
            .await
            .map(|n| n == 1)
            .unwrap_or(false)
        },
    )
    .await;
    worker.stop().await;
    let stale_error: String =
        sqlx::query_scalar("SELECT error FROM sync_runs WHERE status = 'failed'")
            .fetch_one(&pool)
            .await
            .expect("stale run failed");
    assert!(stale_error.contains("no heartbeat"), "{stale_error}");
}

#[tokio::test]
async fn a_backlog_of_200000_due_tasks_drains_without_error() {
    let mut env = test_env("postgres://postgres@127.0.0.1:5432/unused");
    env.insert("WORKER_CONCURRENCY".into(), "200".into());
    let queue = Queue::new(redis_conn().await, &env["REDIS_KEY_PREFIX"], "default");
    // All 200,000 are delayed tasks that are already due: the worst case for promotion.
    let tasks: Vec<(String, Value)> = (0..200_000)
        .map(|i| ("noop".to_owned(), json!(i)))
        .collect();
    let options = EnqueueOptions {
        delay: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    queue
        .enqueue_bulk(&tasks, &options)
        .await
        .expect("bulk enqueue");
    drop(tasks);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(queue.counts().await.expect("counts").delayed, 200_000);
    let worker = TestWorker::start(worker_settings(&env), noop_registry("noop"));
    eventually(Duration::from_secs(240), "the backlog to drain", || async {
        queue
            .counts()
            .await
            .ok()
            .and_then(|c| c.counters.get("succeeded").copied())
            == Some(200_000)
    })
    .await;
    worker.stop().await;
    let counts = queue.counts().await.expect("counts");
    assert_eq!(
        (
            counts.waiting,
            counts.in_flight,
            counts.delayed,
            counts.dead
        ),
        (0, 0, 0, 0)
    );
    let len = stream_len(&queue).await;
    assert_eq!(len, 0);
}
