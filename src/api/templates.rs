//! `GET /api/templates`: the imported Mailjet templates with their variables, last use and
//! performance, for the Campaign Manager's template picker.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, query_error};
use super::input::{check_fields, db_error};
use crate::state::AppState;
use crate::store::templates::{self, Sort, TemplateView};
use crate::store::validate::FieldError;

/// Filter, order and page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct TemplateQuery {
    /// Only templates of this category (as Mailjet names it, e.g. `newsletter`); text without
    /// the NUL character, which cannot be stored.
    #[param(max_length = 200, pattern = r"^[^\u0000]*$")]
    category: Option<String>,
    /// `performance` (best score first), `recency` (most recently used first) or `name`; default `performance`.
    #[param(pattern = "^(performance|recency|name)$")]
    sort: Option<String>,
    /// Per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// Templates to skip (`nextOffset` of the previous page).
    #[param(minimum = 0, maximum = 1_000_000)]
    offset: Option<i64>,
}

/// A page of templates.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TemplatePage {
    items: Vec<TemplateView>,
    /// Pass as `offset` for the next page; absent on the last.
    next_offset: Option<i64>,
}

/// Templates to choose from when creating a campaign: each with its variables (those without a default must be given for every recipient of an email request), when it was last used, and its performance score (the engagement score of every send that used it, updated by `rollup_metrics`).
#[utoipa::path(get, path = "/api/templates", tag = "email", security(("bearer" = [])),
    params(TemplateQuery),
    responses((status = 200, body = TemplatePage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_templates(
    State(state): State<AppState>,
    query: Result<Query<TemplateQuery>, QueryRejection>,
) -> Result<axum::Json<TemplatePage>, ApiError> {
    let expected = "category=<name>, sort=performance|recency|name, limit 1–200, offset 0–1000000";
    let Query(query) = query.map_err(|e| query_error(&e, expected))?;
    let mut errors = Vec::new();
    let sort = match query.sort.as_deref() {
        None | Some("performance") => Sort::Performance,
        Some("recency") => Sort::Recency,
        Some("name") => Sort::Name,
        Some(other) => {
            errors.push(FieldError::new(
                "sort",
                format!("{other:?} is not an order"),
                "performance, recency or name",
            ));
            Sort::Performance
        }
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("{limit} is out of range"),
            "1 to 200",
        ));
    }
    let offset = query.offset.unwrap_or(0);
    if !(0..=1_000_000).contains(&offset) {
        errors.push(FieldError::new(
            "offset",
            format!("{offset} is out of range"),
            "0 to 1000000",
        ));
    }
    if let Some(category) = &query.category {
        crate::store::validate::check_text(&mut errors, "category", category);
        if category.chars().count() > 200 {
            errors.push(FieldError::new(
                "category",
                "is longer than 200 characters",
                "a category name",
            ));
        }
    }
    check_fields(errors)?;
    let mut items = templates::list(
        &state.db,
        query.category.as_deref(),
        sort,
        limit + 1,
        offset,
    )
    .await
    .map_err(db_error)?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    Ok(axum::Json(TemplatePage {
        items,
        next_offset: more.then_some(offset + limit),
    }))
}
