//! `sync_runs`: every run of a scheduled or manually triggered job is recorded, and a job
//! never overlaps its own previous run: a tick that arrives while a run is live is recorded
//! as skipped. A run renews `heartbeat_at`; a run whose worker died stops renewing it and is
//! marked failed by the next one.

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::queue::job::{JobContext, JobError};
use crate::store::sync_runs;

/// How often a live run renews its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A running row not renewed for this long belongs to a dead worker.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// What a run reports when it ends well.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Items written.
    pub items_synced: i32,
    /// Items that failed (recorded against themselves, not failing the run).
    pub items_failed: i32,
    /// Any other counts.
    pub counts: Value,
}

/// The outcome of trying to start a run.
#[derive(Debug)]
pub enum Start {
    /// The run is recorded as running.
    Started(Uuid),
    /// Another run of the job is live (recorded as skipped), or this tick was handled already.
    Skipped(&'static str),
}

fn trigger_of(ctx: &JobContext) -> &str {
    match ctx.task.trigger.as_deref() {
        Some(t @ ("schedule" | "catch_up" | "manual" | "api" | "webhook")) => t,
        _ => "manual",
    }
}

fn is_unique_violation(e: &sqlx::Error, index: &str) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") && db.constraint() == Some(index))
}

/// Records the start of a run of `job`, unless one is live.
pub async fn start(db: &PgPool, job: &str, ctx: &JobContext) -> Result<Start, JobError> {
    sync_runs::fail_stale(db, job, STALE_AFTER)
        .await
        .map_err(retry)?;
    let scheduled_for = ctx
        .task
        .scheduled_for
        .and_then(chrono::DateTime::from_timestamp_millis);
    let trigger = trigger_of(ctx);
    let inserted = sync_runs::insert_running(db, job, trigger, scheduled_for).await;
    match inserted {
        Ok(id) => Ok(Start::Started(id)),
        Err(e) if is_unique_violation(&e, "sync_runs_tick_key") => {
            Ok(Start::Skipped("this tick was already run"))
        }
        Err(e) if is_unique_violation(&e, "sync_runs_one_running_key") => {
            let recorded = sync_runs::insert_skipped(db, job, trigger, scheduled_for).await;
            match recorded {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e, "sync_runs_tick_key") => {}
                Err(e) => return Err(retry(e)),
            }
            metrics::counter!("sync_runs_skipped_total", "job" => job.to_owned()).increment(1);
            Ok(Start::Skipped("the previous run is still running"))
        }
        Err(e) => Err(retry(e)),
    }
}

fn retry(e: sqlx::Error) -> JobError {
    JobError::retry(format!(
        "recording the run failed: {}",
        crate::store::describe_sqlx(&e)
    ))
}

/// Runs `body` as a recorded run of `job`: start (or skip), heartbeat while it runs, then
/// record the outcome. A failure is recorded and returned, so the queue retries it.
pub async fn recorded<F, Fut>(ctx: JobContext, job: &str, body: F) -> Result<(), JobError>
where
    F: FnOnce(JobContext, Uuid) -> Fut,
    Fut: Future<Output = Result<RunSummary, JobError>>,
{
    let db = ctx.deps.db.clone();
    let id = match start(&db, job, &ctx).await? {
        Start::Started(id) => id,
        Start::Skipped(why) => {
            tracing::info!(job, why, "run skipped");
            return Ok(());
        }
    };
    let started = std::time::Instant::now();
    let heartbeat = tokio::spawn(heartbeat(db.clone(), id));
    let result = body(ctx, id).await;
    heartbeat.abort();
    finish(&db, job, id, &result).await?;
    count_run(job, started, &result);
    result.map(|_| ())
}

/// Keeps run `id` alive while it runs.
async fn heartbeat(db: PgPool, id: Uuid) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.tick().await;
    loop {
        tick.tick().await;
        let _ = sync_runs::heartbeat(&db, id).await;
    }
}

/// Records how run `id` ended, with its audit entry.
async fn finish(
    db: &PgPool,
    job: &str,
    id: Uuid,
    result: &Result<RunSummary, JobError>,
) -> Result<(), JobError> {
    let (status, summary, error) = match result {
        Ok(summary) => ("succeeded", summary.clone(), None),
        Err(e) => ("failed", RunSummary::default(), Some(e.to_string())),
    };
    let counts = if summary.counts.is_null() {
        json!({})
    } else {
        summary.counts
    };
    let finished = sync_runs::Finished {
        status,
        items_synced: summary.items_synced,
        items_failed: summary.items_failed,
        counts: &counts,
        error: error.as_deref(),
    };
    sync_runs::finish(db, id, &finished).await.map_err(retry)?;
    let mut conn = db.acquire().await.map_err(retry)?;
    crate::store::audit::record(
        &mut conn,
        &crate::store::audit::Actor::new("worker"),
        &format!("sync_run.{status}"),
        "sync_run",
        &id.to_string(),
        json!({ "job": job, "items_synced": summary.items_synced, "items_failed": summary.items_failed }),
    )
    .await
    .map_err(retry)?;
    Ok(())
}

/// `sync_runs_total`, the run's duration and, after a success, its time.
fn count_run(job: &str, started: std::time::Instant, result: &Result<RunSummary, JobError>) {
    let status = if result.is_ok() {
        "succeeded"
    } else {
        "failed"
    };
    let labels = [("job", job.to_owned()), ("outcome", status.to_owned())];
    metrics::counter!("sync_runs_total", &labels).increment(1);
    metrics::histogram!("sync_run_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    if result.is_ok() {
        metrics::gauge!("sync_last_success_timestamp_seconds", "job" => job.to_owned())
            .set(crate::queue::now_ms() as f64 / 1000.0);
    }
}
