//! `MailjetClient`: what the service needs from Mailjet, with typed answers, behind one trait
//! and two adapters chosen by `MAILJET_ADAPTER`: the MCP agent (`MailjetAgentClient`) and
//! Mailjet's own REST v3 + Send v3.1 API (`MailjetRestClient`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{FailureKind, UpstreamError};
use super::limiter::{Limiter, Rate};
use super::mailjet_agent::MailjetAgentClient;
use super::retry::{self, RetryPolicy};

/// Lifetime counters of a campaign (`/statcounters`, Mailjet's field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatCounters {
    #[serde(rename = "SourceID")]
    pub source_id: i64,
    /// Processed messages.
    pub total: i64,
    /// Delivered ("sent and accepted by the recipient's server").
    pub message_sent_count: i64,
    pub message_opened_count: i64,
    pub message_clicked_count: i64,
    pub message_hard_bounced_count: i64,
    pub message_soft_bounced_count: i64,
    pub message_spam_count: i64,
    pub message_blocked_count: i64,
    pub message_unsubscribed_count: i64,
}

/// A Mailjet campaign (`/campaign` row, the fields used here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MailjetCampaign {
    #[serde(rename = "ID")]
    pub id: i64,
    pub subject: String,
    pub status: i64,
}

/// A template (`/template` row, the fields used here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MailjetTemplate {
    #[serde(rename = "ID")]
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub categories: Vec<String>,
}

/// A template's content (`/template/{id}/detailcontent`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TemplateContent {
    #[serde(rename = "Html-part", default)]
    pub html: Option<String>,
    #[serde(rename = "Text-part", default)]
    pub text: Option<String>,
    #[serde(rename = "Headers", default)]
    pub headers: Option<Value>,
}

impl TemplateContent {
    /// The subject header, when the template sets one.
    pub fn subject(&self) -> &str {
        self.headers
            .as_ref()
            .and_then(|h| h["Subject"].as_str())
            .unwrap_or("")
    }
}

/// A Send v3.1 body: one message per recipient, each from a template. It borrows what it
/// sends (the variables as stored, unparsed) and is serialised once per call.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendBody<'a> {
    /// Full validation, no delivery (`testMode`).
    pub sandbox_mode: bool,
    pub messages: Vec<Message<'a>>,
}

/// One message of a Send call.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Message<'a> {
    pub to: [Address<'a>; 1],
    #[serde(rename = "TemplateID")]
    pub template_id: i64,
    /// Always true: `{{var:…}}` is evaluated only then.
    pub template_language: bool,
    pub variables: &'a serde_json::value::RawValue,
    /// Our id of the send, by which Mailjet's events and message search find it again.
    #[serde(rename = "CustomID")]
    pub custom_id: uuid::Uuid,
    /// Our id of the request, carried back by events as `Payload`.
    pub event_payload: uuid::Uuid,
}

/// A recipient (`{Email, Name?}`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Address<'a> {
    pub email: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'a str,
}

/// A Send v3.1 answer (HTTP 200, or 400 with per-message results).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendAnswer {
    #[serde(default)]
    pub messages: Vec<SendResult>,
}

/// What became of one message of a Send call.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendResult {
    /// `success` or `error`.
    #[serde(default)]
    pub status: String,
    #[serde(rename = "CustomID", default)]
    pub custom_id: Option<String>,
    #[serde(default)]
    pub to: Vec<Delivery>,
    #[serde(default)]
    pub errors: Vec<SendError>,
}

/// A message accepted for one recipient (`MessageID` 0 and `MessageUUID` "" in sandbox mode).
#[derive(Debug, Default, Deserialize)]
pub struct Delivery {
    #[serde(rename = "MessageID", default, deserialize_with = "lenient_id")]
    pub message_id: Option<i64>,
    #[serde(rename = "MessageUUID", default)]
    pub message_uuid: Option<String>,
}

/// Why one message was refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendError {
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// `MessageID` is an int64 number, though one of Mailjet's samples shows it as a string:
/// take either, and anything else as absent rather than failing the whole answer.
fn lenient_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// What Mailjet knows of a message by its `CustomID` (reconciliation evidence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Mailjet has it: it was sent.
    Found { message_id: i64, uuid: String },
    /// Mailjet has no message with this CustomID.
    NotFound,
    /// This adapter cannot ask (the MCP agent has no message search): only a `sent` event
    /// tells.
    Unsupported,
}

/// The retry policy of a Send call: a 429 or our own rate limit may be waited for briefly
/// (nothing was sent), but a timeout, a dropped connection or a 5xx is never retried here —
/// the messages may have gone out, so the email queue reconciles them instead.
pub fn send_policy(base: &RetryPolicy) -> RetryPolicy {
    RetryPolicy {
        max_retries: 0,
        max_inline_wait: Duration::from_secs(1),
        max_elapsed: Duration::from_secs(2),
        ..base.clone()
    }
}

