//! Email requests (`CampaignEmailRequest`): checked, then stored in one transaction — the
//! request row and one `email_sends` row per recipient — so a crash never leaves half a
//! request. The request row is what the email queue works from: once it is committed the
//! recipients will be sent, whether or not the kick to the queue got through.
//!
//! Idempotency: the key is unique; the same key with the same body (by SHA-256 of its
//! canonical JSON) gives back the first answer, with a different body it is refused.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

mod cancel;
mod input;

pub use cancel::{Cancelled, cancel};
pub use input::{EmailRequestInput, Problems, RecipientInput};

use super::audit::{self, Actor};
use super::batch::ItemErrors;
use super::validate::FieldError;

/// Every status of a recipient (`email_sends.status`).
pub const SEND_STATUSES: [&str; 7] = [
    "pending",
    "sending",
    "sent",
    "failed",
    "suppressed",
    "dead",
    "cancelled",
];

/// Recipients written per statement.
const CHUNK: usize = 5_000;

/// A stored request, as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub id: Uuid,
    pub idempotency_key: String,
    pub campaign_id: String,
    pub template_id: i64,
    #[sqlx(rename = "recipient_count")]
    pub recipients: i32,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub test_mode: bool,
    pub created_at: DateTime<Utc>,
}

/// Why a request was not stored.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("{0}")]
    Unknown(FieldError),
    #[error(
        "the Idempotency-Key was already used for a different request ({0}); use a new key for a new request"
    )]
    KeyReused(Uuid),
    /// Recipients lack variables the template has no default for (400).
    #[error("{} recipient(s) lack template variables, first #{}: {}", .0.len(), .0.first().map_or(0, |i| i.index), .0.first().and_then(|i| i.errors.first()).map(|e| e.to_string()).unwrap_or_default())]
    MissingVariables(Vec<ItemErrors>),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The columns of [`Accepted`].
const REQUEST_COLUMNS: &str = "id, idempotency_key, campaign_id, template_id, recipient_count, scheduled_at, test_mode, created_at";

/// A stored request with the fingerprint of its body.
#[derive(sqlx::FromRow)]
struct Stored {
    #[sqlx(flatten)]
    request: Accepted,
    request_hash: String,
}

async fn by_key(pool: &PgPool, key: &str) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS}, request_hash FROM email_requests WHERE idempotency_key = $1"
    )))
    .bind(key)
    .fetch_optional(pool)
    .await
}

fn replay(existing: Stored, hash: &str) -> Result<(Accepted, bool), AcceptError> {
    if existing.request_hash == hash {
        Ok((existing.request, false))
    } else {
        Err(AcceptError::KeyReused(existing.request.id))
    }
}

/// Recipients of request `id` per status (statuses without recipients left out).
pub async fn status_counts<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: Uuid,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, count(*) FROM email_sends WHERE request_id = $1 GROUP BY status")
        .bind(id)
        .fetch_all(db)
        .await
}

/// Stores a checked request under `key`: (the request, whether it was created now). The same
/// key again gives back the stored request when the body is the same.
pub async fn accept(
    pool: &PgPool,
    key: &str,
    input: &EmailRequestInput,
    actor: &Actor,
    mut progress: impl FnMut(usize),
) -> Result<(Accepted, bool), AcceptError> {
    let hash = input.fingerprint();
    if let Some(existing) = by_key(pool, key).await? {
        return replay(existing, &hash);
    }
    let mut tx = pool.begin().await?;
    check_references(&mut tx, input).await?;
    let inserted: Option<Accepted> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO email_requests (idempotency_key, request_hash, campaign_id, template_id, scheduled_at, test_mode, recipient_count)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING {REQUEST_COLUMNS}"
    )))
    .bind(key)
    .bind(&hash)
    .bind(&input.campaign_id)
    .bind(input.template_id)
    .bind(input.scheduled_at)
    .bind(input.test_mode)
    .bind(input.recipients.len() as i32)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(request) = inserted else {
        // The same key committed by a concurrent request while this one was checking.
        tx.rollback().await?;
        let existing = by_key(pool, key).await?.ok_or(sqlx::Error::RowNotFound)?;
        return replay(existing, &hash);
    };
    let written = write_recipients(&mut tx, request.id, input, &mut progress).await?;
    audit::record(
        &mut tx,
        actor,
        "email_request.accepted",
        "email_request",
        &request.id.to_string(),
        json!({ "campaign_id": request.campaign_id, "template_id": request.template_id, "recipients": request.recipients, "scheduled_at": request.scheduled_at, "test_mode": request.test_mode, "idempotency_key": key }),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("email_recipients_accepted_total").increment(written as u64);
    Ok((request, true))
}

