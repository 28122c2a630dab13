//! Approvals the Campaign Manager asked for (`SlackApprovalRequest`), addressed by its own
//! `approvalId`, and their decisions. A decision is taken only while the approval is pending
//! and before its deadline; who may take it is the caller's check.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use super::validate::{FieldError, check_id, check_len, check_pattern, check_text};

/// Every status of an approval.
pub const STATUSES: [&str; 5] = [
    "pending",
    "approved",
    "rejected",
    "changes_requested",
    "expired",
];

/// An approval to ask for.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({
    "approvalId": "apr-1001", "campaignId": "spring-launch", "stage": "final copy",
    "approverId": "tm-ada", "deadline": "2030-01-01T17:00:00Z",
    "actions": {"approve": "Approve", "reject": "Reject", "requestChanges": "Request changes"}
}))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalInput {
    /// The Campaign Manager's id of the approval.
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub approval_id: String,
    /// Our campaign's id (unknown or deactivated: 422).
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub campaign_id: String,
    /// What is being approved.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\u{0}]*$")]
    pub stage: String,
    /// The team member who decides (unknown: 422).
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub approver_id: String,
    /// Their Slack user id, when the Campaign Manager knows it; else found by their email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[UW][A-Z0-9]{2,20}$")]
    pub slack_user_id: Option<String>,
    /// RFC 3339; in the past: 422.
    #[schema(value_type = String, format = DateTime)]
    pub deadline: DateTime<Utc>,
    /// The buttons' labels.
    #[serde(default)]
    pub actions: Labels,
}

/// The three buttons' labels (each 1–75 characters).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Labels {
    #[serde(default = "approve")]
    #[schema(min_length = 1, max_length = 75, pattern = "^[^\u{0}]*$")]
    pub approve: String,
    #[serde(default = "reject")]
    #[schema(min_length = 1, max_length = 75, pattern = "^[^\u{0}]*$")]
    pub reject: String,
    #[serde(default = "request_changes")]
    #[schema(min_length = 1, max_length = 75, pattern = "^[^\u{0}]*$")]
    pub request_changes: String,
}

fn approve() -> String {
    "Approve".to_owned()
}
fn reject() -> String {
    "Reject".to_owned()
}
fn request_changes() -> String {
    "Request changes".to_owned()
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            approve: approve(),
            reject: reject(),
            request_changes: request_changes(),
        }
    }
}

impl ApprovalInput {
    /// Problems of form (a 400).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_id(&mut errors, "approvalId", &self.approval_id);
        check_id(&mut errors, "campaignId", &self.campaign_id);
        check_id(&mut errors, "approverId", &self.approver_id);
        check_len(&mut errors, "stage", &self.stage, 1, 200);
        check_text(&mut errors, "stage", &self.stage);
        if let Some(user) = &self.slack_user_id {
            check_pattern(
                &mut errors,
                "slackUserId",
                user,
                super::notifications::is_user_id,
                "a Slack user id such as U0123ABCD",
            );
        }
        for (field, label) in [
            ("actions.approve", &self.actions.approve),
            ("actions.reject", &self.actions.reject),
            ("actions.requestChanges", &self.actions.request_changes),
        ] {
            check_len(&mut errors, field, label, 1, 75);
            check_text(&mut errors, field, label);
        }
        errors
    }

    /// SHA-256 of the canonical body.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &canonical,
        ))
    }
}

/// An approval as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView {
    #[sqlx(rename = "id")]
    pub approval_id: String,
    pub campaign_id: String,
    pub stage: String,
    pub approver_id: String,
    pub slack_user_id: Option<String>,
    pub deadline: DateTime<Utc>,
    /// `pending`, `approved`, `rejected`, `changes_requested` or `expired`.
    pub status: String,
    pub decided_at: Option<DateTime<Utc>>,
    /// The Slack user who decided.
    pub decided_by: Option<String>,
    /// The comment given with "request changes".
    pub comment: Option<String>,
    /// Reminders sent so far.
    pub reminders_sent: i32,
    #[schema(value_type = Object)]
    pub labels: Value,
    /// Where the approver's message is (once posted).
    pub slack_channel: Option<String>,
    pub slack_ts: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub request_hash: String,
    #[serde(skip)]
    pub request_post: Option<Uuid>,
    #[serde(skip)]
    pub notice_post: Option<Uuid>,
}

const COLUMNS: &str = "a.id, a.campaign_id, a.stage, a.approver_id, a.slack_user_id, a.deadline, a.status, a.decided_at,
    a.decided_by, a.comment, a.reminders_sent, a.labels, coalesce(p.slack_channel, a.slack_channel) AS slack_channel,
    coalesce(p.slack_ts, a.slack_ts) AS slack_ts, a.created_at, a.updated_at, a.request_hash, a.request_post, a.notice_post";

/// Approval `id`.
pub async fn get<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: &str,
) -> Result<Option<ApprovalView>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM approvals a LEFT JOIN slack_posts p ON p.id = a.request_post WHERE a.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Approval `id`, locked for a decision.
pub async fn lock(tx: &mut PgConnection, id: &str) -> Result<Option<ApprovalView>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM approvals a LEFT JOIN slack_posts p ON p.id = a.request_post WHERE a.id = $1 FOR UPDATE OF a"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
}

