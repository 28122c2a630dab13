//! The queue as an apalis backend: apalis runs the workers (tower layers, concurrency,
//! graceful shutdown); this module feeds it tasks and settles each result in Redis.
//!
//! - [`RedisBackend`] yields tasks ([`Delivery`]) taken by a [`Consumer`]; it never fails,
//!   so a Redis outage pauses a worker instead of killing it.
//! - [`SettleLayer`] (the backend's middleware, outermost around the handler) turns each
//!   result into exactly one of: acknowledge, retry later, dead letter.
//! - [`Dispatcher`] is the service: it runs the handler of the task's job type from the
//!   [`Registry`], with the job's timeout.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use apalis_core::task::task_id::RandomId;
use apalis_core::worker::context::WorkerContext;
use futures_util::FutureExt;
use tower::{Layer, Service};
use tracing::Instrument;

use super::consumer::{Consumer, ConsumerConfig, Delivery};
use crate::queue::job::{JobContext, JobDeps, JobError, Registry};

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The apalis backend of one queue in one process.
pub struct RedisBackend {
    consumer: Consumer,
    registry: Arc<Registry>,
    batch: usize,
    buffer: VecDeque<Delivery>,
    fetching: Option<BoxFut<Vec<Delivery>>>,
    closing: Option<BoxFut<()>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("consumer", &self.consumer)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl RedisBackend {
    /// A backend taking up to `batch` tasks at a time (use the worker's concurrency).
    pub fn new(consumer: Consumer, registry: Arc<Registry>, batch: usize) -> Self {
        RedisBackend {
            consumer,
            registry,
            batch: batch.max(1),
            buffer: VecDeque::new(),
            fetching: None,
            closing: None,
        }
    }
}

impl Backend for RedisBackend {
    type Task = Task<Delivery>;
    type Error = std::io::Error;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        loop {
            if let Some(delivery) = self.buffer.pop_front() {
                return Poll::Ready(Some(Ok(Task::new(delivery))));
            }
            let consumer = self.consumer.clone();
            let batch = self.batch;
            let fetch = self
                .fetching
                .get_or_insert_with(|| Box::pin(async move { consumer.next_batch(batch).await }));
            match fetch.as_mut().poll(cx) {
                Poll::Ready(tasks) => {
                    self.fetching = None;
                    self.buffer.extend(tasks);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        // Tasks fetched but not started (and any read that was cut short) go back to the queue.
        let consumer = self.consumer.clone();
        let close = self.closing.get_or_insert_with(|| {
            Box::pin(async move {
                match consumer.release_all().await {
                    Ok(n) if n > 0 => tracing::info!(queue = consumer.queue().keys().name(), released = n, "handed unstarted tasks back"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(queue = consumer.queue().keys().name(), error = %e, "could not hand tasks back; they return when their lease runs out"),
                }
            })
        });
        close.as_mut().poll(cx).map(Ok)
    }
}

impl BackendConfig for RedisBackend {
    type Args = Delivery;
    type Id = RandomId;
    type Kind = Ephemeral;
    type Config = ConsumerConfig;
    type Layer = SettleLayer;

    fn config(&self) -> &Self::Config {
        self.consumer.config()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        SettleLayer {
            consumer: self.consumer.clone(),
            registry: self.registry.clone(),
        }
    }
}

/// Settles every task's result in Redis; see [`settle`].
#[derive(Clone, Debug)]
pub struct SettleLayer {
    consumer: Consumer,
    registry: Arc<Registry>,
}

impl<S> Layer<S> for SettleLayer {
    type Service = SettleService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SettleService {
            inner,
            consumer: self.consumer.clone(),
            registry: self.registry.clone(),
        }
    }
}

/// The service made by [`SettleLayer`].
#[derive(Clone, Debug)]
pub struct SettleService<S> {
    inner: S,
    consumer: Consumer,
    registry: Arc<Registry>,
}

impl<S> Service<Task<Delivery>> for SettleService<S>
where
    S: Service<Task<Delivery>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = BoxFut<Result<(), BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Delivery>) -> Self::Future {
        let delivery = task.args.clone();
        let consumer = self.consumer.clone();
        let registry = self.registry.clone();
        let queue = consumer.queue().keys().name().to_owned();
        let job = delivery.task.job.clone();
        metrics::counter!("jobs_started_total", "queue" => queue.clone(), "job" => job.clone())
            .increment(1);
        let started = Instant::now();
        let run = self.inner.call(task);
        Box::pin(async move {
            let result = run.await.map(|_| ()).map_err(Into::into);
            metrics::histogram!("job_duration_seconds", "queue" => queue, "job" => job)
                .record(started.elapsed().as_secs_f64());
            settle(&consumer, &registry, &delivery, result).await;
            Ok(())
        })
    }
}

/// What was decided for a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Done,
    Retry(Duration),
    RetryAfter(Duration),
    Dead,
}

