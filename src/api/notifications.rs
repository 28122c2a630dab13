//! `/api/notifications`: accept a Slack notification (stored with its posts before the
//! answer; the posts are the outbox `deliver_slack_posts` works from), read one with its
//! deliveries, list them.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::email_requests::idempotency_key;
use super::error::{ApiError, ErrorBody, query_error};
use super::input::{actor, check_fields, db_error, parse};
use crate::jobs::support::workflow::{self, WorkflowError};
use crate::state::AppState;
use crate::store::notifications::{self, NotificationInput, NotificationView};
use crate::store::validate::FieldError;

pub(super) fn workflow_error(e: WorkflowError, metric: &'static str) -> ApiError {
    let outcome = match &e {
        WorkflowError::Unknown(_) => "invalid",
        WorkflowError::Conflict(_) => "conflict",
        WorkflowError::Db(_) => "error",
    };
    metrics::counter!(metric, "outcome" => outcome).increment(1);
    match e {
        WorkflowError::Unknown(field) => ApiError::Unprocessable(field.to_string(), vec![field]),
        WorkflowError::Conflict(message) => ApiError::Conflict(message),
        WorkflowError::Db(e) => db_error(e),
    }
}

/// Post a notification to the campaign's channel, a given channel, or a team member's DM.
#[utoipa::path(post, path = "/api/notifications", tag = "slack", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "1–255 visible ASCII characters, new for each notification; the same key with the same body returns the first answer")),
    request_body = NotificationInput,
    responses(
        (status = 202, description = "Stored; it will be posted", body = NotificationView),
        (status = 400, description = "Fields not of the documented form; nothing stored", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "The key was used for a different notification", body = ErrorBody),
        (status = 422, description = "Well-formed, but the campaign is unknown or deactivated, or `userId` is no team member; nothing stored", body = ErrorBody)))]
pub(super) async fn post_notification(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let input: NotificationInput = parse(&body)?;
    check_fields(input.validate()).inspect_err(|_| {
        metrics::counter!("slack_notification_requests_total", "outcome" => "invalid").increment(1);
    })?;
    let (view, created) = workflow::accept_notification(&state.db, &key, &input, &actor(&headers))
        .await
        .map_err(|e| workflow_error(e, "slack_notification_requests_total"))?;
    let outcome = if created { "accepted" } else { "replayed" };
    metrics::counter!("slack_notification_requests_total", "outcome" => outcome).increment(1);
    if created {
        crate::jobs::deliver_slack_posts::kick_or_log(
            state.redis.clone(),
            &state.settings.redis.key_prefix,
            "api",
        )
        .await;
    }
    Ok((StatusCode::ACCEPTED, axum::Json(view)).into_response())
}

/// A notification and each of its deliveries (channel and `ts`, or why it was skipped, or
/// Slack's error).
#[utoipa::path(get, path = "/api/notifications/{id}", tag = "slack", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = NotificationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_notification(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<NotificationView>, ApiError> {
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return Err(ApiError::Invalid(
            format!("invalid id: {id:?} is not a notification id"),
            vec![FieldError::new(
                "id",
                format!("{id:?} is not a UUID"),
                "the id a POST /api/notifications answered",
            )],
        ));
    };
    notifications::get(&state.db, id)
        .await
        .map_err(db_error)?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("no notification {id}")))
}

/// Filters and paging of the list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NotificationQuery {
    /// Only notifications of this campaign.
    #[param(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    campaign_id: Option<String>,
    /// Only this type.
    #[serde(rename = "type")]
    #[param(
        rename = "type",
        pattern = r"^(status_change|approval_needed|task_assigned|milestone_reached)$"
    )]
    kind: Option<String>,
    /// Notifications older than this one (`nextBefore` of the previous page).
    before: Option<uuid::Uuid>,
    /// Per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// A page of notifications, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NotificationPage {
    items: Vec<NotificationView>,
    /// Pass as `before` for the next page; absent on the last.
    next_before: Option<uuid::Uuid>,
}

/// Notifications, newest first, by campaign and type.
#[utoipa::path(get, path = "/api/notifications", tag = "slack", security(("bearer" = [])),
    params(NotificationQuery),
    responses((status = 200, body = NotificationPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_notifications(
    State(state): State<AppState>,
    query: Result<Query<NotificationQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<NotificationPage>, ApiError> {
    let expected = "campaignId=<id>, type=status_change|approval_needed|task_assigned|milestone_reached, before=<notification id>, limit 1–200";
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
    if let Some(kind) = &query.kind
        && !notifications::KINDS.contains(&kind.as_str())
    {
        errors.push(FieldError::new(
            "type",
            format!("{kind:?} is not a notification type"),
            expected,
        ));
    }
    if let Some(campaign) = &query.campaign_id {
        crate::store::validate::check_id(&mut errors, "campaignId", campaign);
    }
    check_fields(errors)?;
    let filter = notifications::ListFilter {
        campaign_id: query.campaign_id.as_deref(),
        kind: query.kind.as_deref(),
        before: query.before,
        limit,
    };
    let (items, next_before) = notifications::list(&state.db, &filter)
        .await
        .map_err(db_error)?;
    Ok(axum::Json(NotificationPage { items, next_before }))
}
