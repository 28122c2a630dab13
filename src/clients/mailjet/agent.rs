//! The Mailjet MCP agent client (`docs/mailjet-agent.md`): JWT auth, every call through the
//! retry layer, the agent's own error messages carried in the error.

use std::time::Duration;

use serde_json::{Value, json};

use super::agent_auth::AgentTokens;
use super::{
    Account, Lookup, MailjetCampaign, MailjetClient, MailjetTemplate, SendAnswer, SendBody,
    StatCounters, TemplateContent, send_policy,
};
use crate::clients::error::{FailureKind, UpstreamError};
use crate::clients::limiter::{Limiter, Rate};
use crate::clients::retry::RetryPolicy;

/// The agent client.
#[derive(Debug)]
pub struct MailjetAgentClient {
    account: Account,
    base: url::Url,
    tokens: AgentTokens,
}

impl MailjetAgentClient {
    /// A client of the agent at `base`, with `timeout` per request.
    pub fn new(
        base: url::Url,
        tokens: AgentTokens,
        timeout: Duration,
        policy: RetryPolicy,
    ) -> Result<Self, reqwest::Error> {
        Ok(MailjetAgentClient {
            // A 401 means the agent's token must be minted again.
            account: Account::new(timeout, policy, FailureKind::AuthExpired)?,
            base,
            tokens,
        })
    }

    /// Shares Mailjet's per-key `rate` with every process through Redis.
    pub fn with_limiter(mut self, limiter: Limiter, rate: Rate) -> Self {
        self.account = self.account.with_limiter(limiter, rate);
        self
    }

    /// The retry policy of calls.
    pub fn policy(&self) -> &RetryPolicy {
        self.account.transport.policy()
    }

    /// Calls tool `path` (e.g. `campaigns/statistics`) with `body`.
    pub async fn call(&self, path: &str, body: &Value) -> Result<Value, UpstreamError> {
        self.call_with(self.policy(), path, body).await
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
        let body = self.account.transport.encode(path, body)?;
        let limit = self.account.limit();
        self.account
            .transport
            .call(
                policy,
                path,
                limit,
                || async { self.request(path, body.clone()) },
                |answer| self.account.classify(path, answer),
                || async {
                    self.tokens.invalidate();
                    Ok(())
                },
            )
            .await
    }

    /// The request of one attempt, with a token minted for it.
    fn request(
        &self,
        path: &str,
        body: bytes::Bytes,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let token = self.tokens.current().map_err(|e| {
            self.account.transport.failure(
                path,
                FailureKind::Permanent,
                None,
                None,
                format!("cannot mint the agent token: {e}"),
            )
        })?;
        let url = self
            .account
            .transport
            .url(&self.base, &format!("mailjet/{path}"), path)?;
        Ok(self
            .account
            .transport
            .http()
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body))
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

fn rows<T: serde::de::DeserializeOwned>(
    mut answer: Value,
    endpoint: &str,
) -> Result<Vec<T>, UpstreamError> {
    serde_json::from_value(answer["Data"].take()).map_err(|e| UpstreamError {
        service: "mailjet",
        endpoint: endpoint.to_owned(),
        kind: FailureKind::Permanent,
        status: None,
        code: None,
        message: format!("unexpected answer shape: {e}"),
    })
}

impl MailjetClient for MailjetAgentClient {
    async fn campaign_statistics(&self, id: i64) -> Result<Option<StatCounters>, UpstreamError> {
        match MailjetAgentClient::campaign_statistics(self, id).await {
            Ok(answer) => Ok(rows::<StatCounters>(answer, "campaigns/statistics")?
                .into_iter()
                .next()),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_campaign_by_subject(
        &self,
        subject: &str,
    ) -> Result<Option<MailjetCampaign>, UpstreamError> {
        let answer = self.find_by_subject(subject).await?;
        Ok(
            rows::<MailjetCampaign>(answer, "campaigns/find_by_subject")?
                .into_iter()
                .next(),
        )
    }

    async fn send(&self, body: &SendBody<'_>) -> Result<SendAnswer, UpstreamError> {
        self.call_with(&send_policy(self.policy()), "send_bulk", body)
            .await
    }

    async fn find_message(&self, _custom_id: &str) -> Result<Lookup, UpstreamError> {
        Ok(Lookup::Unsupported)
    }

    async fn templates(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<MailjetTemplate>, UpstreamError> {
        let answer = self
            .call(
                "templates/list",
                &json!({ "offset": offset, "limit": limit }),
            )
            .await?;
        rows(answer, "templates/list")
    }

    async fn template_content(&self, id: i64) -> Result<Option<TemplateContent>, UpstreamError> {
        match self.call("templates/get", &json!({ "id": id })).await {
            Ok(answer) => {
                let content = answer
                    .pointer("/Data/0/DetailContent")
                    .cloned()
                    .unwrap_or(Value::Null);
                Ok(
                    rows::<TemplateContent>(json!({ "Data": [content] }), "templates/get")?
                        .into_iter()
                        .next(),
                )
            }
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
