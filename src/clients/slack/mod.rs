//! The Slack Web API client: bearer token (static or rotated), every call through the retry
//! layer and the shared tier limits, `{ok:false,error}` classified, cursor pagination, and the
//! Redis cache of look-ups (channel id by name, user id by email).

pub mod cache;
pub mod crypto;
pub mod messages;
pub mod reseal;
pub mod scopes;
pub mod tokens;

use std::time::Duration;

use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::clients::error::{FailureKind, UpstreamError};
use crate::clients::limiter::{Limiter, Rate};
use crate::clients::retry::RetryPolicy;
use crate::clients::transport::{Answer, Transport};
use tokens::{SlackCredential, Token};

const SERVICE: &str = "slack";

/// Slack's documented minimum rates of tiers 2, 3 and 4, in requests per minute.
pub const DOCUMENTED_TIERS: [u32; 3] = [20, 50, 100];

/// Slack's tier of `method` (2, 3 or 4) as an index into the tier rates.
fn tier_of(method: &str) -> Option<usize> {
    match method {
        "users.list"
        | "usergroups.list"
        | "usergroups.users.list"
        | "conversations.list"
        | "conversations.create"
        | "conversations.rename"
        | "conversations.archive" => Some(0),
        "users.getPresence"
        | "conversations.info"
        | "conversations.open"
        | "conversations.history"
        | "conversations.replies"
        | "chat.update"
        | "reactions.add"
        | "pins.add" => Some(1),
        "conversations.members"
        | "auth.test"
        | "chat.postEphemeral"
        | "views.open"
        | "users.lookupByEmail" => Some(2),
        _ => None,
    }
}

/// The Slack client of one workspace.
#[derive(Debug)]
pub struct SlackClient {
    transport: Transport,
    /// `SLACK_API_URL`, ending in `/`.
    base: url::Url,
    credential: SlackCredential,
    workspace: String,
    tiers: [u32; 3],
    cache: Option<(ConnectionManager, String, Duration)>,
}

impl SlackClient {
    /// A client for `workspace` at `base`.
    pub fn new(
        base: url::Url,
        credential: SlackCredential,
        workspace: &str,
        timeout: Duration,
        policy: RetryPolicy,
    ) -> Result<Self, reqwest::Error> {
        Ok(SlackClient {
            transport: Transport::new(SERVICE, timeout, policy)?,
            base,
            credential,
            workspace: workspace.to_owned(),
            tiers: DOCUMENTED_TIERS,
            cache: None,
        })
    }

    /// Requests per minute of tiers 2, 3 and 4 (`SLACK_TIER<N>_PER_MIN`).
    pub fn with_tiers(mut self, tiers: [u32; 3]) -> Self {
        self.tiers = tiers;
        self
    }

    /// Shares Slack's tier limits (and one message per second per channel) through Redis.
    pub fn with_limiter(mut self, limiter: Limiter) -> Self {
        self.transport = self.transport.with_limiter(limiter);
        self
    }

    /// Caches look-ups in Redis under `prefix` for `ttl`.
    pub fn with_cache(mut self, conn: ConnectionManager, prefix: &str, ttl: Duration) -> Self {
        self.cache = Some((conn, prefix.to_owned(), ttl));
        self
    }

