//! The worker side of a queue: take tasks (new ones, due ones, and those of dead workers),
//! keep their leases alive, and settle each one exactly once (done, retry later, or dead).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

use super::entries::{as_string, parse_entries, truncate};
use super::keys::{GROUP, QueueKeys};
use super::{Queue, QueueError, TaskEnvelope, dead, now_ms, scripts};

/// How a consumer takes tasks.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// A task whose worker has not renewed it for this long is taken over by another worker.
    pub lease: Duration,
    /// How long one read waits for new tasks before looking at delayed and abandoned ones.
    pub block: Duration,
    /// How often due delayed tasks are promoted.
    pub promote_every: Duration,
    /// Most tasks moved or taken over by one script call.
    pub batch: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            lease: Duration::from_secs(60),
            block: Duration::from_millis(500),
            promote_every: Duration::from_millis(200),
            batch: 500,
        }
    }
}

/// A task taken from the stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry (what is acknowledged).
    pub entry_id: String,
    /// The task.
    pub task: TaskEnvelope,
}

#[derive(Debug)]
struct Timers {
    promoted: Instant,
    reclaimed: Instant,
}

/// One worker process's consumer of one queue. Cheap to clone.
#[derive(Clone)]
pub struct Consumer {
    queue: Queue,
    /// A connection of its own: blocking reads must not hold up other commands.
    fetch_conn: ConnectionManager,
    name: Arc<str>,
    config: Arc<ConsumerConfig>,
    timers: Arc<Mutex<Timers>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue.keys().name())
            .field("name", &self.name)
            .finish()
    }
}

impl Consumer {
    /// A consumer named `name` (unique per process) of `queue`; `fetch_conn` must be a
    /// connection that nothing else uses.
    pub fn new(
        queue: Queue,
        fetch_conn: ConnectionManager,
        name: &str,
        config: ConsumerConfig,
    ) -> Self {
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        Consumer {
            queue,
            fetch_conn,
            name: Arc::from(name),
            config: Arc::new(config),
            timers: Arc::new(Mutex::new(Timers {
                promoted: long_ago,
                reclaimed: long_ago,
            })),
        }
    }

