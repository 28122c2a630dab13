//! What a Mailjet event does to the data: its row in `email_events`, its effect on the send it
//! names (timestamps, counts, settling), and the suppressions it causes.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// The send a Mailjet event names: by its CustomID (our send id) first, else by Mailjet's
/// message id.
pub async fn send_of(
    tx: &mut PgConnection,
    custom_id: Option<Uuid>,
    message_id: i64,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM email_sends WHERE id = $1 OR (mailjet_message_id = $2 AND $2 <> 0)
         ORDER BY (id = $1) DESC LIMIT 1",
    )
    .bind(custom_id)
    .bind(message_id)
    .fetch_optional(&mut *tx)
    .await
}

/// One event as `email_events` keeps it.
#[derive(Debug, Clone)]
pub struct EmailEvent<'a> {
    pub send: Option<Uuid>,
    pub webhook_event_id: i64,
    pub event_type: &'a str,
    pub message_id: i64,
    pub occurred_at: DateTime<Utc>,
    pub details: Value,
}

/// Keeps the event.
pub async fn insert(tx: &mut PgConnection, e: &EmailEvent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO email_events (send_id, webhook_event_id, event_type, mailjet_message_id, occurred_at, details)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(e.send)
    .bind(e.webhook_event_id)
    .bind(e.event_type)
    .bind(e.message_id)
    .bind(e.occurred_at)
    .bind(&e.details)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Every Mailjet event of a message proves that Mailjet accepted it (a blocked message gets
/// `blocked` and never `sent`), so any event settles its send as `sent` whatever a crash or a
/// reconciliation left it as (`sending`, `pending` for a resend, `dead`, `failed`,
/// `suppressed` by its own first copy's bounce): the status says what happened upstream, and
/// a send settled so is never sent again. The history notes the change.
pub async fn settle_accepted(
    tx: &mut PgConnection,
    send: Uuid,
    event: &str,
    time: DateTime<Utc>,
    message_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE email_sends SET
             history = history || jsonb_build_object('at', now(), 'event', 'reconciled by a ' || $4 || ' event (was ' || status || ')'),
             status = 'sent', last_error = NULL,
             mailjet_message_id = coalesce(mailjet_message_id, nullif($3, 0)),
             sent_at = coalesce(sent_at, $2), updated_at = now()
         WHERE id = $1 AND status <> 'sent'",
    )
    .bind(send)
    .bind(time)
    .bind(message_id)
    .bind(event)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The event's mark on its send: delivery, first and last open or click with counts, bounce
/// (hard or soft), spam, block, unsubscription.
pub async fn mark_send(
    tx: &mut PgConnection,
    send: Uuid,
    event: &str,
    time: DateTime<Utc>,
    hard_bounce: bool,
) -> Result<(), sqlx::Error> {
    let update = match event {
        "sent" => {
            "UPDATE email_sends SET delivered_at = coalesce(delivered_at, $2), updated_at = now() WHERE id = $1 AND $3 = $3"
        }
        "open" => {
            "UPDATE email_sends SET first_opened_at = coalesce(first_opened_at, $2), last_opened_at = greatest(last_opened_at, $2), open_count = open_count + 1, updated_at = now() WHERE id = $1 AND $3 = $3"
        }
        "click" => {
            "UPDATE email_sends SET first_clicked_at = coalesce(first_clicked_at, $2), last_clicked_at = greatest(last_clicked_at, $2), click_count = click_count + 1, updated_at = now() WHERE id = $1 AND $3 = $3"
        }
        "bounce" => {
            "UPDATE email_sends SET bounced_at = $2, hard_bounce = $3, updated_at = now() WHERE id = $1"
        }
        "spam" => {
            "UPDATE email_sends SET spam_at = $2, updated_at = now() WHERE id = $1 AND $3 = $3"
        }
        "blocked" => {
            "UPDATE email_sends SET blocked_at = $2, updated_at = now() WHERE id = $1 AND $3 = $3"
        }
        _ => {
            "UPDATE email_sends SET unsubscribed_at = coalesce(unsubscribed_at, $2), updated_at = now() WHERE id = $1 AND $3 = $3"
        }
    };
    sqlx::query(update)
        .bind(send)
        .bind(time)
        .bind(hard_bounce)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Suppresses `email` for `reason` (the first suppression of an address stands).
pub async fn suppress(
    tx: &mut PgConnection,
    email: &str,
    reason: &str,
    source: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO email_suppressions (email, reason, source) VALUES ($1, $2, $3)
         ON CONFLICT (email) DO NOTHING",
    )
    .bind(email)
    .bind(reason)
    .bind(source)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
