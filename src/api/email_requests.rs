//! `/api/email-requests`: accept a send request (every recipient stored before the answer),
//! list requests, and read one with its counts and a page of recipients.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, ErrorBody, query_error};
use super::input::{actor, check_fields, db_error, parse};
use crate::state::AppState;
use crate::store::validate::FieldError;

/// The `Idempotency-Key` header: 1–255 visible ASCII characters.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let expected =
        "an Idempotency-Key header of 1 to 255 visible ASCII characters, new for each request";
    let Some(value) = headers.get("idempotency-key") else {
        return Err(ApiError::Invalid(
            "the Idempotency-Key header is missing".to_owned(),
            vec![FieldError::new("Idempotency-Key", "is missing", expected)],
        ));
    };
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(key.to_owned())
        }
        _ => Err(ApiError::Invalid(
            "the Idempotency-Key header is not valid".to_owned(),
            vec![FieldError::new("Idempotency-Key", "is not valid", expected)],
        )),
    }
}

/// Accept a send request: every recipient is stored before the answer, in one transaction.
#[utoipa::path(post, path = "/api/email-requests", tag = "email", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "1–255 visible ASCII characters, new for each request; the same key with the same body returns the first answer")),
    request_body = crate::store::email_requests::EmailRequestInput,
    responses(
        (status = 202, description = "Accepted; the recipients will be sent", body = crate::store::email_requests::Accepted),
        (status = 400, description = "Fields or recipients (`items`, by index) not of the documented form, or recipients lacking a variable the template needs and has no default for (each named with the variables it lacks); nothing stored", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "The key was used for a different request", body = ErrorBody),
        (status = 422, description = "Well-formed, but the campaign or template is unknown (or the campaign deactivated), or an address is repeated (`items`); nothing stored", body = ErrorBody),
        (status = 413, description = "Body over EMAIL_BODY_LIMIT_BYTES", body = ErrorBody)))]
pub(super) async fn post_email_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    use crate::store::email_requests::{self, AcceptError, EmailRequestInput};
    let key = idempotency_key(&headers)?;
    let input: EmailRequestInput = parse(&body)?;
    let problems = input.validate(state.settings.email.max_recipients);
    if !problems.is_empty() {
        metrics::counter!("email_requests_total", "outcome" => "invalid").increment(1);
        let summary = problems.summary();
        return Err(if problems.only_repeats() {
            ApiError::UnprocessableItems(summary, problems.recipients)
        } else if problems.fields.is_empty() {
            ApiError::InvalidItems(summary, problems.recipients)
        } else {
            ApiError::Invalid(summary, problems.fields)
        });
    }
    let accepted = email_requests::accept(&state.db, &key, &input, &actor(&headers), |_| {}).await;
    let (request, created) = match accepted {
        Ok(done) => done,
        Err(AcceptError::Unknown(field)) => {
            metrics::counter!("email_requests_total", "outcome" => "invalid").increment(1);
            return Err(ApiError::Unprocessable(field.to_string(), vec![field]));
        }
        Err(e @ AcceptError::KeyReused(_)) => {
            metrics::counter!("email_requests_total", "outcome" => "conflict").increment(1);
            return Err(ApiError::Conflict(e.to_string()));
        }
        Err(AcceptError::MissingVariables(items)) => {
            metrics::counter!("email_requests_total", "outcome" => "invalid").increment(1);
            let summary = AcceptError::MissingVariables(items.clone()).to_string();
            return Err(ApiError::InvalidItems(summary, items));
        }
        Err(AcceptError::Db(e)) => return Err(db_error(e)),
    };
    let outcome = if created { "accepted" } else { "replayed" };
    metrics::counter!("email_requests_total", "outcome" => outcome).increment(1);
    if created {
        // The stored request is the durable kick; this only makes it prompt.
        if let Err(e) = crate::jobs::process_email_queue::kick_request(
            state.redis.clone(),
            &state.settings.redis.key_prefix,
            request.scheduled_at,
            "api",
        )
        .await
        {
            tracing::warn!(error = %e, "could not kick the email queue; its schedule will send the request");
        }
    }
    Ok((StatusCode::ACCEPTED, axum::Json(request)).into_response())
}

fn request_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id).map_err(|_| {
        ApiError::Invalid(
            format!("invalid id: {id:?} is not a request id"),
            vec![FieldError::new(
                "id",
                format!("{id:?} is not a UUID"),
                "the id a POST /api/email-requests answered",
            )],
        )
    })
}

