//! Per-minute counters of upstream calls (calls, errors, summed latency, rate-limit waits) by
//! service and endpoint, kept in Redis for the dashboard's charts of the last hours. Each
//! process adds to an in-memory table as calls happen and flushes it every few seconds with the
//! metrics it publishes, so a call costs no Redis round trip; a process killed with -9 loses at
//! most the last few seconds of these counts (charts only: nothing else reads them).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use redis::aio::ConnectionManager;

/// How long a minute's counters are kept.
const KEEP_SECS: i64 = 26 * 3600;

static PENDING: LazyLock<Mutex<HashMap<(i64, String), i64>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn key(prefix: &str, minute: i64) -> String {
    format!("{prefix}:timeline:upstream:{minute}")
}

fn minute_now() -> i64 {
    crate::queue::now_ms() / 60_000
}

/// Adds `n` to `field` of the current minute.
pub fn add(field: String, n: i64) {
    if let Ok(mut pending) = PENDING.lock() {
        *pending.entry((minute_now(), field)).or_insert(0) += n;
    }
}

/// One upstream attempt: counted, with its latency, and as an error unless it succeeded.
pub fn call(service: &str, endpoint: &str, failed: bool, millis: i64) {
    add(format!("{service}|{endpoint}|calls"), 1);
    add(format!("{service}|{endpoint}|ms"), millis);
    if failed {
        add(format!("{service}|{endpoint}|errors"), 1);
    }
}

/// Time spent waiting out a rate limit.
pub fn rate_limit_wait(service: &str, millis: i64) {
    add(format!("{service}|ratewait_ms"), millis);
}

/// Writes what was counted since the last flush; on failure the counts are put back.
pub async fn flush(conn: &mut ConnectionManager, prefix: &str) {
    let drained: Vec<((i64, String), i64)> = match PENDING.lock() {
        Ok(mut pending) => pending.drain().collect(),
        Err(_) => return,
    };
    if drained.is_empty() {
        return;
    }
    let mut pipe = redis::pipe();
    let mut minutes = std::collections::BTreeSet::new();
    for ((minute, field), n) in &drained {
        pipe.cmd("HINCRBY")
            .arg(key(prefix, *minute))
            .arg(field)
            .arg(*n)
            .ignore();
        minutes.insert(*minute);
    }
    for minute in minutes {
        pipe.cmd("EXPIRE")
            .arg(key(prefix, minute))
            .arg(KEEP_SECS)
            .ignore();
    }
    if let Err(e) = pipe.query_async::<()>(conn).await {
        tracing::debug!(error = %e, "flushing the upstream timeline failed; kept for the next flush");
        if let Ok(mut pending) = PENDING.lock() {
            for (k, n) in drained {
                *pending.entry(k).or_insert(0) += n;
            }
        }
    }
}

/// The counters of the last `minutes` minutes, oldest first (a minute with no calls is empty).
pub async fn read(
    conn: &mut ConnectionManager,
    prefix: &str,
    minutes: i64,
) -> Result<Vec<(i64, HashMap<String, i64>)>, redis::RedisError> {
    let now = minute_now();
    let range: Vec<i64> = (now - minutes + 1..=now).collect();
    let mut pipe = redis::pipe();
    for minute in &range {
        pipe.cmd("HGETALL").arg(key(prefix, *minute));
    }
    let maps: Vec<HashMap<String, i64>> = pipe.query_async(conn).await?;
    Ok(range.into_iter().zip(maps).collect())
}
