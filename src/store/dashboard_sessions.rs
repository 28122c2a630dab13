//! The dashboard's sign-in sessions. The browser holds a random id; only its SHA-256 is stored,
//! so a copy of the table cannot be used to sign in. Each session has its own CSRF token.

use std::time::Duration;

use aws_lc_rs::digest;
use sqlx::PgPool;

/// A signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    /// `admin` (may act) or `viewer` (may only look).
    pub role: String,
    /// The name the operator signed in with, recorded in the audit log.
    pub name: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Session {
    /// Whether this operator may act.
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

fn hash(id: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, id.as_bytes())
        .as_ref()
        .to_vec()
}

/// Stores a new session; the id to put in the cookie.
pub async fn create(
    db: &PgPool,
    role: &str,
    name: &str,
    ttl: Duration,
) -> Result<String, sqlx::Error> {
    let id = crate::store::random_token().map_err(sqlx::Error::Io)?;
    let csrf = crate::store::random_token().map_err(sqlx::Error::Io)?;
    // Expired sessions are removed as new ones start, so the table stays small.
    sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at < now()")
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO dashboard_sessions (id_hash, role, name, csrf, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
    )
    .bind(hash(&id))
    .bind(role)
    .bind(name)
    .bind(csrf)
    .bind(ttl.as_secs_f64())
    .execute(db)
    .await?;
    Ok(id)
}

/// The live session of cookie id `id`, if any.
pub async fn find(db: &PgPool, id: &str) -> Result<Option<Session>, sqlx::Error> {
    sqlx::query_as(
        "SELECT role, name, csrf FROM dashboard_sessions WHERE id_hash = $1 AND expires_at > now()",
    )
    .bind(hash(id))
    .fetch_optional(db)
    .await
}

/// Ends the session of cookie id `id`.
pub async fn delete(db: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1")
        .bind(hash(id))
        .execute(db)
        .await?;
    Ok(())
}
