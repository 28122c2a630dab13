//! What the analytics API and `campaign-sync report` read: rolled-up figures per period
//! (`metric_rollups`, see [`super::rollups`]), rankings, the statistics history, and the team's
//! bottlenecks (read live: they are about now).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::types::Json;
use utoipa::ToSchema;

use super::rollups::period::Period;

/// A period's email figures (`EmailPerformanceMetrics.metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailMetrics {
    /// Messages accepted for sending.
    pub sent: i64,
    pub delivered: i64,
    /// Messages opened (each counted once, on the day of its first open).
    pub opened: i64,
    /// Messages clicked (each counted once, on the day of its first click).
    pub clicked: i64,
    pub bounced: i64,
    /// Spam complaints.
    pub spam: i64,
    pub unsubscribed: i64,
    /// Revenue the Campaign Manager reported for the period (`PUT /api/campaigns/{id}/revenue/{date}`); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue: Option<f64>,
    /// opened / delivered (0 when nothing was delivered).
    pub open_rate: f64,
    /// clicked / delivered (0 when nothing was delivered).
    pub click_rate: f64,
    /// 100 × clamp(0.4 × open rate + 0.6 × click rate − 2 × spam rate − unsubscribe rate, 0, 1), rates over delivered.
    pub engagement_score: f64,
    /// Campaigns with figures in the period (the all-campaigns rows only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaigns: Option<i64>,
}

/// A period's change from the previous period (`EmailPerformanceMetrics.trends`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailTrends {
    /// Change of the open rate from the previous period, in percent of that rate; absent when the previous period had no opens to compare with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_rate_trend: Option<f64>,
    /// Change of the click rate from the previous period, in percent of that rate; absent when the previous period had no clicks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_rate_trend: Option<f64>,
    /// This period's engagement score.
    #[serde(default)]
    pub engagement_score: f64,
    /// Change of the engagement score from the previous period, in points; absent when there was no previous period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement_score_change: Option<f64>,
}

/// One period of email figures.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailPeriod {
    /// First day of the period (UTC; a week starts on Monday).
    pub period_start: NaiveDate,
    pub metrics: EmailMetrics,
    pub trends: EmailTrends,
}

/// One of a period's most active people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contributor {
    /// The team member, when the Slack user is matched to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub slack_user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 1 per message in a campaign channel, 1 more per reply in a thread, 5 per approval decided.
    pub activity_score: i64,
    pub messages: i64,
    pub replies: i64,
    pub approvals: i64,
}

/// A period's team activity (`TeamActivityMetrics.metrics` and `topContributors`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamMetrics {
    /// Messages posted in campaign channels (replies included).
    pub messages_posted: i64,
    /// Of those, replies in threads.
    pub thread_replies: i64,
    /// Threads with at least one reply in the period.
    pub task_discussions: i64,
    /// Approvals decided (approved, rejected, changes requested).
    pub approvals_processed: i64,
    /// Mean seconds from an approval's request to its decision.
    pub average_response_time: f64,
    /// People who posted in a campaign channel or decided an approval.
    pub active_users: i64,
    /// Up to 10, by activity score.
    pub top_contributors: Vec<Contributor>,
}

/// One period of team activity.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamPeriod {
    pub period_start: NaiveDate,
    pub metrics: TeamMetrics,
}

/// Whose figures.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// Every campaign together.
    All,
    Campaign(&'a str),
}

impl Subject<'_> {
    fn campaign(&self) -> &str {
        match self {
            Subject::All => "",
            Subject::Campaign(id) => id,
        }
    }
}

