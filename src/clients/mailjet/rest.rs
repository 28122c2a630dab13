//! Mailjet's own REST v3 and Send v3.1 API (`MAILJET_ADAPTER=rest`), Basic auth.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Account, Lookup, MailjetCampaign, MailjetClient, MailjetTemplate, SendAnswer, SendBody,
    StatCounters, TemplateContent, send_policy, subject_key,
};
use crate::clients::error::{FailureKind, UpstreamError};
use crate::clients::limiter::{Limiter, Rate};
use crate::clients::retry::RetryPolicy;

/// The rows of an answer (`{"Data": [...]}`), decoded straight from the body.
#[derive(Deserialize)]
struct Rows<T> {
    #[serde(rename = "Data")]
    data: Vec<T>,
}

/// Mailjet's own REST v3 and Send v3.1 API, with Basic auth (API key and secret).
#[derive(Debug)]
pub struct MailjetRestClient {
    account: Account,
    base: url::Url,
    key: String,
    secret: secrecy::SecretString,
}

impl MailjetRestClient {
    /// A client of the API at `base` (`https://api.mailjet.com`).
    pub fn new(
        base: url::Url,
        key: &str,
        secret: secrecy::SecretString,
        timeout: Duration,
        policy: RetryPolicy,
    ) -> Result<Self, reqwest::Error> {
        Ok(MailjetRestClient {
            // Basic auth cannot be refreshed: a 401 is a configuration problem.
            account: Account::new(timeout, policy, FailureKind::Permanent)?,
            base,
            key: key.to_owned(),
            secret,
        })
    }

    /// Shares the per-key `rate` with every process through Redis.
    pub fn with_limiter(mut self, limiter: Limiter, rate: Rate) -> Self {
        self.account = self.account.with_limiter(limiter, rate);
        self
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, UpstreamError> {
        self.request_with(self.account.transport.policy(), method, path, query, body)
            .await
    }

    /// The rows (`Data`) of a GET, decoded straight into `T` (a page of 1,000 campaigns never
    /// becomes a tree of maps).
    async fn rows<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, UpstreamError> {
        let answer: Rows<T> = self
            .request_with(
                self.account.transport.policy(),
                reqwest::Method::GET,
                path,
                query,
                None::<&()>,
            )
            .await?;
        Ok(answer.data)
    }

    /// A request under `policy`, its answer decoded as a `T`.
    async fn request_with<B, T>(
        &self,
        policy: &RetryPolicy,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, UpstreamError>
    where
        B: Serialize + ?Sized,
        T: serde::de::DeserializeOwned,
    {
        let body = body
            .map(|b| self.account.transport.encode(path, b))
            .transpose()?;
        let limit = self.account.limit();
        self.account
            .transport
            .call(
                policy,
                path,
                limit,
                || async { self.build_request(method.clone(), path, query, body.clone()) },
                |answer| self.account.classify(path, answer),
                || async { Ok(()) },
            )
            .await
    }

    /// The request of one attempt.
    fn build_request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<bytes::Bytes>,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        use secrecy::ExposeSecret;
        let url = self.account.transport.url(&self.base, path, path)?;
        let mut request = self
            .account
            .transport
            .http()
            .request(method, url)
            .basic_auth(&self.key, Some(self.secret.expose_secret()))
            .query(query);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        Ok(request)
    }
}

impl MailjetClient for MailjetRestClient {
    async fn campaign_statistics(&self, id: i64) -> Result<Option<StatCounters>, UpstreamError> {
        let query = [
            ("SourceId", id.to_string()),
            ("CounterSource", "Campaign".to_owned()),
            ("CounterTiming", "Message".to_owned()),
            ("CounterResolution", "Lifetime".to_owned()),
        ];
        let rows: Vec<StatCounters> = self.rows("v3/REST/statcounters", &query).await?;
        Ok(rows.into_iter().next())
    }

    async fn find_campaign_by_subject(
        &self,
        subject: &str,
    ) -> Result<Option<MailjetCampaign>, UpstreamError> {
        let found = self
            .find_campaigns_by_subjects(&[subject.to_owned()], 1)
            .await?;
        Ok(found.into_values().next())
    }

    async fn find_campaigns_by_subjects(
        &self,
        subjects: &[String],
        _parallel: usize,
    ) -> Result<HashMap<String, MailjetCampaign>, UpstreamError> {
        // REST has no subject filter: one pass over the campaigns, 1,000 at a time, for every
        // subject at once, ending as soon as each has been found. The first campaign listed
        // with a subject is the one taken.
        let mut wanted: HashSet<String> = subjects.iter().map(|s| subject_key(s)).collect();
        let mut found = HashMap::new();
        let mut offset = 0;
        while !wanted.is_empty() {
            let query = [("Limit", "1000".to_owned()), ("Offset", offset.to_string())];
            let page: Vec<MailjetCampaign> = self.rows("v3/REST/campaign", &query).await?;
            if page.is_empty() {
                break;
            }
            offset += page.len();
            for campaign in page {
                let key = subject_key(&campaign.subject);
                if wanted.remove(&key) {
                    found.insert(key, campaign);
                }
            }
        }
        Ok(found)
    }

    async fn send(&self, body: &SendBody<'_>) -> Result<SendAnswer, UpstreamError> {
        let policy = send_policy(self.account.transport.policy());
        self.request_with(&policy, reqwest::Method::POST, "v3.1/send", &[], Some(body))
            .await
    }

    async fn find_message(&self, custom_id: &str) -> Result<Lookup, UpstreamError> {
        let query = [("CustomID", custom_id.to_owned())];
        let answer = self
            .request(reqwest::Method::GET, "v3/REST/message", &query, None)
            .await?;
        let found = answer["Data"].as_array().and_then(|rows| {
            rows.iter().find_map(|m| {
                let id = m["ID"].as_i64()?;
                Some(Lookup::Found {
                    message_id: id,
                    uuid: m["UUID"].as_str().unwrap_or("").to_owned(),
                })
            })
        });
        Ok(found.unwrap_or(Lookup::NotFound))
    }

    async fn templates(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<MailjetTemplate>, UpstreamError> {
        let query = [("Limit", limit.to_string()), ("Offset", offset.to_string())];
        self.rows("v3/REST/template", &query).await
    }

    async fn template_content(&self, id: i64) -> Result<Option<TemplateContent>, UpstreamError> {
        let path = format!("v3/REST/template/{id}/detailcontent");
        match self.rows::<TemplateContent>(&path, &[]).await {
            Ok(rows) => Ok(rows.into_iter().next()),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