/// Cancels a request: its pending recipients become `cancelled` at once; recipients being
/// sent at this moment finish, and the request turns `cancelled` when they have. Cancelling a
/// finished or cancelled request changes nothing (`changed: false`).
#[utoipa::path(post, path = "/api/email-requests/{id}/cancel", tag = "email", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = crate::store::email_requests::Cancelled), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn cancel_email_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<crate::store::email_requests::Cancelled>, ApiError> {
    let id = request_id(&id)?;
    crate::store::email_requests::cancel(&state.db, id, &actor(&headers))
        .await
        .map_err(db_error)?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("no email request {id}")))
}

/// Paging of a request's recipients.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RecipientQuery {
    /// Recipients after this id (`nextAfter` of the previous page).
    after: Option<uuid::Uuid>,
    /// Recipients per page, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only recipients with this status.
    #[param(pattern = r"^(pending|sending|sent|failed|suppressed|dead|cancelled)$")]
    status: Option<String>,
}

/// A request: counts per status and a page of recipients.
#[utoipa::path(get, path = "/api/email-requests/{id}", tag = "email", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), RecipientQuery),
    responses((status = 200, body = crate::store::email_requests::RequestView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_email_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<RecipientQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<crate::store::email_requests::RequestView>, ApiError> {
    let expected = "after=<recipient id>, limit 1–1000, status=pending|sending|sent|failed|suppressed|dead|cancelled";
    let id = request_id(&id)?;
    let Query(query) = query.map_err(|e| query_error(&e, expected))?;
    let limit = query.limit.unwrap_or(100);
    let mut errors = Vec::new();
    if !(1..=1000).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("{limit} is out of range"),
            "1 to 1000",
        ));
    }
    if let Some(status) = &query.status
        && !crate::store::email_requests::SEND_STATUSES.contains(&status.as_str())
    {
        errors.push(FieldError::new(
            "status",
            format!("{status:?} is not a status"),
            expected,
        ));
    }
    check_fields(errors)?;
    crate::store::email_requests::view(&state.db, id, query.after, limit, query.status.as_deref())
        .await
        .map_err(db_error)?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("no email request {id}")))
}

/// Filters and paging of the request list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RequestListQuery {
    /// Only requests of this campaign.
    #[param(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    campaign_id: Option<String>,
    /// Only requests in this status: `accepted`, `sending`, `completed` or `cancelled`.
    #[param(pattern = r"^(accepted|sending|completed|cancelled)$")]
    status: Option<String>,
    /// Requests older than this one (`nextBefore` of the previous page).
    before: Option<uuid::Uuid>,
    /// Requests per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// A page of requests, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RequestPage {
    items: Vec<crate::store::email_requests::RequestSummary>,
    /// Pass as `before` for the next page; absent on the last.
    next_before: Option<uuid::Uuid>,
}

/// Requests, newest first, filtered by campaign and status.
#[utoipa::path(get, path = "/api/email-requests", tag = "email", security(("bearer" = [])),
    params(RequestListQuery),
    responses((status = 200, body = RequestPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_email_requests(
    State(state): State<AppState>,
    query: Result<Query<RequestListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<RequestPage>, ApiError> {
    use crate::store::email_requests::{self, REQUEST_STATUSES};
    let expected = "campaignId=<id>, status=accepted|sending|completed|cancelled, before=<request id>, limit 1–200";
    let Query(query) = query.map_err(|e| query_error(&e, expected))?;
    let limit = query.limit.unwrap_or(50);
    let mut errors = Vec::new();
    if !(1..=200).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("{limit} is out of range"),
            "1 to 200",
        ));
    }
    if let Some(status) = &query.status
        && !REQUEST_STATUSES.contains(&status.as_str())
    {
        errors.push(FieldError::new(
            "status",
            format!("{status:?} is not a request status"),
            expected,
        ));
    }
    if let Some(campaign) = &query.campaign_id {
        let mut id_errors = crate::store::campaigns::validate_id(campaign);
        for e in &mut id_errors {
            e.field = "campaignId".to_owned();
        }
        errors.extend(id_errors);
    }
    check_fields(errors)?;
    let (items, next_before) = email_requests::list(
        &state.db,
        query.campaign_id.as_deref(),
        query.status.as_deref(),
        query.before,
        limit,
    )
    .await
    .map_err(db_error)?;
    Ok(axum::Json(RequestPage { items, next_before }))
}
