//! The queue against a real Redis, with workers running in the test's runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use campaign_sync::queue::job::{JobError, Registry};
use campaign_sync::queue::{EnqueueOptions, Queue, dead};
use serde_json::{Value, json};

use crate::helpers::{TestWorker, eventually, redis_conn, stream_len, test_env, worker_settings};

const SECS_10: Duration = Duration::from_secs(10);

fn env() -> HashMap<String, String> {
    // Pure queue tests never reach Postgres (the pool connects lazily).
    test_env("postgres://postgres@127.0.0.1:5432/unused")
}

async fn queue_for(env: &HashMap<String, String>) -> Queue {
    Queue::new(redis_conn().await, &env["REDIS_KEY_PREFIX"], "default")
}

/// Enqueues `job` now; returns the task id.
async fn push(queue: &Queue, job: &str, args: Value) -> String {
    queue
        .enqueue(job, args, EnqueueOptions::default())
        .await
        .expect("enqueue")
        .id
}

async fn counter(queue: &Queue, name: &str) -> u64 {
    queue
        .counts()
        .await
        .expect("counts")
        .counters
        .get(name)
        .copied()
        .unwrap_or(0)
}

/// A registry with one job, `job`, that counts its runs and answers with `answer(run)`.
fn counting_registry<F>(runs: Arc<AtomicUsize>, answer: F) -> Registry
where
    F: Fn(usize) -> Result<(), JobError> + Send + Sync + Clone + 'static,
{
    let mut registry = Registry::new();
    let spec = registry.register("job", "default", move |_ctx, _args: Value| {
        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = answer.clone();
        async move { answer(run) }
    });
    spec.max_attempts = 3;
    spec.backoff_base = Duration::from_millis(50);
    spec.backoff_max = Duration::from_millis(100);
    registry
}

#[tokio::test]
async fn a_task_runs_once_and_leaves_nothing_behind() {
    let env = env();
    let queue = queue_for(&env).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let worker = TestWorker::start(
        worker_settings(&env),
        counting_registry(runs.clone(), |_| Ok(())),
    );
    push(&queue, "job", json!({"id": 1})).await;
    eventually(SECS_10, "the task to succeed", || async {
        counter(&queue, "succeeded").await == 1
    })
    .await;
    worker.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
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
    assert_eq!(len, 0, "a finished task's entry is deleted");
}

#[tokio::test]
async fn a_second_enqueue_with_the_same_key_returns_the_first_id_and_adds_nothing() {
    let queue = queue_for(&env()).await;
    let options = EnqueueOptions {
        unique_key: Some("request-42".into()),
        unique_ttl: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let first = queue
        .enqueue("job", json!(1), options.clone())
        .await
        .expect("first");
    let second = queue
        .enqueue("job", json!(2), options)
        .await
        .expect("second");
    assert!(first.created && !second.created);
    assert_eq!(first.id, second.id);
    assert_eq!(queue.counts().await.expect("counts").waiting, 1);
    assert_eq!(counter(&queue, "enqueued").await, 1);
}

#[tokio::test]
async fn an_idempotency_key_expires_with_its_ttl() {
    let queue = queue_for(&env()).await;
    let options = EnqueueOptions {
        unique_key: Some("short".into()),
        unique_ttl: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let first = queue
        .enqueue("job", json!(1), options.clone())
        .await
        .expect("first");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = queue
        .enqueue("job", json!(1), options)
        .await
        .expect("second");
    assert!(second.created);
    assert_ne!(first.id, second.id);
}

#[tokio::test]
async fn a_failing_task_is_retried_with_backoff_then_dead_lettered_with_its_reason() {
    let env = env();
    let queue = queue_for(&env).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = counting_registry(runs.clone(), |run| {
        Err(JobError::retry(format!("boom {run}")))
    });
    let worker = TestWorker::start(worker_settings(&env), registry);
    let task = push(&queue, "job", json!(null)).await;
    eventually(SECS_10, "the task to die", || async {
        counter(&queue, "dead").await == 1
    })
    .await;
    worker.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 3, "max_attempts is 3");
    assert_eq!(counter(&queue, "retried").await, 2);
    let record = dead::get(&queue, &task)
        .await
        .expect("get")
        .expect("dead task");
    assert_eq!(record.attempts, 3);
    assert!(
        record.reason.contains("failed 3 of 3 attempts") && record.reason.contains("boom 3"),
        "{}",
        record.reason
    );
}

#[tokio::test]
async fn a_rate_limited_task_waits_without_spending_attempts() {
    let env = env();
    let queue = queue_for(&env).await;
    let runs = Arc::new(AtomicUsize::new(0));
    // Five rate-limit answers, more than max_attempts (3), then success.
    let registry = counting_registry(runs.clone(), |run| {
        if run <= 5 {
            Err(JobError::RetryAfter(Duration::from_millis(50)))
        } else {
            Ok(())
        }
    });
    let worker = TestWorker::start(worker_settings(&env), registry);
    push(&queue, "job", json!(null)).await;
    eventually(SECS_10, "the task to succeed", || async {
        counter(&queue, "succeeded").await == 1
    })
    .await;
    worker.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 6);
    assert_eq!(counter(&queue, "rescheduled").await, 5);
    assert_eq!(counter(&queue, "dead").await, 0);
}

