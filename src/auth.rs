//! Credential checks in constant time, shared by the API, the webhook receivers and the
//! sandbox.

use axum::http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Checks `Authorization: Bearer <token>` against `expected` in constant time; the error says
/// what was wrong (never the token).
pub fn check_bearer(
    headers: &HeaderMap,
    expected: Option<&SecretString>,
) -> Result<(), &'static str> {
    let Some(expected) = expected else {
        return Err("this endpoint has no token configured");
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or("missing bearer token")?;
    if constant_time_eq(presented.as_bytes(), expected.expose_secret().as_bytes()) {
        Ok(())
    } else {
        Err("invalid bearer token")
    }
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // ct_eq returns false at once for different lengths; the length of a secret is not secret.
    a.ct_eq(b).into()
}

/// The decoded `user:password` of an `Authorization: Basic …` header, if there is one.
pub fn basic_credentials(headers: &HeaderMap) -> Option<Vec<u8>> {
    use base64::Engine;
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
}
