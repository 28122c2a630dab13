//! Runs of the queue-driven jobs (`process_email_queue`, `process_webhook_events`) in
//! `sync_runs`. They run far more often than a sync (every kick, every webhook batch), so the
//! runs of one job within a minute share one row: `counts.runs` says how many, the other
//! counts add up, `finished_at` is the last run's end, and a failure marks the row failed
//! with its error. "Last run" is then knowable for them as for every sync.

use serde_json::Value;
use sqlx::PgPool;

/// One run's figures.
#[derive(Debug, Clone, Default)]
pub struct RunCounts<'a> {
    pub trigger: &'a str,
    pub items_synced: i64,
    pub items_failed: i64,
    /// Counts to add (numbers), e.g. `{"sent": 50, "batches": 1}`.
    pub counts: Value,
    /// The run's error, if it failed.
    pub error: Option<String>,
}

/// The `sync_runs.trigger` a task's trigger is recorded as.
pub fn recorded_trigger(task_trigger: Option<&str>) -> &'static str {
    match task_trigger {
        Some("schedule" | "catch_up") => "schedule",
        Some("api") => "api",
        Some("webhook" | "sweeper" | "replay") => "webhook",
        _ => "manual",
    }
}

/// Adds one run of `job` to its row of the current minute (a new row if there is none).
pub async fn record_aggregated(
    db: &PgPool,
    job: &str,
    run: &RunCounts<'_>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    // One writer per job at a time, so concurrent runs add to one row instead of racing.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sync_runs:' || $1))")
        .bind(job)
        .execute(&mut *tx)
        .await?;
    let failed = run.error.is_some();
    let updated = sqlx::query(
        "UPDATE sync_runs SET finished_at = now(),
             items_synced = items_synced + $2, items_failed = items_failed + $3,
             counts = (SELECT coalesce(jsonb_object_agg(k, coalesce((counts->>k)::bigint, 0) + coalesce(($4::jsonb->>k)::bigint, 0)), '{}'::jsonb)
                       FROM jsonb_object_keys(counts || $4::jsonb) AS k),
             status = CASE WHEN $5 THEN 'failed' ELSE status END,
             error = coalesce($6, error)
         WHERE id = (SELECT id FROM sync_runs WHERE job = $1 AND status <> 'running'
                       AND started_at > date_trunc('minute', now()) ORDER BY started_at DESC LIMIT 1)",
    )
    .bind(job)
    .bind(run.items_synced)
    .bind(run.items_failed)
    .bind(with_runs(&run.counts))
    .bind(failed)
    .bind(&run.error)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO sync_runs (job, trigger, status, finished_at, items_synced, items_failed, counts, error)
             VALUES ($1, $2, CASE WHEN $3 THEN 'failed' ELSE 'succeeded' END, now(), $4, $5, $6, $7)",
        )
        .bind(job)
        .bind(run.trigger)
        .bind(failed)
        .bind(i32::try_from(run.items_synced).unwrap_or(i32::MAX))
        .bind(i32::try_from(run.items_failed).unwrap_or(i32::MAX))
        .bind(with_runs(&run.counts))
        .bind(&run.error)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

fn with_runs(counts: &Value) -> Value {
    let mut counts = counts.clone();
    if let Some(map) = counts.as_object_mut() {
        map.insert("runs".to_owned(), Value::from(1));
    } else {
        counts = serde_json::json!({ "runs": 1 });
    }
    counts
}

/// Marks runs of `job` still `running` without a heartbeat for `stale_after` as failed (the
/// worker running them stopped).
pub async fn fail_stale(
    db: &PgPool,
    job: &str,
    stale_after: std::time::Duration,
) -> Result<(), sqlx::Error> {
    let stale = format!("{} seconds", stale_after.as_secs());
    sqlx::query(
        "UPDATE sync_runs SET status = 'failed', finished_at = now(), error = 'the worker running it stopped (no heartbeat)'
         WHERE job = $1 AND status = 'running' AND heartbeat_at < now() - $2::interval",
    )
    .bind(job)
    .bind(&stale)
    .execute(db)
    .await?;
    Ok(())
}

/// Starts a run; fails with a unique violation on `sync_runs_tick_key` (this tick ran) or
/// `sync_runs_one_running_key` (another run of the job is running).
pub async fn insert_running(
    db: &PgPool,
    job: &str,
    trigger: &str,
    scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<uuid::Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO sync_runs (job, trigger, scheduled_for) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(job)
    .bind(trigger)
    .bind(scheduled_for)
    .fetch_one(db)
    .await
}

/// Records a run that was skipped because the previous one is still running.
pub async fn insert_skipped(
    db: &PgPool,
    job: &str,
    trigger: &str,
    scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sync_runs (job, trigger, scheduled_for, status, finished_at, error)
         VALUES ($1, $2, $3, 'skipped', now(), 'the previous run is still running')",
    )
    .bind(job)
    .bind(trigger)
    .bind(scheduled_for)
    .execute(db)
    .await?;
    Ok(())
}

/// The running run `id` is alive.
pub async fn heartbeat(db: &PgPool, id: uuid::Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sync_runs SET heartbeat_at = now() WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Finished<'a> {
    pub status: &'a str,
    pub items_synced: i32,
    pub items_failed: i32,
    pub counts: &'a serde_json::Value,
    pub error: Option<&'a str>,
}

/// Ends run `id`.
pub async fn finish(db: &PgPool, id: uuid::Uuid, f: &Finished<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sync_runs SET status = $2, finished_at = now(), items_synced = $3, items_failed = $4, counts = $5, error = $6
         WHERE id = $1",
    )
    .bind(id)
    .bind(f.status)
    .bind(f.items_synced)
    .bind(f.items_failed)
    .bind(f.counts)
    .bind(f.error)
    .execute(db)
    .await?;
    Ok(())
}

/// The cursor of the latest failed run of `job` in the last `within_hours`, when no run
/// succeeded after it.
pub async fn resumable_cursor(
    db: &PgPool,
    job: &str,
    within_hours: i32,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT cursor FROM sync_runs
         WHERE job = $1 AND status = 'failed' AND cursor IS NOT NULL
           AND started_at > now() - make_interval(hours => $2)
           AND started_at > coalesce((SELECT max(started_at) FROM sync_runs WHERE job = $1 AND status = 'succeeded'), '-infinity')
         ORDER BY started_at DESC LIMIT 1",
    )
    .bind(job)
    .bind(within_hours)
    .fetch_optional(db)
    .await
}

/// Saves run `id`'s cursor (in the page's transaction).
pub async fn save_cursor(
    conn: &mut sqlx::PgConnection,
    id: uuid::Uuid,
    cursor: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sync_runs SET cursor = $2 WHERE id = $1")
        .bind(id)
        .bind(cursor)
        .execute(conn)
        .await?;
    Ok(())
}

/// The latest run of each job: (job, status, started, error).
pub async fn latest_per_job(
    db: &PgPool,
) -> Result<
    Vec<(
        String,
        String,
        chrono::DateTime<chrono::Utc>,
        Option<String>,
    )>,
    sqlx::Error,
> {
    sqlx::query_as(
        "SELECT DISTINCT ON (job) job, status, started_at, error FROM sync_runs ORDER BY job, started_at DESC",
    )
    .fetch_all(db)
    .await
}

/// When the last successful run of `job` started.
pub async fn last_success_start(
    db: &PgPool,
    job: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(started_at) FROM sync_runs WHERE job = $1 AND status = 'succeeded'",
    )
    .bind(job)
    .fetch_one(db)
    .await
}
