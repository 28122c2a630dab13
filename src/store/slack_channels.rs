//! Slack channels of the workspace (`slack_channels`), each mapped to at most one campaign.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// The stored name of channel `id`.
pub async fn name_of(tx: &mut PgConnection, id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM slack_channels WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
}

/// A channel created or renamed. Keyed by id: a renamed channel keeps its campaign mapping.
pub async fn upsert_name(
    tx: &mut PgConnection,
    workspace: &str,
    id: &str,
    name: &str,
    private: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO slack_channels (id, workspace_id, name, is_private) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()",
    )
    .bind(id)
    .bind(workspace)
    .bind(name)
    .bind(private)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Counts a member who joined channel `id` (approximate until the next channel sync
/// recounts); false when the channel is not known.
pub async fn count_joiner(tx: &mut PgConnection, id: &str) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE slack_channels SET member_count = member_count + 1, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// A channel as a page of `conversations.list` gives it, with the campaign slug its name
/// names (`SLACK_CHANNEL_PATTERN`).
#[derive(Debug, Clone, Default)]
pub struct ChannelRow {
    pub id: String,
    pub name: String,
    pub purpose: String,
    pub topic: String,
    pub member_count: i32,
    pub is_private: bool,
    pub is_archived: bool,
    pub slug: Option<String>,
}

/// A channel that a page mapped to a campaign for the first time.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NewMapping {
    pub channel: String,
    pub name: String,
    pub campaign: String,
}

/// Upserts a page of channels in one statement. A channel keeps the campaign it has; one
/// without gets the campaign its name names, when that campaign has no channel yet.
/// Answers the channels newly mapped.
pub async fn upsert_page(
    tx: &mut PgConnection,
    workspace: &str,
    channels: &[ChannelRow],
) -> Result<Vec<NewMapping>, sqlx::Error> {
    let text = |f: fn(&ChannelRow) -> &str| channels.iter().map(f).collect::<Vec<_>>();
    let flag = |f: fn(&ChannelRow) -> bool| channels.iter().map(f).collect::<Vec<_>>();
    let members: Vec<i32> = channels.iter().map(|c| c.member_count).collect();
    let slugs: Vec<Option<&str>> = channels.iter().map(|c| c.slug.as_deref()).collect();
    sqlx::query_as(
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
         SELECT up.id AS channel, up.name, up.campaign_id AS campaign FROM up LEFT JOIN old USING (id)
         WHERE up.campaign_id IS NOT NULL AND old.campaign_id IS NULL",
    )
    .bind(workspace)
    .bind(text(|c| &c.id))
    .bind(text(|c| &c.name))
    .bind(text(|c| &c.purpose))
    .bind(text(|c| &c.topic))
    .bind(&members)
    .bind(flag(|c| c.is_private))
    .bind(flag(|c| c.is_archived))
    .bind(&slugs)
    .fetch_all(&mut *tx)
    .await
}

/// Archives the channels of `workspace` that a full pass started at `since` did not see.
pub async fn archive_unseen(
    db: &PgPool,
    workspace: &str,
    since: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let gone = sqlx::query(
        "UPDATE slack_channels SET is_archived = true, updated_at = now()
         WHERE workspace_id = $1 AND NOT is_archived AND last_synced < $2",
    )
    .bind(workspace)
    .bind(since)
    .execute(db)
    .await?;
    Ok(gone.rows_affected())
}

/// How many channels of `workspace` are mapped to a campaign.
pub async fn mapped_count(db: &PgPool, workspace: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM slack_channels WHERE workspace_id = $1 AND campaign_id IS NOT NULL",
    )
    .bind(workspace)
    .fetch_one(db)
    .await
}
