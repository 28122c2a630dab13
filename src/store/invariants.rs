//! Read-only figures the `chaos` command checks its invariants against (and what it waits on):
//! counts across sends, requests, webhook events and runs. Nothing here writes.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// The first imported template, once the template sync has run.
pub async fn first_template(db: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT min(id) FROM email_templates")
        .fetch_one(db)
        .await
}

/// Whether request `id` is completed.
pub async fn request_completed(db: &PgPool, id: Uuid) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT status = 'completed' FROM email_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Creates database `name` (on an admin connection of a cluster the run owns).
pub async fn create_database(admin: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', ""));
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(admin)
        .await?;
    Ok(())
}

/// A request's figures: seconds from creation to completion, and how many of its sends were
/// reconciled by a look-up, settled by an event first, and resent.
pub async fn request_figures(
    db: &PgPool,
    request: Uuid,
) -> Result<(Option<f64>, i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT extract(epoch FROM r.completed_at - r.created_at)::float8,
                count(*) FILTER (WHERE s.history::text LIKE '%reconciled:%'),
                count(*) FILTER (WHERE s.history::text LIKE '%reconciled by a%'),
                count(*) FILTER (WHERE s.resent)
         FROM email_requests r JOIN email_sends s ON s.request_id = r.id
         WHERE r.id = $1 GROUP BY r.id",
    )
    .bind(request)
    .fetch_one(db)
    .await
}

/// Sends still pending or sending, and requests not completed.
pub async fn open_work(db: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM email_sends WHERE status IN ('pending', 'sending')),
                (SELECT count(*) FROM email_requests WHERE status <> 'completed')",
    )
    .fetch_one(db)
    .await
}

/// Webhook events stored and not applied yet.
pub async fn unapplied_events(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE status = 'received'")
        .fetch_one(db)
        .await
}

/// Every send's id and status.
pub async fn send_statuses(db: &PgPool) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, status FROM email_sends")
        .fetch_all(db)
        .await
}

/// Mailjet events (poison ones aside): stored, not applied, failed.
pub async fn mailjet_event_counts(db: &PgPool) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'received'), count(*) FILTER (WHERE status = 'failed')
         FROM webhook_events WHERE source = 'mailjet' AND coalesce(payload->>'email', '') NOT LIKE 'poison%'",
    )
    .fetch_one(db)
    .await
}

/// Webhook events applied more than once, and sends whose open or click counts differ from
/// their events.
pub async fn applied_twice_and_miscounted(db: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM (SELECT webhook_event_id FROM email_events WHERE webhook_event_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) x),
                (SELECT count(*) FROM email_sends s WHERE s.open_count <> (SELECT count(*) FROM email_events e WHERE e.send_id = s.id AND e.event_type = 'open')
                                                     OR s.click_count <> (SELECT count(*) FROM email_events e WHERE e.send_id = s.id AND e.event_type = 'click'))",
    )
    .fetch_one(db)
    .await
}

/// Rejected webhook events kept for replay.
pub async fn rejections(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM webhook_rejections")
        .fetch_one(db)
        .await
}

/// Recorded runs of `job` per schedule tick.
pub async fn runs_per_tick(
    db: &PgPool,
    job: &str,
) -> Result<Vec<(DateTime<Utc>, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT scheduled_for, count(*) FROM sync_runs WHERE job = $1 AND scheduled_for IS NOT NULL GROUP BY 1 ORDER BY 1",
    )
    .bind(job)
    .fetch_all(db)
    .await
}

/// Up to `limit` stored Mailjet payloads, at random (to replay them).
pub async fn random_mailjet_payloads(db: &PgPool, limit: i64) -> Result<Vec<Value>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT payload FROM webhook_events WHERE source = 'mailjet' AND payload IS NOT NULL ORDER BY random() LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}