#[tokio::test]
async fn a_permanent_failure_goes_straight_to_the_dead_letters() {
    let env = env();
    let queue = queue_for(&env).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let registry = counting_registry(runs.clone(), |_| {
        Err(JobError::permanent("invalid address"))
    });
    let worker = TestWorker::start(worker_settings(&env), registry);
    let task = push(&queue, "job", json!(null)).await;
    eventually(SECS_10, "the task to die", || async {
        counter(&queue, "dead").await == 1
    })
    .await;
    worker.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let record = dead::get(&queue, &task).await.expect("get").expect("dead");
    assert_eq!(record.reason, "invalid address");
}

#[tokio::test]
async fn a_panicking_or_slow_job_fails_its_attempt_and_the_worker_carries_on() {
    let env = env();
    let queue = queue_for(&env).await;
    let mut registry = Registry::new();
    let panics = registry.register("panics", "default", |_ctx, _args: Value| async {
        panic!("bug in a handler")
    });
    panics.max_attempts = 1;
    let slow = registry.register("slow", "default", |_ctx, _args: Value| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    });
    slow.max_attempts = 1;
    slow.timeout = Duration::from_millis(200);
    registry.register("fine", "default", |_ctx, _args: Value| async { Ok(()) });
    let worker = TestWorker::start(worker_settings(&env), registry);
    let panicked = push(&queue, "panics", json!(null)).await;
    let timed_out = push(&queue, "slow", json!(null)).await;
    push(&queue, "fine", json!(null)).await;
    eventually(SECS_10, "all three to settle", || async {
        counter(&queue, "dead").await == 2 && counter(&queue, "succeeded").await == 1
    })
    .await;
    worker.stop().await;
    let reason = dead::get(&queue, &panicked)
        .await
        .expect("get")
        .expect("dead")
        .reason;
    assert!(reason.contains("panicked: bug in a handler"), "{reason}");
    let reason = dead::get(&queue, &timed_out)
        .await
        .expect("get")
        .expect("dead")
        .reason;
    assert!(reason.contains("timed out"), "{reason}");
}

#[tokio::test]
async fn poison_payloads_go_to_the_dead_letters_and_the_worker_keeps_going() {
    let env = env();
    let queue = queue_for(&env).await;
    let mut conn = redis_conn().await;
    let stream = queue.keys().stream();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("t")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .expect("xadd");
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("other")
        .arg("field")
        .query_async(&mut conn)
        .await
        .expect("xadd");
    let unknown = push(&queue, "no_such_job", json!(null)).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let worker = TestWorker::start(
        worker_settings(&env),
        counting_registry(runs.clone(), |_| Ok(())),
    );
    push(&queue, "job", json!(null)).await;
    eventually(SECS_10, "the good task to run", || async {
        counter(&queue, "succeeded").await == 1
    })
    .await;
    eventually(SECS_10, "three dead letters", || async {
        counter(&queue, "dead").await == 3
    })
    .await;
    worker.stop().await;
    let dead = dead::list(&queue, 0, 10).await.expect("list");
    assert!(
        dead.iter()
            .filter(|d| d.reason.starts_with("undecodable payload"))
            .count()
            == 2,
        "{dead:#?}"
    );
    let unknown = dead
        .iter()
        .find(|d| d.id == unknown)
        .expect("unknown job dead");
    assert_eq!(unknown.reason, "unknown job type \"no_such_job\"");
}

