//! One mapping from errors to HTTP: every error answer is JSON
//! `{"error": {"code": "...", "message": "..."}}`, including the ones produced by axum's
//! extractors and tower layers (404, 405, 408, 413, 415, 422), which are rewritten on the way out.

use axum::body::{Body, to_bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client sent something wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// Fields that are wrong, each named (400).
    #[error("{0}")]
    Invalid(String, Vec<crate::store::validate::FieldError>),
    /// Batch items that are wrong, by index (400).
    #[error("{0}")]
    InvalidItems(String, Vec<crate::store::batch::ItemErrors>),
    /// Well-formed fields that name something unknown or repeat themselves (422): a campaign
    /// or template that does not exist, an address twice. The schema cannot tell these.
    #[error("{0}")]
    Unprocessable(String, Vec<crate::store::validate::FieldError>),
    /// Well-formed batch items that repeat one another (422), by index.
    #[error("{0}")]
    UnprocessableItems(String, Vec<crate::store::batch::ItemErrors>),
    /// Missing or wrong credentials (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// No such resource (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with stored data (409).
    #[error("{0}")]
    Conflict(String),
    /// A dependency is down (503); the client should retry.
    #[error("{0}")]
    Unavailable(String),
    /// Anything unexpected (500): the cause is logged once, the client sees an opaque message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid(..) | ApiError::InvalidItems(..) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unprocessable(..) | ApiError::UnprocessableItems(..) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed");
                "internal error; the cause is logged with this request's id".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = match &self {
            ApiError::Invalid(_, details) | ApiError::Unprocessable(_, details) => json_error_with(
                status,
                &message,
                "details",
                serde_json::to_value(details).unwrap_or_default(),
            ),
            ApiError::InvalidItems(_, items) | ApiError::UnprocessableItems(_, items) => {
                json_error_with(
                    status,
                    &message,
                    "items",
                    serde_json::to_value(items).unwrap_or_default(),
                )
            }
            _ => json_error(status, &message),
        };
        if matches!(self, ApiError::Unauthorized(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// An error answer with one more member in `error` (field details, item errors).
pub fn json_error_with(
    status: StatusCode,
    message: &str,
    key: &str,
    extra: serde_json::Value,
) -> Response {
    let mut body = error_body(status, message);
    body["error"][key] = extra;
    (status, axum::Json(body)).into_response()
}

/// The JSON body of an error answer.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(error_body(status, message))).into_response()
}

/// `{"error": {"code", "message"}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error: a code, a message, and for 400s the fields or items at fault.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `not_found`, `conflict`, `payload_too_large`,
    /// `unprocessable_entity`, …
    pub code: String,
    pub message: String,
    /// For 400 and 422: each field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<crate::store::validate::FieldError>>,
    /// For a batch's (or a request's recipients') 400 and 422: the items at fault, by index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<crate::store::batch::ItemErrors>>,
}

fn error_body(status: StatusCode, message: &str) -> serde_json::Value {
    let code = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace([' ', '-'], "_");
    json!({ "error": { "code": code, "message": message } })
}

/// Answer for routes that do not exist.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

/// Rewrites error answers that are not JSON yet (axum rejections, tower-http layers) into the
/// JSON shape, keeping their status and their text as the message.
pub async fn jsonify_errors(response: Response) -> Response {
    let status = response.status();
    // JSON errors pass as they are, and so do the dashboard's HTML error pages.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // These bodies are short texts written by axum or tower-http; 64 KiB is plenty.
    let text = to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => default_message(status),
        t => t.to_owned(),
    };
    let mut rewritten = json_error(status, &message);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "request body is larger than the limit".to_owned(),
        StatusCode::REQUEST_TIMEOUT => "request took longer than the limit".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_owned(),
        other => other.canonical_reason().unwrap_or("error").to_owned(),
    }
}

/// Turns a panic inside a handler into an opaque JSON 500 (the panic is logged).
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "handler panicked");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; the cause is logged with this request's id",
    )
}

/// A query string that does not parse (an unknown parameter, a number that is not one): a 400
/// naming the query and what it may hold.
pub fn query_error(e: &axum::extract::rejection::QueryRejection, expected: &str) -> ApiError {
    ApiError::Invalid(
        format!("invalid query: {}", e.body_text()),
        vec![crate::store::validate::FieldError::new(
            "query",
            e.body_text(),
            expected,
        )],
    )
}
