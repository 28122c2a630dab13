//! `/api/team-members`: team members from the Campaign Manager, one at a time or in batches,
//! shown with the Slack identity the user sync matched.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::error::{ApiError, ErrorBody};
use super::input::check_path_id;
use super::upsert::{BatchRequest, batch, found, put_one};
use crate::state::AppState;
use crate::store::batch::BatchReport;
use crate::store::team_members::{TeamMemberInput, TeamMemberView};

/// Create or update a team member.
#[utoipa::path(put, path = "/api/team-members/{id}", tag = "team-members", security(("bearer" = [])),
    params(("id" = String, Path, description = "The Campaign Manager's id: 1–128 of letters, digits, _ . : -", pattern = r"^[A-Za-z0-9_.:-]{1,128}$")),
    request_body = TeamMemberInput,
    responses((status = 201, body = TeamMemberView), (status = 200, body = TeamMemberView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, description = "Email taken by another member", body = ErrorBody)))]
pub(super) async fn put_team_member(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    put_one::<TeamMemberInput>(&state, &headers, &id, &body).await
}

/// A team member with the Slack identity the user sync matched.
#[utoipa::path(get, path = "/api/team-members/{id}", tag = "team-members", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = TeamMemberView), (status = 400, description = "The id is not of the documented form", body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_team_member(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<TeamMemberView>, ApiError> {
    check_path_id(&id)?;
    found::<TeamMemberInput>(&state, &id).await.map(axum::Json)
}

/// Upsert up to 1,000 team members in one transaction.
#[utoipa::path(post, path = "/api/team-members:batch", tag = "team-members", security(("bearer" = [])),
    request_body = BatchRequest,
    responses((status = 200, body = BatchReport), (status = 400, description = "Problems by item index; nothing stored", body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, description = "An item's email belongs to another member; nothing stored", body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, description = "An id appears twice (`items`, by index); nothing stored", body = ErrorBody)))]
pub(super) async fn batch_team_members(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<BatchReport>, ApiError> {
    batch::<TeamMemberInput>(&state, &headers, &body).await
}