/// What the service asks of Mailjet.
pub trait MailjetClient: Send + Sync {
    /// Lifetime statistics of campaign `id`; None when Mailjet has no such campaign.
    fn campaign_statistics(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<StatCounters>, UpstreamError>> + Send;
    /// The campaign whose subject equals `subject` (ignoring case and surrounding spaces).
    fn find_campaign_by_subject(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<Option<MailjetCampaign>, UpstreamError>> + Send;
    /// The campaigns whose subject equals one of `subjects` (as `find_campaign_by_subject`
    /// compares), keyed by `subject_key`; subjects Mailjet does not have are absent. By
    /// default one look-up per subject, `parallel` at once; a look-up that fails leaves its
    /// subject absent, with a warning, so one bad subject does not hold up the others.
    fn find_campaigns_by_subjects(
        &self,
        subjects: &[String],
        parallel: usize,
    ) -> impl Future<Output = Result<HashMap<String, MailjetCampaign>, UpstreamError>> + Send {
        async move {
            let mut next = subjects.iter();
            let mut running = futures_util::stream::FuturesUnordered::new();
            let mut found = HashMap::new();
            loop {
                while running.len() < parallel.max(1) {
                    let Some(subject) = next.next() else { break };
                    running.push(
                        async move { (subject, self.find_campaign_by_subject(subject).await) },
                    );
                }
                let Some((subject, answer)) = running.next().await else {
                    break;
                };
                match answer {
                    Ok(Some(campaign)) => {
                        found.insert(subject_key(subject), campaign);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(subject, error = %e, "matching by subject failed"),
                }
            }
            Ok(found)
        }
    }
    /// Send v3.1 with `body` (`Messages`, `SandboxMode`, …); per-message results are in the
    /// answer, also when it is HTTP 400.
    fn send(
        &self,
        body: &SendBody<'_>,
    ) -> impl Future<Output = Result<SendAnswer, UpstreamError>> + Send;
    /// Whether Mailjet has a message with `custom_id`.
    fn find_message(
        &self,
        custom_id: &str,
    ) -> impl Future<Output = Result<Lookup, UpstreamError>> + Send;
    /// One page of templates (`limit` from `offset`); empty past the end.
    fn templates(
        &self,
        offset: usize,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<MailjetTemplate>, UpstreamError>> + Send;
    /// A template's content; None when Mailjet has no such template.
    fn template_content(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<TemplateContent>, UpstreamError>> + Send;
}

/// How subjects are compared: surrounding spaces and ASCII case do not count.
pub fn subject_key(subject: &str) -> String {
    subject.trim().to_ascii_lowercase()
}

/// The rows of an answer (`{"Data": [...]}`), decoded straight from the body.
#[derive(Deserialize)]
struct Rows<T> {
    #[serde(rename = "Data")]
    data: Vec<T>,
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

/// Mailjet's own REST v3 and Send v3.1 API, with Basic auth (API key and secret).
#[derive(Debug)]
pub struct MailjetRestClient {
    http: reqwest::Client,
    base: url::Url,
    key: String,
    secret: secrecy::SecretString,
    policy: RetryPolicy,
    limiter: Option<(Limiter, Rate)>,
}

const SERVICE: &str = "mailjet";

impl MailjetRestClient {
    /// A client of the API at `base` (`https://api.mailjet.com`).
    pub fn new(
        base: url::Url,
        key: &str,
        secret: secrecy::SecretString,
        timeout: Duration,
        policy: RetryPolicy,
    ) -> Result<Self, reqwest::Error> {
        let http = retry::http_client(timeout)?;
        Ok(MailjetRestClient {
            http,
            base,
            key: key.to_owned(),
            secret,
            policy,
            limiter: None,
        })
    }

    /// Shares the per-key `rate` with every process through Redis.
    pub fn with_limiter(mut self, limiter: Limiter, rate: Rate) -> Self {
        self.limiter = Some((limiter, rate));
        self
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, UpstreamError> {
        self.request_with(&self.policy, method, path, query, body)
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
            .request_with(&self.policy, reqwest::Method::GET, path, query, None::<&()>)
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
        let body = body.map(|b| retry::encode(SERVICE, path, b)).transpose()?;
        retry::call(
            policy,
            SERVICE,
            path,
            || self.attempt(method.clone(), path, query, body.clone()),
            || async { Ok(()) },
        )
        .await
    }

    async fn attempt<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<bytes::Bytes>,
    ) -> Result<T, UpstreamError> {
        use secrecy::ExposeSecret;
        let failed = |kind, status, code, message: String| UpstreamError {
            service: SERVICE,
            endpoint: path.to_owned(),
            kind,
            status,
            code,
            message,
        };
        let url = self.base.join(path).map_err(|e| {
            failed(
                FailureKind::Permanent,
                None,
                None,
                format!("bad Mailjet URL: {e}"),
            )
        })?;
        let mut request = self
            .http
            .request(method, url)
            .basic_auth(&self.key, Some(self.secret.expose_secret()))
            .query(query);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let limit = self
            .limiter
            .as_ref()
            .map(|(l, r)| (l, "mailjet:account", *r));
        let (status, retry_after, answer) =
            retry::send_limited(request, limit, &self.policy, SERVICE, path).await?;
        if status.is_success() {
            return retry::decode(SERVICE, path, &answer);
        }
        // Error answers are rare and not always JSON: read leniently.
        let refusal: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        if status.as_u16() == 400 && refusal.get("Messages").is_some() {
            return retry::decode(SERVICE, path, &answer);
        }
        let code = refusal["ErrorCode"].as_str().map(str::to_owned);
        let message = refusal["ErrorMessage"]
            .as_str()
            .unwrap_or("no message")
            .to_owned();
        let kind = match status.as_u16() {
            429 => FailureKind::RateLimited { retry_after },
            // Basic auth cannot be refreshed: a 401 is a configuration problem.
            401 | 403 => FailureKind::Permanent,
            500..=599 => FailureKind::Transient,
            _ => FailureKind::Permanent,
        };
        Err(failed(kind, Some(status.as_u16()), code, message))
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
        let policy = send_policy(&self.policy);
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
