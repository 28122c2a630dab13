//! The Redis-backed job queue under apalis: enqueue, fetch, acknowledge, retry, dead letters.
//!
//! One Redis Stream per queue read through a consumer group: an entry is in flight while it
//! sits in the group's pending list, and a worker that dies leaves it there until its lease
//! runs out and another worker claims it (XAUTOCLAIM). Delayed tasks and retries wait in a
//! sorted set and are promoted in bounded batches. Every state change is one Lua script, so a
//! crash between two steps cannot lose a task. `docs/queue.md` has the details.

pub mod backend;
pub mod consumer;
pub mod dead;
mod entries;
pub mod job;
pub mod keys;
pub mod metrics;
pub mod scripts;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use keys::QueueKeys;

/// A task as stored in Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEnvelope {
    /// Unique id (UUIDv7, so ids sort by creation time).
    pub id: String,
    /// Stable name of the job type.
    pub job: String,
    /// The job's arguments (ids; the job re-reads state).
    #[serde(default)]
    pub args: Value,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// When it was first enqueued, ms since the epoch.
    pub enqueued_at: i64,
    /// The last failure, when it is a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The schedule tick it was enqueued for (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<i64>,
    /// What enqueued it: `schedule`, `catch_up`, `manual`, `api`, `webhook`, `redrive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Every failed attempt (the last 20), oldest first, for inspecting a dead task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<AttemptFailure>,
}

/// One failed attempt of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptFailure {
    /// When it failed, ms since the epoch.
    pub at_ms: i64,
    /// Why (shortened to 2,000 characters).
    pub error: String,
}

/// Failed attempts kept on a task.
const FAILURES_KEPT: usize = 20;

impl TaskEnvelope {
    /// Records a failed attempt: counts it and keeps its error.
    pub fn record_failure(&mut self, error: String) {
        self.attempts += 1;
        self.last_error = Some(error.clone());
        self.failures.push(AttemptFailure {
            at_ms: now_ms(),
            error,
        });
        if self.failures.len() > FAILURES_KEPT {
            let extra = self.failures.len() - FAILURES_KEPT;
            self.failures.drain(..extra);
        }
    }
}

impl TaskEnvelope {
    /// A new task for `job` with `args`.
    pub fn new(job: &str, args: Value) -> Self {
        TaskEnvelope {
            id: uuid::Uuid::now_v7().to_string(),
            job: job.to_owned(),
            args,
            attempts: 0,
            enqueued_at: now_ms(),
            last_error: None,
            scheduled_for: None,
            trigger: None,
            failures: Vec::new(),
        }
    }

    /// The envelope as stored.
    pub fn encode(&self) -> String {
        // Serializing a struct of strings, integers and a Value cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// How to enqueue.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// Run no earlier than this long from now.
    pub delay: Option<Duration>,
    /// Idempotency key: while it is held, enqueueing again returns the first task's id.
    pub unique_key: Option<String>,
    /// How long the idempotency key is held (default one day).
    pub unique_ttl: Option<Duration>,
    /// What is enqueueing (recorded on the task).
    pub trigger: Option<String>,
}

/// The result of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The task's id (the first task's, when the idempotency key was held).
    pub id: String,
    /// False when the idempotency key was held and nothing was added.
    pub created: bool,
}

/// Errors of the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis failed or is unreachable.
    #[error("redis: {}", crate::redis_conn::describe(.0))]
    Redis(#[from] redis::RedisError),
    /// A request that makes no sense (unknown id, bad argument).
    #[error("{0}")]
    Invalid(String),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const DEFAULT_UNIQUE_TTL: Duration = Duration::from_secs(24 * 3600);
const BULK_CHUNK: usize = 1000;

/// Producer and operator handle of one queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    keys: QueueKeys,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.keys.name())
            .finish()
    }
}

/// Sizes and counters of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Ready and not yet taken by any worker.
    pub waiting: u64,
    /// Taken by a worker and not yet finished.
    pub in_flight: u64,
    /// Waiting for their time (delayed tasks and retries).
    pub delayed: u64,
    /// In the dead letters.
    pub dead: u64,
    /// Counters since the queue was created: enqueued, succeeded, retried, rescheduled, dead,
    /// redriven, each also per job type as `name:job`.
    pub counters: std::collections::BTreeMap<String, u64>,
}

