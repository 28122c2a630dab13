//! `send_approval_reminders` (every 15 min): reminds each approver in their approval's DM
//! thread at every configured offset before the deadline (`APPROVAL_REMINDER_OFFSETS`,
//! default 24 h and 1 h) that fell after the approval was asked for — each reminder once,
//! however many dynos run this (the reminder's outbox key is unique) — and expires the
//! approvals whose deadline has passed: their message loses its buttons, the channel hears in
//! the approval's thread, the Campaign Manager gets a webhook.

use std::time::Duration;

use serde_json::json;

use super::support::runs::{self, RunSummary};
use super::support::workflow;
use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};
use crate::store::approvals;
use crate::store::audit::Actor;

/// Stable name.
pub const NAME: &str = "send_approval_reminders";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(
    NAME,
    "remind approvers before the deadline; expire overdue approvals",
)
.schedule("0 */15 * * * *")
.timeout(Duration::from_secs(10 * 60))
.runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

/// One pass, recorded.
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    runs::recorded(ctx, NAME, |ctx, _run_id| async move {
        let deps = &ctx.deps;
        let offsets = &deps.settings.workflows.reminder_offsets;
        let reminded = remind(&deps.db, offsets).await?;
        let expired = expire(&deps.db, deps.settings.workflows.webhook_url.is_some()).await?;
        if reminded + expired > 0 {
            super::deliver_slack_posts::kick_or_log(deps.redis.clone(), &deps.prefix, NAME).await;
            super::deliver_outgoing_webhooks::kick_or_log(deps.redis.clone(), &deps.prefix, NAME)
                .await;
        }
        Ok(RunSummary {
            items_synced: (reminded + expired) as i32,
            items_failed: 0,
            counts: json!({ "reminded": reminded, "expired": expired }),
        })
    })
    .await
}

/// Queues the due reminders. When several offsets of one approval are due at once (the job
/// did not run for a while), only the nearest to the deadline is sent; the others are
/// recorded as passed.
async fn remind(db: &sqlx::PgPool, offsets: &[Duration]) -> Result<u64, JobError> {
    let secs: Vec<i64> = offsets.iter().map(|d| d.as_secs() as i64).collect();
    let due = approvals::reminders_due(db, &secs).await?;
    let mut nearest: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for (id, offset) in due {
        let entry = nearest.entry(id).or_insert(offset);
        *entry = (*entry).min(offset);
    }
    let mut queued = 0;
    for (id, offset) in nearest {
        let mut tx = db.begin().await?;
        if workflow::queue_reminder(&mut tx, &id, Duration::from_secs(offset as u64)).await? {
            // Earlier offsets that passed unsent are spent too: a later run sends none of them.
            for earlier in secs.iter().filter(|s| **s > offset) {
                workflow::spend_reminder(&mut tx, &id, *earlier).await?;
            }
            queued += 1;
            metrics::counter!("slack_approval_reminders_total").increment(1);
        }
        tx.commit().await?;
    }
    Ok(queued)
}

/// Expires pending approvals past their deadline, announcing each.
async fn expire(db: &sqlx::PgPool, webhooks: bool) -> Result<u64, JobError> {
    let mut total = 0;
    loop {
        let mut tx = db.begin().await?;
        let ids = approvals::expire_due(&mut tx).await?;
        if ids.is_empty() {
            return Ok(total);
        }
        for id in &ids {
            workflow::announce_outcome(&mut tx, id, &Actor::new("worker"), webhooks).await?;
        }
        tx.commit().await?;
        total += ids.len() as u64;
    }
}
