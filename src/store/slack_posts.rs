//! The outbox of every Slack message the service posts, changes or shows one user
//! (`slack_posts`). Enqueueing is idempotent on `dedupe_key`; delivery claims due rows as
//! `posting` before the call, so a row a crash leaves `posting` is known to be ambiguous.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A message to queue.
#[derive(Debug, Clone, Default)]
pub struct NewPost {
    pub dedupe_key: String,
    pub kind: &'static str,
    /// `post` (default), `update` or `ephemeral`.
    pub op: &'static str,
    pub campaign_id: Option<String>,
    pub notification_id: Option<Uuid>,
    pub approval_id: Option<String>,
    pub channel_id: Option<String>,
    pub to_campaign_channel: bool,
    pub dm_member: Option<String>,
    pub dm_user: Option<String>,
    pub ephemeral_user: Option<String>,
    pub response_url: Option<String>,
    pub thread_of: Option<Uuid>,
    pub target_post: Option<Uuid>,
    pub pin: bool,
    pub text: String,
    pub blocks: Value,
    pub attachments: Value,
    pub not_before: Option<DateTime<Utc>>,
}

/// Queues `post` unless a post with its `dedupe_key` exists; the id either way, and whether
/// it was queued now.
pub async fn enqueue(tx: &mut PgConnection, post: &NewPost) -> Result<(Uuid, bool), sqlx::Error> {
    let op = if post.op.is_empty() { "post" } else { post.op };
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO slack_posts (dedupe_key, kind, op, campaign_id, notification_id, approval_id, channel_id,
             to_campaign_channel, dm_member, dm_user, ephemeral_user, thread_of, target_post, pin, text, blocks, attachments, not_before, response_url)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, coalesce($18, now()), $19)
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(&post.dedupe_key)
    .bind(post.kind)
    .bind(op)
    .bind(&post.campaign_id)
    .bind(post.notification_id)
    .bind(&post.approval_id)
    .bind(&post.channel_id)
    .bind(post.to_campaign_channel)
    .bind(&post.dm_member)
    .bind(&post.dm_user)
    .bind(&post.ephemeral_user)
    .bind(post.thread_of)
    .bind(post.target_post)
    .bind(post.pin)
    .bind(&post.text)
    .bind(if post.blocks.is_null() { Value::Array(Vec::new()) } else { post.blocks.clone() })
    .bind(if post.attachments.is_null() { Value::Array(Vec::new()) } else { post.attachments.clone() })
    .bind(post.not_before)
    .bind(&post.response_url)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = inserted {
        return Ok((id, true));
    }
    let id = sqlx::query_scalar("SELECT id FROM slack_posts WHERE dedupe_key = $1")
        .bind(&post.dedupe_key)
        .fetch_one(&mut *tx)
        .await?;
    Ok((id, false))
}

/// A claimed row, with what delivery needs of the post it replies to or changes.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub kind: String,
    pub op: String,
    pub campaign_id: Option<String>,
    pub approval_id: Option<String>,
    pub channel_id: Option<String>,
    pub to_campaign_channel: bool,
    pub dm_member: Option<String>,
    pub dm_user: Option<String>,
    pub ephemeral_user: Option<String>,
    pub response_url: Option<String>,
    pub pin: bool,
    pub text: String,
    pub blocks: Value,
    pub attachments: Value,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// The thread's parent: its status, channel and ts.
    pub parent_status: Option<String>,
    pub parent_channel: Option<String>,
    pub parent_ts: Option<String>,
    /// The message an update changes.
    pub target_status: Option<String>,
    pub target_channel: Option<String>,
    pub target_ts: Option<String>,
}

