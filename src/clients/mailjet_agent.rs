//! The Mailjet MCP agent client (`docs/mailjet-agent.md`): JWT auth, every call through the
//! retry layer, the agent's own error messages carried in the error.

use std::time::Duration;

use serde_json::{Value, json};

use super::auth::AgentTokens;
use super::error::{FailureKind, UpstreamError};
use super::limiter::{Limiter, Rate};
use super::retry::{self, RetryPolicy};

/// The agent client.
#[derive(Debug)]
pub struct MailjetAgentClient {
    http: reqwest::Client,
    base: url::Url,
    tokens: AgentTokens,
    policy: RetryPolicy,
    limiter: Option<(Limiter, Rate)>,
}

/// Mailjet limits per API key, across endpoints: one limiter key for the account.
const LIMIT_KEY: &str = "mailjet:account";

const SERVICE: &str = "mailjet";

impl MailjetAgentClient {
    /// A client of the agent at `base`, with `timeout` per request.
    pub fn new(
        base: url::Url,
        tokens: AgentTokens,
        timeout: Duration,
        policy: RetryPolicy,
    ) -> Result<Self, reqwest::Error> {
        let http = retry::http_client(timeout)?;
        Ok(MailjetAgentClient {
            http,
            base,
            tokens,
            policy,
            limiter: None,
        })
    }

    /// Shares Mailjet's per-key `rate` with every process through Redis.
    pub fn with_limiter(mut self, limiter: Limiter, rate: Rate) -> Self {
        self.limiter = Some((limiter, rate));
        self
    }

    /// The retry policy of calls.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Calls tool `path` (e.g. `campaigns/statistics`) with `body`.
    pub async fn call(&self, path: &str, body: &Value) -> Result<Value, UpstreamError> {
        self.call_with(&self.policy, path, body).await
    }

    /// Calls tool `path` under `policy`.
    pub async fn call_with<B, T>(
        &self,
        policy: &RetryPolicy,
        path: &str,
        body: &B,
    ) -> Result<T, UpstreamError>
    where
        B: serde::Serialize + ?Sized,
        T: serde::de::DeserializeOwned,
    {
        let endpoint = path.to_owned();
        let body = retry::encode(SERVICE, path, body)?;
        retry::call(
            policy,
            SERVICE,
            &endpoint,
            || self.attempt(path, body.clone()),
            || async {
                self.tokens.invalidate();
                Ok(())
            },
        )
        .await
    }

    async fn attempt<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: bytes::Bytes,
    ) -> Result<T, UpstreamError> {
        let failed = |kind, status, code, message: String| UpstreamError {
            service: SERVICE,
            endpoint: path.to_owned(),
            kind,
            status,
            code,
            message,
        };
        let token = self.tokens.current().map_err(|e| {
            failed(
                FailureKind::Permanent,
                None,
                None,
                format!("cannot mint the agent token: {e}"),
            )
        })?;
        let url = self.base.join(&format!("mailjet/{path}")).map_err(|e| {
            failed(
                FailureKind::Permanent,
                None,
                None,
                format!("bad agent URL: {e}"),
            )
        })?;
        let request = self
            .http
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let limit = self.limiter.as_ref().map(|(l, r)| (l, LIMIT_KEY, *r));
        let (status, retry_after, body) =
            retry::send_limited(request, limit, &self.policy, SERVICE, path).await?;
        if status.is_success() {
            return retry::decode(SERVICE, path, &body);
        }
        // Error answers are rare and not always JSON: read leniently.
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let code = answer["error"]
            .as_str()
            .or_else(|| answer["ErrorCode"].as_str())
            .map(str::to_owned);
        let message = answer["message"]
            .as_str()
            .or_else(|| answer["ErrorMessage"].as_str())
            .unwrap_or("no message")
            .to_owned();
        let kind = match status.as_u16() {
            429 => FailureKind::RateLimited { retry_after },
            401 => FailureKind::AuthExpired,
            500..=599 => FailureKind::Transient,
            // Send answers 400 with per-message results: that is an answer, not a failure.
            400 if answer.get("Messages").is_some() => return retry::decode(SERVICE, path, &body),
            _ => FailureKind::Permanent,
        };
        Err(failed(kind, Some(status.as_u16()), code, message))
    }

    /// Lifetime statistics (`/statcounters` rows) of one Mailjet campaign.
    pub async fn campaign_statistics(&self, campaign_id: i64) -> Result<Value, UpstreamError> {
        self.call(
            "campaigns/statistics",
            &json!({ "campaign_id": campaign_id }),
        )
        .await
    }

    /// Campaigns whose subject equals `subject`, ignoring case.
    pub async fn find_by_subject(&self, subject: &str) -> Result<Value, UpstreamError> {
        self.call("campaigns/find_by_subject", &json!({ "subject": subject }))
            .await
    }
}
