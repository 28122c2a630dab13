//! Stored webhook deliveries: the events (`webhook_events`, deduplicated on their identity),
//! the events a delivery carried that could not be used (`webhook_rejections`), and the
//! evidence they give the email queue's reconciliation.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// One event ready to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Identity used to deduplicate deliveries of the same event.
    pub external_id: String,
    /// `sent`, `open`, `user_change`, `block_actions`, …
    pub event_type: String,
    /// The event as received (U+0000 replaced, see `webhooks::intake`).
    pub payload: Value,
}

/// One event of a delivery that could not be used, kept as received.
#[derive(Debug, Clone)]
pub struct NewRejection {
    /// Its index in the delivery (0 for a single event).
    pub position: i32,
    /// The event's bytes exactly as they arrived.
    pub raw: Vec<u8>,
    /// Why it could not be used.
    pub reason: String,
}

/// A stored rejection.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Rejection {
    pub id: i64,
    pub source: String,
    pub position: i32,
    pub reason: String,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub replayed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub replay_outcome: Option<String>,
    pub webhook_event_id: Option<i64>,
    /// The raw bytes, as text where they are UTF-8 (lossy otherwise).
    #[serde(serialize_with = "lossy")]
    pub raw: Vec<u8>,
}

fn lossy<S: serde::Serializer>(raw: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(raw))
}

/// Stores the events (duplicates skipped) and the rejections of one delivery in one
/// transaction; returns the ids of the new event rows.
pub async fn store_delivery(
    db: &PgPool,
    source: &str,
    events: &[NewEvent],
    rejections: &[NewRejection],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let ids = insert_events(&mut tx, source, events).await?;
    if !rejections.is_empty() {
        insert_rejections(&mut tx, source, rejections).await?;
    }
    tx.commit().await?;
    Ok(ids)
}

async fn insert_events(
    conn: &mut PgConnection,
    source: &str,
    events: &[NewEvent],
) -> Result<Vec<i64>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let external: Vec<&str> = events.iter().map(|e| e.external_id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let payloads: Vec<Value> = events.iter().map(|e| e.payload.clone()).collect();
    sqlx::query_scalar::<_, i64>(
        "INSERT INTO webhook_events (source, external_id, event_type, payload)
         SELECT $1, e, t, p FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS x(e, t, p)
         ON CONFLICT (source, external_id) DO NOTHING RETURNING id",
    )
    .bind(source)
    .bind(&external)
    .bind(&types)
    .bind(&payloads)
    .fetch_all(conn)
    .await
}

async fn insert_rejections(
    conn: &mut PgConnection,
    source: &str,
    rejections: &[NewRejection],
) -> Result<(), sqlx::Error> {
    let positions: Vec<i32> = rejections.iter().map(|r| r.position).collect();
    let raws: Vec<&[u8]> = rejections.iter().map(|r| r.raw.as_slice()).collect();
    let reasons: Vec<&str> = rejections.iter().map(|r| r.reason.as_str()).collect();
    let digests: Vec<String> = rejections
        .iter()
        .map(|r| {
            hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                &r.raw,
            ))
        })
        .collect();
    sqlx::query(
        "INSERT INTO webhook_rejections (source, position, raw, reason, digest)
         SELECT $1, p, r, w, d FROM unnest($2::int[], $3::bytea[], $4::text[], $5::text[]) AS x(p, r, w, d)
         ON CONFLICT (source, digest) DO NOTHING",
    )
    .bind(source)
    .bind(&positions)
    .bind(&raws)
    .bind(&reasons)
    .bind(&digests)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rejections newest first, `limit` of them with ids below `before`; only those not
/// replayed yet unless `all`.
pub async fn list_rejections(
    db: &PgPool,
    limit: i64,
    before: Option<i64>,
    all: bool,
) -> Result<Vec<Rejection>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, source, position, reason, received_at, replayed_at, replay_outcome, webhook_event_id, raw
         FROM webhook_rejections
         WHERE ($2::bigint IS NULL OR id < $2) AND ($3 OR replayed_at IS NULL)
         ORDER BY id DESC LIMIT $1",
    )
    .bind(limit.clamp(1, 1000))
    .bind(before)
    .bind(all)
    .fetch_all(db)
    .await
}