/// Claims up to `limit` due rows (oldest first) whose parent or target has settled, as
/// `posting` for the run `claim`, with one more attempt (not yet begun: `posting_since` is
/// set by [`mark_destination`]).
pub async fn claim_due(db: &PgPool, limit: i64, claim: Uuid) -> Result<Vec<Claimed>, sqlx::Error> {
    let mut rows: Vec<Claimed> = sqlx::query_as(
        "WITH due AS (
             SELECT p.id, parent.status AS parent_status, parent.slack_channel AS parent_channel,
                    parent.slack_ts AS parent_ts, target.status AS target_status,
                    target.slack_channel AS target_channel, target.slack_ts AS target_ts
             FROM slack_posts p
             LEFT JOIN slack_posts parent ON parent.id = p.thread_of
             LEFT JOIN slack_posts target ON target.id = p.target_post
             WHERE p.status = 'pending' AND p.not_before <= now()
               AND (p.thread_of IS NULL OR parent.status IN ('sent', 'skipped', 'failed'))
               AND (p.target_post IS NULL OR target.status IN ('sent', 'skipped', 'failed'))
             ORDER BY p.created_at, p.id
             LIMIT $1
             FOR UPDATE OF p SKIP LOCKED)
         UPDATE slack_posts s SET status = 'posting', attempts = s.attempts + 1, claim = $2, claimed_at = now(), posting_since = NULL
         FROM due WHERE s.id = due.id
         RETURNING s.id, s.kind, s.op, s.campaign_id, s.approval_id, s.channel_id, s.to_campaign_channel,
                   s.dm_member, s.dm_user, s.ephemeral_user, s.response_url, s.pin, s.text, s.blocks, s.attachments, s.attempts, s.created_at,
                   due.parent_status, due.parent_channel, due.parent_ts,
                   due.target_status, due.target_channel, due.target_ts",
    )
    .bind(limit)
    .bind(claim)
    .fetch_all(db)
    .await?;
    rows.sort_by_key(|r| (r.created_at, r.id));
    Ok(rows)
}

/// Records where a claimed post is about to go, and that its call begins now (what
/// reconciliation reads); false when the row is no longer this run's claim.
pub async fn mark_destination(
    db: &PgPool,
    id: Uuid,
    claim: Uuid,
    channel: &str,
    user: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let marked = sqlx::query(
        "UPDATE slack_posts SET slack_channel = $3, dm_user = coalesce(dm_user, $4), posting_since = now()
         WHERE id = $1 AND claim = $2 AND status = 'posting'",
    )
    .bind(id)
    .bind(claim)
    .bind(channel)
    .bind(user)
    .execute(db)
    .await?;
    Ok(marked.rows_affected() == 1)
}

/// What became of one claimed row.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Posted (or found posted) as `ts` in `channel`.
    Sent { channel: String, ts: String },
    /// Not to be sent, and why (muted DMs, no channel, …).
    Skipped(String),
    /// Slack refused it for good (its error code).
    Failed(String),
    /// Nothing was posted: try again after `after` seconds (`count` false: a rate limit, not
    /// an attempt).
    Retry {
        after: f64,
        error: String,
        count: bool,
    },
    /// The call may have posted it: the row stays `posting` for reconciliation.
    Ambiguous(String),
}

/// A post, update or ephemeral that reached Slack — or failed for good — is audited in the
/// statement that settles it.
fn audited(sql: String, outcome: &Outcome) -> String {
    let result = match outcome {
        Outcome::Sent { .. } => "ok",
        Outcome::Failed(_) => "failed",
        _ => return sql,
    };
    format!(
        "WITH s AS ({sql} RETURNING id, op, kind, campaign_id, notification_id, approval_id, slack_channel, slack_ts, reason)
         INSERT INTO audit_log (actor, action, entity_type, entity_id, request_id, outcome, details)
         SELECT 'worker', 'slack.' || op, 'slack_post', id::text, 'delivery:' || $2::text, '{result}',
                jsonb_strip_nulls(jsonb_build_object('kind', kind, 'campaign', campaign_id, 'notification', notification_id,
                    'approval', approval_id, 'channel', slack_channel, 'ts', slack_ts, 'reason', reason))
         FROM s"
    )
}