/// The campaign must exist and be active, the template must have been imported.
async fn check_references(
    tx: &mut sqlx::PgConnection,
    input: &EmailRequestInput,
) -> Result<(), AcceptError> {
    let active: Option<bool> = sqlx::query_scalar("SELECT active FROM campaigns WHERE id = $1")
        .bind(&input.campaign_id)
        .fetch_optional(&mut *tx)
        .await?;
    match active {
        None => {
            return Err(AcceptError::Unknown(FieldError::new(
                "campaignId",
                format!("no campaign {:?}", input.campaign_id),
                "the id of a campaign sent to PUT /api/campaigns/{id}",
            )));
        }
        Some(false) => {
            return Err(AcceptError::Unknown(FieldError::new(
                "campaignId",
                format!("campaign {:?} is deactivated", input.campaign_id),
                "an active campaign",
            )));
        }
        Some(true) => {}
    }
    let Some(required) = super::templates::required_variables(tx, input.template_id).await? else {
        return Err(AcceptError::Unknown(FieldError::new(
            "templateId",
            format!("no Mailjet template {}", input.template_id),
            "a template imported by sync_mailjet_templates (`campaign-sync jobs run sync_mailjet_templates` imports them now)",
        )));
    };
    let lacking = lacking_variables(input, &required);
    if !lacking.is_empty() {
        return Err(AcceptError::MissingVariables(lacking));
    }
    Ok(())
}

/// The recipients (by index, at most [`LISTED`]) that lack a variable the template needs
/// and has no default for, each with the variables it lacks.
fn lacking_variables(input: &EmailRequestInput, required: &[String]) -> Vec<ItemErrors> {
    const LISTED: usize = 100;
    input
        .recipients
        .iter()
        .enumerate()
        .filter_map(|(index, r)| {
            let missing: Vec<&str> = required
                .iter()
                .filter(|v| r.variables.get(v.as_str()).is_none_or(Value::is_null))
                .map(String::as_str)
                .collect();
            (!missing.is_empty()).then(|| ItemErrors {
                index,
                errors: vec![FieldError::new(
                    "variables",
                    format!("lacks {}", missing.join(", ")),
                    format!(
                        "template {} has no default for: {}",
                        input.template_id,
                        required.join(", ")
                    ),
                )],
            })
        })
        .take(LISTED)
        .collect()
}

/// Every recipient as an `email_sends` row, `CHUNK` per statement; how many.
async fn write_recipients(
    tx: &mut sqlx::PgConnection,
    request: Uuid,
    input: &EmailRequestInput,
    progress: &mut impl FnMut(usize),
) -> Result<usize, sqlx::Error> {
    let mut written = 0;
    for chunk in input.recipients.chunks(CHUNK) {
        let emails: Vec<&str> = chunk.iter().map(|r| r.email.trim()).collect();
        let names: Vec<&str> = chunk.iter().map(|r| r.name.as_str()).collect();
        let variables: Vec<Value> = chunk
            .iter()
            .map(|r| Value::Object(r.variables.clone()))
            .collect();
        sqlx::query(
            "INSERT INTO email_sends (request_id, email, name, variables)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::jsonb[])",
        )
        .bind(request)
        .bind(&emails)
        .bind(&names)
        .bind(&variables)
        .execute(&mut *tx)
        .await?;
        written += chunk.len();
        progress(written);
    }
    Ok(written)
}

/// One recipient's state.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct RecipientView {
    pub id: Uuid,
    pub email: String,
    pub status: String,
    pub attempts: i32,
    pub mailjet_message_id: Option<i64>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub resent: bool,
}

