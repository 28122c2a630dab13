//! `MailjetClient`: what the service needs from Mailjet, with typed answers, behind one trait
//! and two adapters chosen by `MAILJET_ADAPTER`: the MCP agent (`MailjetAgentClient`) and
//! Mailjet's own REST v3 + Send v3.1 API (`MailjetRestClient`).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod agent;
pub mod agent_auth;
pub mod rest;

pub use agent::MailjetAgentClient;
pub use rest::MailjetRestClient;

use super::error::{FailureKind, UpstreamError};
use super::limiter::{Limiter, Rate};
use super::retry::RetryPolicy;
use super::transport::{Answer, Transport};

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

/// Mailjet limits per API key, across endpoints: one limiter key for the account.
const LIMIT_KEY: &str = "mailjet:account";

/// The transport of either adapter, with the account's shared rate when one is set.
#[derive(Debug)]
struct Account {
    transport: Transport,
    rate: Option<Rate>,
    /// What a 401 means to the adapter.
    on_401: FailureKind,
}

impl Account {
    fn new(
        timeout: Duration,
        policy: RetryPolicy,
        on_401: FailureKind,
    ) -> Result<Self, reqwest::Error> {
        Ok(Account {
            transport: Transport::new("mailjet", timeout, policy)?,
            rate: None,
            on_401,
        })
    }

    fn with_limiter(self, limiter: Limiter, rate: Rate) -> Self {
        Account {
            transport: self.transport.with_limiter(limiter),
            rate: Some(rate),
            on_401: self.on_401,
        }
    }

    /// An answer of either adapter (see [`classify`]).
    fn classify<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        answer: Answer,
    ) -> Result<T, UpstreamError> {
        classify(&self.transport, path, answer, self.on_401.clone())
    }

    /// The shared limit of every call.
    fn limit(&self) -> Option<(&'static str, Rate)> {
        self.rate.map(|rate| (LIMIT_KEY, rate))
    }
}

/// A Mailjet answer, from the REST API or the agent: success, Send's per-message results
/// (also in an HTTP 400), or the error classified with Mailjet's own code and message;
/// `on_401` is what a 401 means to the adapter.
fn classify<T: serde::de::DeserializeOwned>(
    transport: &Transport,
    path: &str,
    answer: Answer,
    on_401: FailureKind,
) -> Result<T, UpstreamError> {
    let Answer {
        status,
        retry_after,
        body,
    } = answer;
    if status.is_success() {
        return transport.decode(path, &body);
    }
    // Error answers are rare and not always JSON: read leniently.
    let refusal: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.as_u16() == 400 && refusal.get("Messages").is_some() {
        return transport.decode(path, &body);
    }
    let code = refusal["error"]
        .as_str()
        .or_else(|| refusal["ErrorCode"].as_str())
        .map(str::to_owned);
    let message = refusal["message"]
        .as_str()
        .or_else(|| refusal["ErrorMessage"].as_str())
        .unwrap_or("no message")
        .to_owned();
    let kind = match status.as_u16() {
        429 => FailureKind::RateLimited { retry_after },
        401 => on_401,
        500..=599 => FailureKind::Transient,
        _ => FailureKind::Permanent,
    };
    Err(transport.failure(path, kind, Some(status.as_u16()), code, message))
}

/// The Mailjet adapter chosen by `MAILJET_ADAPTER`.
#[derive(Debug)]
pub enum AnyMailjet {
    /// The MCP agent.
    Agent(MailjetAgentClient),
    /// Mailjet's REST API.
    Rest(MailjetRestClient),
}

/// `$call` on whichever adapter `$self` holds, bound as `$c`.
macro_rules! on_adapter {
    ($self:ident, $c:ident => $call:expr) => {
        match $self {
            AnyMailjet::Agent($c) => $call,
            AnyMailjet::Rest($c) => $call,
        }
    };
}

impl MailjetClient for AnyMailjet {
    async fn campaign_statistics(&self, id: i64) -> Result<Option<StatCounters>, UpstreamError> {
        on_adapter!(self, c => MailjetClient::campaign_statistics(c, id).await)
    }

    async fn find_campaign_by_subject(
        &self,
        subject: &str,
    ) -> Result<Option<MailjetCampaign>, UpstreamError> {
        on_adapter!(self, c => c.find_campaign_by_subject(subject).await)
    }

    async fn find_campaigns_by_subjects(
        &self,
        subjects: &[String],
        parallel: usize,
    ) -> Result<HashMap<String, MailjetCampaign>, UpstreamError> {
        on_adapter!(self, c => c.find_campaigns_by_subjects(subjects, parallel).await)
    }

    async fn send(&self, body: &SendBody<'_>) -> Result<SendAnswer, UpstreamError> {
        on_adapter!(self, c => MailjetClient::send(c, body).await)
    }

    async fn find_message(&self, custom_id: &str) -> Result<Lookup, UpstreamError> {
        on_adapter!(self, c => c.find_message(custom_id).await)
    }

    async fn templates(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<MailjetTemplate>, UpstreamError> {
        on_adapter!(self, c => c.templates(offset, limit).await)
    }

    async fn template_content(&self, id: i64) -> Result<Option<TemplateContent>, UpstreamError> {
        on_adapter!(self, c => c.template_content(id).await)
    }
}
