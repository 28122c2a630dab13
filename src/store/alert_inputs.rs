//! What the alert rules read from Postgres (`jobs::evaluate_alerts`): runs of the scheduled
//! jobs, Slack installs, email requests that do not move, and whether Mailjet's webhook still
//! reports on what was sent. Each query is bounded and index-driven.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The recent finished runs of one job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunStreak {
    pub job: String,
    /// Finished runs looked at (at most the number asked for).
    pub runs: i64,
    /// How many of them failed.
    pub failed: i64,
    /// The newest one's error.
    pub last_error: Option<String>,
    /// When the last successful run started, ever.
    pub last_success: Option<DateTime<Utc>>,
    /// When the first recorded run started.
    pub first_run: DateTime<Utc>,
}

/// For every job that has run, its last `n` finished (succeeded or failed) runs.
pub async fn run_streaks(db: &PgPool, n: u32) -> Result<Vec<RunStreak>, sqlx::Error> {
    sqlx::query_as(
        "WITH recent AS (
             SELECT job, status, error, started_at,
                    row_number() OVER (PARTITION BY job ORDER BY started_at DESC) AS rn
             FROM sync_runs WHERE status IN ('succeeded', 'failed')),
         streak AS (
             SELECT job, count(*) AS runs, count(*) FILTER (WHERE status = 'failed') AS failed,
                    (array_agg(error ORDER BY started_at DESC))[1] AS last_error
             FROM recent WHERE rn <= $1 GROUP BY job),
         span AS (
             SELECT job, max(started_at) FILTER (WHERE status = 'succeeded') AS last_success,
                    min(started_at) AS first_run
             FROM sync_runs GROUP BY job)
         SELECT span.job, coalesce(streak.runs, 0) AS runs, coalesce(streak.failed, 0) AS failed,
                streak.last_error, span.last_success, span.first_run
         FROM span LEFT JOIN streak USING (job) ORDER BY span.job",
    )
    .bind(n as i32)
    .fetch_all(db)
    .await
}

/// A Slack install as the rules see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Install {
    pub workspace_id: String,
    pub team_name: Option<String>,
    /// `active`, `needs_reinstall` or `revoked`.
    pub status: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_why: Option<String>,
}

/// Every Slack install.
pub async fn installs(db: &PgPool) -> Result<Vec<Install>, sqlx::Error> {
    sqlx::query_as(
        "SELECT workspace_id, team_name, status, expires_at, revoked_why
         FROM oauth_tokens WHERE provider = 'slack' ORDER BY workspace_id",
    )
    .fetch_all(db)
    .await
}

/// An email request with recipients that have waited too long.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StuckRequest {
    pub request_id: uuid::Uuid,
    pub campaign_id: String,
    /// Recipients still pending or being sent.
    pub waiting: i64,
    /// When it became due (its schedule, or when it was accepted).
    pub due_since: DateTime<Utc>,
    /// The last error one of them had.
    pub last_error: Option<String>,
}

/// The (at most 20 oldest) requests due for longer than `secs` with recipients not yet sent.
pub async fn stuck_requests(db: &PgPool, secs: i64) -> Result<Vec<StuckRequest>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.id AS request_id, r.campaign_id, count(*) AS waiting,
                coalesce(r.scheduled_at, r.created_at) AS due_since,
                max(s.last_error) AS last_error
         FROM email_sends s JOIN email_requests r ON r.id = s.request_id
         WHERE s.status IN ('pending', 'sending') AND r.status <> 'completed'
           AND coalesce(r.scheduled_at, r.created_at) < now() - make_interval(secs => $1::double precision)
         GROUP BY r.id ORDER BY due_since LIMIT 20",
    )
    .bind(secs as f64)
    .fetch_all(db)
    .await
}

/// Over the last `secs`: how many emails were sent for real (not test mode) at least five
/// minutes ago — time for Mailjet to have reported on them — counting up to `enough`; and
/// whether any Mailjet webhook delivery was received.
pub async fn webhook_evidence(
    db: &PgPool,
    secs: i64,
    enough: u32,
) -> Result<(i64, bool), sqlx::Error> {
    sqlx::query_as(
        "SELECT
             (SELECT count(*) FROM (
                  SELECT 1 FROM email_sends s JOIN email_requests r ON r.id = s.request_id
                  WHERE NOT r.test_mode
                    AND s.sent_at > now() - make_interval(secs => $1::double precision)
                    AND s.sent_at < now() - interval '5 minutes'
                  LIMIT $2) sent),
             EXISTS (SELECT 1 FROM webhook_events
                     WHERE source = 'mailjet'
                       AND received_at > now() - make_interval(secs => $1::double precision))",
    )
    .bind(secs as f64)
    .bind(i64::from(enough))
    .fetch_one(db)
    .await
}
