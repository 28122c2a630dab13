//! Retention: what is erased or deleted once it is older than its setting, a batch at a time
//! so no statement holds locks for long.

use sqlx::PgPool;

const BATCH: i64 = 5000;

/// Erases the raw payloads of applied webhook events older than `days`; how many.
pub async fn erase_webhook_payloads(db: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    batched(db, "UPDATE webhook_events SET payload = NULL WHERE id IN (SELECT id FROM webhook_events WHERE payload IS NOT NULL AND status IN ('processed', 'ignored') AND received_at < now() - make_interval(days => $1) LIMIT $2)", days).await
}

/// Deletes statistics snapshots older than `days`; how many.
pub async fn delete_statistics(db: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    batched(db, "DELETE FROM email_statistics WHERE id IN (SELECT id FROM email_statistics WHERE recorded_at < now() - make_interval(days => $1) LIMIT $2)", days).await
}

/// Deletes recorded runs that finished more than `days` ago; how many.
pub async fn delete_sync_runs(db: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    batched(db, "DELETE FROM sync_runs WHERE id IN (SELECT id FROM sync_runs WHERE finished_at < now() - make_interval(days => $1) LIMIT $2)", days).await
}

/// Pseudonymises the recipients (address, name, variables, history) of sends settled more
/// than `days` ago, and clears their events' details, as an erasure does; how many sends.
pub async fn pseudonymise_recipients(db: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    let sends = batched(db, "UPDATE email_sends SET email = email_pseudonym(email),
            name = '', variables = '{}', history = '[]', updated_at = now()
        WHERE id IN (SELECT id FROM email_sends WHERE status IN ('sent', 'failed', 'suppressed', 'dead', 'cancelled')
            AND email NOT LIKE 'sha256:%' AND updated_at < now() - make_interval(days => $1) LIMIT $2)", days).await?;
    batched(db, "UPDATE email_events SET details = '{}' WHERE id IN (SELECT id FROM email_events WHERE details <> '{}'
        AND created_at < now() - make_interval(days => $1) LIMIT $2)", days).await?;
    Ok(sends)
}

/// Deletes rejected deliveries received more than `days` ago; how many.
pub async fn delete_webhook_rejections(db: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    batched(db, "DELETE FROM webhook_rejections WHERE id IN (SELECT id FROM webhook_rejections WHERE received_at < now() - make_interval(days => $1) LIMIT $2)", days).await
}

/// Deletes team activity (Slack messages) posted more than `days` ago; how many.
pub async fn delete_slack_messages(db: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    batched(db, "DELETE FROM slack_messages WHERE (channel_id, ts) IN (SELECT channel_id, ts FROM slack_messages WHERE posted_at < now() - make_interval(days => $1) LIMIT $2)", days).await
}

/// Deletes outgoing webhooks settled more than `days` ago; how many.
pub async fn delete_outgoing_webhooks(db: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    batched(db, "DELETE FROM outgoing_webhooks WHERE id IN (SELECT id FROM outgoing_webhooks WHERE status <> 'pending' AND created_at < now() - make_interval(days => $1) LIMIT $2)", days).await
}

/// Deletes dashboard sessions that expired more than a day ago; how many.
pub async fn delete_expired_sessions(db: &PgPool) -> Result<u64, sqlx::Error> {
    batched(db, "DELETE FROM dashboard_sessions WHERE id_hash IN (SELECT id_hash FROM dashboard_sessions WHERE expires_at < now() - make_interval(days => $1) LIMIT $2)", 1).await
}

async fn batched(db: &PgPool, sql: &'static str, days: u32) -> Result<u64, sqlx::Error> {
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let mut total = 0;
    loop {
        let done = sqlx::query(sql)
            .bind(days)
            .bind(BATCH)
            .execute(db)
            .await?
            .rows_affected();
        total += done;
        if done < BATCH as u64 {
            return Ok(total);
        }
    }
}