/// Writes `outcome` of row `id` if it is still `posting` under `claim`; whether it was written.
pub async fn settle(
    db: &PgPool,
    id: Uuid,
    claim: Uuid,
    outcome: &Outcome,
) -> Result<bool, sqlx::Error> {
    const MINE: &str = "WHERE id = $1 AND status = 'posting' AND claim = $2";
    let (sql, a, b): (String, Option<String>, Option<String>) = match outcome {
        Outcome::Sent { channel, ts } => (
            format!("UPDATE slack_posts SET status = 'sent', sent_at = now(), slack_channel = $3, slack_ts = $4, reason = NULL {MINE}"),
            Some(channel.clone()),
            Some(ts.clone()),
        ),
        Outcome::Skipped(reason) => (
            format!("UPDATE slack_posts SET status = 'skipped', reason = $3 {MINE}"),
            Some(reason.clone()),
            None,
        ),
        Outcome::Failed(reason) => (
            format!("UPDATE slack_posts SET status = 'failed', reason = $3 {MINE}"),
            Some(reason.clone()),
            None,
        ),
        Outcome::Retry { after, error, count } => (
            format!(
                "UPDATE slack_posts SET status = 'pending', reason = $3, posting_since = NULL, claim = NULL,
                     not_before = now() + make_interval(secs => $4::float8),
                     attempts = {} {MINE}",
                if *count { "attempts" } else { "greatest(attempts - 1, 0)" }
            ),
            Some(error.clone()),
            Some(after.to_string()),
        ),
        Outcome::Ambiguous(error) => (
            format!("UPDATE slack_posts SET reason = $3 {MINE}"),
            Some(error.clone()),
            None,
        ),
    };
    let sql = audited(sql, outcome);
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(claim)
        .bind(a);
    if let Some(b) = b {
        query = query.bind(b);
    }
    Ok(query.execute(db).await?.rows_affected() == 1)
}

/// A row left `posting` by a run that did not finish.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Abandoned {
    pub id: Uuid,
    pub op: String,
    /// The run that claimed it.
    pub claim: Option<Uuid>,
    pub slack_channel: Option<String>,
    /// When its call began; None when it never began (safe to hand on at once).
    pub posting_since: Option<DateTime<Utc>>,
    /// The ts of the thread it replies in, if any.
    pub parent_ts: Option<String>,
}

/// Rows `posting` whose call began longer than `grace` ago (their run died, or the call never
/// answered), and rows claimed by another run whose call never began (that run ended, or will
/// find its claim gone).
pub async fn abandoned(
    db: &PgPool,
    grace: std::time::Duration,
) -> Result<Vec<Abandoned>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.op, p.claim, p.slack_channel, p.posting_since, parent.slack_ts AS parent_ts
         FROM slack_posts p LEFT JOIN slack_posts parent ON parent.id = p.thread_of
         WHERE p.status = 'posting'
           AND (p.posting_since IS NULL OR p.posting_since < now() - make_interval(secs => $1))
         ORDER BY p.posting_since LIMIT 1000",
    )
    .bind(grace.as_secs_f64())
    .fetch_all(db)
    .await
}

/// The earliest time a row will be due: the next `not_before` of a pending row, or when a
/// `posting` row passes `grace`.
pub async fn next_due(
    db: &PgPool,
    grace: std::time::Duration,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(t) FROM (
             SELECT min(not_before) AS t FROM slack_posts WHERE status = 'pending'
             UNION ALL
             SELECT min(coalesce(posting_since, claimed_at)) + make_interval(secs => $1) FROM slack_posts WHERE status = 'posting') due",
    )
    .bind(grace.as_secs_f64())
    .fetch_one(db)
    .await
}

/// The campaign's mapped, unarchived channel.
pub async fn campaign_channel(db: &PgPool, campaign: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM slack_channels WHERE campaign_id = $1 AND NOT is_archived ORDER BY created_at LIMIT 1",
    )
    .bind(campaign)
    .fetch_optional(db)
    .await
}

/// What a DM to a team member needs: whether they muted DMs, their email, their Slack id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DmMember {
    pub muted: bool,
    pub email: String,
    pub active: bool,
    pub slack_user_id: Option<String>,
}

/// Team member `id` as a DM recipient in `workspace`.
pub async fn dm_member(
    db: &PgPool,
    workspace: &str,
    id: &str,
) -> Result<Option<DmMember>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.slack_dms_muted AS muted, m.email, m.active,
                (SELECT slack_user_id FROM slack_integrations i
                 WHERE i.team_member_id = m.id AND i.workspace_id = $2 AND i.is_active
                 ORDER BY i.updated_at DESC LIMIT 1) AS slack_user_id
         FROM team_members m WHERE m.id = $1",
    )
    .bind(id)
    .bind(workspace)
    .fetch_optional(db)
    .await
}