impl Queue {
    /// The queue `name` under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str, name: &str) -> Self {
        Queue {
            conn,
            keys: QueueKeys::new(prefix, name),
        }
    }

    /// The queue's keys.
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    /// A connection to Redis (multiplexed; do not block on it).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Enqueues one task.
    pub async fn enqueue(
        &self,
        job: &str,
        args: Value,
        options: EnqueueOptions,
    ) -> Result<Enqueued, QueueError> {
        let mut task = TaskEnvelope::new(job, args);
        task.trigger = options.trigger.clone();
        self.enqueue_envelope(&task, &options).await
    }

    /// Enqueues a prepared envelope.
    pub async fn enqueue_envelope(
        &self,
        task: &TaskEnvelope,
        options: &EnqueueOptions,
    ) -> Result<Enqueued, QueueError> {
        let mut conn = self.conn.clone();
        let (created, id): (i64, String) = self
            .enqueue_invocation(task, options)
            .invoke_async(&mut conn)
            .await?;
        Ok(Enqueued {
            id,
            created: created == 1,
        })
    }

    fn enqueue_invocation(
        &self,
        task: &TaskEnvelope,
        options: &EnqueueOptions,
    ) -> redis::ScriptInvocation<'static> {
        let now = now_ms();
        let due = options
            .delay
            .map(|d| now + d.as_millis() as i64)
            .unwrap_or(0);
        let unique = options.unique_key.as_deref().unwrap_or("");
        let ttl = options.unique_ttl.unwrap_or(DEFAULT_UNIQUE_TTL).as_millis() as u64;
        let mut invocation = scripts::ENQUEUE.prepare_invoke();
        invocation
            .key(self.keys.stream())
            .key(self.keys.delayed())
            .key(self.keys.stats())
            .key(self.keys.unique(unique))
            .arg(task.encode())
            .arg(&task.id)
            .arg(due)
            .arg(now)
            .arg(if unique.is_empty() { "0" } else { "1" })
            .arg(ttl.max(1))
            .arg(&task.job);
        invocation
    }

    /// Enqueues many tasks in pipelined batches of 1,000; returns their ids in order.
    pub async fn enqueue_bulk(
        &self,
        tasks: &[(String, Value)],
        options: &EnqueueOptions,
    ) -> Result<Vec<String>, QueueError> {
        if options.unique_key.is_some() {
            return Err(QueueError::Invalid(
                "one idempotency key cannot cover several tasks".to_owned(),
            ));
        }
        let mut conn = self.conn.clone();
        let mut ids = Vec::with_capacity(tasks.len());
        for chunk in tasks.chunks(BULK_CHUNK) {
            let mut pipe = redis::pipe();
            pipe.load_script(&scripts::ENQUEUE).ignore();
            for (job, args) in chunk {
                let mut task = TaskEnvelope::new(job, args.clone());
                task.trigger = options.trigger.clone();
                pipe.invoke_script(&self.enqueue_invocation(&task, options))
                    .ignore();
                ids.push(task.id);
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(ids)
    }

    /// Sizes and counters.
    pub async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let mut conn = self.conn.clone();
        let (delayed, dead, stats): (u64, u64, Vec<(String, u64)>) = redis::pipe()
            .zcard(self.keys.delayed())
            .hlen(self.keys.dead())
            .hgetall(self.keys.stats())
            .query_async(&mut conn)
            .await?;
        let (waiting, in_flight) = entries::group_sizes(&mut conn, &self.keys).await?;
        Ok(QueueCounts {
            waiting,
            in_flight,
            delayed,
            dead,
            counters: stats.into_iter().collect(),
        })
    }

    /// Pauses the queue on every worker (they check before each fetch); `by` says who and
    /// why, shown by the dashboard. Tasks keep being enqueued; in-flight ones finish.
    pub async fn pause(&self, by: &str) -> Result<(), QueueError> {
        let record = serde_json::json!({ "by": by, "at_ms": now_ms() }).to_string();
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.keys.paused())
            .arg(record)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Resumes a paused queue; whether it was paused.
    pub async fn resume(&self) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let n: i64 = redis::cmd("DEL")
            .arg(self.keys.paused())
            .query_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Who paused the queue and when (JSON `{by, at_ms}`), when it is paused.
    pub async fn paused(&self) -> Result<Option<String>, QueueError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(self.keys.paused())
            .query_async(&mut conn)
            .await?)
    }

    /// Outcomes per minute over the last `minutes` minutes, oldest first: the minute (ms since
    /// the epoch) and its `succeeded`, `retried`, `rescheduled` and `dead` counts.
    pub async fn timeline(
        &self,
        minutes: i64,
    ) -> Result<Vec<(i64, std::collections::HashMap<String, i64>)>, QueueError> {
        let now = now_ms().div_euclid(60_000) * 60_000;
        let starts: Vec<i64> = (0..minutes).rev().map(|i| now - i * 60_000).collect();
        let mut pipe = redis::pipe();
        for at in &starts {
            pipe.cmd("HGETALL").arg(self.keys.timeline(*at));
        }
        let mut conn = self.conn.clone();
        let maps: Vec<std::collections::HashMap<String, i64>> = pipe.query_async(&mut conn).await?;
        Ok(starts.into_iter().zip(maps).collect())
    }

    /// Moves due delayed tasks into the stream, in batches of `batch`, until none is due.
    pub async fn promote_due(&self, batch: usize) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let mut total = 0;
        loop {
            let moved: u64 = scripts::PROMOTE
                .key(self.keys.delayed())
                .key(self.keys.stream())
                .arg(now_ms())
                .arg(batch)
                .invoke_async(&mut conn)
                .await?;
            total += moved;
            if moved < batch as u64 {
                return Ok(total);
            }
        }
    }
}
