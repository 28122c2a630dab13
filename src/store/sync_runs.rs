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
