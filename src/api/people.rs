//! `/api/people/{email}`: data-subject requests for one person — what is held about their
//! address (access), and its erasure everywhere it is held (see `store::people`).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::Value;

use super::error::{ApiError, ErrorBody};
use super::input::{actor, db_error};
use crate::state::AppState;
use crate::store::people::{self, Erased};

/// An address as the path gives it: one `@`, no spaces, at most 320 characters.
fn check_email(email: &str) -> Result<(), ApiError> {
    let trimmed = email.trim();
    let valid = trimmed.len() <= 320
        && !trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
        && trimmed.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if valid {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "email: the path must be one e-mail address (local@domain, at most 320 characters, no spaces)".to_owned(),
        ))
    }
}

/// Everything held about one person: their team-member record, Slack identities, sends with
/// their events, suppression, and how many raw webhook payloads still name them.
#[utoipa::path(get, path = "/api/people/{email}", tag = "people", security(("bearer" = [])),
    params(("email" = String, Path, description = "The person's e-mail address", max_length = 320, pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$")),
    responses((status = 200, description = "What is held (empty lists when nothing is)", body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn get_person(
    State(state): State<AppState>,
    Path(email): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    check_email(&email)?;
    people::export(&state.db, &email)
        .await
        .map(axum::Json)
        .map_err(db_error)
}

/// Erases one person everywhere in one transaction (sends pseudonymised so campaign figures
/// stay whole, their suppression kept as a hash); audited by the address's hash. Erasing
/// again changes nothing and answers zeros.
#[utoipa::path(delete, path = "/api/people/{email}", tag = "people", security(("bearer" = [])),
    params(("email" = String, Path, description = "The person's e-mail address", max_length = 320, pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$")),
    responses((status = 200, description = "What was erased, by kind", body = Erased), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn erase_person(
    State(state): State<AppState>,
    Path(email): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Erased>, ApiError> {
    check_email(&email)?;
    let erased = people::erase(&state.db, &email, &actor(&headers))
        .await
        .map_err(db_error)?;
    metrics::counter!("people_erased_total").increment(1);
    Ok(axum::Json(erased))
}
