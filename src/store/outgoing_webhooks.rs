//! The outbox of signed webhooks to the Campaign Manager: written in the transaction of the
//! change they announce, delivered by `deliver_outgoing_webhooks` until a 2xx answers.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Queues an event unless one with `dedupe_key` exists; its id (the event id).
pub async fn enqueue(
    tx: &mut PgConnection,
    dedupe_key: &str,
    event_type: &str,
    payload: &Value,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO outgoing_webhooks (dedupe_key, event_type, payload) VALUES ($1, $2, $3)
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(dedupe_key)
    .bind(event_type)
    .bind(payload)
    .fetch_optional(&mut *tx)
    .await
}

/// A due event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub id: Uuid,
    pub event_type: String,
    pub payload: Value,
    pub attempts: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Takes up to `limit` due events, each held for `lease` (another run skips it meanwhile).
pub async fn take_due(
    db: &PgPool,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE outgoing_webhooks SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
         WHERE id IN (SELECT id FROM outgoing_webhooks WHERE status = 'pending' AND next_attempt_at <= now()
                      ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id, event_type, payload, attempts, created_at",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(db)
    .await
}

/// Records a 2xx.
pub async fn delivered(db: &PgPool, id: Uuid, status: u16) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH d AS (UPDATE outgoing_webhooks SET status = 'delivered', delivered_at = now(), last_status = $2, last_error = NULL
                    WHERE id = $1 AND status <> 'delivered' RETURNING id, event_type, attempts, last_status)
         INSERT INTO audit_log (actor, action, entity_type, entity_id, outcome, details)
         SELECT 'worker', 'webhook.delivered', 'outgoing_webhook', id::text, 'ok',
                jsonb_build_object('event', event_type, 'attempts', attempts, 'status', last_status) FROM d",
    )
    .bind(id)
    .bind(i32::from(status))
    .execute(db)
    .await?;
    Ok(())
}

/// Records a failed attempt: again after `retry_in` seconds, or `failed` for good.
pub async fn attempt_failed(
    db: &PgPool,
    id: Uuid,
    status: Option<u16>,
    error: &str,
    retry_in: Option<f64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH f AS (UPDATE outgoing_webhooks SET last_status = $2, last_error = $3,
                        status = CASE WHEN $4::float8 IS NULL THEN 'failed' ELSE 'pending' END,
                        next_attempt_at = now() + make_interval(secs => coalesce($4, 0))
                    WHERE id = $1 RETURNING id, event_type, status, attempts)
         INSERT INTO audit_log (actor, action, entity_type, entity_id, outcome, details)
         SELECT 'worker', 'webhook.attempt', 'outgoing_webhook', id::text, 'failed',
                jsonb_build_object('event', event_type, 'status', $2::int, 'error', $3::text, 'givenUp', status = 'failed') FROM f",
    )
    .bind(id)
    .bind(status.map(i32::from))
    .bind(error)
    .bind(retry_in)
    .execute(db)
    .await?;
    Ok(())
}

/// When the next pending event is due.
pub async fn next_due(db: &PgPool) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(next_attempt_at) FROM outgoing_webhooks WHERE status = 'pending'",
    )
    .fetch_one(db)
    .await
}
