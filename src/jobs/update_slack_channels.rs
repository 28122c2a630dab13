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
        let client = crate::clients::slack_from_settings(&deps.settings, deps.db.clone(), deps.redis.clone())
            .map_err(|e| JobError::Permanent(format!("{e:#}")))?;
        let workspace = deps.settings.slack.workspace();
        let pattern = deps.settings.slack.channel_pattern.clone();
        let page_size = deps.settings.slack.page_size;
        let source = Channels { client: &client, page_size };
        let mut sink = Sink { workspace, pattern: &pattern, tally: Tally::default() };
        let pass = paging::pass(&deps.db, NAME, run_id, &source, &mut sink, &deps.stopping).await?;
        let tally = sink.tally;
        let gone = sqlx::query(
            "UPDATE slack_channels SET is_archived = true, updated_at = now()
             WHERE workspace_id = $1 AND NOT is_archived AND last_synced < $2",
        )
        .bind(workspace)
        .bind(pass.started_at)
        .execute(&deps.db)
        .await?
        .rows_affected();
        let mapped_total: i64 = sqlx::query_scalar("SELECT count(*) FROM slack_channels WHERE workspace_id = $1 AND campaign_id IS NOT NULL")
            .bind(workspace)
            .fetch_one(&deps.db)
            .await?;
        metrics::counter!("sync_items_total", "job" => NAME, "outcome" => "synced").increment(tally.seen as u64);
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
    let n = channels.len();
    let (mut ids, mut names, mut purposes, mut topics) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut members, mut private, mut archived, mut slugs) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for c in channels {
        tally.seen += 1;
        tally.archived += usize::from(c.is_archived);
        slugs.push(pattern.slug_of(&c.name).map(str::to_owned));
        ids.push(c.id);
        names.push(c.name);
        purposes.push(c.purpose.value);
        topics.push(c.topic.value);
        members.push(c.num_members.unwrap_or(0).clamp(0, i64::from(i32::MAX)) as i32);
        private.push(c.is_private);
        archived.push(c.is_archived);
    }
    if ids.is_empty() {
        return Ok(());
    }
    // A channel keeps the campaign it has; one without gets the campaign its name names,
    // when that campaign has no channel yet. Returns the channels newly mapped.
    let mapped: Vec<(String, String, String)> = sqlx::query_as(
        "WITH page AS (
             SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bool[], $8::bool[], $9::text[])
                 AS p(id, name, purpose, topic, member_count, is_private, is_archived, slug)
         ), candidate AS (
             SELECT p.*, c.id AS campaign_id FROM page p
             LEFT JOIN campaigns c ON p.slug IS NOT NULL AND c.slug = p.slug
                 AND NOT EXISTS (SELECT 1 FROM slack_channels o WHERE o.campaign_id = c.id AND o.id <> p.id)
         ), old AS (
             SELECT s.id, s.campaign_id FROM slack_channels s WHERE s.id = ANY($2)
         ), up AS (
             INSERT INTO slack_channels AS s
                 (id, workspace_id, name, purpose, topic, member_count, is_private, is_archived, campaign_id, last_synced)
             SELECT id, $1, name, purpose, topic, member_count, is_private, is_archived, campaign_id, now() FROM candidate
             ON CONFLICT (id) DO UPDATE SET
                 workspace_id = excluded.workspace_id,
                 name = excluded.name,
                 purpose = excluded.purpose,
                 topic = excluded.topic,
                 member_count = excluded.member_count,
                 is_private = excluded.is_private,
                 is_archived = excluded.is_archived,
                 campaign_id = coalesce(s.campaign_id, excluded.campaign_id),
                 last_synced = excluded.last_synced,
                 updated_at = CASE WHEN (s.name, s.purpose, s.topic, s.member_count, s.is_private, s.is_archived, s.campaign_id)
                         IS DISTINCT FROM (excluded.name, excluded.purpose, excluded.topic, excluded.member_count, excluded.is_private, excluded.is_archived, coalesce(s.campaign_id, excluded.campaign_id))
                     THEN now() ELSE s.updated_at END
             RETURNING s.id, s.name, s.campaign_id
         )
         SELECT up.id, up.name, up.campaign_id FROM up LEFT JOIN old USING (id)
         WHERE up.campaign_id IS NOT NULL AND old.campaign_id IS NULL",
    )
    .bind(workspace)
    .bind(&ids)
    .bind(&names)
    .bind(&purposes)
    .bind(&topics)
    .bind(&members)
    .bind(&private)
    .bind(&archived)
    .bind(&slugs)
    .fetch_all(&mut *tx)
    .await?;
    let actor = Actor::new("worker");
    for (channel, name, campaign) in mapped {
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
