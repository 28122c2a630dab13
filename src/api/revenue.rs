//! `PUT /api/campaigns/{id}/revenue/{date}`: the revenue the Campaign Manager attributes to a
//! campaign per day, which the email figures carry.

use axum::extract::{Path, State};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::analytics::date;
use super::error::{ApiError, ErrorBody};
use super::input::{actor, check_fields, check_path_id, db_error};
use crate::state::AppState;
use crate::store::validate::FieldError;

/// Revenue of a campaign on one day.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RevenueInput {
    /// In the Campaign Manager's currency, 0 to 10¹² with at most 2 decimals (more are rounded).
    #[schema(minimum = 0, maximum = 1_000_000_000_000_f64)]
    amount: f64,
}

/// Revenue as stored.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Revenue {
    campaign_id: String,
    date: NaiveDate,
    amount: f64,
}

/// Report the revenue a campaign earned on a UTC day (replacing what was reported for that day). It appears in the campaign's and the overall email figures after the next `rollup_metrics` run (hourly).
#[utoipa::path(put, path = "/api/campaigns/{id}/revenue/{date}", tag = "analytics", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,128}$"), ("date" = String, Path, format = Date)),
    request_body = RevenueInput,
    responses((status = 200, body = Revenue), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn put_revenue(
    State(state): State<AppState>,
    Path((id, day)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<Revenue>, ApiError> {
    check_path_id(&id)?;
    let mut errors = Vec::new();
    let day = date(&mut errors, "date", Some(&day));
    check_fields(errors)?;
    let input: RevenueInput = super::input::parse(&body)?;
    if !(0.0..=1e12).contains(&input.amount) {
        return Err(ApiError::Invalid(
            format!("amount {} is out of range", input.amount),
            vec![FieldError::new(
                "amount",
                format!("{} is out of range", input.amount),
                "0 to 1000000000000",
            )],
        ));
    }
    let Some(day) = day else {
        return Err(ApiError::BadRequest(
            "the date is not YYYY-MM-DD".to_owned(),
        ));
    };
    let stored =
        crate::store::analytics::put_revenue(&state.db, &id, day, input.amount, &actor(&headers))
            .await
            .map_err(db_error)?;
    match stored {
        Some(amount) => Ok(axum::Json(Revenue {
            campaign_id: id,
            date: day,
            amount,
        })),
        None => Err(ApiError::NotFound(format!("no campaign {id:?}"))),
    }
}