#[tokio::test]
async fn dead_letters_can_be_listed_shown_redriven_and_purged() {
    let env = env();
    let queue = queue_for(&env).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let fail_first_three = |run: usize| {
        if run <= 3 {
            Err(JobError::permanent(format!("nope {run}")))
        } else {
            Ok(())
        }
    };
    let worker = TestWorker::start(
        worker_settings(&env),
        counting_registry(runs.clone(), fail_first_three),
    );
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(push(&queue, "job", json!(i)).await);
    }
    eventually(SECS_10, "three dead", || async {
        counter(&queue, "dead").await == 3
    })
    .await;
    let listed = dead::list(&queue, 0, 10).await.expect("list");
    assert_eq!(listed.len(), 3);
    assert!(
        listed.windows(2).all(|w| w[0].died_at >= w[1].died_at),
        "newest first"
    );
    assert!(dead::retry(&queue, &ids[0]).await.expect("retry one"));
    assert!(
        !dead::retry(&queue, &ids[0])
            .await
            .expect("second retry finds nothing")
    );
    eventually(SECS_10, "the re-driven task to succeed", || async {
        counter(&queue, "succeeded").await == 1
    })
    .await;
    assert_eq!(dead::retry_all(&queue).await.expect("retry all"), 2);
    eventually(SECS_10, "all to succeed", || async {
        counter(&queue, "succeeded").await == 3
    })
    .await;
    worker.stop().await;
    assert_eq!(queue.counts().await.expect("counts").dead, 0);
    // Purge: bury two by hand (a poison entry) and purge them.
    let mut conn = redis_conn().await;
    for _ in 0..2 {
        let _: String = redis::cmd("XADD")
            .arg(queue.keys().stream())
            .arg("*")
            .arg("t")
            .arg("junk")
            .query_async(&mut conn)
            .await
            .expect("xadd");
    }
    let worker = TestWorker::start(
        worker_settings(&env),
        counting_registry(runs.clone(), |_| Ok(())),
    );
    eventually(SECS_10, "two poison entries buried", || async {
        queue.counts().await.map(|c| c.dead).unwrap_or(0) == 2
    })
    .await;
    worker.stop().await;
    assert_eq!(dead::purge(&queue).await.expect("purge"), 2);
    assert!(dead::list(&queue, 0, 10).await.expect("list").is_empty());
}

#[tokio::test]
async fn a_retry_waits_in_redis_and_survives_a_worker_restart() {
    let env = env();
    let queue = queue_for(&env).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let spec_backoff = Duration::from_millis(1500);
    {
        let spec = registry.register("job", "default", {
            let runs = runs.clone();
            move |_ctx, _args: Value| {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if run == 1 {
                        Err(JobError::retry("first try fails"))
                    } else {
                        Ok(())
                    }
                }
            }
        });
        spec.backoff_base = spec_backoff;
        spec.backoff_max = spec_backoff;
    }
    let worker = TestWorker::start(worker_settings(&env), registry.clone());
    push(&queue, "job", json!(null)).await;
    eventually(SECS_10, "the first failure", || async {
        counter(&queue, "retried").await == 1
    })
    .await;
    worker.stop().await;
    let counts = queue.counts().await.expect("counts");
    assert_eq!(
        (counts.delayed, counts.waiting, counts.in_flight),
        (1, 0, 0),
        "the retry is held in Redis"
    );
    let worker = TestWorker::start(worker_settings(&env), registry);
    eventually(SECS_10, "the retry to succeed", || async {
        counter(&queue, "succeeded").await == 1
    })
    .await;
    worker.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn delayed_tasks_run_no_earlier_than_their_time() {
    let env = env();
    let queue = queue_for(&env).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let worker = TestWorker::start(
        worker_settings(&env),
        counting_registry(runs.clone(), |_| Ok(())),
    );
    let options = EnqueueOptions {
        delay: Some(Duration::from_millis(800)),
        ..Default::default()
    };
    let enqueued_at = std::time::Instant::now();
    queue
        .enqueue("job", json!(null), options)
        .await
        .expect("enqueue");
    assert_eq!(queue.counts().await.expect("counts").delayed, 1);
    eventually(SECS_10, "the delayed task to run", || async {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(enqueued_at.elapsed() >= Duration::from_millis(800));
    worker.stop().await;
}

#[tokio::test]
async fn bulk_enqueue_keeps_order_and_counts() {
    let env = env();
    let queue = queue_for(&env).await;
    let tasks: Vec<(String, Value)> = (0..2500).map(|i| ("job".to_owned(), json!(i))).collect();
    let ids = queue
        .enqueue_bulk(&tasks, &EnqueueOptions::default())
        .await
        .expect("bulk");
    assert_eq!(ids.len(), 2500);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "UUIDv7 ids follow enqueue order");
    assert_eq!(queue.counts().await.expect("counts").waiting, 2500);
    let unique = EnqueueOptions {
        unique_key: Some("k".into()),
        ..Default::default()
    };
    assert!(
        queue.enqueue_bulk(&tasks[..1], &unique).await.is_err(),
        "one key cannot cover a batch"
    );
}
