//! What the dashboard's pages read that no other part of the service needs: run history,
//! request progress, recipient search, statistics history, webhook intake, operator actions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// One run of a scheduled job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Run {
    pub id: Uuid,
    pub job: String,
    pub trigger: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub items_synced: i32,
    pub items_failed: i32,
    pub counts: sqlx::types::Json<Value>,
    pub error: Option<String>,
}

impl Run {
    /// How long it ran (so far, while running).
    pub fn seconds(&self) -> f64 {
        let end = self.finished_at.unwrap_or_else(Utc::now);
        (end - self.started_at).num_milliseconds() as f64 / 1000.0
    }
}

const RUN_COLUMNS: &str =
    "id, job, trigger, status, started_at, finished_at, items_synced, items_failed, counts, error";

/// The latest run of every job.
pub async fn latest_runs(db: &PgPool) -> Result<BTreeMap<String, Run>, sqlx::Error> {
    let sql = format!(
        "SELECT DISTINCT ON (job) {RUN_COLUMNS} FROM sync_runs ORDER BY job, started_at DESC"
    );
    let rows: Vec<Run> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.job.clone(), r)).collect())
}

/// Runs newest first, of one job (or all) and one status (or all), after skipping `offset`.
pub async fn runs(
    db: &PgPool,
    job: Option<&str>,
    status: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Run>, sqlx::Error> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM sync_runs
         WHERE ($1::text IS NULL OR job = $1) AND ($2::text IS NULL OR status = $2)
         ORDER BY started_at DESC LIMIT $3 OFFSET $4"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(job)
        .bind(status)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await
}

/// An email request with its recipients counted by status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestProgress {
    pub id: Uuid,
    pub campaign_id: String,
    pub template_id: i64,
    pub status: String,
    pub recipient_count: i32,
    pub test_mode: bool,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub counts: sqlx::types::Json<BTreeMap<String, i64>>,
}

/// A request's columns and its recipients counted by status.
const PROGRESS: &str = "SELECT r.id, r.campaign_id, r.template_id, r.status, r.recipient_count, r.test_mode,
        r.scheduled_at, r.created_at, r.completed_at,
        coalesce((SELECT jsonb_object_agg(status, n) FROM
            (SELECT s.status, count(*) AS n FROM email_sends s WHERE s.request_id = r.id GROUP BY s.status) c),
            '{}'::jsonb) AS counts
    FROM email_requests r";

/// Requests newest first (of one status and campaign when given) with their progress.
pub async fn requests(
    db: &PgPool,
    status: Option<&str>,
    campaign: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<Vec<RequestProgress>, sqlx::Error> {
    let sql = format!(
        "{PROGRESS} WHERE ($1::text IS NULL OR r.status = $1) AND ($2::text IS NULL OR r.campaign_id = $2)
         ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(status)
        .bind(campaign)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await
}

/// One request's progress.
pub async fn request(db: &PgPool, id: Uuid) -> Result<Option<RequestProgress>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{PROGRESS} WHERE r.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// A recipient of a request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recipient {
    pub id: Uuid,
    pub email: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Recipients of request `id` (of one status; whose address starts with `email` when given),
/// by address, after skipping `offset`.
pub async fn recipients(
    db: &PgPool,
    id: Uuid,
    status: Option<&str>,
    email: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Recipient>, sqlx::Error> {
    let prefix = email.map(|e| {
        let escaped = e
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    });
    sqlx::query_as(
        "SELECT id, email, status, attempts, last_error, sent_at, updated_at FROM email_sends
         WHERE request_id = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR lower(email) LIKE $3)
         ORDER BY lower(email) LIMIT $4 OFFSET $5",
    )
    .bind(id)
    .bind(status)
    .bind(prefix)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

/// One day of a campaign's statistics history: the last snapshot of the day.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StatsPoint {
    pub day: DateTime<Utc>,
    pub sent: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub bounced: i64,
    pub open_rate: f64,
    pub click_rate: f64,
    pub engagement_score: f64,
}

impl StatsPoint {
    /// Bounces per message sent.
    pub fn bounce_rate(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.bounced as f64 / self.sent as f64
        }
    }
}

/// The last `days` days of campaign `id`'s statistics, one point per day, oldest first.
pub async fn stats_history(
    db: &PgPool,
    id: &str,
    days: i32,
) -> Result<Vec<StatsPoint>, sqlx::Error> {
    sqlx::query_as(
        "SELECT DISTINCT ON (date_trunc('day', recorded_at))
                date_trunc('day', recorded_at) AS day, sent, delivered, opened, clicked, bounced,
                open_rate, click_rate, engagement_score
         FROM email_statistics
         WHERE campaign_id = $1 AND recorded_at >= date_trunc('day', now()) - make_interval(days => $2)
         ORDER BY date_trunc('day', recorded_at), recorded_at DESC",
    )
    .bind(id)
    .bind(days)
    .fetch_all(db)
    .await
}

/// Campaign ids and names matching `q` (in the id or the name), by id.
pub async fn find_campaigns(
    db: &PgPool,
    q: &str,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let pattern = format!(
        "%{}%",
        q.to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    sqlx::query_as(
        "SELECT id, name FROM campaigns WHERE lower(id) LIKE $1 OR lower(name) LIKE $1 ORDER BY id LIMIT $2",
    )
    .bind(pattern)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Webhook deliveries of the last `hours` hours (from the start of the first hour) by hour,
/// source, type and outcome, in one pass over the received-time index.
pub async fn intake(
    db: &PgPool,
    hours: i32,
) -> Result<Vec<(DateTime<Utc>, String, String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT date_trunc('hour', received_at), source, event_type, status, count(*) FROM webhook_events
         WHERE received_at >= date_trunc('hour', now()) - make_interval(hours => $1 - 1)
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
    .bind(hours)
    .fetch_all(db)
    .await
}

/// One row of the audit log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub request_id: Option<String>,
    pub details: sqlx::types::Json<Value>,
}

/// Audit rows newest first, older than `before` (an id), whose actor starts with `actor`.
pub async fn audit(
    db: &PgPool,
    actor: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    let prefix = actor.map(|a| {
        format!(
            "{}%",
            a.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    sqlx::query_as(
        "SELECT id, occurred_at, actor, action, entity_type, entity_id, request_id, details FROM audit_log
         WHERE ($1::text IS NULL OR actor LIKE $1) AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(prefix)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}
