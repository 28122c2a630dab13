//! `/api/approvals`: ask for an approval (the approver is DMed an interactive message, the
//! campaign's channel gets a notice), read one, list them by campaign and status. An
//! approval is addressed by the Campaign Manager's `approvalId`: asking again with the same
//! body answers the stored approval.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, ErrorBody, query_error};
use super::input::{actor, check_fields, check_path_id, db_error, parse};
use super::notifications::workflow_error;
use crate::jobs::support::workflow;
use crate::state::AppState;
use crate::store::approvals::{self, ApprovalInput, ApprovalView};
use crate::store::validate::FieldError;

/// Ask for an approval.
#[utoipa::path(post, path = "/api/approvals", tag = "slack", security(("bearer" = [])),
    request_body = ApprovalInput,
    responses(
        (status = 201, description = "Stored; the approver will be DMed", body = ApprovalView),
        (status = 200, description = "Asked for before with the same body: the stored approval", body = ApprovalView),
        (status = 400, description = "Fields not of the documented form; nothing stored", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "The approvalId was used with a different body", body = ErrorBody),
        (status = 422, description = "Well-formed, but the campaign is unknown or deactivated, the approver is no team member, or the deadline has passed; nothing stored", body = ErrorBody)))]
pub(super) async fn post_approval(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: ApprovalInput = parse(&body)?;
    check_fields(input.validate())?;
    let (view, created) = workflow::accept_approval(&state.db, &input, &actor(&headers))
        .await
        .map_err(|e| workflow_error(e, "slack_approval_requests_total"))?;
    let outcome = if created { "accepted" } else { "replayed" };
    metrics::counter!("slack_approval_requests_total", "outcome" => outcome).increment(1);
    if created {
        crate::jobs::deliver_slack_posts::kick_or_log(
            state.redis.clone(),
            &state.settings.redis.key_prefix,
            "api",
        )
        .await;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view)).into_response())
}

/// An approval: its status, who decided when, the comment of "request changes".
#[utoipa::path(get, path = "/api/approvals/{id}", tag = "slack", security(("bearer" = [])),
    params(("id" = String, Path, description = "The approvalId", pattern = r"^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = ApprovalView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_approval(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<ApprovalView>, ApiError> {
    check_path_id(&id)?;
    approvals::get(&state.db, &id)
        .await
        .map_err(db_error)?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("no approval {id:?}")))
}

/// Filters and paging of the list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ApprovalQuery {
    /// Only approvals of this campaign.
    #[param(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    campaign_id: Option<String>,
    /// Only approvals in this status.
    #[param(pattern = r"^(pending|approved|rejected|changes_requested|expired)$")]
    status: Option<String>,
    /// Approvals asked for before this one (`nextBefore` of the previous page).
    #[param(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    before: Option<String>,
    /// Per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// A page of approvals, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApprovalPage {
    items: Vec<ApprovalView>,
    /// Pass as `before` for the next page; absent on the last.
    next_before: Option<String>,
}

/// Approvals, newest first, by campaign and status.
#[utoipa::path(get, path = "/api/approvals", tag = "slack", security(("bearer" = [])),
    params(ApprovalQuery),
    responses((status = 200, body = ApprovalPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_approvals(
    State(state): State<AppState>,
    query: Result<Query<ApprovalQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<ApprovalPage>, ApiError> {
    let expected = "campaignId=<id>, status=pending|approved|rejected|changes_requested|expired, before=<approvalId>, limit 1–200";
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
        && !approvals::STATUSES.contains(&status.as_str())
    {
        errors.push(FieldError::new(
            "status",
            format!("{status:?} is not an approval status"),
            expected,
        ));
    }
    for (field, value) in [
        ("campaignId", &query.campaign_id),
        ("before", &query.before),
    ] {
        if let Some(v) = value {
            crate::store::validate::check_id(&mut errors, field, v);
        }
    }
    check_fields(errors)?;
    let filter = approvals::ListFilter {
        campaign_id: query.campaign_id.as_deref(),
        status: query.status.as_deref(),
        before: query.before.as_deref(),
        limit,
    };
    let (items, next_before) = approvals::list(&state.db, &filter)
        .await
        .map_err(db_error)?;
    Ok(axum::Json(ApprovalPage { items, next_before }))
}
