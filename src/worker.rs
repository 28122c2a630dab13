//! The worker process: one apalis worker per queue over the Redis backend, lease heartbeats,
//! the scheduler, queue metrics, and a graceful stop that hands unfinished tasks back.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use apalis::layers::WorkerBuilderExt;
use apalis::prelude::{Monitor, WorkerBuilder};
use tokio::sync::watch;

use crate::config::Settings;
use crate::queue::Queue;
use crate::queue::backend::{Dispatcher, RedisBackend};
use crate::queue::consumer::{Consumer, ConsumerConfig};
use crate::queue::job::{JobDeps, Registry};
use crate::scheduler::Scheduler;
use crate::{redis_conn, store};

/// A name unique to this process in every consumer group: the dyno (Heroku's `DYNO`) or host,
/// and a random suffix so a restarted process never inherits a dead one's tasks by name.
pub fn consumer_name() -> String {
    let host = std::env::var("DYNO")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "worker".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

/// The queues of `registry`, each as a producer handle.
pub fn queues(
    settings: &Settings,
    conn: &redis::aio::ConnectionManager,
    registry: &Registry,
) -> BTreeMap<String, Queue> {
    registry
        .queues()
        .into_iter()
        .map(|name| {
            let queue = Queue::new(conn.clone(), &settings.redis.key_prefix, &name);
            (name, queue)
        })
        .collect()
}

/// Runs every job type of `registry` and every schedule until `shutdown` completes.
pub async fn run(
    settings: Settings,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let registry = Arc::new(registry);
    let db = store::pool(&settings.database, "worker")?;
    let conn = redis_conn::connection(&settings.redis)?;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let deps = Arc::new(JobDeps {
        db,
        redis: conn.clone(),
        prefix: settings.redis.key_prefix.clone(),
        settings: settings.clone(),
        stopping,
    });
    let queues = queues(&settings, &conn, &registry);
    let name = consumer_name();
    let consumers = consumers(&settings, &queues, &name).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let background = background(
        &settings, &registry, &deps, &queues, &consumers, &name, &stop_rx,
    );

    let mut monitor = Monitor::new().shutdown_timeout(settings.worker.shutdown_timeout);
    for consumer in &consumers {
        let concurrency = settings
            .worker
            .concurrency_of(consumer.queue().keys().name());
        let consumer = consumer.clone();
        let registry = registry.clone();
        let deps = deps.clone();
        monitor = monitor.register(move |_| {
            let backend = RedisBackend::new(consumer.clone(), registry.clone(), concurrency);
            WorkerBuilder::new(consumer.queue().keys().name())
                .backend(backend)
                .concurrency(concurrency)
                .build(Dispatcher::new(registry.clone(), deps.clone()))
        });
    }
    tracing::info!("worker started");
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested; finishing running tasks");
        let _ = stopping_tx.send(true);
        Ok::<(), std::io::Error>(())
    };
    let result = monitor.run_with_signal(signal).await;
    let _ = stop_tx.send(true);
    hand_back(&consumers).await;
    for task in background {
        task.abort();
    }
    result.context("the worker monitor failed")?;
    tracing::info!("worker stopped");
    Ok(())
}

/// One consumer per queue, each reading with blocking calls on a connection of its own, once
/// its consumer group exists.
async fn consumers(
    settings: &Settings,
    queues: &BTreeMap<String, Queue>,
    name: &str,
) -> anyhow::Result<Vec<Consumer>> {
    let config = ConsumerConfig {
        lease: settings.worker.lease,
        ..ConsumerConfig::default()
    };
    let mut consumers = Vec::new();
    for (queue_name, queue) in queues {
        let fetch_conn = redis_conn::connection(&settings.redis)?;
        let consumer = Consumer::new(queue.clone(), fetch_conn, name, config.clone());
        wait_for_group(&consumer).await;
        tracing::info!(queue = queue_name, consumer = %name, concurrency = settings.worker.concurrency_of(queue_name), "consuming");
        consumers.push(consumer);
    }
    Ok(consumers)
}

/// What runs beside the jobs until `stop`: lease heartbeats, this worker's metrics, the
/// webhook sweeper and the scheduler.
fn background(
    settings: &Settings,
    registry: &Registry,
    deps: &JobDeps,
    queues: &BTreeMap<String, Queue>,
    consumers: &[Consumer],
    name: &str,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut background = Vec::new();
    for consumer in consumers {
        background.push(tokio::spawn(heartbeat(consumer.clone(), stop.clone())));
    }
    background.push(tokio::spawn(crate::queue::metrics::publish(
        deps.redis.clone(),
        settings.redis.key_prefix.clone(),
        name.to_owned(),
        stop.clone(),
    )));
    if let Some(queue) = queues.get(crate::jobs::process_webhook_events::QUEUE) {
        background.push(tokio::spawn(sweep_webhooks(
            deps.db.clone(),
            queue.clone(),
            stop.clone(),
        )));
    }
    let scheduler = Scheduler::new(&settings.schedules, registry, queues);
    crate::telemetry::catalog::zero_sync_failures(scheduler.jobs());
    tracing::info!(jobs = ?scheduler.jobs(), "scheduling");
    background.push(tokio::spawn(scheduler.run(stop.clone())));
    background
}

/// Whatever did not finish within the grace period goes back to the queue now, instead of
/// waiting for its lease to run out.
async fn hand_back(consumers: &[Consumer]) {
    for consumer in consumers {
        match consumer.release_all().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                queue = consumer.queue().keys().name(),
                handed_back = n,
                "tasks did not finish in time and were handed back"
            ),
            Err(e) => {
                tracing::warn!(queue = consumer.queue().keys().name(), error = %e, "could not hand tasks back; they return when their lease runs out")
            }
        }
    }
}

async fn wait_for_group(consumer: &Consumer) {
    let mut backoff = Duration::from_millis(200);
    while let Err(e) = consumer.ensure_group().await {
        tracing::warn!(queue = consumer.queue().keys().name(), error = %e, "Redis is not reachable yet; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Renews the leases of the consumer's tasks every third of a lease.
async fn heartbeat(consumer: Consumer, mut stop: watch::Receiver<bool>) {
    let every = consumer.config().lease / 3;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = consumer.heartbeat().await {
            tracing::warn!(queue = consumer.queue().keys().name(), error = %e, "renewing task leases failed");
        }
    }
}

/// Every 10 s, enqueues webhook events stored but never processed (their enqueue was lost,
/// e.g. while Redis was down).
async fn sweep_webhooks(db: sqlx::PgPool, queue: Queue, mut stop: watch::Receiver<bool>) {
    loop {
        let stopped = tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            () = tokio::time::sleep(Duration::from_secs(10)) => false,
        };
        if stopped {
            return;
        }
        match crate::jobs::process_webhook_events::sweep(&db, &queue, Duration::from_secs(10)).await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                events = n,
                "swept unprocessed webhook events into the queue"
            ),
            Err(e) => tracing::warn!(error = %e, "sweeping webhook events failed"),
        }
    }
}
