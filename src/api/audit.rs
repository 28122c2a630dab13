//! `GET /api/audit`: the append-only audit trail, newest first, filtered by actor, action,
//! subject, outcome and time, a page at a time by an opaque keyset cursor.

use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::{ApiError, ErrorBody, query_error};
use super::input::{check_fields, check_unprocessable, db_error};
use crate::state::AppState;
use crate::store::audit::{self, Cursor, Entry, Filter};
use crate::store::validate::FieldError;

/// Filters and paging of the trail.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// Only entries of this actor (`api`, `cli`, `worker`, `slack`, `dashboard:admin:<name>`, …).
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00]+$")]
    actor: Option<String>,
    /// Only this action (`campaign.upsert`, `slack.post`, `person.erase`, …).
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00]+$")]
    action: Option<String>,
    /// Only entries about this kind of subject (`campaign`, `slack_post`, `person`, …).
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00]+$")]
    subject_type: Option<String>,
    /// Only entries about this subject (with `subjectType`).
    #[param(min_length = 1, max_length = 400, pattern = r"^[^\x00]+$")]
    subject_id: Option<String>,
    /// Only this outcome (`ok`, `failed`, `refused`).
    #[param(min_length = 1, max_length = 40, pattern = r"^[^\x00]+$")]
    outcome: Option<String>,
    /// Entries at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Entries before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Entries older than this cursor (`nextBefore` of the previous page).
    #[param(pattern = r"^-?[0-9]{1,19}_[0-9]{1,19}$")]
    before: Option<String>,
    /// Per page, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// A page of the trail, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuditPage {
    items: Vec<Entry>,
    /// Pass as `before` for the next page; absent on the last.
    next_before: Option<String>,
}

/// The audit trail: who did what to which subject, in which request or job, and how it ended.
#[utoipa::path(get, path = "/api/audit", tag = "audit", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, description = "subjectId without subjectType, since after until, or a cursor naming no position", body = ErrorBody)))]
pub(super) async fn list_audit(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let expected = "actor, action, subjectType, subjectId, outcome (text), since and until (RFC 3339), before (a nextBefore), limit 1–500";
    let Query(q) = query.map_err(|e| query_error(&e, expected))?;
    let (filter, limit) = checked(q)?;
    let mut items = audit::page(&state.db, &filter, limit + 1)
        .await
        .map_err(db_error)?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_before = more
        .then(|| items.last().map(|e| Cursor::after(e).encode()))
        .flatten();
    Ok(axum::Json(AuditPage { items, next_before }))
}

/// Of the documented form `<micros>_<id>`.
fn cursor_shaped(raw: &str) -> bool {
    let digits = |s: &str| (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    raw.split_once('_').is_some_and(|(micros, id)| {
        digits(micros.strip_prefix('-').unwrap_or(micros)) && digits(id)
    })
}

/// Well-formed parameters that together ask for nothing (422).
fn clashes(q: &AuditQuery) -> Result<(), ApiError> {
    let mut clash = Vec::new();
    if q.before
        .as_deref()
        .is_some_and(|raw| Cursor::parse(raw).is_none())
    {
        clash.push(FieldError::new(
            "before",
            "names no position in the trail",
            "the nextBefore of a previous page",
        ));
    }
    if q.subject_id.is_some() && q.subject_type.is_none() {
        clash.push(FieldError::new(
            "subjectId",
            "is given without subjectType",
            "subjectType with subjectId",
        ));
    }
    if let (Some(since), Some(until)) = (q.since, q.until)
        && since > until
    {
        clash.push(FieldError::new(
            "since",
            "is after until",
            "since at or before until",
        ));
    }
    check_unprocessable(clash)
}

fn checked(q: AuditQuery) -> Result<(Filter, i64), ApiError> {
    let mut errors = Vec::new();
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("{limit} is out of range"),
            "1 to 500",
        ));
    }
    // Not of the cursor's form: 400; of its form but no position in the log: 422 (below).
    let before = q.before.as_deref().map(|raw| {
        let parsed = Cursor::parse(raw);
        if parsed.is_none() && !cursor_shaped(raw) {
            errors.push(FieldError::new(
                "before",
                "is not a cursor this API gave",
                "the nextBefore of a previous page",
            ));
        }
        parsed
    });
    // As the document says: 1 to its maximum, no U+0000.
    let texts = [
        ("actor", &q.actor, 200),
        ("action", &q.action, 200),
        ("subjectType", &q.subject_type, 200),
        ("subjectId", &q.subject_id, 400),
        ("outcome", &q.outcome, 40),
    ];
    for (name, value, max) in texts {
        if value
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.chars().count() > max || v.contains('\0'))
        {
            errors.push(FieldError::new(
                name,
                "is empty, too long or holds U+0000",
                format!("1 to {max} characters"),
            ));
        }
    }
    check_fields(errors)?;
    clashes(&q)?;
    let filter = Filter {
        actor: q.actor,
        action: q.action,
        entity_type: q.subject_type,
        entity_id: q.subject_id,
        outcome: q.outcome,
        since: q.since,
        until: q.until,
        before: before.flatten(),
    };
    Ok((filter, limit))
}
