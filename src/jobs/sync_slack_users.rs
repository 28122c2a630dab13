//! `sync_slack_users` (hourly): every Slack user of the workspace, page by page, into
//! `slack_integrations`, matched to team members by email (ignoring case). Bots (and
//! Slackbot) are skipped; deleted users, and users gone from the list since the pass began,
//! are marked inactive. With `SLACK_SYNC_PRESENCE` on, the availability of users matched to a
//! team member is recorded too (one `users.getPresence` each, Tier 3).
//!
//! The pass is resumable (`jobs::support::paging`): an interrupted run leaves its cursor, and the next
//! run goes on from there. A user whose link to a team member changes gets an audit entry.

use futures_util::StreamExt;
use serde_json::json;
use sqlx::PgConnection;
use std::time::Duration;

use super::support::paging;
use super::support::runs::{self, RunSummary};
use crate::clients::error::UpstreamError;
use crate::clients::slack::{SlackClient, SlackUser};
use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};
use crate::store::audit::{self, Actor};
use crate::store::slack_identities::{self, LinkChange, SlackUserRow};

/// Stable name.
pub const NAME: &str = "sync_slack_users";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(
    NAME,
    "match Slack users to team members by email; availability",
)
.schedule("0 0 * * * *")
// Slack's Tier 2 limit makes a large workspace take minutes; a run that stops is resumed.
.timeout(Duration::from_secs(50 * 60))
.runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

/// Presence look-ups in flight at once (the Tier 3 limit paces them).
const PRESENCE_CONCURRENCY: usize = 4;

/// Counts of one run.
#[derive(Debug, Default)]
struct Tally {
    seen: usize,
    bots: usize,
    deleted: usize,
    matched: usize,
    without_email: usize,
    linked: usize,
    unlinked: usize,
}

/// Runs one sync as a recorded run.
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    runs::recorded(ctx, NAME, |ctx, run_id| async move {
        let deps = &ctx.deps;
        let client = crate::clients::slack_from_settings(
            &deps.settings,
            deps.db.clone(),
            deps.redis.clone(),
        )
        .map_err(JobError::Permanent)?;
        let workspace = deps.settings.slack.workspace();
        let page_size = deps.settings.slack.page_size;
        let source = Users {
            client: &client,
            page_size,
        };
        let mut sink = Sink {
            workspace,
            tally: Tally::default(),
        };
        let pass = paging::pass(&deps.db, NAME, run_id, &source, &mut sink, &deps.stopping).await?;
        let tally = sink.tally;
        let gone =
            slack_identities::deactivate_unseen(&deps.db, workspace, pass.started_at).await?;
        let (presence_ok, presence_failed) = if deps.settings.slack.sync_presence {
            presence(&deps.db, &client, workspace).await?
        } else {
            (0, 0)
        };
        metrics::counter!("sync_items_total", "job" => NAME, "outcome" => "synced")
            .increment(tally.seen as u64);
        metrics::counter!("sync_items_total", "job" => NAME, "outcome" => "failed")
            .increment(presence_failed as u64);
        Ok(RunSummary {
            items_synced: tally.seen as i32,
            items_failed: presence_failed as i32,
            counts: json!({
                "pages": pass.pages,
                "resumed": pass.resumed,
                "bots_skipped": tally.bots,
                "deleted": tally.deleted,
                "gone": gone,
                "matched": tally.matched,
                "without_email": tally.without_email,
                "linked": tally.linked,
                "unlinked": tally.unlinked,
                "presence_recorded": presence_ok,
            }),
        })
    })
    .await
}

struct Users<'a> {
    client: &'a SlackClient,
    page_size: u32,
}

impl paging::Fetch for Users<'_> {
    type Item = SlackUser;
    async fn fetch(&self, cursor: &str) -> Result<(Vec<SlackUser>, String), UpstreamError> {
        self.client.users_page(self.page_size, cursor).await
    }
}

struct Sink<'a> {
    workspace: &'a str,
    tally: Tally,
}

impl paging::Write<SlackUser> for Sink<'_> {
    async fn write(
        &mut self,
        users: Vec<SlackUser>,
        tx: &mut PgConnection,
    ) -> Result<(), JobError> {
        write_page(tx, self.workspace, users, &mut self.tally).await
    }
}

/// Whether `user` is a bot (Slackbot has `is_bot: false` but is one).
fn is_bot(user: &SlackUser) -> bool {
    user.is_bot || user.id == "USLACKBOT"
}

/// The people of a page as rows (bots are counted and left out).
fn rows_of(users: Vec<SlackUser>, tally: &mut Tally) -> Vec<SlackUserRow> {
    let mut rows = Vec::with_capacity(users.len());
    for user in users {
        if is_bot(&user) {
            tally.bots += 1;
            continue;
        }
        tally.seen += 1;
        tally.deleted += usize::from(user.deleted);
        let email = user.profile.email.filter(|e| !e.trim().is_empty());
        tally.without_email += usize::from(email.is_none());
        rows.push(SlackUserRow {
            slack_user_id: user.id,
            username: user.name,
            real_name: user.profile.real_name.or(user.real_name),
            display_name: user.profile.display_name,
            email: email.map(|e| e.trim().to_lowercase()),
            active: !user.deleted,
        });
    }
    rows
}

async fn write_page(
    tx: &mut PgConnection,
    workspace: &str,
    users: Vec<SlackUser>,
    tally: &mut Tally,
) -> Result<(), JobError> {
    let rows = rows_of(users, tally);
    if rows.is_empty() {
        return Ok(());
    }
    let changes = slack_identities::upsert_page(tx, workspace, &rows).await?;
    let actor = Actor::new("worker");
    for LinkChange {
        slack_user_id: user,
        now,
        before,
        ..
    } in changes
    {
        tally.matched += usize::from(now.is_some());
        if now == before {
            continue;
        }
        if now.is_some() {
            tally.linked += 1;
        } else {
            tally.unlinked += 1;
        }
        let member = now.as_deref().or(before.as_deref()).unwrap_or_default();
        let action = if now.is_some() {
            "team_member.slack_linked"
        } else {
            "team_member.slack_unlinked"
        };
        audit::record(
            tx,
            &actor,
            action,
            "team_member",
            member,
            json!({ "slack_user_id": user, "workspace_id": workspace, "previous": before }),
        )
        .await?;
    }
    Ok(())
}

/// Records the availability of every active user matched to a team member; (ok, failed).
async fn presence(
    pool: &sqlx::PgPool,
    client: &SlackClient,
    workspace: &str,
) -> Result<(usize, usize), JobError> {
    let users = slack_identities::matched_active(pool, workspace).await?;
    let results: Vec<Result<(), String>> = futures_util::stream::iter(users)
        .map(|user| async move {
            let presence = client.presence(&user).await.map_err(|e| e.to_string())?;
            let availability = if presence == "active" {
                "active"
            } else {
                "away"
            };
            slack_identities::set_availability(pool, workspace, &user, availability)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .buffer_unordered(PRESENCE_CONCURRENCY)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        tracing::warn!(error = %e, failed, "presence look-ups failed");
    }
    Ok((results.len() - failed, failed))
}