/// Every period of `kind` from the one holding `from` to the one holding `to`, zeros where
/// nothing was rolled up.
pub async fn email_series(
    db: &PgPool,
    subject: Subject<'_>,
    kind: Period,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<EmailPeriod>, sqlx::Error> {
    let rows: Vec<(NaiveDate, Json<EmailMetrics>, Json<EmailTrends>)> = sqlx::query_as(
        "SELECT period_start, metrics, trends FROM metric_rollups
         WHERE scope = 'email' AND coalesce(campaign_id, '') = $1 AND coalesce(template_id, 0) = 0
           AND period = $2 AND period_start >= $3 AND period_start <= $4 ORDER BY period_start",
    )
    .bind(subject.campaign())
    .bind(kind.as_str())
    .bind(kind.start_of(from))
    .bind(to)
    .fetch_all(db)
    .await?;
    let mut rows = rows.into_iter().peekable();
    Ok(kind
        .starts(from, to)
        .into_iter()
        .map(|start| match rows.next_if(|(s, ..)| *s == start) {
            Some((_, metrics, trends)) => EmailPeriod {
                period_start: start,
                metrics: metrics.0,
                trends: trends.0,
            },
            None => EmailPeriod {
                period_start: start,
                metrics: EmailMetrics::default(),
                trends: EmailTrends::default(),
            },
        })
        .collect())
}

/// Team activity per period, as [`email_series`].
pub async fn team_series(
    db: &PgPool,
    subject: Subject<'_>,
    kind: Period,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<TeamPeriod>, sqlx::Error> {
    let rows: Vec<(NaiveDate, Json<TeamMetrics>)> = sqlx::query_as(
        "SELECT period_start, metrics FROM metric_rollups
         WHERE scope = 'team' AND coalesce(campaign_id, '') = $1 AND coalesce(template_id, 0) = 0
           AND period = $2 AND period_start >= $3 AND period_start <= $4 ORDER BY period_start",
    )
    .bind(subject.campaign())
    .bind(kind.as_str())
    .bind(kind.start_of(from))
    .bind(to)
    .fetch_all(db)
    .await?;
    let mut rows = rows.into_iter().peekable();
    Ok(kind
        .starts(from, to)
        .into_iter()
        .map(|start| TeamPeriod {
            period_start: start,
            metrics: rows
                .next_if(|(s, _)| *s == start)
                .map(|(_, m)| m.0)
                .unwrap_or_default(),
        })
        .collect())
}

/// A campaign or template ranked by its engagement score over a period.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ranked {
    /// The campaign's id, or the template's (Mailjet's) id as text.
    pub id: String,
    pub name: String,
    pub metrics: EmailMetrics,
    pub trends: EmailTrends,
}

/// What to rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Campaigns,
    Templates,
}

/// The best-scoring campaigns or templates of the period starting on `start` that delivered
/// at least `min_delivered` messages, best first (ties by more delivered, then id).
pub async fn top(
    db: &PgPool,
    content: Content,
    kind: Period,
    start: NaiveDate,
    min_delivered: i64,
    limit: i64,
) -> Result<Vec<Ranked>, sqlx::Error> {
    let sql = match content {
        Content::Campaigns => {
            "SELECT r.campaign_id, c.name, r.metrics, r.trends FROM metric_rollups r JOIN campaigns c ON c.id = r.campaign_id
             WHERE r.scope = 'email' AND r.period = $1 AND r.period_start = $2 AND r.campaign_id IS NOT NULL
               AND (r.metrics->>'delivered')::bigint >= $3
             ORDER BY (r.metrics->>'engagementScore')::float8 DESC, (r.metrics->>'delivered')::bigint DESC, r.campaign_id LIMIT $4"
        }
        Content::Templates => {
            "SELECT r.template_id::text, coalesce(t.name, ''), r.metrics, r.trends FROM metric_rollups r
             LEFT JOIN email_templates t ON t.id = r.template_id
             WHERE r.scope = 'template' AND r.period = $1 AND r.period_start = $2
               AND (r.metrics->>'delivered')::bigint >= $3
             ORDER BY (r.metrics->>'engagementScore')::float8 DESC, (r.metrics->>'delivered')::bigint DESC, r.template_id LIMIT $4"
        }
    };
    let rows: Vec<(String, String, Json<EmailMetrics>, Json<EmailTrends>)> = sqlx::query_as(sql)
        .bind(kind.as_str())
        .bind(start)
        .bind(min_delivered)
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, metrics, trends)| Ranked {
            id,
            name,
            metrics: metrics.0,
            trends: trends.0,
        })
        .collect())
}

/// Every campaign's figures for the period starting on `start`, by id after `after`
/// (`campaign-sync report` pages through them).
pub async fn report_page(
    db: &PgPool,
    kind: Period,
    start: NaiveDate,
    after: &str,
    limit: i64,
) -> Result<Vec<Ranked>, sqlx::Error> {
    let rows: Vec<(String, String, Json<EmailMetrics>, Json<EmailTrends>)> = sqlx::query_as(
        "SELECT r.campaign_id, c.name, r.metrics, r.trends FROM metric_rollups r JOIN campaigns c ON c.id = r.campaign_id
         WHERE r.scope = 'email' AND r.period = $1 AND r.period_start = $2 AND r.campaign_id > $3
         ORDER BY r.campaign_id LIMIT $4",
    )
    .bind(kind.as_str())
    .bind(start)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, metrics, trends)| Ranked {
            id,
            name,
            metrics: metrics.0,
            trends: trends.0,
        })
        .collect())
}

/// One statistics snapshot of a campaign (what `sync_mailjet_stats` recorded).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub recorded_at: DateTime<Utc>,
    pub mailjet_campaign_id: i64,
    pub sent: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub bounced: i64,
    pub spam: i64,
    pub blocked: i64,
    pub unsubscribed: i64,
    pub open_rate: f64,
    pub click_rate: f64,
    pub engagement_score: f64,
}

