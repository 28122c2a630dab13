//! `GET /metrics` (Prometheus text, bearer `METRICS_TOKEN`) and the HTTP request metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::require_bearer;
use super::error::ApiError;
use crate::queue::{Queue, metrics as queue_metrics};
use crate::state::AppState;

/// The Prometheus exposition of every metric of this process.
pub async fn render(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_bearer(&headers, state.settings.security.metrics_token.as_ref())?;
    let registry = crate::jobs::builtin();
    let queues: Vec<(Queue, Vec<String>)> = registry
        .queues()
        .iter()
        .map(|name| {
            let jobs = registry
                .jobs()
                .filter(|j| &j.queue == name)
                .map(|j| j.name.clone())
                .collect();
            (
                Queue::new(state.redis.clone(), state.keys.prefix(), name),
                jobs,
            )
        })
        .collect();
    let mut conn = state.redis.clone();
    let mut parts = vec![
        state.prometheus.render(),
        queue_metrics::render_queues(&queues).await,
    ];
    parts.extend(queue_metrics::collect_published(&mut conn, state.keys.prefix()).await);
    let body = crate::telemetry::merge_expositions(&parts);
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Counts and times every request by method, matched route (not the raw path, to keep the
/// label set bounded) and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
