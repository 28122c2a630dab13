//! Dead letters: tasks that ran out of attempts, failed permanently, or could not be decoded.
//! They are kept with their reason until an operator re-drives or purges them (library API
//! here; `campaign-sync jobs dead …` and the dashboard use it).

use serde::{Deserialize, Serialize};

use super::{Queue, QueueError, TaskEnvelope, now_ms, scripts};

/// A dead task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadTask {
    /// The task's id (for an undecodable payload, `entry-<stream entry id>`).
    pub id: String,
    /// The job type, when known.
    pub job: Option<String>,
    /// Why it died.
    pub reason: String,
    /// When it died, ms since the epoch.
    pub died_at: i64,
    /// Failed attempts.
    pub attempts: u32,
    /// The payload exactly as it was stored (re-driving sends it again).
    pub payload: String,
}

impl DeadTask {
    /// The task, when the payload decodes.
    pub fn task(&self) -> Option<TaskEnvelope> {
        serde_json::from_str(&self.payload).ok()
    }
}

async fn store(queue: &Queue, entry_id: &str, record: &DeadTask) -> Result<bool, QueueError> {
    let keys = queue.keys();
    let mut conn = queue.connection();
    let record_json = serde_json::to_string(record).unwrap_or_default();
    let n: i64 = scripts::DEAD
        .key(keys.stream())
        .key(keys.dead())
        .key(keys.dead_index())
        .key(keys.stats())
        .key(keys.timeline(record.died_at))
        .arg(entry_id)
        .arg(&record.id)
        .arg(record_json)
        .arg(record.died_at)
        .arg(record.job.as_deref().unwrap_or("unknown"))
        .invoke_async(&mut conn)
        .await?;
    if n == 1 {
        let job = record.job.clone().unwrap_or_else(|| "unknown".to_owned());
        metrics::counter!("jobs_dead_total", "queue" => keys.name().to_owned(), "job" => job)
            .increment(1);
    }
    Ok(n == 1)
}

/// Moves the in-flight entry `entry_id` (holding `task`) to the dead letters.
pub async fn bury(
    queue: &Queue,
    entry_id: &str,
    task: &TaskEnvelope,
    reason: &str,
) -> Result<bool, QueueError> {
    let record = DeadTask {
        id: task.id.clone(),
        job: Some(task.job.clone()),
        reason: reason.to_owned(),
        died_at: now_ms(),
        attempts: task.attempts,
        payload: task.encode(),
    };
    store(queue, entry_id, &record).await
}

/// Moves an entry whose payload cannot be decoded to the dead letters.
pub async fn bury_raw(
    queue: &Queue,
    entry_id: &str,
    raw: &str,
    reason: &str,
) -> Result<bool, QueueError> {
    let record = DeadTask {
        id: format!("entry-{entry_id}"),
        job: None,
        reason: reason.to_owned(),
        died_at: now_ms(),
        attempts: 0,
        payload: raw.to_owned(),
    };
    store(queue, entry_id, &record).await
}

/// Dead tasks, newest first.
pub async fn list(queue: &Queue, offset: usize, limit: usize) -> Result<Vec<DeadTask>, QueueError> {
    let keys = queue.keys();
    let mut conn = queue.connection();
    let stop = offset + limit.max(1) - 1;
    let ids: Vec<String> = redis::cmd("ZREVRANGE")
        .arg(keys.dead_index())
        .arg(offset)
        .arg(stop)
        .query_async(&mut conn)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let records: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(keys.dead())
        .arg(&ids)
        .query_async(&mut conn)
        .await?;
    Ok(records
        .into_iter()
        .flatten()
        .filter_map(|r| serde_json::from_str(&r).ok())
        .collect())
}

/// One dead task.
pub async fn get(queue: &Queue, id: &str) -> Result<Option<DeadTask>, QueueError> {
    let mut conn = queue.connection();
    let record: Option<String> = redis::cmd("HGET")
        .arg(queue.keys().dead())
        .arg(id)
        .query_async(&mut conn)
        .await?;
    Ok(record.and_then(|r| serde_json::from_str(&r).ok()))
}

/// Sends a dead task back to the queue with its attempts reset. False when there is no such
/// dead task (or another operator re-drove it first).
pub async fn retry(queue: &Queue, id: &str) -> Result<bool, QueueError> {
    let keys = queue.keys();
    let mut conn = queue.connection();
    let stored: Option<String> = redis::cmd("HGET")
        .arg(keys.dead())
        .arg(id)
        .query_async(&mut conn)
        .await?;
    let Some(stored) = stored else {
        return Ok(false);
    };
    let record: DeadTask = serde_json::from_str(&stored)
        .map_err(|e| QueueError::Invalid(format!("dead task {id} is unreadable: {e}")))?;
    // A task that decodes starts afresh; an undecodable payload is sent as it was.
    let payload = match record.task() {
        Some(mut task) => {
            task.attempts = 0;
            task.last_error = None;
            task.trigger = Some("redrive".to_owned());
            task.encode()
        }
        None => record.payload.clone(),
    };
    let n: i64 = scripts::REDRIVE
        .key(keys.dead())
        .key(keys.dead_index())
        .key(keys.stream())
        .key(keys.stats())
        .arg(id)
        .arg(stored)
        .arg(payload)
        .invoke_async(&mut conn)
        .await?;
    Ok(n == 1)
}

