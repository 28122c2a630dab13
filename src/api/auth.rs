//! The API's bearer-token check (the comparison itself is `crate::auth`'s).

use axum::http::HeaderMap;
use secrecy::SecretString;

use super::error::ApiError;

/// Checks `Authorization: Bearer <token>` against `expected` in constant time.
pub fn require_bearer(
    headers: &HeaderMap,
    expected: Option<&SecretString>,
) -> Result<(), ApiError> {
    crate::auth::check_bearer(headers, expected).map_err(ApiError::Unauthorized)
}
