//! The one error type of upstream calls, classified the way the retry layer acts on it.

use std::time::Duration;

use crate::queue::job::JobError;

/// How an upstream call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// HTTP 429 or Slack `ratelimited`: wait, without spending an attempt.
    RateLimited { retry_after: Option<Duration> },
    /// 401, `token_expired`, `invalid_auth` after a rotation: refresh the credential once.
    AuthExpired,
    /// Timeouts, connection errors, 5xx: back off and retry, within bounds.
    Transient,
    /// Everything else (validation errors, `channel_not_found`, …): fail at once.
    Permanent,
}

/// A failed upstream call, carrying the upstream's own message and code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service} {endpoint}: {message}")]
pub struct UpstreamError {
    /// `mailjet` or `slack`.
    pub service: &'static str,
    /// The endpoint or method.
    pub endpoint: String,
    /// What the retry layer does about it.
    pub kind: FailureKind,
    /// HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The upstream's error code (`mj-0013`, `channel_not_found`, …).
    pub code: Option<String>,
    /// The upstream's message (or what went wrong on the way).
    pub message: String,
}

impl UpstreamError {
    /// The job-level verdict: a rate limit reschedules without spending an attempt, a
    /// transient failure retries, anything else is permanent.
    pub fn into_job_error(self) -> JobError {
        match self.kind {
            FailureKind::RateLimited { retry_after } => {
                JobError::RetryAfter(retry_after.unwrap_or(Duration::from_secs(30)))
            }
            FailureKind::Transient | FailureKind::AuthExpired => {
                JobError::Retry(anyhow::Error::new(self))
            }
            FailureKind::Permanent => JobError::Permanent(anyhow::Error::new(self)),
        }
    }
}

impl From<UpstreamError> for JobError {
    fn from(e: UpstreamError) -> Self {
        e.into_job_error()
    }
}
