//! Rate limits shared by every process through Redis: one GCRA cell per upstream × method ×
//! workspace (a single key holding the theoretical arrival time), and a pause key that a 429
//! sets so that every process waits out `Retry-After`, not just the one that was refused.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

/// A rate: `count` calls per `per`, with bursts of up to `burst` calls.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
}

impl Rate {
    /// `count` per second, no burst beyond one.
    pub fn per_second(count: u32) -> Self {
        Rate {
            count: count.max(1),
            per: Duration::from_secs(1),
            burst: 1,
        }
    }

    /// `count` per minute (Slack's tiers), with a small burst.
    pub fn per_minute(count: u32) -> Self {
        Rate {
            count: count.max(1),
            per: Duration::from_secs(60),
            burst: 3.min(count.max(1)),
        }
    }

    fn interval_ms(&self) -> u64 {
        (self.per.as_millis() as u64 / u64::from(self.count)).max(1)
    }
}

/// GCRA: KEYS cell, pause. ARGV interval_ms, burst. Returns 0 when the call may go now, else
/// the milliseconds to wait. The time is Redis's own (`TIME`), so every process shares one
/// clock however far the dynos' clocks drift apart.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return paused - now end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - interval * (burst - 1)
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], tat + interval, 'PX', interval * burst + 1000)
return 0
"#,
    )
});

/// KEYS pause. ARGV wait_ms. Pauses until Redis's `TIME` + wait, never shortening a longer
/// pause another process set.
static PAUSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = tonumber(ARGV[1])
local until_ms = now + wait
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= until_ms then return current end
redis.call('SET', KEYS[1], until_ms, 'PX', wait + 1000)
return until_ms
"#,
    )
});

/// The shared limiter.
#[derive(Clone)]
pub struct Limiter {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Limiter {
    /// A limiter whose keys live under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Limiter {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    fn keys(&self, key: &str) -> (String, String) {
        // One hash tag per limited key, so the script's two keys share a slot.
        (
            format!("{{{}:ratelimit:{key}}}:cell", self.prefix),
            format!("{{{}:ratelimit:{key}}}:paused", self.prefix),
        )
    }

    /// Waits until a call under `key` is allowed at `rate`; returns the wait it would need when
    /// that is longer than `max_wait` (the caller hands it to the queue). Redis errors let the
    /// call through: the upstream's own 429 still protects it.
    pub async fn acquire(&self, key: &str, rate: Rate, max_wait: Duration) -> Result<(), Duration> {
        let (cell, paused) = self.keys(key);
        let mut waited = Duration::ZERO;
        loop {
            let mut conn = self.conn.clone();
            let wait_ms: Result<u64, _> = ACQUIRE
                .key(&cell)
                .key(&paused)
                .arg(rate.interval_ms())
                .arg(rate.burst.max(1))
                .invoke_async(&mut conn)
                .await;
            let wait = match wait_ms {
                Ok(0) => {
                    if !waited.is_zero() {
                        metrics::histogram!("upstream_limiter_wait_seconds")
                            .record(waited.as_secs_f64());
                    }
                    return Ok(());
                }
                Ok(ms) => Duration::from_millis(ms),
                Err(e) => {
                    tracing::warn!(error = %e, key, "rate limiter unavailable; calling without it");
                    return Ok(());
                }
            };
            if waited + wait > max_wait {
                return Err(wait);
            }
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }

    /// Pauses `key` for every process until `wait` has passed (after a 429).
    pub async fn pause(&self, key: &str, wait: Duration) {
        let (_, paused) = self.keys(key);
        let mut conn = self.conn.clone();
        let set: Result<i64, _> = PAUSE
            .key(&paused)
            .arg(wait.as_millis() as u64)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = set {
            tracing::warn!(error = %e, key, "could not share a rate-limit pause");
        }
    }
}