/// Re-drives every task dead when it was called, in batches; returns how many. A task that
/// dies again meanwhile stays dead (a poison task cannot keep it looping): each batch is read
/// by score (the time of death) strictly before the call, so however many die again, every
/// earlier one is reached.
pub async fn retry_all(queue: &Queue) -> Result<u64, QueueError> {
    let before = format!("({}", now_ms());
    let mut total = 0;
    loop {
        let mut conn = queue.connection();
        let ids: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(queue.keys().dead_index())
            .arg(&before)
            .arg("-inf")
            .arg("LIMIT")
            .arg(0)
            .arg(500)
            .query_async(&mut conn)
            .await?;
        let mut moved = 0;
        for id in &ids {
            if retry(queue, id).await? {
                moved += 1;
            }
        }
        total += moved;
        if moved == 0 {
            return Ok(total);
        }
    }
}

/// Deletes every dead task, in bounded batches; returns how many.
pub async fn purge(queue: &Queue) -> Result<u64, QueueError> {
    let keys = queue.keys();
    let mut conn = queue.connection();
    let mut total = 0;
    loop {
        let n: u64 = scripts::PURGE_DEAD
            .key(keys.dead())
            .key(keys.dead_index())
            .arg(1000)
            .invoke_async(&mut conn)
            .await?;
        total += n;
        if n < 1000 {
            return Ok(total);
        }
    }
}

/// Deletes one dead task; whether it was there.
pub async fn delete(queue: &Queue, id: &str) -> Result<bool, QueueError> {
    let keys = queue.keys();
    let mut conn = queue.connection();
    let (n, _): (i64, i64) = redis::pipe()
        .atomic()
        .hdel(keys.dead(), id)
        .zrem(keys.dead_index(), id)
        .query_async(&mut conn)
        .await?;
    Ok(n == 1)
}

/// What to look for among dead tasks: a job type and text in the reason (case-insensitive).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub job: Option<String>,
    pub error: Option<String>,
}

impl Filter {
    /// Whether the filter holds anything.
    pub fn is_empty(&self) -> bool {
        self.job.is_none() && self.error.is_none()
    }

    fn matches(&self, record: &DeadTask) -> bool {
        let job_ok = self
            .job
            .as_deref()
            .is_none_or(|j| record.job.as_deref() == Some(j));
        let error_ok = self
            .error
            .as_deref()
            .is_none_or(|e| record.reason.to_lowercase().contains(&e.to_lowercase()));
        job_ok && error_ok
    }
}

/// Records read per round while searching.
const SEARCH_CHUNK: usize = 1000;

/// Dead tasks matching `filter`, newest first: the `limit` after skipping `offset` matches.
/// Without a filter this is `list`; with one it walks the index newest first.
pub async fn search(
    queue: &Queue,
    filter: &Filter,
    offset: usize,
    limit: usize,
) -> Result<Vec<DeadTask>, QueueError> {
    if filter.is_empty() {
        return list(queue, offset, limit).await;
    }
    let mut found = Vec::new();
    let mut skipped = 0;
    let mut at = 0;
    loop {
        let chunk = list(queue, at, SEARCH_CHUNK).await?;
        let len = chunk.len();
        for record in chunk.into_iter().filter(|r| filter.matches(r)) {
            if skipped < offset {
                skipped += 1;
            } else {
                found.push(record);
                if found.len() == limit {
                    return Ok(found);
                }
            }
        }
        if len < SEARCH_CHUNK {
            return Ok(found);
        }
        at += len;
    }
}

/// The ids of every dead task matching `filter` (every dead task without one).
pub async fn matching_ids(queue: &Queue, filter: &Filter) -> Result<Vec<String>, QueueError> {
    let mut ids = Vec::new();
    let mut at = 0;
    loop {
        let chunk = list(queue, at, SEARCH_CHUNK).await?;
        let len = chunk.len();
        ids.extend(
            chunk
                .into_iter()
                .filter(|r| filter.matches(r))
                .map(|r| r.id),
        );
        if len < SEARCH_CHUNK {
            return Ok(ids);
        }
        at += len;
    }
}

/// The ids of the `count` newest dead tasks with the time each died (ms), newest first: cheap
/// even deep into the list, since no record is read.
pub async fn newest_ids(queue: &Queue, count: usize) -> Result<Vec<(String, i64)>, QueueError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut conn = queue.connection();
    Ok(redis::cmd("ZREVRANGE")
        .arg(queue.keys().dead_index())
        .arg(0)
        .arg(count - 1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await?)
}

/// The dead tasks of `ids` that are still there, in that order.
pub async fn records(queue: &Queue, ids: &[String]) -> Result<Vec<DeadTask>, QueueError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = queue.connection();
    let found: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(queue.keys().dead())
        .arg(ids)
        .query_async(&mut conn)
        .await?;
    Ok(found
        .into_iter()
        .flatten()
        .filter_map(|r| serde_json::from_str(&r).ok())
        .collect())
}

/// How many tasks died at or after `since_ms` and are still dead.
pub async fn died_since(queue: &Queue, since_ms: i64) -> Result<u64, QueueError> {
    let mut conn = queue.connection();
    Ok(redis::cmd("ZCOUNT")
        .arg(queue.keys().dead_index())
        .arg(since_ms)
        .arg("+inf")
        .query_async(&mut conn)
        .await?)
}