    /// Calls `method` with form `params`; the answer when `ok` is true.
    pub async fn call(
        &self,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<Value, UpstreamError> {
        self.call_as(method, params).await
    }

    /// Calls `method` with form `params`; the answer, when `ok` is true, decoded as a `T`
    /// (only the fields `T` has are kept).
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<T, UpstreamError> {
        self.call_under(self.transport.policy(), method, params)
            .await
    }

    /// Calls `method` under `policy` (a post that must not be retried blindly has its own).
    pub async fn call_under<T: DeserializeOwned>(
        &self,
        policy: &RetryPolicy,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<T, UpstreamError> {
        let seen = std::sync::Mutex::new(0);
        let limit = self.limit_of(method, params);
        self.transport
            .call(
                policy,
                method,
                limit.as_ref().map(|(key, rate)| (key.as_str(), *rate)),
                || async {
                    let token = self.credential.token().await?;
                    *seen.lock().unwrap_or_else(|p| p.into_inner()) = token.version;
                    self.request(method, params, &token)
                },
                |answer| self.classify(method, answer),
                || async {
                    let version = *seen.lock().unwrap_or_else(|p| p.into_inner());
                    self.credential.refresh_after_expiry(version).await
                },
            )
            .await
    }

    /// The shared limit of a call: one message per second per channel for
    /// `chat.postMessage`, else the method's tier.
    fn limit_of(&self, method: &str, params: &[(&str, String)]) -> Option<(String, Rate)> {
        match (method, params.iter().find(|(k, _)| *k == "channel")) {
            ("chat.postMessage", Some((_, channel))) => Some((
                format!("slack:chat.postMessage:{}:{channel}", self.workspace),
                Rate::per_second(1),
            )),
            _ => tier_of(method).map(|tier| {
                (
                    format!("slack:{method}:{}", self.workspace),
                    Rate::per_minute(self.tiers[tier]),
                )
            }),
        }
    }

    /// The request of one attempt: form parameters, the credential's token.
    fn request(
        &self,
        method: &str,
        params: &[(&str, String)],
        token: &Token,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let url = self.transport.url(&self.base, method, method)?;
        Ok(self
            .transport
            .http()
            .post(url)
            .bearer_auth(token.value.expose_secret())
            .form(params))
    }

    /// Slack's answer: HTTP 429 and 5xx first, then `ok` and its `error`.
    fn classify<T: DeserializeOwned>(
        &self,
        method: &str,
        answer: Answer,
    ) -> Result<T, UpstreamError> {
        let Answer {
            status,
            retry_after,
            body,
        } = answer;
        let failed = |kind, code: Option<String>, message: String| {
            self.transport
                .failure(method, kind, Some(status.as_u16()), code, message)
        };
        if status.as_u16() == 429 {
            return Err(failed(
                FailureKind::RateLimited { retry_after },
                Some("ratelimited".to_owned()),
                "rate limited".to_owned(),
            ));
        }
        if status.is_server_error() {
            return Err(failed(
                FailureKind::Transient,
                None,
                format!("HTTP {status}"),
            ));
        }
        let head: Head = self.transport.decode(method, &body)?;
        if head.ok {
            return self.transport.decode(method, &body);
        }
        let error = head.error.unwrap_or_else(|| "unknown_error".to_owned());
        let kind = match error.as_str() {
            "ratelimited" | "rate_limited" => FailureKind::RateLimited { retry_after },
            "token_expired" => FailureKind::AuthExpired,
            "invalid_auth" if matches!(self.credential, SlackCredential::Rotating(_)) => {
                FailureKind::AuthExpired
            }
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                FailureKind::Transient
            }
            _ => FailureKind::Permanent,
        };
        Err(failed(kind, Some(error.clone()), error))
    }

    /// One page of a cursor-paginated list (`users.list` members, `conversations.list`
    /// channels) from `cursor` ("" for the first page), with the cursor of the next page (""
    /// at the end). Items are decoded straight into `T`.
    pub async fn page<T: DeserializeOwned>(
        &self,
        method: &str,
        params: &[(&str, String)],
        limit: u32,
        cursor: &str,
    ) -> Result<(Vec<T>, String), UpstreamError> {
        let mut page_params: Vec<(&str, String)> = params.to_vec();
        page_params.push(("limit", limit.to_string()));
        if !cursor.is_empty() {
            page_params.push(("cursor", cursor.to_owned()));
        }
        let page: Page<T> = self.call_as(method, &page_params).await?;
        Ok((page.items, page.response_metadata.next_cursor))
    }

    /// Every item of a cursor-paginated list, page by page.
    pub async fn paginate<T: DeserializeOwned>(
        &self,
        method: &str,
        params: &[(&str, String)],
        limit: u32,
        mut each_page: impl FnMut(Vec<T>),
    ) -> Result<(), UpstreamError> {
        let mut cursor = String::new();
        loop {
            let (items, next) = self.page(method, params, limit, &cursor).await?;
            each_page(items);
            if next.is_empty() {
                return Ok(());
            }
            cursor = next;
        }
    }

    pub(crate) async fn cached(&self, key: &str) -> Option<String> {
        let (conn, _, _) = self.cache.as_ref()?;
        let mut conn = conn.clone();
        let value: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .ok()
            .flatten();
        metrics::counter!("slack_cache_lookups_total", "outcome" => if value.is_some() { "hit" } else { "miss" }).increment(1);
        value
    }

    pub(crate) async fn remember(&self, key: &str, value: &str) {
        if let Some((conn, _, ttl)) = &self.cache {
            let mut conn = conn.clone();
            let _: Result<(), _> = redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("EX")
                .arg(ttl.as_secs().max(1))
                .query_async(&mut conn)
                .await;
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        self.cache
            .as_ref()
            .map(|(_, p, _)| p.as_str())
            .unwrap_or("")
    }

    /// The id of channel `name` (without `#`), from the cache or by listing channels.
    pub async fn channel_id_by_name(&self, name: &str) -> Result<Option<String>, UpstreamError> {
        let name = name.trim_start_matches('#');
        let key = cache::channel_by_name(self.prefix(), &self.workspace, name);
        if let Some(id) = self.cached(&key).await {
            return Ok(Some(id));
        }
        let mut found = None;
        self.channels(200, |page| {
            if found.is_none() {
                found = page.into_iter().find(|c| c.name == name).map(|c| c.id);
            }
        })
        .await?;
        if let Some(id) = &found {
            self.remember(&key, id).await;
        }
        Ok(found)
    }

    /// The id of the user with `email` (ignoring case), from the cache or by listing users.
    pub async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, UpstreamError> {
        let key = cache::user_by_email(self.prefix(), &self.workspace, email);
        if let Some(id) = self.cached(&key).await {
            return Ok(Some(id));
        }
        let wanted = email.to_lowercase();
        let mut found = None;
        self.users(200, |page| {
            if found.is_none() {
                found = page
                    .into_iter()
                    .find(|u| {
                        u.profile
                            .email
                            .as_deref()
                            .is_some_and(|e| e.to_lowercase() == wanted)
                    })
                    .map(|u| u.id);
            }
        })
        .await?;
        if let Some(id) = &found {
            self.remember(&key, id).await;
        }
        Ok(found)
    }
}

/// A Slack user (`users.list` member, the fields the service uses).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct SlackUser {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub real_name: Option<String>,
    #[serde(default)]
    pub profile: SlackProfile,
}

/// A user's profile (the email needs the `users:read.email` scope).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct SlackProfile {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub real_name: Option<String>,
}

