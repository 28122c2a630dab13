//! The one retry layer every upstream call goes through.
//!
//! - rate limited → wait `Retry-After` (or a default) without spending an attempt; a wait
//!   longer than `max_inline_wait` is handed back to the caller (inside a job it becomes the
//!   queue's "retry after N s" instead of holding a worker slot);
//! - auth expired → refresh the credential once, then retry;
//! - transient → exponential backoff with jitter (`backon`), bounded in attempts and total time;
//! - permanent → fail at once with the upstream's message.
//!
//! Every attempt is traced and counted: `upstream_requests_total{service,endpoint,outcome}`,
//! `upstream_request_duration_seconds`, `upstream_rate_limited_seconds_total`.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::error::{FailureKind, UpstreamError};

/// Bounds of the retry layer.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Transient failures retried at most this many times.
    pub max_retries: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// Give up retrying once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
    /// Longest rate-limit wait done in place; longer waits are returned to the caller.
    pub max_inline_wait: Duration,
    /// Wait when a 429 carries no `Retry-After`.
    pub default_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
            max_inline_wait: Duration::from_secs(5),
            default_retry_after: Duration::from_secs(1),
        }
    }
}

fn outcome_label(result: &Result<(), &UpstreamError>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(e) => match e.kind {
            FailureKind::RateLimited { .. } => "rate_limited",
            FailureKind::AuthExpired => "auth_expired",
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
        },
    }
}

/// Runs `attempt` under `policy`. `refresh` is called (once) when the credential expired.
pub async fn call<T, A, AFut, R, RFut>(
    policy: &RetryPolicy,
    service: &'static str,
    endpoint: &str,
    mut attempt: A,
    mut refresh: R,
) -> Result<T, UpstreamError>
where
    A: FnMut() -> AFut,
    AFut: Future<Output = Result<T, UpstreamError>>,
    R: FnMut() -> RFut,
    RFut: Future<Output = Result<(), UpstreamError>>,
{
    let started = Instant::now();
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_jitter()
        .build();
    let mut refreshed = false;
    let mut number = 0u32;
    loop {
        number += 1;
        let sent = Instant::now();
        let result = attempt().await;
        let labels = [
            ("service", service.to_owned()),
            ("endpoint", endpoint.to_owned()),
            (
                "outcome",
                outcome_label(&result.as_ref().map(|_| ())).to_owned(),
            ),
        ];
        metrics::counter!("upstream_requests_total", &labels).increment(1);
        metrics::histogram!("upstream_request_duration_seconds", &labels[..2])
            .record(sent.elapsed().as_secs_f64());
        let error = match result {
            Ok(value) => {
                tracing::debug!(
                    service,
                    endpoint,
                    attempt = number,
                    "upstream call succeeded"
                );
                return Ok(value);
            }
            Err(e) => e,
        };
        tracing::info!(service, endpoint, attempt = number, kind = ?error.kind, status = error.status, message = %error.message, "upstream call failed");
        match &error.kind {
            FailureKind::RateLimited { retry_after } => {
                let wait = retry_after.unwrap_or(policy.default_retry_after);
                if wait > policy.max_inline_wait || started.elapsed() + wait > policy.max_elapsed {
                    return Err(error);
                }
                metrics::counter!("upstream_rate_limited_seconds_total", "service" => service, "endpoint" => endpoint.to_owned()).increment(wait.as_secs().max(1));
                tokio::time::sleep(wait).await;
            }
            FailureKind::AuthExpired if !refreshed => {
                refreshed = true;
                refresh().await?;
            }
            FailureKind::Transient => match backoff.next() {
                Some(delay) if started.elapsed() + delay <= policy.max_elapsed => {
                    tokio::time::sleep(delay).await
                }
                _ => return Err(error),
            },
            FailureKind::AuthExpired | FailureKind::Permanent => return Err(error),
        }
    }
}

/// Classifies a transport error (no answer): timeouts and connection failures are transient.
pub fn transport_error(service: &'static str, endpoint: &str, e: &reqwest::Error) -> UpstreamError {
    let message = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the answer could not be read".to_owned()
    } else {
        "request failed".to_owned()
    };
    UpstreamError {
        service,
        endpoint: endpoint.to_owned(),
        kind: FailureKind::Transient,
        status: None,
        code: None,
        message,
    }
}

/// `Retry-After`, when present: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in
/// the past means "now" (zero); a value that is neither is ignored (the default wait applies).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?;
    parse_retry_after(value, std::time::SystemTime::now())
}

