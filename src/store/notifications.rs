//! Notifications (`SlackCampaignNotification`): checked, stored with their posts in one
//! transaction (the posts are the outbox), read back with each post's delivery.
//! Idempotency as for email requests: the same `Idempotency-Key` and body give back the
//! first answer; another body under that key is refused.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use super::slack_posts::{self, Delivery};
use super::validate::{FieldError, check_len, check_pattern, check_text};

/// The kinds of notification.
pub const KINDS: [&str; 4] = [
    "status_change",
    "approval_needed",
    "task_assigned",
    "milestone_reached",
];
/// A Slack channel id (public, private, DM): `^[CGD][A-Z0-9]{2,20}$`.
pub fn is_channel_id(s: &str) -> bool {
    (3..=21).contains(&s.len())
        && s.starts_with(['C', 'G', 'D'])
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A Slack user id: `^[UW][A-Z0-9]{2,20}$`.
pub fn is_user_id(s: &str) -> bool {
    (3..=21).contains(&s.len())
        && s.starts_with(['U', 'W'])
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// `good`, `warning`, `danger` or `#rrggbb`.
fn is_color(s: &str) -> bool {
    matches!(s, "good" | "warning" | "danger")
        || (s.len() == 7 && s.starts_with('#') && s[1..].bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A notification to post.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "milestone_reached", "campaignId": "spring-launch", "campaignName": "Spring launch",
    "message": "10,000 opens!", "attachments": [{"title": "Open rate", "value": "41%", "color": "good"}],
    "actions": [{"type": "button", "text": "Open the report", "url": "https://cm.example.com/reports/1"}]
}))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationInput {
    /// `status_change`, `approval_needed`, `task_assigned` or `milestone_reached`.
    #[serde(rename = "type")]
    #[schema(pattern = r"^(status_change|approval_needed|task_assigned|milestone_reached)$")]
    pub kind: String,
    /// Our campaign's id (unknown: 422).
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub campaign_id: String,
    /// Shown as the message's title.
    #[schema(min_length = 1, max_length = 500, pattern = "^[^\u{0}]*$")]
    pub campaign_name: String,
    /// A Slack channel id; else the campaign's mapped channel (when no `userId` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[CGD][A-Z0-9]{2,20}$")]
    pub channel_id: Option<String>,
    /// A team member to DM (unknown: 422); `task_assigned` also replies in the campaign's
    /// task thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub user_id: Option<String>,
    /// The text, Slack mrkdwn (`&`, `<`, `>` are escaped).
    #[schema(min_length = 1, max_length = 3000, pattern = "^[^\u{0}]*$")]
    pub message: String,
    /// Fields under the message, each with an optional colour.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub attachments: Vec<AttachmentInput>,
    /// Link buttons.
    #[serde(default)]
    #[schema(max_items = 5)]
    pub actions: Vec<ActionInput>,
}

/// One field.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentInput {
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\u{0}]*$")]
    pub title: String,
    #[schema(min_length = 1, max_length = 1800, pattern = "^[^\u{0}]*$")]
    pub value: String,
    /// `good`, `warning`, `danger` or `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(good|warning|danger|#[0-9A-Fa-f]{6})$")]
    pub color: Option<String>,
}

/// One link button.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    /// Always `button`.
    #[serde(rename = "type")]
    #[schema(pattern = "^button$")]
    pub kind: String,
    #[schema(min_length = 1, max_length = 75, pattern = "^[^\u{0}]*$")]
    pub text: String,
    /// An http(s) URL.
    #[schema(
        min_length = 1,
        max_length = 3000,
        pattern = "^https?://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?([/?#][!-~]*)?$"
    )]
    pub url: String,
}

