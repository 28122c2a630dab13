//! The append-only audit log: every change to stored data, who made it and what changed.

use serde_json::Value;
use sqlx::PgConnection;

/// Who made a change and in which request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `api`, `cli`, `worker`, …
    pub name: String,
    /// The request id (`X-Request-ID`), when there is one.
    pub request_id: Option<String>,
}

impl Actor {
    /// An actor without a request id.
    pub fn new(name: &str) -> Self {
        Actor {
            name: name.to_owned(),
            request_id: None,
        }
    }
}

/// Appends one entry of something that was done.
pub async fn record(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    entity_type: &str,
    entity_id: &str,
    details: Value,
) -> Result<(), sqlx::Error> {
    record_outcome(conn, actor, action, entity_type, entity_id, "ok", details).await
}

/// Appends one entry with its outcome (`ok`, `failed`, `refused`, …).
pub async fn record_outcome(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    entity_type: &str,
    entity_id: &str,
    outcome: &str,
    details: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (actor, action, entity_type, entity_id, request_id, outcome, details) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&actor.name)
        .bind(action)
        .bind(entity_type)
        .bind(entity_id)
        .bind(&actor.request_id)
        .bind(outcome)
        .bind(details)
        .execute(conn)
        .await?;
    Ok(())
}