fn verdict(
    registry: &Registry,
    delivery: &Delivery,
    error: Option<&BoxDynError>,
) -> (Verdict, String) {
    let Some(error) = error else {
        return (Verdict::Done, String::new());
    };
    let message = error.to_string();
    let spec = registry.get(&delivery.task.job);
    match (error.downcast_ref::<JobError>(), spec) {
        (Some(JobError::RetryAfter(wait)), _) => (Verdict::RetryAfter(*wait), message),
        (Some(JobError::Permanent(_)), _) | (_, None) => (Verdict::Dead, message),
        (_, Some(spec)) => {
            let attempt = delivery.task.attempts + 1;
            if attempt >= spec.max_attempts {
                (
                    Verdict::Dead,
                    format!(
                        "failed {attempt} of {} attempts; last error: {message}",
                        spec.max_attempts
                    ),
                )
            } else {
                (Verdict::Retry(spec.backoff(attempt)), message)
            }
        }
    }
}

/// Records the outcome of one run in Redis, exactly one of: acknowledged, retried later
/// (spending an attempt), rescheduled (rate limit, no attempt spent), dead. While Redis is
/// unreachable it keeps trying for one lease; after that the task is left to be taken over
/// (at-least-once: it may run again).
async fn settle(
    consumer: &Consumer,
    registry: &Registry,
    delivery: &Delivery,
    result: Result<(), BoxDynError>,
) {
    let (verdict, message) = verdict(registry, delivery, result.as_ref().err());
    let queue = consumer.queue().keys().name().to_owned();
    let job = delivery.task.job.clone();
    let outcome = match verdict {
        Verdict::Done => "succeeded",
        Verdict::Retry(_) => "retried",
        Verdict::RetryAfter(_) => "rescheduled",
        Verdict::Dead => "dead",
    };
    if verdict != Verdict::Done {
        tracing::warn!(%queue, %job, task_id = %delivery.task.id, attempt = delivery.task.attempts + 1, outcome, error = %message, "job failed");
    }
    let deadline = Instant::now() + consumer.config().lease;
    let mut backoff = Duration::from_millis(100);
    loop {
        let settled = match verdict {
            Verdict::Done => consumer.ack(delivery).await,
            Verdict::Retry(delay) => consumer.retry(delivery, delay, Some(&message)).await,
            Verdict::RetryAfter(delay) => consumer.retry(delivery, delay, None).await,
            Verdict::Dead => consumer.bury(delivery, &message).await,
        };
        match settled {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(%queue, task_id = %delivery.task.id, error = %e, "could not record a job's outcome; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(%queue, task_id = %delivery.task.id, error = %e, "gave up recording a job's outcome; the task will run again when its lease runs out");
                return;
            }
        }
    }
    let counter = match verdict {
        Verdict::Done => "jobs_succeeded_total",
        Verdict::Retry(_) => "jobs_retried_total",
        Verdict::RetryAfter(_) => "jobs_rescheduled_total",
        Verdict::Dead => "jobs_failed_total",
    };
    metrics::counter!(counter, "queue" => queue, "job" => job).increment(1);
}

/// Runs the handler of each task's job type.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    registry: Arc<Registry>,
    deps: Arc<JobDeps>,
}

impl Dispatcher {
    /// A dispatcher over `registry`.
    pub fn new(registry: Arc<Registry>, deps: Arc<JobDeps>) -> Self {
        Dispatcher { registry, deps }
    }
}

impl Service<Task<Delivery>> for Dispatcher {
    type Response = ();
    type Error = JobError;
    type Future = BoxFut<Result<(), JobError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Delivery>) -> Self::Future {
        let delivery = task.args;
        let Some(spec) = self.registry.get(&delivery.task.job).cloned() else {
            let job = delivery.task.job.clone();
            return Box::pin(async move {
                Err(JobError::permanent(format!("unknown job type {job:?}")))
            });
        };
        let ctx = JobContext {
            task: delivery.task.clone(),
            deps: self.deps.clone(),
        };
        let args = delivery.task.args;
        let span = tracing::info_span!("job", job = %spec.name, task_id = %ctx.task.id, attempt = ctx.task.attempts + 1);
        Box::pin(
            async move {
                let run = std::panic::AssertUnwindSafe((spec.handler)(ctx, args)).catch_unwind();
                match tokio::time::timeout(spec.timeout, run).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(panic)) => {
                        let detail = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_else(|| "unknown panic".to_owned());
                        Err(JobError::retry(format!("the job panicked: {detail}")))
                    }
                    Err(_) => Err(JobError::retry(format!(
                        "timed out after {} s",
                        spec.timeout.as_secs()
                    ))),
                }
            }
            .instrument(span),
        )
    }
}
