//! `purge_expired_data` (daily): retention. Erases raw payloads of processed webhooks, and
//! deletes statistics snapshots and finished sync runs older than their retention. Works in
//! bounded batches so it never holds long locks.

use serde_json::json;
use sqlx::PgPool;

use super::support::runs::{self, RunSummary};
use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};

/// Stable name.
pub const NAME: &str = "purge_expired_data";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition =
    JobDefinition::new(NAME, "retention: raw webhook payloads and old snapshots")
        .schedule("0 30 3 * * *")
        .runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

const BATCH: i64 = 5000;

/// Runs the purge as a recorded run.
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    runs::recorded(ctx, NAME, |ctx, _run| async move {
        let retention = &ctx.deps.settings.retention;
        let db = &ctx.deps.db;
        let payloads = batched(db, "UPDATE webhook_events SET payload = NULL WHERE id IN (SELECT id FROM webhook_events WHERE payload IS NOT NULL AND status IN ('processed', 'ignored') AND received_at < now() - make_interval(days => $1) LIMIT $2)", retention.webhook_payload_days).await?;
        let statistics = batched(db, "DELETE FROM email_statistics WHERE id IN (SELECT id FROM email_statistics WHERE recorded_at < now() - make_interval(days => $1) LIMIT $2)", retention.statistics_days).await?;
        let sync_runs = batched(db, "DELETE FROM sync_runs WHERE id IN (SELECT id FROM sync_runs WHERE finished_at < now() - make_interval(days => $1) LIMIT $2)", retention.sync_runs_days).await?;
        let total = payloads + statistics + sync_runs;
        Ok(RunSummary {
            items_synced: i32::try_from(total).unwrap_or(i32::MAX),
            items_failed: 0,
            counts: json!({ "webhook_payloads_erased": payloads, "statistics_deleted": statistics, "sync_runs_deleted": sync_runs }),
        })
    })
    .await
}

async fn batched(db: &PgPool, sql: &'static str, days: u32) -> Result<u64, JobError> {
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let mut total = 0;
    loop {
        let done = sqlx::query(sql)
            .bind(days)
            .bind(BATCH)
            .execute(db)
            .await
            .map_err(|e| {
                JobError::Retry(format!("purge failed: {}", crate::store::describe_sqlx(&e)))
            })?
            .rows_affected();
        total += done;
        if done < BATCH as u64 {
            return Ok(total);
        }
    }
}