/// Up to `limit` snapshots of `campaign` recorded in `from..to` before `before`, newest first.
pub async fn history(
    db: &PgPool,
    campaign: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    before: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<Snapshot>, sqlx::Error> {
    sqlx::query_as(
        "SELECT recorded_at, mailjet_campaign_id, sent, delivered, opened, clicked, bounced, spam, blocked, unsubscribed,
                open_rate, click_rate, engagement_score
         FROM email_statistics WHERE campaign_id = $1 AND recorded_at >= $2 AND recorded_at < least($3, coalesce($4, 'infinity'))
         ORDER BY recorded_at DESC LIMIT $5",
    )
    .bind(campaign)
    .bind(from)
    .bind(to)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A pending approval, by how long it has waited.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    pub approval_id: String,
    pub campaign_id: String,
    pub stage: String,
    pub approver_id: String,
    pub requested_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    /// Seconds since it was requested.
    pub waiting_seconds: f64,
}

/// An approver, by mean time to decide in the window.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct SlowApprover {
    pub approver_id: String,
    pub name: String,
    /// Approvals they decided in the window.
    pub decided: i64,
    /// Mean seconds from request to decision, over those.
    pub average_response_time: f64,
    /// Approvals waiting for them now.
    pub pending: i64,
}

/// A live campaign whose Slack channel has gone quiet.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct QuietCampaign {
    pub campaign_id: String,
    pub name: String,
    pub channel_id: String,
    /// The last message stored from its channel; absent when none ever was.
    pub last_message_at: Option<DateTime<Utc>>,
}

/// Where the team's communication is stuck.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bottlenecks {
    /// Pending approvals that have waited longest (up to 10).
    pub waiting_longest: Vec<Waiting>,
    /// Approvers slowest to answer in the window (up to 10).
    pub slowest_approvers: Vec<SlowApprover>,
    /// Scheduled, active or paused campaigns with a mapped channel and no message in it for the quiet period (up to 10, quietest first).
    pub quiet_campaigns: Vec<QuietCampaign>,
}

/// The bottlenecks now, with approvers' speed over `from..to`.
pub async fn bottlenecks(
    db: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    quiet_since: DateTime<Utc>,
) -> Result<Bottlenecks, sqlx::Error> {
    let waiting_longest = sqlx::query_as(
        "SELECT id AS approval_id, campaign_id, stage, approver_id, created_at AS requested_at, deadline,
                extract(epoch FROM now() - created_at)::float8 AS waiting_seconds
         FROM approvals WHERE status = 'pending' ORDER BY created_at, id LIMIT 10",
    )
    .fetch_all(db)
    .await?;
    let slowest_approvers = sqlx::query_as(
        "SELECT a.approver_id, coalesce(m.name, '') AS name, count(*) AS decided,
                avg(extract(epoch FROM a.decided_at - a.created_at))::float8 AS average_response_time,
                (SELECT count(*) FROM approvals p WHERE p.approver_id = a.approver_id AND p.status = 'pending') AS pending
         FROM approvals a LEFT JOIN team_members m ON m.id = a.approver_id
         WHERE a.decided_at >= $1 AND a.decided_at < $2 AND a.status IN ('approved', 'rejected', 'changes_requested')
         GROUP BY a.approver_id, m.name ORDER BY average_response_time DESC, a.approver_id LIMIT 10",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    let quiet_campaigns = sqlx::query_as(
        "SELECT c.id AS campaign_id, c.name, ch.id AS channel_id, ch.last_message_at
         FROM campaigns c JOIN slack_channels ch ON ch.campaign_id = c.id AND NOT ch.is_archived
         WHERE c.active AND c.status IN ('scheduled', 'active', 'paused')
           AND (ch.last_message_at IS NULL OR ch.last_message_at < $1)
         ORDER BY ch.last_message_at NULLS FIRST, c.id LIMIT 10",
    )
    .bind(quiet_since)
    .fetch_all(db)
    .await?;
    Ok(Bottlenecks {
        waiting_longest,
        slowest_approvers,
        quiet_campaigns,
    })
}

/// Stores `campaign`'s revenue of `day` (replacing it); the amount as stored, or `None` when
/// there is no such campaign.
pub async fn put_revenue(
    db: &PgPool,
    campaign: &str,
    day: NaiveDate,
    amount: f64,
    actor: &super::audit::Actor,
) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH put AS (
             INSERT INTO campaign_revenue (campaign_id, day, amount)
             SELECT id, $2, round($3::numeric, 2) FROM campaigns WHERE id = $1
             ON CONFLICT (campaign_id, day) DO UPDATE SET amount = excluded.amount, updated_at = now()
             RETURNING campaign_id, day, amount
         ), audited AS (
             INSERT INTO audit_log (actor, action, entity_type, entity_id, request_id, details)
             SELECT $4, 'revenue.put', 'campaign', campaign_id, $5, jsonb_build_object('day', day, 'amount', amount) FROM put
         )
         SELECT amount::float8 FROM put",
    )
    .bind(campaign)
    .bind(day)
    .bind(amount)
    .bind(&actor.name)
    .bind(&actor.request_id)
    .fetch_optional(db)
    .await
}
