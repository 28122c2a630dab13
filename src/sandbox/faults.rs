//! Request accounting, injected faults and Mailjet's per-key rate limit, applied to every
//! upstream request before it reaches its handler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Shared, lock};

/// Counts of one endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointStats {
    /// Requests received.
    pub count: u64,
    /// Answered 429.
    pub rate_limited: u64,
    /// Most requests received within one wall-clock second.
    pub peak_per_second: u64,
    #[serde(skip)]
    second: i64,
    #[serde(skip)]
    in_second: u64,
}

/// An injected fault. `endpoint` is an endpoint name (`mailjet.send`, `slack.users.list`), a
/// prefix of one (`mailjet`, `slack`), or `*`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default = "all")]
    pub endpoint: String,
    /// Fixed added latency.
    #[serde(default)]
    pub latency_ms: u64,
    /// Random extra latency, up to this.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Share of requests answered with `error_status`.
    #[serde(default)]
    pub error_rate: f64,
    /// Status of injected errors (default 500).
    #[serde(default)]
    pub error_status: Option<u16>,
    /// Answer every request 429 for this many seconds from now (a storm).
    #[serde(default)]
    pub rate_limit_for_secs: Option<u64>,
    /// `Retry-After` of storm answers (default 1).
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// Give the storm's `Retry-After` as an HTTP date instead of seconds (RFC 9110 allows
    /// both; some proxies send the date).
    #[serde(default)]
    pub retry_after_as_date: bool,
    /// Share of requests whose connection is dropped mid-answer.
    #[serde(default)]
    pub drop_rate: f64,
    /// Share of requests that are handled (a send is accepted) and whose answer is then
    /// lost: the caller cannot tell it from a request that never arrived.
    #[serde(default)]
    pub drop_after_rate: f64,
    #[serde(skip)]
    pub storm_until: Option<Instant>,
}

fn all() -> String {
    "*".to_owned()
}

impl Fault {
    fn applies_to(&self, endpoint: &str) -> bool {
        self.endpoint == "*"
            || endpoint == self.endpoint
            || endpoint.starts_with(&format!("{}.", self.endpoint))
    }
}

/// Rate-limit windows.
#[derive(Debug, Default)]
pub struct LimitState {
    /// Mailjet: (key, second) → requests.
    mailjet: HashMap<String, (i64, u32)>,
    /// Slack tiers: (method, token) → request times within the last minute.
    pub(crate) slack: HashMap<(String, String), std::collections::VecDeque<Instant>>,
    /// chat.postMessage per channel: channel → (tokens, last refill).
    pub(crate) channels: HashMap<String, (f64, Instant)>,
}

/// The name of an endpoint, from its path; None for the control API.
pub fn endpoint_name(path: &str) -> Option<String> {
    if path.starts_with("/_sandbox") {
        return None;
    }
    if let Some(rest) = path.strip_prefix("/v3/REST/") {
        return Some(format!(
            "mailjet.rest.{}",
            rest.split('/').next().unwrap_or("")
        ));
    }
    if path == "/v3.1/send" {
        return Some("mailjet.send".to_owned());
    }
    if let Some(rest) = path.strip_prefix("/mailjet/") {
        return Some(format!("mailjet.agent.{}", rest.replace('/', ".")));
    }
    if let Some(method) = path.strip_prefix("/api/") {
        return Some(format!("slack.{method}"));
    }
    Some(format!("other.{}", path.trim_start_matches('/')))
}

/// The middleware: count, then apply faults, then Mailjet's rate limit.
pub async fn apply(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some(endpoint) = endpoint_name(request.uri().path()) else {
        return next.run(request).await;
    };
    count(&shared, &endpoint);
    let faults: Vec<Fault> = lock(&shared.faults)
        .iter()
        .filter(|f| f.applies_to(&endpoint))
        .cloned()
        .collect();
    let mut delay = Duration::ZERO;
    for fault in &faults {
        delay += Duration::from_millis(fault.latency_ms);
        if fault.jitter_ms > 0 {
            delay += Duration::from_millis(fastrand::u64(..=fault.jitter_ms));
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    for fault in &faults {
        if fault
            .storm_until
            .is_some_and(|until| Instant::now() < until)
        {
            let secs = fault.retry_after_secs.unwrap_or(1);
            let mut response = rate_limited(&shared, &endpoint, Some(secs));
            if fault.retry_after_as_date {
                // Rounded up to the next whole second, as a date cannot say less.
                let at = std::time::SystemTime::now() + Duration::from_secs(secs + 1);
                if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
                    response.headers_mut().insert("retry-after", value);
                }
            }
            return response;
        }
        if fault.drop_rate > 0.0 && fastrand::f64() < fault.drop_rate {
            return dropped();
        }
        if fault.error_rate > 0.0 && fastrand::f64() < fault.error_rate {
            return injected_error(&endpoint, fault.error_status.unwrap_or(500));
        }
    }
    if endpoint.starts_with("mailjet.") && mailjet_over_limit(&shared, &request) {
        let retry_after = shared.config().mailjet_retry_after.then_some(1);
        return rate_limited(&shared, &endpoint, retry_after);
    }
    let drop_after = faults
        .iter()
        .any(|f| f.drop_after_rate > 0.0 && fastrand::f64() < f.drop_after_rate);
    let response = next.run(request).await;
    if drop_after {
        return dropped();
    }
    response
}

fn count(shared: &Shared, endpoint: &str) {
    let second = chrono::Utc::now().timestamp();
    let mut requests = lock(&shared.requests);
    let stats = requests.entry(endpoint.to_owned()).or_default();
    stats.count += 1;
    if stats.second != second {
        stats.second = second;
        stats.in_second = 0;
    }
    stats.in_second += 1;
    stats.peak_per_second = stats.peak_per_second.max(stats.in_second);
}

fn mailjet_over_limit(shared: &Shared, request: &Request) -> bool {
    let Some(limit) = shared.config().mailjet_rate_per_sec else {
        return false;
    };
    let key = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    let second = chrono::Utc::now().timestamp();
    let mut limits = lock(&shared.limits);
    let entry = limits.mailjet.entry(key).or_insert((second, 0));
    if entry.0 != second {
        *entry = (second, 0);
    }
    entry.1 += 1;
    entry.1 > limit
}

/// A 429 in the endpoint's own style.
pub fn rate_limited(shared: &Shared, endpoint: &str, retry_after: Option<u64>) -> Response {
    if let Some(stats) = lock(&shared.requests).get_mut(endpoint) {
        stats.rate_limited += 1;
    }
    let body = if endpoint.starts_with("slack.") {
        json!({ "ok": false, "error": "ratelimited" })
    } else {
        json!({ "ErrorInfo": "", "ErrorMessage": "Too Many Requests", "StatusCode": 429 })
    };
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    if let Some(secs) = retry_after
        && let Ok(value) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

fn injected_error(endpoint: &str, status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if endpoint.starts_with("slack.") {
        json!({ "ok": false, "error": "internal_error" })
    } else {
        json!({ "ErrorIdentifier": uuid::Uuid::new_v4().to_string(), "ErrorMessage": "Internal Server Error (injected by the sandbox)", "StatusCode": status.as_u16() })
    };
    (status, axum::Json(body)).into_response()
}

/// An answer whose body fails mid-stream: the client sees the connection drop.
fn dropped() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("dropped by the sandbox"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
