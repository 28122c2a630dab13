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
    /// For an install (not a refresh): the workspace's name and who installed it.
    pub installed: Option<Installed<'a>>,
}

/// Who installed a credential, into which workspace.
#[derive(Debug, Clone, Copy)]
pub struct Installed<'a> {
    pub team_name: &'a str,
    pub by: &'a str,
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
        "INSERT INTO oauth_tokens (provider, workspace_id, key_id, access_token_enc, refresh_token_enc, scopes, expires_at,
                                   team_name, installed_by, installed_at)
         VALUES ('slack', $1, $2, $3, $4, $5, $6, $8, $9, CASE WHEN $9::text IS NULL THEN NULL ELSE now() END)
         ON CONFLICT (provider, workspace_id) DO UPDATE SET key_id = EXCLUDED.key_id, access_token_enc = EXCLUDED.access_token_enc,
           refresh_token_enc = EXCLUDED.refresh_token_enc, scopes = EXCLUDED.scopes, expires_at = EXCLUDED.expires_at,
           status = 'active', version = oauth_tokens.version + 1, updated_at = now(),
           team_name = coalesce(EXCLUDED.team_name, oauth_tokens.team_name),
           installed_by = coalesce(EXCLUDED.installed_by, oauth_tokens.installed_by),
           installed_at = coalesce(EXCLUDED.installed_at, oauth_tokens.installed_at),
           revoked_at = NULL, revoked_why = NULL
         WHERE ($7::int IS NULL OR oauth_tokens.version = $7)
           AND ($9::text IS NOT NULL OR oauth_tokens.status = 'active')",
    )
    .bind(t.workspace)
    .bind(t.key_id)
    .bind(&t.access_token_enc)
    .bind(&t.refresh_token_enc)
    .bind(t.scopes)
    .bind(t.expires_at)
    .bind(expected_version)
    .bind(t.installed.map(|i| i.team_name))
    .bind(t.installed.map(|i| i.by))
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

/// Slack said the app was uninstalled or its tokens revoked (`why`): Slack jobs stop with a
/// clear error until it is installed again. True when a credential changed.
pub async fn mark_revoked(
    db: impl sqlx::PgExecutor<'_>,
    workspace: &str,
    why: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE oauth_tokens SET status = 'revoked', revoked_at = now(), revoked_why = $2, updated_at = now()
         WHERE provider = 'slack' AND workspace_id = $1 AND status <> 'revoked'",
    )
    .bind(workspace)
    .bind(why)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A Slack credential as `doctor` and the dashboard show it (no secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialStatus {
    pub workspace_id: String,
    pub team_name: Option<String>,
    pub status: String,
    pub key_id: String,
    pub scopes: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub installed_by: Option<String>,
    pub installed_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_why: Option<String>,
}

/// Every Slack credential, without its tokens.
pub async fn slack_credentials(db: &PgPool) -> Result<Vec<CredentialStatus>, sqlx::Error> {
    sqlx::query_as(
        "SELECT workspace_id, team_name, status, key_id, scopes, expires_at, installed_by, installed_at, revoked_at, revoked_why
         FROM oauth_tokens WHERE provider = 'slack' ORDER BY workspace_id",
    )
    .fetch_all(db)
    .await
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

/// A stored credential as `tokens reseal` reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedRow {
    pub id: uuid::Uuid,
    pub provider: String,
    pub workspace_id: String,
    pub key_id: String,
    pub access_token_enc: Vec<u8>,
    pub refresh_token_enc: Option<Vec<u8>>,
    pub version: i32,
}

/// How many credentials are sealed with another key than `key_id`.
pub async fn count_sealed_with_other(db: &PgPool, key_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM oauth_tokens WHERE key_id <> $1")
        .bind(key_id)
        .fetch_one(db)
        .await
}

/// Up to `limit` credentials sealed with another key than `key_id`, after `after` in id order.
pub async fn sealed_with_other(
    db: &PgPool,
    key_id: &str,
    after: Option<uuid::Uuid>,
    limit: i64,
) -> Result<Vec<SealedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, provider, workspace_id, key_id, access_token_enc, refresh_token_enc, version FROM oauth_tokens
         WHERE key_id <> $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(key_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Replaces a credential's ciphertexts with ones sealed by `key_id`, unless it changed since
/// it was read (a refresh in between): false then, and the next pass reads it again.
pub async fn reseal(
    db: &PgPool,
    row: &SealedRow,
    key_id: &str,
    access_token_enc: &[u8],
    refresh_token_enc: Option<&[u8]>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE oauth_tokens SET key_id = $3, access_token_enc = $4, refresh_token_enc = $5, updated_at = now()
         WHERE id = $1 AND version = $2 AND key_id = $6",
    )
    .bind(row.id)
    .bind(row.version)
    .bind(key_id)
    .bind(access_token_enc)
    .bind(refresh_token_enc)
    .bind(&row.key_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}
