//! Upstream credentials (`oauth_tokens`): Slack's access and refresh tokens per workspace,
//! sealed before they reach this module (it stores bytes, never a token in the clear).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A workspace's sealed credential as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedToken {
    pub key_id: String,
    pub access_token_enc: Vec<u8>,
    pub refresh_token_enc: Option<Vec<u8>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub status: String,
    pub version: i32,
}

/// The Slack credential of `workspace`.
pub async fn slack(db: &PgPool, workspace: &str) -> Result<Option<SealedToken>, sqlx::Error> {
    sqlx::query_as(
        "SELECT key_id, access_token_enc, refresh_token_enc, expires_at, status, version
         FROM oauth_tokens WHERE provider = 'slack' AND workspace_id = $1",
    )
    .bind(workspace)
    .fetch_optional(db)
    .await
}

/// A credential to store.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub workspace: &'a str,
    pub key_id: &'a str,
    pub access_token_enc: Vec<u8>,
    pub refresh_token_enc: Option<Vec<u8>>,
    pub scopes: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Stores a Slack credential: access and refresh token change together in one statement. With
/// `expected_version`, a concurrent refresh that lost the race (the version moved) writes
/// nothing: false.
pub async fn save_slack(
    db: &PgPool,
    t: &NewToken<'_>,
    expected_version: Option<i32>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO oauth_tokens (provider, workspace_id, key_id, access_token_enc, refresh_token_enc, scopes, expires_at)
         VALUES ('slack', $1, $2, $3, $4, $5, $6)
         ON CONFLICT (provider, workspace_id) DO UPDATE SET key_id = EXCLUDED.key_id, access_token_enc = EXCLUDED.access_token_enc,
           refresh_token_enc = EXCLUDED.refresh_token_enc, scopes = EXCLUDED.scopes, expires_at = EXCLUDED.expires_at,
           status = 'active', version = oauth_tokens.version + 1, updated_at = now()
         WHERE $7::int IS NULL OR oauth_tokens.version = $7",
    )
    .bind(t.workspace)
    .bind(t.key_id)
    .bind(&t.access_token_enc)
    .bind(&t.refresh_token_enc)
    .bind(t.scopes)
    .bind(t.expires_at)
    .bind(expected_version)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Slack refused the workspace's refresh token: the app must be installed again.
pub async fn mark_needs_reinstall(db: &PgPool, workspace: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE oauth_tokens SET status = 'needs_reinstall', updated_at = now()
         WHERE provider = 'slack' AND workspace_id = $1",
    )
    .bind(workspace)
    .execute(db)
    .await?;
    Ok(())
}

/// Every Slack credential's workspace, status and expiry (for `doctor`).
pub async fn slack_overview(
    db: &PgPool,
) -> Result<Vec<(String, String, Option<DateTime<Utc>>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT workspace_id, status, expires_at FROM oauth_tokens WHERE provider = 'slack' ORDER BY workspace_id",
    )
    .fetch_all(db)
    .await
}
