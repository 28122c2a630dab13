//! Jobs as the queue runtime sees them: a job's definition (name, queue, retry policy, timeout,
//! default schedule, handler), how a run fails (`JobError`), what a run gets (`JobContext`),
//! and the registry a worker runs from. The jobs themselves live in the jobs layer, one file
//! each, and hand their definitions down as data.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::queue::TaskEnvelope;

/// How a job failed, which decides what happens next. The cause is kept as an error chain
/// (`anyhow`), shown whole (`{:#}`) where the run ends: in the worker's log line, the task's
/// last error and the dead letter's reason.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A transient failure: retried with exponential backoff until the attempts run out.
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// Rate limited: run again after this long, without spending an attempt.
    #[error("rate limited; retry after {}s", .0.as_secs())]
    RetryAfter(Duration),
    /// Retrying cannot help: straight to the dead letters.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

impl JobError {
    /// A transient failure saying `message`.
    pub fn retry(
        message: impl std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
    ) -> Self {
        JobError::Retry(anyhow::Error::msg(message))
    }

    /// A permanent failure saying `message`.
    pub fn permanent(
        message: impl std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
    ) -> Self {
        JobError::Permanent(anyhow::Error::msg(message))
    }

    /// The same verdict, with `context` in front of the cause.
    pub fn context(self, context: impl std::fmt::Display + Send + Sync + 'static) -> Self {
        match self {
            JobError::Retry(e) => JobError::Retry(e.context(context)),
            JobError::Permanent(e) => JobError::Permanent(e.context(context)),
            other => other,
        }
    }
}

impl From<sqlx::Error> for JobError {
    /// A database error: retried (Postgres restarts and failovers pass).
    fn from(e: sqlx::Error) -> Self {
        let described = crate::store::describe_sqlx(&e);
        JobError::Retry(anyhow::Error::new(e).context(format!("database: {described}")))
    }
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Retry(e)
    }
}

/// One job: everything the registry, the scheduler, configuration, `jobs list` and the docs
/// know about it, in one place (the jobs layer's `ALL` lists them). Built with the `const` methods
/// below from [`JobDefinition::new`]'s defaults.
#[derive(Debug, Clone, Copy)]
pub struct JobDefinition {
    /// Stable name: configuration (`schedules.<name>`, `SCHEDULE_<NAME>`), Redis keys, metrics.
    pub name: &'static str,
    /// What the job does, for `jobs list`, the docs and the dashboard.
    pub purpose: &'static str,
    /// The queue it runs on.
    pub queue: &'static str,
    /// Attempts before it is dead (the first run counts).
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Longest a run may take.
    pub timeout: Duration,
    /// Default schedule (six cron fields, UTC); `None` for a job that only runs when enqueued.
    pub schedule: Option<&'static str>,
    /// The handler; `None` for a job of the product that is not in this build yet (listed and
    /// configurable, never run).
    pub run: Option<Run>,
}

/// A handler as a definition holds it: decodes its typed arguments (see [`args`]) and runs.
pub type Run = fn(JobContext, Value) -> JobFuture;

impl JobDefinition {
    /// A job on the default queue with the default policy: 5 attempts, backoff from 5 s to
    /// 10 min, a 10 min timeout, no schedule, not built.
    pub const fn new(name: &'static str, purpose: &'static str) -> Self {
        JobDefinition {
            name,
            purpose,
            queue: DEFAULT_QUEUE,
            max_attempts: 5,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(600),
            timeout: Duration::from_secs(600),
            schedule: None,
            run: None,
        }
    }

    /// Runs on `queue`.
    pub const fn queue(mut self, queue: &'static str) -> Self {
        self.queue = queue;
        self
    }

    /// Retried up to `max_attempts` runs in all, backing off from `base` to `max`.
    pub const fn retries(mut self, max_attempts: u32, base: Duration, max: Duration) -> Self {
        self.max_attempts = max_attempts;
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// A run longer than `timeout` fails (and is retried).
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Scheduled by default at `cron` (six fields, UTC; configuration may override it).
    pub const fn schedule(mut self, cron: &'static str) -> Self {
        self.schedule = Some(cron);
        self
    }

    /// Built: `run` handles it.
    pub const fn runs(mut self, run: Run) -> Self {
        self.run = Some(run);
        self
    }
}

/// The queue most jobs run on.
pub const DEFAULT_QUEUE: &str = "default";

/// A job's typed arguments from the task's JSON (absent arguments are `{}`); arguments that do
/// not fit are permanent: retrying cannot mend them.
pub fn args<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, JobError> {
    let value = if value.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        value
    };
    serde_json::from_value(value)
        .map_err(|e| JobError::Permanent(anyhow::Error::new(e).context("bad arguments")))
}

/// The arguments of a job that takes none (any other field is refused).
#[derive(Debug, Clone, Copy, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

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

    /// The registry of every built job among `definitions`.
    pub fn from_definitions(definitions: &[JobDefinition]) -> Self {
        let mut registry = Registry::new();
        for definition in definitions {
            let Some(run) = definition.run else { continue };
            let spec = registry.register(definition.name, definition.queue, run);
            spec.max_attempts = definition.max_attempts;
            spec.backoff_base = definition.backoff_base;
            spec.backoff_max = definition.backoff_max;
            spec.timeout = definition.timeout;
        }
        registry
    }

    /// Every queue some job runs on.
    pub fn queues(&self) -> BTreeSet<String> {
        self.jobs.values().map(|j| j.queue.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::JobError;

    #[test]
    fn a_job_error_keeps_its_cause_and_shows_the_whole_chain() {
        let db = JobError::from(sqlx::Error::PoolTimedOut).context("reading the queue");
        let JobError::Retry(chain) = &db else {
            panic!("a database error is retried: {db:?}");
        };
        assert_eq!(
            chain.chain().count(),
            3,
            "context, description, sqlx's own error"
        );
        assert!(chain.root_cause().downcast_ref::<sqlx::Error>().is_some());
        assert_eq!(
            db.to_string(),
            "reading the queue: database: no connection available (pool timed out): pool timed out while waiting for an open connection"
        );
        let permanent = JobError::permanent("no such campaign").context("sync");
        assert!(matches!(&permanent, JobError::Permanent(_)));
        assert_eq!(permanent.to_string(), "sync: no such campaign");
    }
}