/// A request with its counts per status and one page of recipients.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    #[serde(flatten)]
    pub request: Accepted,
    /// `accepted`, `sending`, `completed` or `cancelled`.
    pub status: String,
    pub completed_at: Option<DateTime<Utc>>,
    /// Recipients per status (`pending`, `sending`, `sent`, `failed`, `suppressed`, `dead`,
    /// `cancelled`).
    pub counts: BTreeMap<String, i64>,
    /// This page, ordered by recipient id.
    pub items: Vec<RecipientView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<Uuid>,
}

/// A request with its status and completion time.
#[derive(sqlx::FromRow)]
struct ViewRow {
    #[sqlx(flatten)]
    request: Accepted,
    status: String,
    completed_at: Option<DateTime<Utc>>,
}

/// The request `id` with recipients after `after` (at most `limit`, of `status` if given).
pub async fn view(
    pool: &PgPool,
    id: Uuid,
    after: Option<Uuid>,
    limit: i64,
    status: Option<&str>,
) -> Result<Option<RequestView>, sqlx::Error> {
    let row: Option<ViewRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS}, status, completed_at FROM email_requests WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let counts = status_counts(pool, id).await?;
    let mut items: Vec<RecipientView> = sqlx::query_as(
        "SELECT id, email, status, attempts, mailjet_message_id, last_error, sent_at, resent FROM email_sends
         WHERE request_id = $1 AND ($2::uuid IS NULL OR id > $2) AND ($3::text IS NULL OR status = $3)
         ORDER BY id LIMIT $4",
    )
    .bind(id)
    .bind(after)
    .bind(status)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    let next_after = keyset_page(&mut items, limit, |i| i.id);
    let mut all: BTreeMap<String, i64> = SEND_STATUSES
        .into_iter()
        .map(|s| (s.to_owned(), 0))
        .collect();
    all.extend(counts);
    Ok(Some(RequestView {
        request: row.request,
        status: row.status,
        completed_at: row.completed_at,
        counts: all,
        items,
        next_after,
    }))
}

/// A request in a list: what was asked, and how far it has come.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct RequestSummary {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub request: Accepted,
    /// `accepted`, `sending`, `completed` or `cancelled`.
    pub status: String,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Request statuses.
pub const REQUEST_STATUSES: [&str; 4] = ["accepted", "sending", "completed", "cancelled"];

/// Requests newest first, at most `limit`, older than the request `before` (keyset), of one
/// campaign and one status if given; and the id to pass as `before` for the next page.
pub async fn list(
    pool: &PgPool,
    campaign: Option<&str>,
    status: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<(Vec<RequestSummary>, Option<Uuid>), sqlx::Error> {
    let mut items: Vec<RequestSummary> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS}, status, completed_at FROM email_requests
         WHERE ($1::text IS NULL OR campaign_id = $1) AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM email_requests WHERE id = $3))
         ORDER BY created_at DESC, id DESC LIMIT $4"
    )))
    .bind(campaign)
    .bind(status)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    let next = keyset_page(&mut items, limit, |i| i.request.id);
    Ok((items, next))
}

/// A keyset page fetched with one row more than `limit`: drops the extra row and returns the
/// id of the page's last row when there is a next page.
fn keyset_page<T>(items: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> Option<Uuid> {
    if items.len() as i64 <= limit {
        return None;
    }
    items.truncate(limit as usize);
    items.last().map(id)
}

/// Requests the queue starts on are `sending`.
pub async fn mark_sending(db: &PgPool, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE email_requests SET status = 'sending' WHERE id = ANY($1) AND status = 'accepted'",
    )
    .bind(ids)
    .execute(db)
    .await?;
    Ok(())
}

/// Completes the requests with no recipient left pending or sending; their ids.
pub async fn complete_finished(db: &PgPool) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE email_requests r
         SET status = CASE WHEN r.cancelled_at IS NULL THEN 'completed' ELSE 'cancelled' END,
             completed_at = now()
         WHERE r.status NOT IN ('completed', 'cancelled')
           AND NOT EXISTS (SELECT 1 FROM email_sends s WHERE s.request_id = r.id AND s.status IN ('pending', 'sending'))
         RETURNING r.id",
    )
    .fetch_all(db)
    .await
}