/// `Retry-After`'s value read at `now`.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The HTTP client of every upstream client: a timeout and our user agent, always.
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("campaign-sync/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Waits for the shared rate of `key`; a wait longer than the policy's inline wait becomes a
/// rate-limit error carrying it (the queue reschedules the job instead).
pub async fn limit(
    limiter: Option<&super::limiter::Limiter>,
    key: &str,
    rate: super::limiter::Rate,
    policy: &RetryPolicy,
    service: &'static str,
    endpoint: &str,
) -> Result<(), UpstreamError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter
        .acquire(key, rate, policy.max_inline_wait)
        .await
        .map_err(|wait| UpstreamError {
            service,
            endpoint: endpoint.to_owned(),
            kind: FailureKind::RateLimited {
                retry_after: Some(wait),
            },
            status: None,
            code: None,
            message: "waiting for the shared rate limit".to_owned(),
        })
}

/// After an upstream 429: every process waits out `Retry-After` on `key`.
pub async fn pause(
    limiter: Option<&super::limiter::Limiter>,
    key: &str,
    retry_after: Option<Duration>,
    policy: &RetryPolicy,
) {
    if let Some(limiter) = limiter {
        limiter
            .pause(key, retry_after.unwrap_or(policy.default_retry_after))
            .await;
    }
}

/// Sends `request` under a shared limit (`limiter`, its key and rate), if any: waits for the
/// limit first, and after a 429 pauses the key for every process. Returns the status, the
/// `Retry-After` and the body, for the caller to decode into what it expects (`decode`).
pub async fn send_limited(
    request: reqwest::RequestBuilder,
    limit: Option<(&super::limiter::Limiter, &str, super::limiter::Rate)>,
    policy: &RetryPolicy,
    service: &'static str,
    endpoint: &str,
) -> Result<(reqwest::StatusCode, Option<Duration>, bytes::Bytes), UpstreamError> {
    if let Some((limiter, key, rate)) = limit {
        self::limit(Some(limiter), key, rate, policy, service, endpoint).await?;
    }
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(service, endpoint, &e))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    if status.as_u16() == 429
        && let Some((limiter, key, _)) = limit
    {
        pause(Some(limiter), key, retry_after, policy).await;
    }
    let answer = response
        .bytes()
        .await
        .map_err(|e| transport_error(service, endpoint, &e))?;
    Ok((status, retry_after, answer))
}

/// An answer's JSON `body` as a `T`. An answer that is not what the API documents is a
/// transient failure, as when it could not be read at all (a proxy's error page, a cut body).
pub fn decode<T: serde::de::DeserializeOwned>(
    service: &'static str,
    endpoint: &str,
    body: &[u8],
) -> Result<T, UpstreamError> {
    serde_json::from_slice(body).map_err(|e| UpstreamError {
        service,
        endpoint: endpoint.to_owned(),
        kind: FailureKind::Transient,
        status: None,
        code: None,
        message: format!("the answer could not be read: {e}"),
    })
}

/// `body` serialised once, to be sent as it is by every attempt.
pub fn encode<B: serde::Serialize + ?Sized>(
    service: &'static str,
    endpoint: &str,
    body: &B,
) -> Result<bytes::Bytes, UpstreamError> {
    serde_json::to_vec(body)
        .map(bytes::Bytes::from)
        .map_err(|e| UpstreamError {
            service,
            endpoint: endpoint.to_owned(),
            kind: FailureKind::Permanent,
            status: None,
            code: None,
            message: format!("the request could not be encoded: {e}"),
        })
}

#[cfg(test)]
mod retry_after_tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::parse_retry_after;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        // 1994-11-06T08:49:37Z, the RFC's example date.
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let in_90s = "Sun, 06 Nov 1994 08:51:07 GMT";
        assert_eq!(
            parse_retry_after(in_90s, now),
            Some(Duration::from_secs(90))
        );
        // The obsolete RFC 850 and asctime forms are HTTP dates too.
        let rfc850 = "Sunday, 06-Nov-94 08:50:37 GMT";
        assert_eq!(
            parse_retry_after(rfc850, now),
            Some(Duration::from_secs(60))
        );
        let asctime = "Sun Nov  6 08:49:47 1994";
        assert_eq!(
            parse_retry_after(asctime, now),
            Some(Duration::from_secs(10))
        );
        let past = "Sun, 06 Nov 1994 08:00:00 GMT";
        assert_eq!(parse_retry_after(past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", SystemTime::now()), None);
    }
}
