//! Reading requests and answering errors, the same way for every resource: the JSON body
//! (with U+0000 refused by field), the path id, field problems, and database failures.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::Value;

use super::error::ApiError;
use crate::store::WriteError;
use crate::store::audit::Actor;
use crate::store::campaigns;
use crate::store::validate::{FieldError, from_serde};

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

pub(super) fn check_path_id(id: &str) -> Result<(), ApiError> {
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

/// Fields of the wrong form: a 400 naming each.
pub(super) fn check_fields(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid(summary(&errors), errors))
}

/// Well-formed fields the data or each other refuse: a 422 naming each.
pub(super) fn check_unprocessable(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::Unprocessable(summary(&errors), errors))
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn write_error(e: WriteError) -> ApiError {
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