impl NotificationInput {
    /// Problems of form (a 400), each naming its field.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !KINDS.contains(&self.kind.as_str()) {
            errors.push(FieldError::new(
                "type",
                format!("{:?} is not a notification type", self.kind),
                "status_change, approval_needed, task_assigned or milestone_reached",
            ));
        }
        super::validate::check_id(&mut errors, "campaignId", &self.campaign_id);
        check_len(&mut errors, "campaignName", &self.campaign_name, 1, 500);
        check_text(&mut errors, "campaignName", &self.campaign_name);
        if let Some(channel) = &self.channel_id {
            check_pattern(
                &mut errors,
                "channelId",
                channel,
                is_channel_id,
                "a Slack channel id such as C0123ABCD",
            );
        }
        if let Some(user) = &self.user_id {
            super::validate::check_id(&mut errors, "userId", user);
        }
        check_len(&mut errors, "message", &self.message, 1, 3000);
        check_text(&mut errors, "message", &self.message);
        check_attachments(&mut errors, &self.attachments);
        check_actions(&mut errors, &self.actions);
        errors
    }

    /// SHA-256 of the canonical body: what a replay under the same key must match.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &canonical,
        ))
    }
}

/// Fields under the message: at most 20, each title and value of bounded length, a colour.
fn check_attachments(errors: &mut Vec<FieldError>, attachments: &[AttachmentInput]) {
    if attachments.len() > 20 {
        errors.push(FieldError::new(
            "attachments",
            format!("{} attachments", attachments.len()),
            "at most 20",
        ));
    }
    for (i, a) in attachments.iter().enumerate() {
        check_len(errors, &format!("attachments[{i}].title"), &a.title, 1, 200);
        check_len(
            errors,
            &format!("attachments[{i}].value"),
            &a.value,
            1,
            1800,
        );
        check_text(errors, &format!("attachments[{i}].title"), &a.title);
        check_text(errors, &format!("attachments[{i}].value"), &a.value);
        if let Some(color) = &a.color {
            check_pattern(
                errors,
                &format!("attachments[{i}].color"),
                color,
                is_color,
                "good, warning, danger or #rrggbb",
            );
        }
    }
}

/// Link buttons: at most 5, each a `button` with a label and an http(s) URL.
fn check_actions(errors: &mut Vec<FieldError>, actions: &[ActionInput]) {
    if actions.len() > 5 {
        errors.push(FieldError::new(
            "actions",
            format!("{} actions", actions.len()),
            "at most 5",
        ));
    }
    for (i, a) in actions.iter().enumerate() {
        if a.kind != "button" {
            errors.push(FieldError::new(
                &format!("actions[{i}].type"),
                format!("{:?}", a.kind),
                "button",
            ));
        }
        check_len(errors, &format!("actions[{i}].text"), &a.text, 1, 75);
        check_text(errors, &format!("actions[{i}].text"), &a.text);
        check_url(errors, &format!("actions[{i}].url"), &a.url);
    }
}

/// A link a button may carry: `^https?://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?([/?#][!-~]*)?$`,
/// at most 3,000 characters (the schema says the same).
pub fn is_link(value: &str) -> bool {
    let Some(rest) = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
    else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_ok = host.starts_with(|c: char| c.is_ascii_alphanumeric())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    value.len() <= 3000 && host_ok && port_ok && tail.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

/// An http(s) URL of at most 3,000 characters ([`is_link`]).
pub fn check_url(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if !is_link(value) {
        errors.push(FieldError::new(
            field,
            format!("{value:?} is not an http(s) URL"),
            "an http:// or https:// URL of visible ASCII characters, at most 3,000 of them",
        ));
    }
}

/// A stored notification with its deliveries.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub id: Uuid,
    pub idempotency_key: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub campaign_id: String,
    pub campaign_name: String,
    pub channel_id: Option<String>,
    pub user_id: Option<String>,
    pub message: String,
    /// `pending` until every delivery settled, then `sent` (all sent), `skipped` (all
    /// skipped), `failed` (any failed) or `partial` (some sent, some skipped).
    pub status: String,
    pub deliveries: Vec<Delivery>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    idempotency_key: Option<String>,
    kind: String,
    campaign_id: String,
    campaign_name: String,
    channel_id: Option<String>,
    user_id: Option<String>,
    message: String,
    request_hash: String,
    created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, idempotency_key, kind, campaign_id, campaign_name, channel_id, user_id, message, request_hash, created_at";

/// The overall status of a notification's deliveries.
fn overall(deliveries: &[Delivery]) -> &'static str {
    let has = |s: &str| deliveries.iter().any(|d| d.status == s);
    if deliveries.is_empty() || has("pending") {
        "pending"
    } else if has("failed") {
        "failed"
    } else if !has("skipped") {
        "sent"
    } else if !has("sent") {
        "skipped"
    } else {
        "partial"
    }
}

