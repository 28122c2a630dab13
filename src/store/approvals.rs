//! Approvals the Campaign Manager asked for, and their decisions.

use sqlx::PgConnection;

/// Decides a pending approval; false when it was not pending (decided already, or unknown).
pub async fn decide(
    tx: &mut PgConnection,
    approval: &str,
    status: &str,
    decided_by: &str,
) -> Result<bool, sqlx::Error> {
    let decided = sqlx::query(
        "UPDATE approvals SET status = $2, decided_at = now(), decided_by = $3, updated_at = now()
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(approval)
    .bind(status)
    .bind(decided_by)
    .execute(&mut *tx)
    .await?;
    Ok(decided.rows_affected() == 1)
}
