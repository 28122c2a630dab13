//! `update_slack_channels` (every 6 h): every public and private channel, page by page, into
//! `slack_channels` (name, purpose, topic, member count, private, archived). A channel named
//! by `SLACK_CHANNEL_PATTERN` (`campaign-{slug}`) is mapped to the campaign with that slug,
//! unless the campaign already has a channel. The mapping is keyed by the channel id, so a
//! renamed channel keeps it. Channels gone from the list since the pass began (deleted in
//! Slack) are marked archived. Resumable like `sync_slack_users`.

use serde_json::json;
use sqlx::PgConnection;
use std::time::Duration;

use super::support::paging;
use super::support::runs::{self, RunSummary};
use crate::clients::error::UpstreamError;
use crate::clients::slack::{SlackChannel, SlackClient};
use crate::config::ChannelPattern;
use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};
use crate::store::audit::{self, Actor};
use crate::store::slack_channels::{self, ChannelRow, NewMapping};

/// Stable name.
pub const NAME: &str = "update_slack_channels";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(
    NAME,
    "channel names, purposes, member counts; map channels to campaigns",
)
.schedule("0 0 */6 * * *")
.timeout(Duration::from_secs(60 * 60))
.runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

#[derive(Debug, Default)]
struct Tally {
    seen: usize,
    archived: usize,
    mapped: usize,
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
        let pattern = deps.settings.slack.channel_pattern.clone();
        let page_size = deps.settings.slack.page_size;
        let source = Channels {
            client: &client,
            page_size,
        };
        let mut sink = Sink {
            workspace,
            pattern: &pattern,
            tally: Tally::default(),
        };
        let pass = paging::pass(&deps.db, NAME, run_id, &source, &mut sink, &deps.stopping).await?;
        let tally = sink.tally;
        let gone = slack_channels::archive_unseen(&deps.db, workspace, pass.started_at).await?;
        let mapped_total = slack_channels::mapped_count(&deps.db, workspace).await?;
        metrics::counter!("sync_items_total", "job" => NAME, "outcome" => "synced")
            .increment(tally.seen as u64);
        Ok(RunSummary {
            items_synced: tally.seen as i32,
            items_failed: 0,
            counts: json!({
                "pages": pass.pages,
                "resumed": pass.resumed,
                "archived": tally.archived,
                "gone": gone,
                "newly_mapped": tally.mapped,
                "mapped": mapped_total,
            }),
        })
    })
    .await
}

struct Channels<'a> {
    client: &'a SlackClient,
    page_size: u32,
}

impl paging::Fetch for Channels<'_> {
    type Item = SlackChannel;
    async fn fetch(&self, cursor: &str) -> Result<(Vec<SlackChannel>, String), UpstreamError> {
        self.client.channels_page(self.page_size, cursor).await
    }
}

struct Sink<'a> {
    workspace: &'a str,
    pattern: &'a ChannelPattern,
    tally: Tally,
}

impl paging::Write<SlackChannel> for Sink<'_> {
    async fn write(
        &mut self,
        channels: Vec<SlackChannel>,
        tx: &mut PgConnection,
    ) -> Result<(), JobError> {
        write_page(tx, self.workspace, self.pattern, channels, &mut self.tally).await
    }
}

async fn write_page(
    tx: &mut PgConnection,
    workspace: &str,
    pattern: &ChannelPattern,
    channels: Vec<SlackChannel>,
    tally: &mut Tally,
) -> Result<(), JobError> {
    let rows: Vec<ChannelRow> = channels
        .into_iter()
        .map(|c| {
            tally.seen += 1;
            tally.archived += usize::from(c.is_archived);
            ChannelRow {
                slug: pattern.slug_of(&c.name).map(str::to_owned),
                member_count: c.num_members.unwrap_or(0).clamp(0, i64::from(i32::MAX)) as i32,
                id: c.id,
                name: c.name,
                purpose: c.purpose.value,
                topic: c.topic.value,
                is_private: c.is_private,
                is_archived: c.is_archived,
            }
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mapped = slack_channels::upsert_page(tx, workspace, &rows).await?;
    let actor = Actor::new("worker");
    for NewMapping {
        channel,
        name,
        campaign,
    } in mapped
    {
        tally.mapped += 1;
        audit::record(
            tx,
            &actor,
            "campaign.channel_mapped",
            "campaign",
            &campaign,
            json!({ "slack_channel_id": channel, "name": name, "matched_by": "channel_name" }),
        )
        .await?;
    }
    Ok(())
}