async fn view_of<'e>(
    db: impl sqlx::PgExecutor<'e>,
    row: Row,
) -> Result<NotificationView, sqlx::Error> {
    let deliveries = slack_posts::of_notification(db, row.id).await?;
    Ok(NotificationView {
        status: overall(&deliveries).to_owned(),
        deliveries,
        id: row.id,
        idempotency_key: row.idempotency_key,
        kind: row.kind,
        campaign_id: row.campaign_id,
        campaign_name: row.campaign_name,
        channel_id: row.channel_id,
        user_id: row.user_id,
        message: row.message,
        created_at: row.created_at,
    })
}

/// The notification stored under `key`, with the fingerprint of its body.
pub async fn by_key(
    db: &PgPool,
    key: &str,
) -> Result<Option<(NotificationView, String)>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications WHERE idempotency_key = $1"
    )))
    .bind(key)
    .fetch_optional(db)
    .await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let hash = row.request_hash.clone();
            Ok(Some((view_of(db, row).await?, hash)))
        }
    }
}

/// Inserts the notification; None when `key` was taken meanwhile.
pub async fn insert(
    tx: &mut PgConnection,
    key: &str,
    input: &NotificationInput,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO notifications (idempotency_key, request_hash, kind, campaign_id, campaign_name, channel_id, user_id, message, attachments, actions)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(key)
    .bind(input.fingerprint())
    .bind(&input.kind)
    .bind(&input.campaign_id)
    .bind(&input.campaign_name)
    .bind(&input.channel_id)
    .bind(&input.user_id)
    .bind(&input.message)
    .bind(serde_json::to_value(&input.attachments).unwrap_or(Value::Null))
    .bind(serde_json::to_value(&input.actions).unwrap_or(Value::Null))
    .fetch_optional(&mut *tx)
    .await
}

/// Notification `id` with its deliveries.
pub async fn get(db: &PgPool, id: Uuid) -> Result<Option<NotificationView>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?;
    match row {
        None => Ok(None),
        Some(row) => Ok(Some(view_of(db, row).await?)),
    }
}

/// Filters of the list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter<'a> {
    pub campaign_id: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// A page of notifications, newest first, and the id to pass as `before` for the next.
pub async fn list(
    db: &PgPool,
    f: &ListFilter<'_>,
) -> Result<(Vec<NotificationView>, Option<Uuid>), sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications
         WHERE ($1::text IS NULL OR campaign_id = $1) AND ($2::text IS NULL OR kind = $2)
           AND ($3::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM notifications WHERE id = $3))
         ORDER BY created_at DESC, id DESC LIMIT $4"
    )))
    .bind(f.campaign_id)
    .bind(f.kind)
    .bind(f.before)
    .bind(f.limit + 1)
    .fetch_all(db)
    .await?;
    let more = rows.len() as i64 > f.limit;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows.into_iter().take(f.limit as usize) {
        items.push(view_of(db, row).await?);
    }
    let next = if more {
        items.last().map(|n| n.id)
    } else {
        None
    };
    Ok((items, next))
}

/// Whether campaign `id` exists and is active (None: it does not exist).
pub async fn campaign_active(tx: &mut PgConnection, id: &str) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT active FROM campaigns WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
}

/// Whether team member `id` exists.
pub async fn member_exists(tx: &mut PgConnection, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM team_members WHERE id = $1)")
        .bind(id)
        .fetch_one(&mut *tx)
        .await
}
