//! `purge_expired_data` (daily): retention. Erases raw payloads of processed webhooks, and
//! deletes statistics snapshots and finished sync runs older than their retention. Works in
//! bounded batches so it never holds long locks.

use serde_json::json;

use super::support::runs::{self, RunSummary};
use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};
use crate::store::retention;

/// Stable name.
pub const NAME: &str = "purge_expired_data";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition =
    JobDefinition::new(NAME, "retention: raw webhook payloads and old snapshots")
        .schedule("0 30 3 * * *")
        .runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

/// Runs the purge as a recorded run.
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    runs::recorded(ctx, NAME, |ctx, _run| async move {
        let settings = &ctx.deps.settings.retention;
        let db = &ctx.deps.db;
        let payloads = retention::erase_webhook_payloads(db, settings.webhook_payload_days)
            .await
            .map_err(purge_failed)?;
        let statistics = retention::delete_statistics(db, settings.statistics_days)
            .await
            .map_err(purge_failed)?;
        let sync_runs = retention::delete_sync_runs(db, settings.sync_runs_days)
            .await
            .map_err(purge_failed)?;
        let total = payloads + statistics + sync_runs;
        Ok(RunSummary {
            items_synced: i32::try_from(total).unwrap_or(i32::MAX),
            items_failed: 0,
            counts: json!({ "webhook_payloads_erased": payloads, "statistics_deleted": statistics, "sync_runs_deleted": sync_runs }),
        })
    })
    .await
}

fn purge_failed(e: sqlx::Error) -> JobError {
    JobError::from(e).context("purge failed")
}
