//! The one HTTP router: the API's and the webhook receivers' routes under one set of layers —
//! request ids, tracing, metrics, timeouts, body limits, panic catching and JSON errors.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::api::{self, error};
use crate::config::Settings;
use crate::state::AppState;
use crate::webhooks;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    // Router::layer wraps every route (and the fallback); the last layer added is the outermost.
    Router::new()
        .merge(api::routes(state.clone()))
        .merge(webhooks::routes())
        .merge(crate::dashboard::routes())
        .fallback(error::not_found)
        // Bodies are read through extractors, which enforce this limit with a 413.
        .layer(axum::extract::DefaultBodyLimit::max(
            settings.server.body_limit_bytes,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.server.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            reject_oversized,
        ))
        .layer(middleware::from_fn(api::metrics::track))
        .layer(middleware::map_response(error::jsonify_errors))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::from_fn(sanitize_request_id))
        .with_state(state)
}

/// The span of one request, carrying its id (Heroku's `X-Request-ID` when present).
fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Drops an incoming request id that is not a short token (so a client cannot stuff logs);
/// a fresh one is then generated.
async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let valid = request.headers().get(&REQUEST_ID).is_some_and(|v| {
        let bytes = v.as_bytes();
        (1..=200).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if !valid {
        request.headers_mut().remove(&REQUEST_ID);
    }
    next.run(request).await
}

/// The body limit of `path`: email requests carry up to EMAIL_MAX_RECIPIENTS recipients.
fn body_limit(settings: &Settings, path: &str) -> usize {
    if path == "/api/email-requests" {
        settings.email.body_limit_bytes
    } else {
        settings.server.body_limit_bytes
    }
}

/// Answers 413 before reading a body whose declared length is over the limit, on every route.
/// (Bodies without a length are cut off at the limit by the extractors.)
async fn reject_oversized(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = body_limit(&state.settings, request.uri().path());
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        let message = format!("request body is larger than the limit of {limit} bytes");
        return error::json_error(StatusCode::PAYLOAD_TOO_LARGE, &message);
    }
    next.run(request).await
}
