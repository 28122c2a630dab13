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

/// One audit entry as `GET /api/audit` and `audit tail` show it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: i64,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub request_id: Option<String>,
    pub outcome: String,
    #[schema(value_type = Object)]
    pub details: sqlx::types::Json<Value>,
}

/// Where a page ends: the last entry's time and id (newest first), as `<micros>_<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: chrono::DateTime<chrono::Utc>,
    pub id: i64,
}

impl Cursor {
    /// The cursor after `entry`.
    pub fn after(entry: &Entry) -> Self {
        Cursor {
            at: entry.occurred_at,
            id: entry.id,
        }
    }

    /// Its text form.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at.timestamp_micros(), self.id)
    }

    /// A cursor from its text form.
    pub fn parse(raw: &str) -> Option<Self> {
        use chrono::Datelike;
        let (micros, id) = raw.split_once('_')?;
        let at = chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        // Only times PostgreSQL can compare with (and this log can hold).
        (1..=9999).contains(&at.year()).then_some(())?;
        Some(Cursor {
            at,
            id: id.parse().ok()?,
        })
    }
}

/// What to list: every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub before: Option<Cursor>,
}

/// A page of entries, newest first: only the filter's predicates are in the statement, so
/// each filter walks its own index in (occurred_at, id) order and stops at `limit`.
pub async fn page(db: &sqlx::PgPool, f: &Filter, limit: i64) -> Result<Vec<Entry>, sqlx::Error> {
    let mut q = sqlx::QueryBuilder::new(
        "SELECT id, occurred_at, actor, action, entity_type, entity_id, request_id, outcome, details FROM audit_log WHERE true",
    );
    let text = [
        (" AND actor = ", &f.actor),
        (" AND action = ", &f.action),
        (" AND entity_type = ", &f.entity_type),
        (" AND entity_id = ", &f.entity_id),
        (" AND outcome = ", &f.outcome),
    ];
    for (sql, value) in text {
        if let Some(v) = value {
            q.push(sql).push_bind(v.clone());
        }
    }
    if let Some(since) = f.since {
        q.push(" AND occurred_at >= ").push_bind(since);
    }
    if let Some(until) = f.until {
        q.push(" AND occurred_at < ").push_bind(until);
    }
    if let Some(c) = f.before {
        q.push(" AND (occurred_at, id) < (")
            .push_bind(c.at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    q.push(" ORDER BY occurred_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    q.build_query_as().fetch_all(db).await
}

/// Entries with an id above `after`, oldest first (for following the log).
pub async fn since_id(
    db: &sqlx::PgPool,
    after: i64,
    limit: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, occurred_at, actor, action, entity_type, entity_id, request_id, outcome, details FROM audit_log
         WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}
