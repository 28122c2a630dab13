//! The retry loop of the one transport (`super::transport`) every upstream call goes through.
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
use tracing::Instrument;

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

/// Counts one attempt: `upstream_requests_total` by outcome and its duration.
fn count(service: &str, endpoint: &str, result: &Result<(), &UpstreamError>, sent: Instant) {
    let labels = [
        ("service", service.to_owned()),
        ("endpoint", endpoint.to_owned()),
        ("outcome", outcome_label(result).to_owned()),
    ];
    metrics::counter!("upstream_requests_total", &labels).increment(1);
    metrics::histogram!("upstream_request_duration_seconds", &labels[..2])
        .record(sent.elapsed().as_secs_f64());
    let millis = i64::try_from(sent.elapsed().as_millis()).unwrap_or(i64::MAX);
    let outcome = result.map_or_else(timeline_outcome, |()| "ok");
    crate::telemetry::timeline::call(service, endpoint, outcome, millis);
}

/// How the alerts see a failed attempt: refused for its credentials (`auth_failed`: a
/// Mailjet 401 or 403, Slack `invalid_auth` and its kin, an expired token), no answer at all
/// (`unreachable`), or its kind.
fn timeline_outcome(e: &UpstreamError) -> &'static str {
    const AUTH_CODES: [&str; 4] = [
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "account_inactive",
    ];
    let auth = e.kind == FailureKind::AuthExpired
        || matches!(e.status, Some(401 | 403))
        || e.code.as_deref().is_some_and(|c| AUTH_CODES.contains(&c));
    if auth {
        "auth_failed"
    } else if e.kind == FailureKind::Transient && e.status.is_none() {
        "unreachable"
    } else {
        outcome_label(&Err(e))
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
        let span = tracing::info_span!("upstream", service, endpoint, attempt = number);
        let result = attempt().instrument(span).await;
        count(service, endpoint, &result.as_ref().map(|_| ()), sent);
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
        if matches!(error.kind, FailureKind::AuthExpired) && !refreshed {
            refreshed = true;
            refresh().await?;
            continue;
        }
        match wait_before_retry(policy, &error, started, &mut backoff) {
            Some(wait) => tokio::time::sleep(wait).await,
            None => return Err(error),
        }
    }
}

/// How long to wait before trying `error`'s call again, or None to give up: a rate limit's
/// wait when it is short enough, the next backoff for a transient failure, within the
/// policy's total time.
fn wait_before_retry(
    policy: &RetryPolicy,
    error: &UpstreamError,
    started: Instant,
    backoff: &mut impl Iterator<Item = Duration>,
) -> Option<Duration> {
    match &error.kind {
        FailureKind::RateLimited { retry_after } => {
            let wait = retry_after.unwrap_or(policy.default_retry_after);
            if wait > policy.max_inline_wait || started.elapsed() + wait > policy.max_elapsed {
                return None;
            }
            metrics::counter!("upstream_rate_limited_seconds_total", "service" => error.service, "endpoint" => error.endpoint.clone()).increment(wait.as_secs().max(1));
            let millis = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
            crate::telemetry::timeline::rate_limit_wait(error.service, millis);
            Some(wait)
        }
        FailureKind::Transient => backoff
            .next()
            .filter(|delay| started.elapsed() + *delay <= policy.max_elapsed),
        FailureKind::AuthExpired | FailureKind::Permanent => None,
    }
}

#[cfg(test)]
mod retry_after_tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::super::transport::parse_retry_after;

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
