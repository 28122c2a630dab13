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
        .map_err(|e| JobError::Permanent(format!("{e:#}")))?;
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
        let gone = sqlx::query(
            "UPDATE slack_integrations SET is_active = false, updated_at = now()
             WHERE workspace_id = $1 AND is_active AND last_synced < $2",
        )
        .bind(workspace)
        .bind(pass.started_at)
        .execute(&deps.db)
        .await?
        .rows_affected();
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

async fn write_page(
    tx: &mut PgConnection,
    workspace: &str,
    users: Vec<SlackUser>,
    tally: &mut Tally,
) -> Result<(), JobError> {
    let mut ids = Vec::with_capacity(users.len());
    let mut usernames = Vec::with_capacity(users.len());
    let mut real_names = Vec::with_capacity(users.len());
    let mut display_names = Vec::with_capacity(users.len());
    let mut emails = Vec::with_capacity(users.len());
    let mut active = Vec::with_capacity(users.len());
    for user in users {
        if is_bot(&user) {
            tally.bots += 1;
            continue;
        }
        tally.seen += 1;
        tally.deleted += usize::from(user.deleted);
        let email = user.profile.email.filter(|e| !e.trim().is_empty());
        tally.without_email += usize::from(email.is_none());
        ids.push(user.id);
        usernames.push(user.name);
        real_names.push(user.profile.real_name.or(user.real_name));
        display_names.push(user.profile.display_name);
        emails.push(email.map(|e| e.trim().to_lowercase()));
        active.push(!user.deleted);
    }
    if ids.is_empty() {
        return Ok(());
    }
    // One statement per page: match by email, upsert, and report the rows whose link to a
    // team member changed. `updated_at` moves only when something but the sync time changed.
    let rows: Vec<(String, Option<String>, Option<String>, bool)> = sqlx::query_as(
        "WITH page AS (
             SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[])
                 AS p(slack_user_id, username, real_name, display_name, email, active)
         ), matched AS (
             SELECT p.*, tm.id AS team_member_id FROM page p
             LEFT JOIN team_members tm ON p.email IS NOT NULL AND lower(tm.email) = p.email
         ), old AS (
             SELECT s.slack_user_id, s.team_member_id FROM slack_integrations s
             WHERE s.workspace_id = $1 AND s.slack_user_id = ANY($2)
         ), up AS (
             INSERT INTO slack_integrations AS s
                 (workspace_id, slack_user_id, slack_username, real_name, display_name, is_active, team_member_id, last_synced)
             SELECT $1, slack_user_id, username, real_name, display_name, active, team_member_id, now() FROM matched
             ON CONFLICT (workspace_id, slack_user_id) DO UPDATE SET
                 slack_username = excluded.slack_username,
                 real_name = excluded.real_name,
                 display_name = excluded.display_name,
                 is_active = excluded.is_active,
                 team_member_id = excluded.team_member_id,
                 last_synced = excluded.last_synced,
                 updated_at = CASE WHEN (s.slack_username, s.real_name, s.display_name, s.is_active, s.team_member_id)
                         IS DISTINCT FROM (excluded.slack_username, excluded.real_name, excluded.display_name, excluded.is_active, excluded.team_member_id)
                     THEN now() ELSE s.updated_at END
             RETURNING s.slack_user_id, s.team_member_id
         )
         SELECT up.slack_user_id, up.team_member_id, old.team_member_id, old.slack_user_id IS NULL
         FROM up LEFT JOIN old USING (slack_user_id)",
    )
    .bind(workspace)
    .bind(&ids)
    .bind(&usernames)
    .bind(&real_names)
    .bind(&display_names)
    .bind(&emails)
    .bind(&active)
    .fetch_all(&mut *tx)
    .await?;
    let actor = Actor::new("worker");
    for (user, now, before, _new) in rows {
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
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT slack_user_id FROM slack_integrations
         WHERE workspace_id = $1 AND is_active AND team_member_id IS NOT NULL ORDER BY slack_user_id",
    )
    .bind(workspace)
    .fetch_all(pool)
    .await?;
    let results: Vec<Result<(), String>> = futures_util::stream::iter(users)
        .map(|user| async move {
            let presence = client.presence(&user).await.map_err(|e| e.to_string())?;
            let availability = if presence == "active" {
                "active"
            } else {
                "away"
            };
            sqlx::query(
                "UPDATE slack_integrations SET availability = $3, availability_at = now()
                 WHERE workspace_id = $1 AND slack_user_id = $2",
            )
            .bind(workspace)
            .bind(&user)
            .bind(availability)
            .execute(pool)
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
