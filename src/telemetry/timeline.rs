//! Per-minute counters of upstream calls (calls, errors, summed latency, rate-limit waits) by
//! service and endpoint, kept in Redis for the dashboard's charts of the last hours. Each
//! process adds to an in-memory table as calls happen and flushes it every few seconds with the
//! metrics it publishes, so a call costs no Redis round trip; a process killed with -9 loses at
//! most the last few seconds of these counts (charts and alerts only: a few lost seconds do not change either).

use std::collections::{BTreeMap, HashMap};
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

/// One upstream attempt: counted, with its latency, and as an error unless its `outcome` is
/// `ok`; authentication failures (`auth_failed`) and attempts that got no answer
/// (`unreachable`) are also counted per service, for the alerts.
pub fn call(service: &str, endpoint: &str, outcome: &str, millis: i64) {
    add(format!("{service}|{endpoint}|calls"), 1);
    add(format!("{service}|{endpoint}|ms"), millis);
    if outcome != "ok" {
        add(format!("{service}|{endpoint}|errors"), 1);
    }
    if matches!(outcome, "auth_failed" | "unreachable") {
        add(format!("{service}|{outcome}"), 1);
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

/// Calls, errors and summed latency of one endpoint.
#[derive(Debug, Default, Clone, Copy)]
pub struct Health {
    pub calls: i64,
    pub errors: i64,
    pub ms: i64,
}

/// What some minutes of counters add up to.
#[derive(Debug, Default)]
pub struct Tally {
    /// Per (service, endpoint).
    pub endpoints: BTreeMap<(String, String), Health>,
    /// Per service, milliseconds spent waiting out rate limits.
    pub waits: BTreeMap<String, i64>,
    /// Per service, attempts refused for their credentials.
    pub auth_failures: BTreeMap<String, i64>,
    /// Per service, attempts that got no answer at all.
    pub unreachable: BTreeMap<String, i64>,
}

impl Tally {
    /// Per service, its endpoints' health summed.
    pub fn services(&self) -> BTreeMap<String, Health> {
        let mut services: BTreeMap<String, Health> = BTreeMap::new();
        for ((service, _), h) in &self.endpoints {
            let s = services.entry(service.clone()).or_default();
            s.calls += h.calls;
            s.errors += h.errors;
            s.ms += h.ms;
        }
        services
    }
}

/// Adds up `minutes` as [`read`] returns them.
pub fn tally(minutes: &[(i64, HashMap<String, i64>)]) -> Tally {
    let mut t = Tally::default();
    for (field, n) in minutes.iter().flat_map(|(_, fields)| fields) {
        let parts: Vec<&str> = field.split('|').collect();
        match parts.as_slice() {
            [service, "ratewait_ms"] => *t.waits.entry((*service).to_owned()).or_default() += n,
            [service, "auth_failed"] => {
                *t.auth_failures.entry((*service).to_owned()).or_default() += n
            }
            [service, "unreachable"] => {
                *t.unreachable.entry((*service).to_owned()).or_default() += n
            }
            [service, endpoint, what] => {
                let h = t
                    .endpoints
                    .entry(((*service).to_owned(), (*endpoint).to_owned()))
                    .or_default();
                match *what {
                    "calls" => h.calls += n,
                    "errors" => h.errors += n,
                    "ms" => h.ms += n,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    t
}