/// One rejection.
pub async fn rejection(db: &PgPool, id: i64) -> Result<Option<Rejection>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, source, position, reason, received_at, replayed_at, replay_outcome, webhook_event_id, raw
         FROM webhook_rejections WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Replays a rejection whose bytes now make an event: stores it (or finds it already
/// stored) and marks the rejection replayed, in one transaction. Returns the event's id if a
/// new row was stored.
pub async fn replay_as_event(
    db: &PgPool,
    id: i64,
    source: &str,
    event: &NewEvent,
) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let new = insert_events(&mut tx, source, std::slice::from_ref(event)).await?;
    let event_id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM webhook_events WHERE source = $1 AND external_id = $2")
            .bind(source)
            .bind(&event.external_id)
            .fetch_optional(&mut *tx)
            .await?;
    let outcome = if new.is_empty() {
        "duplicate of a stored event"
    } else {
        "stored"
    };
    sqlx::query(
        "UPDATE webhook_rejections SET replayed_at = now(), replay_outcome = $2, webhook_event_id = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(outcome)
    .bind(event_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(new.first().copied())
}

/// Records that a replay found the bytes still unusable (the reason may have changed).
pub async fn replay_refused(db: &PgPool, id: i64, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_rejections SET reason = $2, replay_outcome = 'still rejected' WHERE id = $1")
        .bind(id)
        .bind(reason)
        .execute(db)
        .await?;
    Ok(())
}

/// What stored Mailjet events say of a send: the type of one event naming it and the
/// Mailjet message id it carries.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub event_type: String,
    pub message_id: Option<i64>,
}

/// Every stored Mailjet event whose CustomID is one of `sends`, processed or not: each proves
/// that Mailjet accepted the message.
pub async fn mailjet_evidence(
    db: &PgPool,
    sends: &[Uuid],
) -> Result<HashMap<Uuid, Evidence>, sqlx::Error> {
    let ids: Vec<String> = sends.iter().map(Uuid::to_string).collect();
    let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT DISTINCT ON (payload->>'CustomID') payload->>'CustomID', event_type,
                CASE WHEN jsonb_typeof(payload->'MessageID') = 'number' THEN (payload->>'MessageID')::numeric::bigint END
         FROM webhook_events
         WHERE source = 'mailjet' AND payload->>'CustomID' = ANY($1)
         ORDER BY payload->>'CustomID', id",
    )
    .bind(&ids)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(custom, event_type, message_id)| {
            let id = Uuid::parse_str(&custom).ok()?;
            Some((
                id,
                Evidence {
                    event_type,
                    message_id: message_id.filter(|m| *m != 0),
                },
            ))
        })
        .collect())
}

/// The latest Mailjet event time (`time`, unix seconds) among the most recently stored
/// events: how far Mailjet's event stream has reached us.
pub async fn mailjet_watermark(
    db: &PgPool,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    let time: Option<i64> = sqlx::query_scalar(
        "SELECT max(CASE WHEN jsonb_typeof(payload->'time') = 'number' THEN (payload->>'time')::numeric::bigint END)
         FROM (SELECT payload FROM webhook_events WHERE source = 'mailjet' ORDER BY id DESC LIMIT 1000) recent",
    )
    .fetch_one(db)
    .await?;
    Ok(time.and_then(|t| chrono::DateTime::from_timestamp(t, 0)))
}

/// A stored event being applied (locked until the transaction ends).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub source: String,
    pub event_type: String,
    pub payload: Value,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// Locks event `id` for applying, if it is still `received` and no one else holds it.
pub async fn claim_received(
    tx: &mut PgConnection,
    id: i64,
) -> Result<Option<Claimed>, sqlx::Error> {
    use sqlx::Row;
    let row = sqlx::query(
        "SELECT source, event_type, payload, received_at FROM webhook_events
         WHERE id = $1 AND status = 'received' FOR UPDATE SKIP LOCKED",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Claimed {
        source: row.try_get("source")?,
        event_type: row.try_get("event_type")?,
        payload: row
            .try_get::<Option<Value>, _>("payload")?
            .unwrap_or(Value::Null),
        received_at: row.try_get("received_at")?,
    }))
}

/// Marks event `id` `processed` or `ignored`.
pub async fn finish(tx: &mut PgConnection, id: i64, status: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_events SET status = $2, processed_at = now(), attempts = attempts + 1
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Counts a failed attempt at event `id`; after `max_attempts` it is `failed`.
pub async fn fail_attempt(
    db: &PgPool,
    id: i64,
    error: &str,
    max_attempts: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_events SET attempts = attempts + 1, last_error = $2,
             status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE status END
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(max_attempts)
    .execute(db)
    .await?;
    Ok(())
}

/// Up to 1,000 events still `received` after `older_than` (their enqueue was lost).
pub async fn received_before(
    db: &PgPool,
    older_than: std::time::Duration,
) -> Result<Vec<i64>, sqlx::Error> {
    let age = format!("{} milliseconds", older_than.as_millis());
    sqlx::query_scalar(
        "SELECT id FROM webhook_events WHERE status = 'received' AND received_at < now() - $1::interval
         ORDER BY id LIMIT 1000",
    )
    .bind(age)
    .fetch_all(db)
    .await
}
