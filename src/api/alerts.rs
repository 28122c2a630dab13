//! `GET /api/alerts`: the alerts the service raises about itself (`jobs::evaluate_alerts`):
//! those firing, then those resolved lately.

use axum::extract::{Query, State};
use serde::Deserialize;

use super::error::{ApiError, ErrorBody, query_error};
use super::input::{check_fields, db_error};
use crate::state::AppState;
use crate::store::alerts::{self, AlertView};
use crate::store::validate::FieldError;

/// How far back resolved alerts are listed.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AlertsQuery {
    /// Resolved alerts that fired in the last this many hours, 1–720 (default 24).
    #[param(minimum = 1, maximum = 720)]
    hours: Option<i64>,
    /// At most this many resolved alerts, 1–500 (default 100); firing ones are all listed.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// The alerts firing now and those resolved lately, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AlertList {
    firing: Vec<AlertView>,
    recent: Vec<AlertView>,
}

/// The service's alerts: each rule's firing episodes (a failing sync, dead letters, an
/// upstream down or refusing credentials, …) and the ones that cleared lately.
#[utoipa::path(get, path = "/api/alerts", tag = "alerts", security(("bearer" = [])),
    params(AlertsQuery),
    responses((status = 200, body = AlertList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_alerts(
    State(state): State<AppState>,
    query: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<AlertList>, ApiError> {
    let Query(q) = query.map_err(|e| query_error(&e, "hours 1–720, limit 1–500"))?;
    let hours = q.hours.unwrap_or(24);
    let limit = q.limit.unwrap_or(100);
    let mut errors = Vec::new();
    if !(1..=720).contains(&hours) {
        errors.push(FieldError::new(
            "hours",
            format!("{hours} is out of range"),
            "1 to 720",
        ));
    }
    if !(1..=500).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("{limit} is out of range"),
            "1 to 500",
        ));
    }
    check_fields(errors)?;
    let (firing, recent) = alerts::list(&state.db, hours, limit)
        .await
        .map_err(db_error)?;
    Ok(axum::Json(AlertList { firing, recent }))
}