/// Inserts the approval; false when one with its id exists.
pub async fn insert(tx: &mut PgConnection, input: &ApprovalInput) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO approvals (id, campaign_id, stage, approver_id, slack_user_id, deadline, request_hash, labels)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&input.approval_id)
    .bind(&input.campaign_id)
    .bind(&input.stage)
    .bind(&input.approver_id)
    .bind(&input.slack_user_id)
    .bind(input.deadline)
    .bind(input.fingerprint())
    .bind(serde_json::to_value(&input.actions).unwrap_or(Value::Null))
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Links the approval to its DM and its channel notice.
pub async fn set_posts(
    tx: &mut PgConnection,
    id: &str,
    request: Uuid,
    notice: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE approvals SET request_post = $2, notice_post = $3 WHERE id = $1")
        .bind(id)
        .bind(request)
        .bind(notice)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Decides a pending approval before its deadline; false when it was not pending, or its
/// deadline has passed.
pub async fn decide(
    tx: &mut PgConnection,
    approval: &str,
    status: &str,
    decided_by: &str,
    comment: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let decided = sqlx::query(
        "UPDATE approvals SET status = $2, decided_at = now(), decided_by = $3, comment = $4, updated_at = now()
         WHERE id = $1 AND status = 'pending' AND deadline > now()",
    )
    .bind(approval)
    .bind(status)
    .bind(decided_by)
    .bind(comment)
    .execute(&mut *tx)
    .await?;
    Ok(decided.rows_affected() == 1)
}

/// Marks every pending approval past its deadline `expired`; their ids.
pub async fn expire_due(tx: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE approvals SET status = 'expired', updated_at = now()
         WHERE id IN (SELECT id FROM approvals WHERE status = 'pending' AND deadline <= now()
                      ORDER BY deadline LIMIT 500 FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .fetch_all(&mut *tx)
    .await
}

/// Pending approvals with a reminder point (`deadline - offset`) between their creation and
/// now, for each offset in seconds: (approval, offset).
pub async fn reminders_due(
    db: &PgPool,
    offsets: &[i64],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.id, o.secs FROM approvals a CROSS JOIN unnest($1::bigint[]) AS o(secs)
         WHERE a.status = 'pending' AND a.deadline > now()
           AND a.deadline - make_interval(secs => o.secs) <= now()
           AND a.deadline - make_interval(secs => o.secs) > a.created_at
         ORDER BY a.deadline, o.secs",
    )
    .bind(offsets)
    .fetch_all(db)
    .await
}

/// Counts a reminder sent.
pub async fn count_reminder(tx: &mut PgConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE approvals SET reminders_sent = reminders_sent + 1, last_reminded_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Filters of the list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter<'a> {
    pub campaign_id: Option<&'a str>,
    pub status: Option<&'a str>,
    /// Approvals created before this one.
    pub before: Option<&'a str>,
    pub limit: i64,
}

/// A page of approvals, newest first, and the id to pass as `before` for the next.
pub async fn list(
    db: &PgPool,
    f: &ListFilter<'_>,
) -> Result<(Vec<ApprovalView>, Option<String>), sqlx::Error> {
    let mut rows: Vec<ApprovalView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM approvals a LEFT JOIN slack_posts p ON p.id = a.request_post
         WHERE ($1::text IS NULL OR a.campaign_id = $1) AND ($2::text IS NULL OR a.status = $2)
           AND ($3::text IS NULL OR (a.created_at, a.id) < (SELECT created_at, id FROM approvals WHERE id = $3))
         ORDER BY a.created_at DESC, a.id DESC LIMIT $4"
    )))
    .bind(f.campaign_id)
    .bind(f.status)
    .bind(f.before)
    .bind(f.limit + 1)
    .fetch_all(db)
    .await?;
    let more = rows.len() as i64 > f.limit;
    rows.truncate(f.limit as usize);
    let next = if more {
        rows.last().map(|a| a.approval_id.clone())
    } else {
        None
    };
    Ok((rows, next))
}

/// The team member whose Slack identity is `slack_user` in `workspace`, if any.
pub async fn member_of_slack_user(
    tx: &mut PgConnection,
    workspace: &str,
    slack_user: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT team_member_id FROM slack_integrations WHERE workspace_id = $1 AND slack_user_id = $2 AND team_member_id IS NOT NULL",
    )
    .bind(workspace)
    .bind(slack_user)
    .fetch_optional(&mut *tx)
    .await
}

/// Mutes (or unmutes) DMs to team member `id`; whether it changed.
pub async fn set_dms_muted(
    tx: &mut PgConnection,
    id: &str,
    muted: bool,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "UPDATE team_members SET slack_dms_muted = $2, updated_at = now() WHERE id = $1 AND slack_dms_muted <> $2",
    )
    .bind(id)
    .bind(muted)
    .execute(&mut *tx)
    .await?;
    Ok(changed.rows_affected() == 1)
}

/// Names used in messages: the campaign's name and the approver's name.
pub async fn names(
    tx: &mut PgConnection,
    campaign: &str,
    member: &str,
) -> Result<(String, String), sqlx::Error> {
    sqlx::query_as(
        "SELECT coalesce((SELECT name FROM campaigns WHERE id = $1), $1),
                coalesce((SELECT nullif(name, '') FROM team_members WHERE id = $2), $2)",
    )
    .bind(campaign)
    .bind(member)
    .fetch_one(&mut *tx)
    .await
}