    /// The queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The consumer's name in the group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    fn keys(&self) -> &QueueKeys {
        self.queue.keys()
    }

    /// Creates the stream and consumer group if they do not exist (reading from the start,
    /// so tasks enqueued before any worker existed are not skipped).
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        let mut conn = self.queue.connection();
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys().stream())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Waits for up to `count` tasks, riding out Redis outages with backoff: it returns only
    /// with tasks, so a worker never dies because Redis went away.
    pub async fn next_batch(&self, count: usize) -> Vec<Delivery> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.fetch(count).await {
                Ok(tasks) if !tasks.is_empty() => return tasks,
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    let missing_group =
                        matches!(&e, QueueError::Redis(r) if r.code() == Some("NOGROUP"));
                    if missing_group {
                        // Redis lost its data (restart without persistence): start over.
                        let _ = self.ensure_group().await;
                        continue;
                    }
                    tracing::warn!(queue = self.keys().name(), error = %e, retry_in_ms = backoff.as_millis() as u64, "fetching tasks failed");
                    metrics::counter!("queue_fetch_errors_total", "queue" => self.keys().name().to_owned()).increment(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One round: promote due tasks, take over abandoned ones, read new ones.
    pub async fn fetch(&self, count: usize) -> Result<Vec<Delivery>, QueueError> {
        let (promote, reclaim) = {
            let mut timers = self.timers.lock().await;
            let promote = timers.promoted.elapsed() >= self.config.promote_every;
            let reclaim = timers.reclaimed.elapsed() >= self.config.lease / 4;
            if promote {
                timers.promoted = Instant::now();
            }
            if reclaim {
                timers.reclaimed = Instant::now();
            }
            (promote, reclaim)
        };
        if promote {
            self.queue.promote_due(self.config.batch).await?;
        }
        if self.queue.paused().await?.is_some() {
            // Paused from the dashboard: take nothing (in-flight tasks finish and settle).
            tokio::time::sleep(self.config.block).await;
            return Ok(Vec::new());
        }
        let mut entries = Vec::new();
        if reclaim {
            entries = self.reclaim(count).await?;
        }
        if entries.is_empty() {
            entries = self.read_new(count).await?;
        }
        self.decode(entries).await
    }

    async fn read_new(&self, count: usize) -> Result<Vec<(String, Option<String>)>, QueueError> {
        let mut conn = self.fetch_conn.clone();
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&*self.name)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("BLOCK")
            .arg(self.config.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.keys().stream())
            .arg(">")
            .query_async(&mut conn)
            .await?;
        // [[stream, [[id, [field, value, ...]], ...]]] or nil on timeout.
        let entries = match &reply {
            Value::Array(streams) => streams
                .first()
                .and_then(|s| match s {
                    Value::Array(pair) => pair.get(1),
                    _ => None,
                })
                .map(parse_entries)
                .unwrap_or_default(),
            Value::Map(map) => map
                .first()
                .map(|(_, v)| parse_entries(v))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Ok(entries)
    }

    /// Takes over tasks whose worker has not renewed them within the lease.
    async fn reclaim(&self, count: usize) -> Result<Vec<(String, Option<String>)>, QueueError> {
        let mut conn = self.queue.connection();
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(self.keys().stream())
            .arg(GROUP)
            .arg(&*self.name)
            .arg(self.config.lease.as_millis() as u64)
            .arg("0")
            .arg("COUNT")
            .arg(count.clamp(1, self.config.batch))
            .query_async(&mut conn)
            .await?;
        let entries = match &reply {
            Value::Array(parts) => parts.get(1).map(parse_entries).unwrap_or_default(),
            _ => Vec::new(),
        };
        if !entries.is_empty() {
            tracing::info!(
                queue = self.keys().name(),
                count = entries.len(),
                "took over tasks of a worker that stopped renewing them"
            );
            metrics::counter!("queue_reclaimed_total", "queue" => self.keys().name().to_owned())
                .increment(entries.len() as u64);
        }
        Ok(entries)
    }

    /// Decodes entries; an entry that cannot be decoded goes to the dead letters at once.
    async fn decode(
        &self,
        entries: Vec<(String, Option<String>)>,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut tasks = Vec::with_capacity(entries.len());
        for (entry_id, raw) in entries {
            let raw = raw.unwrap_or_default();
            match serde_json::from_str::<TaskEnvelope>(&raw) {
                Ok(task) => tasks.push(Delivery { entry_id, task }),
                Err(e) => {
                    let reason = format!("undecodable payload: {e}");
                    tracing::error!(queue = self.keys().name(), entry = %entry_id, %reason, "moving a poison task to the dead letters");
                    dead::bury_raw(&self.queue, &entry_id, &raw, &reason).await?;
                }
            }
        }
        Ok(tasks)
    }

    /// The task succeeded.
    pub async fn ack(&self, delivery: &Delivery) -> Result<bool, QueueError> {
        let mut conn = self.queue.connection();
        let n: i64 = scripts::ACK
            .key(self.keys().stream())
            .key(self.keys().stats())
            .key(self.keys().timeline(now_ms()))
            .arg(&delivery.entry_id)
            .arg(&delivery.task.job)
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Runs the task again after `delay`. A failure spends an attempt and records the error;
    /// a rate-limit wait does not.
    pub async fn retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        error: Option<&str>,
    ) -> Result<bool, QueueError> {
        let mut task = delivery.task.clone();
        let counter = match error {
            Some(e) => {
                task.record_failure(truncate(e, 2000));
                "retried"
            }
            None => "rescheduled",
        };
        let mut conn = self.queue.connection();
        let n: i64 = scripts::RETRY
            .key(self.keys().stream())
            .key(self.keys().delayed())
            .key(self.keys().stats())
            .key(self.keys().timeline(now_ms()))
            .arg(&delivery.entry_id)
            .arg(task.encode())
            .arg(now_ms() + delay.as_millis() as i64)
            .arg(&task.job)
            .arg(counter)
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// The task is dead: it goes to the dead letters with `reason`.
    pub async fn bury(&self, delivery: &Delivery, reason: &str) -> Result<bool, QueueError> {
        let mut task = delivery.task.clone();
        task.record_failure(truncate(reason, 2000));
        dead::bury(&self.queue, &delivery.entry_id, &task, reason).await
    }

    /// Renews the lease of every task this consumer holds (in flight or buffered).
    pub async fn heartbeat(&self) -> Result<usize, QueueError> {
        let ids = self.pending_ids().await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.queue.connection();
        for chunk in ids.chunks(self.config.batch) {
            redis::cmd("XCLAIM")
                .arg(self.keys().stream())
                .arg(GROUP)
                .arg(&*self.name)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID")
                .query_async::<Value>(&mut conn)
                .await?;
        }
        Ok(ids.len())
    }

    /// Hands every task this consumer still holds back to the queue for any worker, then
    /// leaves the group. Used on shutdown.
    pub async fn release_all(&self) -> Result<u64, QueueError> {
        let mut released = 0;
        let mut conn = self.queue.connection();
        loop {
            let ids = self.pending_ids().await?;
            if ids.is_empty() {
                break;
            }
            let n: u64 = scripts::RELEASE
                .key(self.keys().stream())
                .arg(&ids)
                .invoke_async(&mut conn)
                .await?;
            released += n;
            if n == 0 {
                break;
            }
        }
        redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(self.keys().stream())
            .arg(GROUP)
            .arg(&*self.name)
            .query_async::<Value>(&mut conn)
            .await?;
        Ok(released)
    }

    async fn pending_ids(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.queue.connection();
        let reply: Value = redis::cmd("XPENDING")
            .arg(self.keys().stream())
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(self.config.batch)
            .arg(&*self.name)
            .query_async(&mut conn)
            .await?;
        let Value::Array(rows) = reply else {
            return Ok(Vec::new());
        };
        Ok(rows
            .iter()
            .filter_map(|row| match row {
                Value::Array(fields) => fields.first().and_then(as_string),
                _ => None,
            })
            .collect())
    }
}
