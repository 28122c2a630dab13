//! Upserts by id, one at a time (`PUT /api/{kind}/{id}`) or a batch in one transaction
//! (`POST /api/{kind}:batch`), for any resource that implements `store::batch::Upsert`.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::ApiError;
use super::input::{actor, check_fields, check_path_id, db_error, parse, write_error};
use crate::state::AppState;
use crate::store::batch::{self, BatchReport, MAX_ITEMS, Upsert};
use crate::store::validate::FieldError;
use crate::store::{Outcome, WriteError};

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
pub(super) async fn put_one<T: Upsert>(
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
pub(super) async fn found<T: Upsert>(state: &AppState, id: &str) -> Result<T::View, ApiError> {
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

/// A batch: `{"items": [{"id": …, …fields}, …]}`, at most 1,000. (Its schema in the document
/// is the resource's own: see `openapi::finish`.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchRequest {
    /// Records, each with its `id` and the same fields as the single upsert.
    items: Vec<Value>,
}

pub(super) async fn batch<T: Upsert>(
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
