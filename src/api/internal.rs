//! The internal API for the Campaign Manager under `/api/` (bearer `API_TOKEN`): campaigns and
//! team members in, documented by the OpenAPI document at `/api/openapi.json` (Swagger UI at
//! `/api/docs`). Every route is registered through the OpenAPI router, so a route cannot exist
//! without being documented.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::require_bearer;
use super::error::{ApiError, ErrorBody};
use crate::store::audit::Actor;
use crate::store::batch::{self, BatchReport, MAX_ITEMS, Upsert};
use crate::store::campaigns::{self, CampaignInput, CampaignView};
use crate::store::team_members::{TeamMemberInput, TeamMemberView};
use crate::store::validate::{FieldError, from_serde};
use crate::store::{Outcome, WriteError};

#[derive(OpenApi)]
#[openapi(
    info(title = "campaign-sync internal API", description = "Campaigns and team members in from the Campaign Manager. Bearer API_TOKEN on every route."),
    modifiers(&BearerAuth),
    tags((name = "campaigns"), (name = "team-members"), (name = "email")),
    components(schemas(ErrorBody, Outcome))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/api` routes (behind the token) and their OpenAPI document.
pub fn routes(state: AppState) -> (Router<AppState>, Value) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(put_campaign, get_campaign))
        .routes(routes!(deactivate_campaign))
        .routes(routes!(list_campaigns))
        .routes(routes!(batch_campaigns))
        .routes(routes!(put_team_member, get_team_member))
        .routes(routes!(batch_team_members))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(
                    super::email_requests::post_email_request,
                    super::email_requests::list_email_requests
                ))
                .routes(routes!(super::email_requests::get_email_request))
                // Large lists: this route has its own limit (the outer one is the default).
                .layer(axum::extract::DefaultBodyLimit::max(
                    state.settings.email.body_limit_bytes,
                )),
        )
        .split_for_parts();
    let openapi = super::openapi::finish(&openapi, state.settings.email.max_recipients);
    let router = router.layer(axum::middleware::from_fn_with_state(
        state,
        require_api_token,
    ));
    (router, openapi)
}

async fn require_api_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match require_bearer(
        request.headers(),
        state.settings.security.api_token.as_ref(),
    ) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

pub(super) fn actor(headers: &HeaderMap) -> Actor {
    Actor {
        name: "api".to_owned(),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    refuse_nul(body)?;
    serde_json::from_slice(body).map_err(|e| {
        let detail = from_serde(&e);
        ApiError::Invalid(
            format!("invalid JSON body: {}", detail.problem),
            vec![detail],
        )
    })
}

/// A body with U+0000 in any string is refused naming every such field: PostgreSQL can hold
/// it neither in text nor in jsonb. (Only bodies holding the escape are walked.)
fn refuse_nul(body: &[u8]) -> Result<(), ApiError> {
    if !body.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Ok(()); // the typed parse reports what is wrong
    };
    let mut errors = Vec::new();
    crate::store::validate::check_nul(&mut errors, "", &value);
    match errors.first() {
        None => Ok(()),
        Some(first) => Err(ApiError::Invalid(format!("invalid body: {first}"), errors)),
    }
}

fn check_path_id(id: &str) -> Result<(), ApiError> {
    let errors = campaigns::validate_id(id);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(
            format!("invalid id: {}", errors[0]),
            errors,
        ))
    }
}

pub(super) fn check_fields(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        return Ok(());
    }
    let summary = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(ApiError::Invalid(summary, errors))
}

fn write_error(e: WriteError) -> ApiError {
    match e {
        WriteError::Conflict(message) => ApiError::Conflict(message),
        WriteError::Db(e) => match WriteError::from_db(e) {
            WriteError::Conflict(message) => ApiError::Conflict(message),
            WriteError::Db(e) => db_error(e),
        },
    }
}

pub(super) fn db_error(e: sqlx::Error) -> ApiError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => {
            ApiError::Unavailable("the database is unavailable; retry later".to_owned())
        }
        other => ApiError::Internal(anyhow::Error::new(other)),
    }
}

/// One upsert in its own transaction.
async fn upsert_one<T: Upsert>(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    input: &T,
) -> Result<Outcome, ApiError> {
    let mut tx = state.db.begin().await.map_err(db_error)?;
    let outcome = input
        .upsert(&mut tx, &actor(headers), id)
        .await
        .map_err(write_error)?;
    tx.commit()
        .await
        .map_err(|e| write_error(WriteError::from_db(e)))?;
    Ok(outcome)
}

/// `PUT /api/{kind}/{id}`: checks the item, upserts it in one transaction and answers with
/// what is stored (201 when created).
async fn put_one<T: Upsert>(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    check_path_id(id)?;
    let input: T = parse(body)?;
    check_fields(input.problems())?;
    let outcome = upsert_one(state, headers, id, &input).await?;
    let view = found::<T>(state, id).await?;
    Ok((status_of(outcome), axum::Json(view)).into_response())
}

/// The stored item `id`, or a 404 naming it.
async fn found<T: Upsert>(state: &AppState, id: &str) -> Result<T::View, ApiError> {
    T::view(&state.db, id)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no {} {id:?}", T::KIND)))
}

fn status_of(outcome: Outcome) -> StatusCode {
    if outcome == Outcome::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// Create or update a campaign.
#[utoipa::path(put, path = "/api/campaigns/{id}", tag = "campaigns", security(("bearer" = [])),
    params(("id" = String, Path, description = "The Campaign Manager's id: 1–128 of letters, digits, _ . : -", pattern = r"^[A-Za-z0-9_.:-]{1,128}$")),
    request_body = CampaignInput,
    responses(
        (status = 201, description = "Created", body = CampaignView), (status = 200, description = "Updated or unchanged", body = CampaignView),
        (status = 400, description = "Invalid fields", body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "A Mailjet campaign, Slack channel or slug already mapped elsewhere", body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn put_campaign(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    put_one::<CampaignInput>(&state, &headers, &id, &body).await
}

/// A campaign with its mappings, latest statistics and last sync.
#[utoipa::path(get, path = "/api/campaigns/{id}", tag = "campaigns", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,128}$")),
    responses((status = 200, body = CampaignView), (status = 400, description = "The id is not of the documented form", body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_campaign(
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
async fn deactivate_campaign(
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
struct ListQuery {
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
struct CampaignPage {
    items: Vec<CampaignView>,
    page: i64,
    per_page: i64,
    total: i64,
}

/// Campaigns, by id, a page at a time.
#[utoipa::path(get, path = "/api/campaigns", tag = "campaigns", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = CampaignPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_campaigns(
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

/// A batch: `{"items": [{"id": …, …fields}, …]}`, at most 1,000. (Its schema in the document
/// is the resource's own: see `openapi::finish`.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    /// Records, each with its `id` and the same fields as the single upsert.
    items: Vec<Value>,
}

async fn batch<T: Upsert>(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<axum::Json<BatchReport>, ApiError> {
    let request: BatchRequest = parse(body)?;
    if request.items.is_empty() || request.items.len() > MAX_ITEMS {
        let detail = FieldError::new(
            "items",
            format!("has {} items", request.items.len()),
            format!("1 to {MAX_ITEMS} items"),
        );
        return Err(ApiError::Invalid(detail.to_string(), vec![detail]));
    }
    let total = request.items.len();
    let items = batch::check::<T>(request.items).map_err(|problems| {
        let message = format!(
            "{} of {total} items are invalid; nothing was stored",
            problems.len()
        );
        if batch::repeats_only(&problems) {
            ApiError::UnprocessableItems(message, problems)
        } else {
            ApiError::InvalidItems(message, problems)
        }
    })?;
    let report = batch::apply(&state.db, &actor(headers), &items)
        .await
        .map_err(|e| match e.error {
            WriteError::Conflict(message) => ApiError::Conflict(format!(
                "item {} ({}): {message}; nothing was stored",
                e.index, e.id
            )),
            WriteError::Db(db) => write_error(WriteError::Db(db)),
        })?;
    Ok(axum::Json(report))
}

/// Upsert up to 1,000 campaigns in one transaction.
#[utoipa::path(post, path = "/api/campaigns:batch", tag = "campaigns", security(("bearer" = [])),
    request_body = BatchRequest,
    responses((status = 200, body = BatchReport), (status = 400, description = "Problems by item index; nothing stored", body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, description = "An item's Mailjet campaign, Slack channel or slug is mapped to another campaign; nothing stored", body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, description = "An id appears twice (`items`, by index); nothing stored", body = ErrorBody)))]
async fn batch_campaigns(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<BatchReport>, ApiError> {
    batch::<CampaignInput>(&state, &headers, &body).await
}

/// Create or update a team member.
#[utoipa::path(put, path = "/api/team-members/{id}", tag = "team-members", security(("bearer" = [])),
    params(("id" = String, Path, description = "The Campaign Manager's id: 1–128 of letters, digits, _ . : -", pattern = r"^[A-Za-z0-9_.:-]{1,128}$")),
    request_body = TeamMemberInput,
    responses((status = 201, body = TeamMemberView), (status = 200, body = TeamMemberView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, description = "Email taken by another member", body = ErrorBody)))]
async fn put_team_member(
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
async fn get_team_member(
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
async fn batch_team_members(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<BatchReport>, ApiError> {
    batch::<TeamMemberInput>(&state, &headers, &body).await
}
