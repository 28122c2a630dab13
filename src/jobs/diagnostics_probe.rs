//! `diagnostics_probe`: a job for checking a deployment end to end (and for the queue's own
//! chaos tests). It counts its starts and finishes in Redis under
//! `<prefix>:diagnostics:<tag>` (`started`, `finished`, and `by:<dyno>` per process), sleeps,
//! and can fail its first attempts on purpose.
//!
//! `campaign-sync jobs run diagnostics_probe --args '{"tag":"check","sleep_ms":100}'`

use std::time::Duration;

use serde::Deserialize;

use crate::queue::job::{self, JobContext, JobDefinition, JobError};

/// Stable name.
pub const NAME: &str = "diagnostics_probe";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(
    NAME,
    "a probe the queue tests and `doctor` enqueue: counts its runs, can sleep and fail",
)
.retries(3, Duration::from_secs(1), Duration::from_secs(5))
.runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

/// Arguments of the probe.
#[derive(Debug, Deserialize)]
pub struct ProbeArgs {
    /// Counter name.
    pub tag: String,
    /// How long to run.
    #[serde(default)]
    pub sleep_ms: u64,
    /// Fail this many attempts before succeeding.
    #[serde(default)]
    pub fail_attempts: u32,
    /// Fail while the Redis key `broken_key(prefix, tag)` exists (an outage an operator fixes
    /// before re-driving the dead task).
    #[serde(default)]
    pub fail_while_broken: bool,
}

/// The key that makes a `fail_while_broken` probe fail while it exists.
pub fn broken_key(prefix: &str, tag: &str) -> String {
    format!("{prefix}:diagnostics:{tag}:broken")
}

/// The Redis hash holding the probe's counters.
pub fn counter_key(prefix: &str, tag: &str) -> String {
    format!("{prefix}:diagnostics:{tag}")
}

/// Runs the probe.
pub async fn run(ctx: JobContext, args: ProbeArgs) -> Result<(), JobError> {
    let key = counter_key(&ctx.deps.prefix, &args.tag);
    let mut conn = ctx.deps.redis.clone();
    let count = |field: &'static str| redis::cmd("HINCRBY").arg(&key).arg(field).arg(1).to_owned();
    count("started")
        .query_async::<i64>(&mut conn)
        .await
        .map_err(|e| JobError::Retry(e.into()))?;
    tokio::time::sleep(Duration::from_millis(args.sleep_ms)).await;
    if args.fail_while_broken {
        let broken: bool = redis::cmd("EXISTS")
            .arg(broken_key(&ctx.deps.prefix, &args.tag))
            .query_async(&mut conn)
            .await
            .map_err(|e| JobError::Retry(e.into()))?;
        if broken {
            return Err(JobError::retry(format!(
                "{} is set: failing on purpose",
                broken_key(&ctx.deps.prefix, &args.tag)
            )));
        }
    }
    if ctx.task.attempts < args.fail_attempts {
        return Err(JobError::retry(format!(
            "failing attempt {} on purpose",
            ctx.task.attempts + 1
        )));
    }
    count("finished")
        .query_async::<i64>(&mut conn)
        .await
        .map_err(|e| JobError::Retry(e.into()))?;
    // Which process ran it (Heroku's DYNO, else the pid): a check can tell that every
    // worker still takes work.
    let by = std::env::var("DYNO").unwrap_or_else(|_| format!("pid {}", std::process::id()));
    redis::cmd("HINCRBY")
        .arg(&key)
        .arg(format!("by:{by}"))
        .arg(1)
        .query_async::<i64>(&mut conn)
        .await
        .map_err(|e| JobError::Retry(e.into()))?;
    Ok(())
}