/// A channel (`conversations.list`/`info`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct SlackChannel {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub is_private: bool,
    #[serde(default)]
    pub is_archived: bool,
    #[serde(default)]
    pub num_members: Option<i64>,
    #[serde(default)]
    pub purpose: SlackText,
    #[serde(default)]
    pub topic: SlackText,
}

/// `{value}` of a purpose or topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct SlackText {
    #[serde(default)]
    pub value: String,
}

/// The channels listed: public and private ones.
fn channel_types() -> [(&'static str, String); 1] {
    [("types", "public_channel,private_channel".to_owned())]
}

/// What every Slack answer says first.
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

/// One page of a cursor-paginated list: the items under the method's key, and the cursor.
#[derive(serde::Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new", alias = "members", alias = "channels")]
    items: Vec<T>,
    #[serde(default)]
    response_metadata: NextCursor,
}

#[derive(Default, serde::Deserialize)]
struct NextCursor {
    #[serde(default)]
    next_cursor: String,
}

/// What `chat.postMessage` answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct PostedMessage {
    pub channel: String,
    pub ts: String,
}

fn typed<T: serde::de::DeserializeOwned>(method: &str, value: Value) -> Result<T, UpstreamError> {
    serde_json::from_value(value).map_err(|e| UpstreamError {
        service: SERVICE,
        endpoint: method.to_owned(),
        kind: FailureKind::Permanent,
        status: None,
        code: None,
        message: format!("unexpected answer shape: {e}"),
    })
}

impl SlackClient {
    /// One page of users from `cursor`, with the next cursor ("" at the end).
    pub async fn users_page(
        &self,
        limit: u32,
        cursor: &str,
    ) -> Result<(Vec<SlackUser>, String), UpstreamError> {
        self.page("users.list", &[], limit, cursor).await
    }

    /// One page of public and private channels from `cursor`, with the next cursor.
    pub async fn channels_page(
        &self,
        limit: u32,
        cursor: &str,
    ) -> Result<(Vec<SlackChannel>, String), UpstreamError> {
        self.page("conversations.list", &channel_types(), limit, cursor)
            .await
    }

    /// Every user, page by page (`limit` per page).
    pub async fn users(
        &self,
        limit: u32,
        each_page: impl FnMut(Vec<SlackUser>),
    ) -> Result<(), UpstreamError> {
        self.paginate("users.list", &[], limit, each_page).await
    }

    /// Every public and private channel, page by page.
    pub async fn channels(
        &self,
        limit: u32,
        each_page: impl FnMut(Vec<SlackChannel>),
    ) -> Result<(), UpstreamError> {
        self.paginate("conversations.list", &channel_types(), limit, each_page)
            .await
    }

    /// `active` or `away`.
    pub async fn presence(&self, user: &str) -> Result<String, UpstreamError> {
        let answer = self
            .call("users.getPresence", &[("user", user.to_owned())])
            .await?;
        Ok(answer["presence"].as_str().unwrap_or("away").to_owned())
    }
}
