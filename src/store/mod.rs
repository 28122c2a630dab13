//! Postgres access: the pool, the embedded migrations, and (as they are built) one module per
//! aggregate.

pub mod alert_inputs;
pub mod alerts;
pub mod analytics;
pub mod approvals;
pub mod audit;
pub mod batch;
pub mod campaigns;
pub mod dashboard;
pub mod dashboard_sessions;
pub mod email_events;
pub mod email_requests;
pub mod email_sends;
pub mod invariants;
pub mod notifications;
pub mod oauth_tokens;
pub mod outgoing_webhooks;
pub mod people;
pub mod retention;
pub mod rollups;
pub mod slack_channels;
pub mod slack_identities;
pub mod slack_messages;
pub mod slack_posts;
pub mod statistics;
pub mod sync_runs;
pub mod team_members;
pub mod templates;
pub mod validate;
pub mod webhook_events;

use std::str::FromStr;

use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::config::{DatabaseSettings, SslMode};

/// Every migration in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// 32 random bytes from the system's secure generator, as URL-safe base64 (a session id, a
/// CSRF token).
pub fn random_token() -> std::io::Result<String> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    use base64::Engine;
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("the system's random generator failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The record is new.
    Created,
    /// Something changed.
    Updated,
    /// It was already so: nothing was written.
    Unchanged,
}

/// Errors of a write.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The write conflicts with stored data (an id already mapped elsewhere, a taken email).
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl WriteError {
    /// A unique violation raced past the checks: also a conflict.
    pub fn from_db(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
                WriteError::Conflict(format!(
                    "conflicts with stored data ({})",
                    db.constraint().unwrap_or("unique")
                ))
            }
            _ => WriteError::Db(e),
        }
    }
}

/// Errors opening the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DATABASE_URL is not set.
    #[error("DATABASE_URL is not set")]
    NotConfigured,
    /// DATABASE_URL could not be turned into connection options.
    #[error("DATABASE_URL is not usable: {0}")]
    BadUrl(String),
}

/// Connection options from the settings; `application_name` shows in `pg_stat_activity`;
/// JIT is off.
pub fn connect_options(
    db: &DatabaseSettings,
    application: &str,
) -> Result<PgConnectOptions, StoreError> {
    let url = db.url.as_ref().ok_or(StoreError::NotConfigured)?;
    let options = PgConnectOptions::from_str(url.expose_secret())
        // The error text of a bad URL can echo the URL (and its password): keep only its kind.
        .map_err(|_| StoreError::BadUrl("it is not a valid postgres:// URL".to_owned()))?;
    Ok(options
        .ssl_mode(pg_ssl_mode(db.ssl_mode))
        .application_name(&format!("campaign-sync {application}"))
        // Every statement here is short and index-driven; JIT compilation, which PostgreSQL
        // starts for any plan it estimates as costly, took longer (≈ 0.8 s) than the query.
        .options([("jit", "off")]))
}

fn pg_ssl_mode(mode: SslMode) -> PgSslMode {
    match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    }
}

/// A pool that connects on first use, so a process starts (and reports unready) while
/// Postgres is down instead of crash-looping.
pub fn pool(db: &DatabaseSettings, application: &str) -> Result<PgPool, StoreError> {
    let options = connect_options(db, application)?;
    Ok(PgPoolOptions::new()
        .max_connections(db.max_connections)
        .min_connections(db.min_connections)
        .acquire_timeout(db.connect_timeout)
        .connect_lazy_with(options))
}

/// State of one migration, for `doctor` and `migrate --status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// Version (the timestamp in the file name).
    pub version: i64,
    /// Description (the rest of the file name).
    pub description: String,
    /// Applied successfully.
    pub applied: bool,
    /// Applied, but recorded as failed or with a checksum that differs from the binary's.
    pub problem: Option<String>,
}

/// The state of every embedded migration, and versions applied that this binary does not know.
pub async fn migration_status(
    pool: &PgPool,
) -> Result<(Vec<MigrationState>, Vec<i64>), sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let applied: Vec<(i64, bool, Vec<u8>)> = if exists {
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    let states = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| {
            let row = applied.iter().find(|(v, _, _)| *v == m.version);
            let problem = row.and_then(|(_, success, checksum)| {
                if !success {
                    Some("recorded as failed (dirty)".to_owned())
                } else if checksum.as_slice() != &*m.checksum {
                    Some(
                        "applied with a different checksum: the file changed after it ran"
                            .to_owned(),
                    )
                } else {
                    None
                }
            });
            MigrationState {
                version: m.version,
                description: m.description.to_string(),
                applied: row.is_some_and(|(_, success, _)| *success),
                problem,
            }
        })
        .collect();
    let unknown = applied
        .iter()
        .map(|(v, _, _)| *v)
        .filter(|v| !MIGRATOR.iter().any(|m| m.version == *v))
        .collect();
    Ok((states, unknown))
}

/// A short description of a database error that never includes connection details.
pub fn describe_sqlx(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "no connection available (pool timed out)".to_owned(),
        sqlx::Error::Io(io) => format!("connection failed ({})", io.kind()),
        sqlx::Error::Tls(_) => "TLS handshake failed".to_owned(),
        // Server messages name objects ("database \"x\" does not exist"), never credentials.
        sqlx::Error::Database(db) => {
            format!("{} ({})", db.message(), db.code().unwrap_or_default())
        }
        _ => "query failed".to_owned(),
    }
}

/// Takes the session-level advisory lock `key` on `conn` if no one holds it.
pub async fn try_advisory_lock(
    conn: &mut sqlx::PgConnection,
    key: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(conn)
        .await
}

/// Takes the advisory lock `key` on `conn`, waiting for whoever holds it.
pub async fn advisory_lock(conn: &mut sqlx::PgConnection, key: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Releases the advisory lock `key` held by `conn`.
pub async fn advisory_unlock(conn: &mut sqlx::PgConnection, key: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Answers when PostgreSQL does (the readiness check).
pub async fn ping(db: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(db)
        .await?;
    Ok(())
}

/// The server's version, and whether this connection uses TLS (`doctor`).
pub async fn server_version_and_ssl(db: &PgPool) -> Result<(String, Option<bool>), sqlx::Error> {
    sqlx::query_as(
        "SELECT current_setting('server_version'), (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
    )
    .fetch_one(db)
    .await
}
