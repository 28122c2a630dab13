//! Cron schedules → exactly-once ticks, however many worker processes run.
//!
//! Every worker runs this loop. A tick is enqueued by an atomic compare-and-set on the
//! schedule's last-enqueued tick in Redis (in the same script as the enqueue), so of all the
//! processes that see a tick come due exactly one enqueues it. At start, a tick missed while
//! every worker was down is enqueued once (`catch_up`). Overlap of a long run with the next
//! tick is prevented where the run starts (`jobs::support::runs`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::config::Schedule;
use crate::queue::job::Registry;
use crate::queue::{Queue, TaskEnvelope, scripts};

/// How often the loop looks for due ticks at most; it sleeps less when a tick is nearer.
const MAX_SLEEP: Duration = Duration::from_millis(500);
/// Ticks looked at per schedule in one pass (a very frequent schedule after a long pause).
const MAX_TICKS_PER_PASS: usize = 10_000;

/// One schedule being run.
#[derive(Debug, Clone)]
struct Entry {
    job: String,
    cron: cron::Schedule,
    queue: Queue,
    /// The latest tick this process has handled (enqueued or seen enqueued).
    last: DateTime<Utc>,
}

/// The schedules of every registered job that has one.
#[derive(Debug)]
pub struct Scheduler {
    entries: Vec<Entry>,
}

/// What one tick attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// This process enqueued it.
    Enqueued,
    /// Another process had enqueued it (or a later one).
    AlreadyEnqueued,
}

impl Scheduler {
    /// Schedules every job of `schedules` that has a handler in `registry` and is not off.
    /// `queues` maps queue names to handles.
    pub fn new(
        schedules: &BTreeMap<String, Schedule>,
        registry: &Registry,
        queues: &BTreeMap<String, Queue>,
    ) -> Self {
        let now = Utc::now();
        let mut entries = Vec::new();
        for (job, schedule) in schedules {
            let Some(cron) = &schedule.cron else { continue };
            let Some(spec) = registry.get(job) else {
                tracing::info!(
                    job,
                    "has a schedule but no handler in this build; not scheduled"
                );
                continue;
            };
            let Some(queue) = queues.get(&spec.queue) else {
                continue;
            };
            entries.push(Entry {
                job: job.clone(),
                cron: cron.clone(),
                queue: queue.clone(),
                last: now,
            });
        }
        Scheduler { entries }
    }

    /// The scheduled job names.
    pub fn jobs(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.job.as_str()).collect()
    }

    /// Catches up: for each schedule whose last enqueued tick (in Redis) is older than its
    /// latest due tick, that latest tick is enqueued once. A schedule never seen before
    /// starts from now.
    pub async fn catch_up(&mut self) -> Result<(), crate::queue::QueueError> {
        let now = Utc::now();
        for entry in &mut self.entries {
            let mut conn = entry.queue.connection();
            let key = entry.queue.keys().schedule(&entry.job);
            let last: Option<i64> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            let Some(last) = last.and_then(DateTime::from_timestamp_millis) else {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(now.timestamp_millis())
                    .arg("NX")
                    .query_async(&mut conn)
                    .await?;
                entry.last = now;
                continue;
            };
            let due = latest_due(&entry.cron, last, now);
            if let Some(tick) = due.latest {
                let outcome = enqueue_tick(entry, tick, "catch_up").await?;
                tracing::info!(job = entry.job, tick = %tick, ?outcome, "caught up a tick missed while no worker ran");
                entry.last = tick;
            } else {
                entry.last = last;
            }
        }
        Ok(())
    }

    /// Runs until `stop` turns true. Redis errors are logged and retried; the loop never ends
    /// on its own.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e, "catch-up failed; schedules start from now");
        }
        loop {
            let sleep = match self.pass().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler pass failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Enqueues every tick now due; returns how long to sleep before the next pass.
    pub async fn pass(&mut self) -> Result<Duration, crate::queue::QueueError> {
        let now = Utc::now();
        let mut sleep = MAX_SLEEP;
        for entry in &mut self.entries {
            let due = latest_due(&entry.cron, entry.last, now);
            if let Some(tick) = due.latest {
                if due.count > 1 {
                    // This process fell behind by more than one tick: the older ones are
                    // coalesced into the latest (unless another process enqueued them).
                    metrics::counter!("schedule_ticks_coalesced_total", "job" => entry.job.clone())
                        .increment(due.count as u64 - 1);
                }
                enqueue_tick(entry, tick, "schedule").await?;
                entry.last = tick;
            }
            if let Some(next) = entry.cron.after(&entry.last).next() {
                let until = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                sleep = sleep.min(until + Duration::from_millis(1));
            }
        }
        Ok(sleep)
    }
}

struct Due {
    latest: Option<DateTime<Utc>>,
    count: usize,
}

fn latest_due(cron: &cron::Schedule, after: DateTime<Utc>, now: DateTime<Utc>) -> Due {
    let mut due = Due {
        latest: None,
        count: 0,
    };
    for tick in cron.after(&after).take(MAX_TICKS_PER_PASS) {
        if tick > now {
            break;
        }
        due.latest = Some(tick);
        due.count += 1;
    }
    due
}

async fn enqueue_tick(
    entry: &Entry,
    tick: DateTime<Utc>,
    trigger: &str,
) -> Result<TickOutcome, crate::queue::QueueError> {
    let mut task = TaskEnvelope::new(&entry.job, serde_json::Value::Null);
    task.scheduled_for = Some(tick.timestamp_millis());
    task.trigger = Some(trigger.to_owned());
    let keys = entry.queue.keys();
    let mut conn = entry.queue.connection();
    let enqueued: i64 = scripts::SCHEDULE_TICK
        .key(keys.schedule(&entry.job))
        .key(keys.stream())
        .key(keys.stats())
        .arg(tick.timestamp_millis())
        .arg(task.encode())
        .arg(&entry.job)
        .invoke_async(&mut conn)
        .await?;
    if enqueued == 1 {
        let lag = (Utc::now() - tick).to_std().unwrap_or(Duration::ZERO);
        metrics::histogram!("schedule_lag_seconds", "job" => entry.job.clone())
            .record(lag.as_secs_f64());
        tracing::debug!(job = entry.job, tick = %tick, trigger, "tick enqueued");
        Ok(TickOutcome::Enqueued)
    } else {
        Ok(TickOutcome::AlreadyEnqueued)
    }
}

/// The next run of `schedule` after now, for `jobs list`.
pub fn next_run(schedule: &Schedule) -> Option<DateTime<Utc>> {
    schedule.cron.as_ref().and_then(|c| c.upcoming(Utc).next())
}
