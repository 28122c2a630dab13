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
