//! Alert episodes (`alerts`): one row from when a rule's condition first holds for a subject
//! until it clears. The evaluator changes them under a transaction-scoped advisory lock, and
//! the partial unique index keeps one open episode per rule and subject regardless.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The rule's stable name (`sync_failing`, `dead_letters`, …).
    pub rule: &'static str,
    /// What it is about: a job, a queue, a service, a request.
    pub subject: String,
    /// `warning` or `critical`.
    pub severity: &'static str,
    /// One line a person can act on.
    pub summary: String,
    /// The figures behind it.
    pub details: Value,
    /// The dashboard page to look at (a path under /dashboard).
    pub link: String,
}

/// An open episode, as the evaluator needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Open {
    pub id: i64,
    pub rule: String,
    pub subject: String,
    pub fired_at: DateTime<Utc>,
    pub last_notified_at: DateTime<Utc>,
    pub notifications: i32,
}

/// Takes the evaluators' lock for the rest of the transaction: one evaluation at a time.
pub async fn lock(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('campaign-sync:alerts'))")
        .execute(tx)
        .await
        .map(|_| ())
}

/// Every open episode.
pub async fn open(tx: &mut PgConnection) -> Result<Vec<Open>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, rule, subject, fired_at, last_notified_at, notifications
         FROM alerts WHERE resolved_at IS NULL ORDER BY id",
    )
    .fetch_all(tx)
    .await
}

/// Opens an episode for `c`; its id, or `None` when one is open already.
pub async fn fire(tx: &mut PgConnection, c: &Condition) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO alerts (rule, subject, severity, summary, details, link)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (rule, subject) WHERE resolved_at IS NULL DO NOTHING RETURNING id",
    )
    .bind(c.rule)
    .bind(&c.subject)
    .bind(c.severity)
    .bind(&c.summary)
    .bind(&c.details)
    .bind(&c.link)
    .fetch_optional(tx)
    .await
}

/// Records that episode `id` still holds, as `c` now says; when `notified`, that it was posted
/// again. Its notice count.
pub async fn still(
    tx: &mut PgConnection,
    id: i64,
    c: &Condition,
    notified: bool,
) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE alerts SET summary = $2, details = $3, severity = $4, link = $5, last_seen_at = now(),
             last_notified_at = CASE WHEN $6 THEN now() ELSE last_notified_at END,
             notifications = notifications + CASE WHEN $6 THEN 1 ELSE 0 END
         WHERE id = $1 RETURNING notifications",
    )
    .bind(id)
    .bind(&c.summary)
    .bind(&c.details)
    .bind(c.severity)
    .bind(&c.link)
    .bind(notified)
    .fetch_one(tx)
    .await
}

/// Resolves episode `id`; its summary and link.
pub async fn resolve(tx: &mut PgConnection, id: i64) -> Result<(String, String), sqlx::Error> {
    sqlx::query_as(
        "UPDATE alerts SET resolved_at = now() WHERE id = $1 AND resolved_at IS NULL
         RETURNING summary, link",
    )
    .bind(id)
    .fetch_one(tx)
    .await
}

/// An episode as `GET /api/alerts` shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    pub id: i64,
    /// The rule (`sync_failing`, `sync_stale`, `dead_letters`, `upstream_errors`,
    /// `upstream_slow`, `upstream_unreachable`, `auth_failing`, `rate_limited`,
    /// `token_expiring`, `email_stuck`, `webhook_silent`).
    pub rule: String,
    /// What it is about (a job, queue, service, workspace or email request).
    pub subject: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub summary: String,
    pub details: Value,
    /// The dashboard page to look at.
    pub link: String,
    pub fired_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub last_notified_at: DateTime<Utc>,
    /// How many times it was posted (the first time and each repeat).
    pub notifications: i32,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// The firing episodes, then those resolved in the last `recent_hours`, newest first, at most
/// `limit` of those.
pub async fn list(
    db: &PgPool,
    recent_hours: i64,
    limit: i64,
) -> Result<(Vec<AlertView>, Vec<AlertView>), sqlx::Error> {
    let rows: Vec<AlertView> = sqlx::query_as(
        "SELECT id, rule, subject, severity,
             CASE WHEN resolved_at IS NULL THEN 'firing' ELSE 'resolved' END AS state,
             summary, details, link, fired_at, last_seen_at, last_notified_at, notifications,
             resolved_at
         FROM alerts
         WHERE resolved_at IS NULL OR id IN (
             SELECT id FROM alerts
             WHERE resolved_at IS NOT NULL AND fired_at > now() - make_interval(hours => $1::int)
             ORDER BY fired_at DESC, id DESC LIMIT $2)
         ORDER BY fired_at DESC, id DESC",
    )
    .bind(recent_hours as i32)
    .bind(limit)
    .fetch_all(db)
    .await?;
    let (firing, recent) = rows.into_iter().partition(|a| a.resolved_at.is_none());
    Ok((firing, recent))
}

/// Deletes episodes resolved more than `days` ago; how many.
pub async fn delete_resolved(db: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM alerts WHERE resolved_at < now() - make_interval(days => $1::int)")
        .bind(days as i32)
        .execute(db)
        .await
        .map(|r| r.rows_affected())
}
