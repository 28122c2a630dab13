//! The one transport of every upstream client: send, time out, classify, retry, limit, count
//! and trace. A client supplies only how to build its request and how to read its answer
//! (`classify`); `Transport::call` does the rest — the shared rate limit before each attempt,
//! a pause for every process after a 429, the retry loop of `super::retry` (which counts and
//! traces each attempt in an `upstream` span with service, endpoint and attempt).

use std::future::Future;
use std::time::Duration;

use super::error::{FailureKind, UpstreamError};
use super::limiter::{Limiter, Rate};
use super::retry::{self, RetryPolicy};

/// An answer as the transport hands it to a client's `classify`.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    /// `Retry-After`, when the answer has one.
    pub retry_after: Option<Duration>,
    pub body: bytes::Bytes,
}

/// The HTTP client, retry policy and shared limiter of one upstream service.
#[derive(Debug, Clone)]
pub struct Transport {
    service: &'static str,
    http: reqwest::Client,
    policy: RetryPolicy,
    limiter: Option<Limiter>,
}

impl Transport {
    /// A transport for `service` whose every request times out after `timeout`.
    pub fn new(
        service: &'static str,
        timeout: Duration,
        policy: RetryPolicy,
    ) -> reqwest::Result<Self> {
        Ok(Transport {
            service,
            http: http_client(timeout)?,
            policy,
            limiter: None,
        })
    }

    /// Shares rate limits with every process through `limiter`.
    pub fn with_limiter(mut self, limiter: Limiter) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The HTTP client requests are built with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The default retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// A failure of `endpoint` on this service.
    pub fn failure(
        &self,
        endpoint: &str,
        kind: FailureKind,
        status: Option<u16>,
        code: Option<String>,
        message: String,
    ) -> UpstreamError {
        UpstreamError {
            service: self.service,
            endpoint: endpoint.to_owned(),
            kind,
            status,
            code,
            message,
        }
    }

    /// `path` under `base`; a URL that cannot be made is a permanent failure of `endpoint`.
    pub fn url(
        &self,
        base: &url::Url,
        path: &str,
        endpoint: &str,
    ) -> Result<url::Url, UpstreamError> {
        base.join(path).map_err(|e| {
            self.failure(
                endpoint,
                FailureKind::Permanent,
                None,
                None,
                format!("bad {} URL: {e}", self.service),
            )
        })
    }

    /// Calls `endpoint` under `policy`: each attempt waits for `limit` (key and rate) when
    /// given, sends the request `build` makes, and reads the answer with `classify`; `refresh`
    /// is called once when the credential expired.
    pub async fn call<T, B, BFut, C, R, RFut>(
        &self,
        policy: &RetryPolicy,
        endpoint: &str,
        limit: Option<(&str, Rate)>,
        build: B,
        classify: C,
        refresh: R,
    ) -> Result<T, UpstreamError>
    where
        B: Fn() -> BFut,
        BFut: Future<Output = Result<reqwest::RequestBuilder, UpstreamError>>,
        C: Fn(Answer) -> Result<T, UpstreamError>,
        R: FnMut() -> RFut,
        RFut: Future<Output = Result<(), UpstreamError>>,
    {
        retry::call(
            policy,
            self.service,
            endpoint,
            || async {
                let request = build().await?;
                let answer = self.exchange(endpoint, limit, request).await?;
                classify(answer)
            },
            refresh,
        )
        .await
    }

    /// One attempt: the shared limit, the request, and after a 429 a pause of the limit's key
    /// for every process.
    async fn exchange(
        &self,
        endpoint: &str,
        limit: Option<(&str, Rate)>,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, UpstreamError> {
        let limiter = self.limiter.as_ref().zip(limit);
        if let Some((limiter, (key, rate))) = limiter {
            limiter
                .acquire(key, rate, self.policy.max_inline_wait)
                .await
                .map_err(|wait| {
                    self.failure(
                        endpoint,
                        FailureKind::RateLimited {
                            retry_after: Some(wait),
                        },
                        None,
                        None,
                        "waiting for the shared rate limit".to_owned(),
                    )
                })?;
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(self.service, endpoint, &e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        if status.as_u16() == 429
            && let Some((limiter, (key, _))) = limiter
        {
            let wait = retry_after.unwrap_or(self.policy.default_retry_after);
            limiter.pause(key, wait).await;
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(self.service, endpoint, &e))?;
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// An answer's JSON body as a `T` (see [`decode`]).
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &[u8],
    ) -> Result<T, UpstreamError> {
        decode(self.service, endpoint, body)
    }

    /// `body` serialised once (see [`encode`]).
    pub fn encode<B: serde::Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &B,
    ) -> Result<bytes::Bytes, UpstreamError> {
        encode(self.service, endpoint, body)
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