/// One post as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The post's id (Slack message metadata carries it).
    pub id: Uuid,
    /// `notification`, `task_thread`, …
    pub kind: String,
    /// `pending`, `sent`, `skipped` or `failed` (a post being made reads `pending`).
    pub status: String,
    /// Why it was skipped, or Slack's error.
    pub reason: Option<String>,
    /// Where it was posted.
    pub channel: Option<String>,
    /// Its Slack ts.
    pub ts: Option<String>,
    /// `channel` or `dm`.
    pub target: String,
    pub attempts: i32,
    pub sent_at: Option<DateTime<Utc>>,
}

/// The posts of notification `id`, oldest first.
pub async fn of_notification<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: Uuid,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, CASE status WHEN 'posting' THEN 'pending' ELSE status END AS status, reason,
                slack_channel AS channel, slack_ts AS ts,
                CASE WHEN dm_member IS NOT NULL OR dm_user IS NOT NULL THEN 'dm' ELSE 'channel' END AS target,
                attempts, sent_at
         FROM slack_posts WHERE notification_id = $1 ORDER BY created_at, id",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

/// Records the Slack user an approval's DM went to, when the request did not name one.
pub async fn remember_approver(db: &PgPool, approval: &str, user: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE approvals SET slack_user_id = $2 WHERE id = $1 AND slack_user_id IS NULL")
        .bind(approval)
        .bind(user)
        .execute(db)
        .await?;
    Ok(())
}

/// Puts an abandoned row back to be delivered again (nothing of it was found in Slack).
pub async fn release(db: &PgPool, id: Uuid, note: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE slack_posts SET status = 'pending', posting_since = NULL, claim = NULL, not_before = now(), reason = $2
         WHERE id = $1 AND status = 'posting'",
    )
    .bind(id)
    .bind(note)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records `dedupe_key` as spent (skipped) so that it is never queued.
pub async fn spend(
    tx: &mut PgConnection,
    dedupe_key: &str,
    kind: &str,
    approval: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO slack_posts (dedupe_key, kind, approval_id, text, status, reason)
         VALUES ($1, $2, $3, '', 'skipped', 'a later reminder was due by the time it could be sent')
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(dedupe_key)
    .bind(kind)
    .bind(approval)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A campaign whose channel has not been told its current status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StatusChange {
    pub id: String,
    pub name: String,
    pub from_status: Option<String>,
    pub to_status: String,
}

/// Takes up to 200 campaigns whose status changed since it was last announced, marking the
/// new status announced (in `tx`, with the posts that announce it).
pub async fn take_status_changes(tx: &mut PgConnection) -> Result<Vec<StatusChange>, sqlx::Error> {
    sqlx::query_as(
        "WITH changed AS (
             SELECT id, announced_status FROM campaigns WHERE announced_status IS DISTINCT FROM status
             ORDER BY updated_at LIMIT 200 FOR UPDATE SKIP LOCKED)
         UPDATE campaigns c SET announced_status = c.status FROM changed WHERE c.id = changed.id
         RETURNING c.id, c.name, changed.announced_status AS from_status, c.status AS to_status",
    )
    .fetch_all(&mut *tx)
    .await
}

/// Queues a post that was skipped or failed again, with new content; whether it was.
pub async fn revive(
    tx: &mut PgConnection,
    id: Uuid,
    text: &str,
    blocks: &Value,
) -> Result<bool, sqlx::Error> {
    let revived = sqlx::query(
        "UPDATE slack_posts SET status = 'pending', text = $2, blocks = $3, reason = NULL, attempts = 0,
             not_before = now(), posting_since = NULL, slack_channel = NULL
         WHERE id = $1 AND status IN ('skipped', 'failed')",
    )
    .bind(id)
    .bind(text)
    .bind(blocks)
    .execute(&mut *tx)
    .await?;
    Ok(revived.rows_affected() == 1)
}
