//! `/api/campaigns`: campaigns from the Campaign Manager, one at a time, a page at a time, or
//! in batches; deactivation keeps their history.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::input::{actor, check_fields, check_path_id, db_error, write_error};
use super::upsert::{BatchRequest, batch, found, put_one};
use crate::state::AppState;
use crate::store::batch::BatchReport;
use crate::store::campaigns::{self, CampaignInput, CampaignView};
use crate::store::validate::FieldError;

/// Create or update a campaign.
#[utoipa::path(put, path = "/api/campaigns/{id}", tag = "campaigns", security(("bearer" = [])),
    params(("id" = String, Path, description = "The Campaign Manager's id: 1–128 of letters, digits, _ . : -", pattern = r"^[A-Za-z0-9_.:-]{1,128}$")),
    request_body = CampaignInput,
    responses(
        (status = 201, description = "Created", body = CampaignView), (status = 200, description = "Updated or unchanged", body = CampaignView),
        (status = 400, description = "Invalid fields", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "A Mailjet campaign, Slack channel or slug already mapped elsewhere", body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn put_campaign(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let answer = put_one::<CampaignInput>(&state, &headers, &id, &body).await?;
    announce(&state).await;
    Ok(answer)
}

/// A status change is announced in the campaign's channel by the Slack delivery (the stored
/// status is what it works from); this makes it prompt.
async fn announce(state: &AppState) {
    crate::jobs::deliver_slack_posts::kick_or_log(
        state.redis.clone(),
        &state.settings.redis.key_prefix,
        "api",
    )
    .await;
}

/// A campaign with its mappings, latest statistics and last sync.
#[utoipa::path(get, path = "/api/campaigns/{id}", tag = "campaigns", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = CampaignView), (status = 400, description = "The id is not of the documented form", body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_campaign(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, ApiError> {
    check_path_id(&id)?;
    found::<CampaignInput>(&state, &id).await.map(axum::Json)
}

/// Deactivate a campaign. This is not a deletion: the campaign, its mappings and its history
/// stay readable at `GET /api/campaigns/{id}` (with `active: false`); `PUT` with `active: true`
/// brings it back.
#[utoipa::path(post, path = "/api/campaigns/{id}/deactivate", tag = "campaigns", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, description = "Deactivated (or already inactive); still readable", body = CampaignView), (status = 400, description = "The id is not of the documented form", body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn deactivate_campaign(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<CampaignView>, ApiError> {
    check_path_id(&id)?;
    let mut tx = state.db.begin().await.map_err(db_error)?;
    let outcome = campaigns::deactivate(&mut tx, &actor(&headers), &id)
        .await
        .map_err(write_error)?;
    tx.commit().await.map_err(db_error)?;
    if outcome.is_none() {
        return Err(ApiError::NotFound(format!("no campaign {id:?}")));
    }
    let view = campaigns::get(&state.db, &id).await.map_err(db_error)?;
    view.map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("no campaign {id:?}")))
}

/// Paging of campaign lists.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Only active (true) or inactive (false) campaigns.
    active: Option<bool>,
    /// Page number, from 1 (at most 1,000,000,000).
    #[param(minimum = 1, maximum = 1_000_000_000)]
    page: Option<i64>,
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    per_page: Option<i64>,
}

/// The last page a list accepts.
const MAX_PAGE: i64 = 1_000_000_000;

/// A page of campaigns.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CampaignPage {
    items: Vec<CampaignView>,
    page: i64,
    per_page: i64,
    total: i64,
}

/// Campaigns, by id, a page at a time.
#[utoipa::path(get, path = "/api/campaigns", tag = "campaigns", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = CampaignPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_campaigns(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<CampaignPage>, ApiError> {
    let expected = "active=true|false, page 1–1000000000, perPage 1–500";
    let Query(query) = query.map_err(|e| super::error::query_error(&e, expected))?;
    let page = query.page.unwrap_or(1);
    let per_page = query.per_page.unwrap_or(50);
    let mut errors = Vec::new();
    // The offset (page − 1) × perPage must fit PostgreSQL's bigint: pages stop at 10^9.
    if !(1..=MAX_PAGE).contains(&page) {
        errors.push(FieldError::new(
            "page",
            format!("{page} is out of range"),
            format!("1 to {MAX_PAGE}"),
        ));
    }
    if !(1..=500).contains(&per_page) {
        errors.push(FieldError::new(
            "perPage",
            format!("{per_page} is out of range"),
            "1 to 500",
        ));
    }
    check_fields(errors)?;
    let (items, total) = campaigns::list(&state.db, query.active, page, per_page)
        .await
        .map_err(db_error)?;
    Ok(axum::Json(CampaignPage {
        items,
        page,
        per_page,
        total,
    }))
}

/// Upsert up to 1,000 campaigns in one transaction.
#[utoipa::path(post, path = "/api/campaigns:batch", tag = "campaigns", security(("bearer" = [])),
    request_body = BatchRequest,
    responses((status = 200, body = BatchReport), (status = 400, description = "Problems by item index; nothing stored", body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, description = "An item's Mailjet campaign, Slack channel or slug is mapped to another campaign; nothing stored", body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, description = "An id appears twice (`items`, by index); nothing stored", body = ErrorBody)))]
pub(super) async fn batch_campaigns(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<BatchReport>, ApiError> {
    let report = batch::<CampaignInput>(&state, &headers, &body).await?;
    announce(&state).await;
    Ok(report)
}
