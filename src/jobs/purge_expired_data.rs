//! `purge_expired_data` (daily): retention, one setting per kind of data (`RETENTION_*`).
//! Erases raw payloads of processed webhooks, pseudonymises settled sends' recipients, and
//! deletes statistics snapshots, finished sync runs, rejected deliveries, team activity,
//! settled outgoing webhooks and expired dashboard sessions older than theirs. Works in
//! bounded batches so it never holds long locks.

use serde_json::json;

use super::support::runs::{self, RunSummary};
use crate::config::RetentionSettings;
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
        let counts = purge(&ctx.deps.db, &ctx.deps.settings.retention)
            .await
            .map_err(purge_failed)?;
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let counts: serde_json::Map<String, serde_json::Value> = counts
            .into_iter()
            .map(|(k, n)| (k.to_owned(), json!(n)))
            .collect();
        Ok(RunSummary {
            items_synced: i32::try_from(total).unwrap_or(i32::MAX),
            items_failed: 0,
            counts: serde_json::Value::Object(counts),
        })
    })
    .await
}

/// Every kind of data past its retention, erased or deleted: how many of each.
pub async fn purge(
    db: &sqlx::PgPool,
    r: &RetentionSettings,
) -> Result<Vec<(&'static str, u64)>, sqlx::Error> {
    Ok(vec![
        (
            "webhook_payloads_erased",
            retention::erase_webhook_payloads(db, r.webhook_payload_days).await?,
        ),
        (
            "statistics_deleted",
            retention::delete_statistics(db, r.statistics_days).await?,
        ),
        (
            "sync_runs_deleted",
            retention::delete_sync_runs(db, r.sync_runs_days).await?,
        ),
        (
            // Resolved alerts are kept as long as the runs they were about.
            "alerts_deleted",
            crate::store::alerts::delete_resolved(db, r.sync_runs_days).await?,
        ),
        (
            "recipients_pseudonymised",
            retention::pseudonymise_recipients(db, r.recipient_days).await?,
        ),
        (
            "webhook_rejections_deleted",
            retention::delete_webhook_rejections(db, r.webhook_rejection_days).await?,
        ),
        (
            "slack_messages_deleted",
            retention::delete_slack_messages(db, r.slack_message_days).await?,
        ),
        (
            "outgoing_webhooks_deleted",
            retention::delete_outgoing_webhooks(db, r.outgoing_webhook_days).await?,
        ),
        (
            "dashboard_sessions_deleted",
            retention::delete_expired_sessions(db).await?,
        ),
    ])
}

fn purge_failed(e: sqlx::Error) -> JobError {
    JobError::from(e).context("purge failed")
}
