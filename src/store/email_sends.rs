//! Per-recipient sends (`email_sends`): what reconciliation reads and writes.

use sqlx::PgPool;
use uuid::Uuid;

/// A send left `sending` past the grace window: its attempt may or may not have reached
/// Mailjet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaleSend {
    pub id: Uuid,
    /// When the ambiguous attempt started.
    pub sending_started_at: chrono::DateTime<chrono::Utc>,
    /// Already resent once without evidence.
    pub resent: bool,
    pub attempts: i32,
}

/// Takes up to `limit` sends left `sending` longer than `grace` that no reconciliation looked
/// at within the last `grace`: each is held for another `grace` (so a look-up that fails is
/// simply tried again later, and two runs never look at one row at once).
pub async fn take_stale(
    db: &PgPool,
    grace: std::time::Duration,
    limit: i64,
) -> Result<Vec<StaleSend>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE email_sends SET reconcile_at = now() + make_interval(secs => $1) WHERE id IN (
             SELECT id FROM email_sends
             WHERE status = 'sending' AND sending_started_at < now() - make_interval(secs => $1)
               AND (reconcile_at IS NULL OR reconcile_at <= now())
             ORDER BY sending_started_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING id, sending_started_at, resent, attempts",
    )
    .bind(grace.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await
}

/// What reconciliation decided for one send.
#[derive(Debug, Clone)]
pub struct Reconciled<'a> {
    pub id: Uuid,
    /// The attempt it judged (the row is left alone if another attempt started since).
    pub attempted: chrono::DateTime<chrono::Utc>,
    /// `sent`, `pending` (to be resent now) or `dead`.
    pub status: &'static str,
    pub message_id: Option<i64>,
    pub uuid: Option<&'a str>,
    /// Flags the row as resent once without evidence.
    pub resend: bool,
    /// Why, for the history and `last_error`.
    pub note: &'a str,
}

/// Writes one decision if the row is still the `sending` attempt it judged; returns whether
/// it was written.
pub async fn write_reconciled(db: &PgPool, r: &Reconciled<'_>) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE email_sends SET status = $3, mailjet_message_id = coalesce($4, mailjet_message_id),
             mailjet_message_uuid = coalesce($5, mailjet_message_uuid),
             sent_at = CASE WHEN $3 = 'sent' THEN coalesce(sent_at, now()) ELSE sent_at END,
             resent = resent OR $6, next_attempt_at = now(), reconcile_at = NULL,
             last_error = CASE WHEN $3 = 'sent' THEN NULL ELSE $7 END,
             history = history || jsonb_build_object('at', now(), 'event', $7::text), updated_at = now()
         WHERE id = $1 AND status = 'sending' AND sending_started_at = $2",
    )
    .bind(r.id)
    .bind(r.attempted)
    .bind(r.status)
    .bind(r.message_id)
    .bind(r.uuid)
    .bind(r.resend)
    .bind(r.note)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}
