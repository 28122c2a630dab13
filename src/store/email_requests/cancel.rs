//! Cancelling a request: its pending recipients become `cancelled` at once, in-flight ones
//! finish (and the `email_sends_respect_cancel` trigger turns any later retry into `cancelled`).

use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::super::audit::{self, Actor};

/// What cancelling a request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cancelled {
    pub id: Uuid,
    /// `cancelled` once nothing is in flight, else still `sending` until in-flight sends settle.
    pub status: String,
    /// Recipients that were pending and are now `cancelled`.
    pub cancelled_recipients: i64,
    /// Recipients being sent at this moment: they finish (and are counted as they end).
    pub in_flight: i64,
    /// False when the request had already finished or been cancelled: nothing changed.
    pub changed: bool,
}

/// Cancels request `id`: its pending recipients become `cancelled` in one transaction (a
/// recipient in flight finishes; one that would be retried later becomes `cancelled` too, by
/// the `email_sends_respect_cancel` trigger). Audited. None when there is no such request.
pub async fn cancel(
    pool: &PgPool,
    id: Uuid,
    actor: &Actor,
) -> Result<Option<Cancelled>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM email_requests WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(status) = status else {
        return Ok(None);
    };
    if status == "completed" || status == "cancelled" {
        let unchanged = Cancelled {
            id,
            status,
            cancelled_recipients: 0,
            in_flight: 0,
            changed: false,
        };
        return Ok(Some(unchanged));
    }
    let (cancelled, in_flight) = cancel_pending(&mut tx, id).await?;
    let status = if in_flight == 0 {
        "cancelled"
    } else {
        "sending"
    };
    sqlx::query(
        "UPDATE email_requests SET status = $2, completed_at = CASE WHEN $2 = 'cancelled' THEN now() END WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .execute(&mut *tx)
    .await?;
    let details = serde_json::json!({ "cancelledRecipients": cancelled, "inFlight": in_flight });
    let subject = id.to_string();
    audit::record(
        &mut tx,
        actor,
        "email_request.cancel",
        "email_request",
        &subject,
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Cancelled {
        id,
        status: status.to_owned(),
        cancelled_recipients: cancelled,
        in_flight,
        changed: true,
    }))
}

/// Marks request `id` cancelled and its pending recipients `cancelled`; how many were, and how
/// many are in flight.
async fn cancel_pending(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query("UPDATE email_requests SET cancelled_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let cancelled = sqlx::query(
        "UPDATE email_sends SET status = 'cancelled', last_error = 'the request was cancelled', updated_at = now()
         WHERE request_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    let in_flight: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_sends WHERE request_id = $1 AND status = 'sending'",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    Ok((cancelled, in_flight))
}
