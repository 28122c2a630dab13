//! The registry of job handlers: which queue each job type runs on, its retry policy and
//! timeout, and the function that runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::queue::TaskEnvelope;

/// How a job failed, which decides what happens next.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A transient failure: retried with exponential backoff until the attempts run out.
    #[error("{0}")]
    Retry(String),
    /// Rate limited: run again after this long, without spending an attempt.
    #[error("rate limited; retry after {}s", .0.as_secs())]
    RetryAfter(Duration),
    /// Retrying cannot help: straight to the dead letters.
    #[error("{0}")]
    Permanent(String),
}

impl From<sqlx::Error> for JobError {
    /// A database error: retried (Postgres restarts and failovers pass).
    fn from(e: sqlx::Error) -> Self {
        JobError::Retry(format!(
            "database: {}",
            crate::api::health::describe_sqlx(&e)
        ))
    }
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Retry(format!("{e:#}"))
    }
}

/// What a handler gets besides its arguments.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The task being run (id, attempts so far, trigger, schedule tick).
    pub task: TaskEnvelope,
    /// Shared dependencies.
    pub deps: Arc<JobDeps>,
}

/// Dependencies every job may use.
#[derive(Clone)]
pub struct JobDeps {
    /// Postgres.
    pub db: sqlx::PgPool,
    /// Redis (multiplexed).
    pub redis: redis::aio::ConnectionManager,
    /// Redis key prefix.
    pub prefix: String,
    /// The settings.
    pub settings: Arc<crate::config::Settings>,
    /// Becomes true when the worker is asked to stop: long jobs finish what they have in hand
    /// and stop taking more, so they end within the grace period.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for JobDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDeps")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The future a handler returns.
pub type JobFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;
/// A handler.
pub type Handler = Arc<dyn Fn(JobContext, Value) -> JobFuture + Send + Sync>;

/// One job type.
#[derive(Clone)]
pub struct JobSpec {
    /// Stable name.
    pub name: String,
    /// Queue it runs on.
    pub queue: String,
    /// Attempts before it is dead (the first run counts).
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Longest a run may take; a run that takes longer fails (and is retried).
    pub timeout: Duration,
    /// The function.
    pub handler: Handler,
}

impl std::fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSpec")
            .field("name", &self.name)
            .field("queue", &self.queue)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl JobSpec {
    /// The delay before retry number `attempt` (1-based): `base * 2^(attempt-1)`, capped, then
    /// a random 50–100 % of it so that retries of many tasks spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.backoff_max);
        capped.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// Every job type a worker can run.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    jobs: BTreeMap<String, JobSpec>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers `name` on `queue` with the default policy (5 attempts, backoff from 5 s to
    /// 10 min, 10 min timeout); returns the spec to adjust.
    pub fn register<F, Fut>(&mut self, name: &str, queue: &str, handler: F) -> &mut JobSpec
    where
        F: Fn(JobContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |ctx, args| Box::pin(handler(ctx, args)));
        let spec = JobSpec {
            name: name.to_owned(),
            queue: queue.to_owned(),
            max_attempts: 5,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(600),
            timeout: Duration::from_secs(600),
            handler,
        };
        self.jobs.insert(name.to_owned(), spec);
        self.jobs.get_mut(name).expect("just inserted")
    }

    /// The spec of `name`.
    pub fn get(&self, name: &str) -> Option<&JobSpec> {
        self.jobs.get(name)
    }

    /// Every job type, by name.
    pub fn jobs(&self) -> impl Iterator<Item = &JobSpec> {
        self.jobs.values()
    }

    /// Every queue some job runs on.
    pub fn queues(&self) -> BTreeSet<String> {
        self.jobs.values().map(|j| j.queue.clone()).collect()
    }
}
