//! Messages: posting with metadata (never retried blindly: `chat.postMessage` has no
//! idempotency key), finding a post again by its metadata, updates, ephemerals, pins, DMs,
//! modals and user-group members.

use std::time::Duration;

use serde_json::Value;

use super::{PostedMessage, SlackClient, cache, typed};
use crate::clients::error::UpstreamError;
use crate::clients::retry::RetryPolicy;

/// The metadata event type of every message the service posts.
pub const METADATA_EVENT: &str = "campaign_sync_post";

/// A message to post.
#[derive(Debug, Clone, Default)]
pub struct Message<'a> {
    pub channel: &'a str,
    pub text: &'a str,
    pub blocks: Option<&'a Value>,
    /// Legacy attachments (a coloured bar with fields).
    pub attachments: Option<&'a Value>,
    pub thread_ts: Option<&'a str>,
    /// `metadata.event_payload`.
    pub metadata: Option<Value>,
}

/// A message found in a channel's history: its ts and `metadata.event_payload`.
#[derive(Debug, Clone)]
pub struct Found {
    pub ts: String,
    pub payload: Value,
}

#[derive(serde::Deserialize)]
struct HistoryPage {
    #[serde(default)]
    messages: Vec<HistoryMessage>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    response_metadata: Option<super::NextCursor>,
}

#[derive(serde::Deserialize)]
struct HistoryMessage {
    ts: String,
    #[serde(default)]
    metadata: Option<MessageMetadata>,
}

#[derive(serde::Deserialize)]
struct MessageMetadata {
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    event_payload: Value,
}

/// A post is made once: rate limits are waited out (nothing was posted), anything else is
/// handed back for the caller to settle (a timeout may have posted it).
fn post_policy(base: &RetryPolicy) -> RetryPolicy {
    RetryPolicy {
        max_retries: 0,
        ..base.clone()
    }
}

impl SlackClient {
    /// Posts `message` once (see [`post_policy`]), with `metadata` as
    /// `{event_type: campaign_sync_post, event_payload}`.
    pub async fn post(&self, message: &Message<'_>) -> Result<PostedMessage, UpstreamError> {
        let mut params = vec![
            ("channel", message.channel.to_owned()),
            ("text", message.text.to_owned()),
        ];
        if let Some(blocks) = message
            .blocks
            .filter(|b| b.as_array().is_some_and(|a| !a.is_empty()))
        {
            params.push(("blocks", blocks.to_string()));
        }
        if let Some(attachments) = message
            .attachments
            .filter(|b| b.as_array().is_some_and(|a| !a.is_empty()))
        {
            params.push(("attachments", attachments.to_string()));
        }
        if let Some(ts) = message.thread_ts {
            params.push(("thread_ts", ts.to_owned()));
        }
        if let Some(payload) = &message.metadata {
            let metadata =
                serde_json::json!({ "event_type": METADATA_EVENT, "event_payload": payload });
            params.push(("metadata", metadata.to_string()));
        }
        let policy = post_policy(self.transport.policy());
        let answer: Value = self
            .call_under(&policy, "chat.postMessage", &params)
            .await?;
        typed("chat.postMessage", answer)
    }

    /// The service's messages in `channel` (or in the thread `thread_ts`) since `oldest`
    /// (unix seconds), with their metadata payloads; at most `pages` pages of 200.
    pub async fn posted_since(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        oldest: f64,
        pages: usize,
    ) -> Result<Vec<Found>, UpstreamError> {
        let method = if thread_ts.is_some() {
            "conversations.replies"
        } else {
            "conversations.history"
        };
        let mut params = vec![
            ("channel", channel.to_owned()),
            ("oldest", format!("{oldest:.6}")),
            ("include_all_metadata", "true".to_owned()),
            ("limit", "200".to_owned()),
        ];
        if let Some(ts) = thread_ts {
            params.push(("ts", ts.to_owned()));
        }
        let mut found = Vec::new();
        let mut cursor = String::new();
        for _ in 0..pages.max(1) {
            let mut page_params = params.clone();
            if !cursor.is_empty() {
                page_params.push(("cursor", cursor.clone()));
            }
            let page: HistoryPage = self.call_as(method, &page_params).await?;
            found.extend(page.messages.into_iter().filter_map(|m| {
                let meta = m.metadata?;
                (meta.event_type == METADATA_EVENT).then_some(Found {
                    ts: m.ts,
                    payload: meta.event_payload,
                })
            }));
            cursor = page
                .response_metadata
                .map(|r| r.next_cursor)
                .unwrap_or_default();
            if !page.has_more || cursor.is_empty() {
                break;
            }
        }
        Ok(found)
    }

    /// Replaces the text and blocks of message `ts` in `channel`.
    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
        attachments: &Value,
    ) -> Result<(), UpstreamError> {
        let params = [
            ("channel", channel.to_owned()),
            ("ts", ts.to_owned()),
            ("text", text.to_owned()),
            ("blocks", blocks.to_string()),
            ("attachments", attachments.to_string()),
        ];
        self.call("chat.update", &params).await.map(|_| ())
    }

    /// Shows `text` to `user` only, in `channel` (or its thread).
    pub async fn ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> Result<(), UpstreamError> {
        let mut params = vec![
            ("channel", channel.to_owned()),
            ("user", user.to_owned()),
            ("text", text.to_owned()),
        ];
        if let Some(ts) = thread_ts {
            params.push(("thread_ts", ts.to_owned()));
        }
        self.call("chat.postEphemeral", &params).await.map(|_| ())
    }

    /// Answers an interaction through its `response_url`, seen by the clicker alone.
    pub async fn respond(&self, response_url: &str, text: &str) -> Result<(), UpstreamError> {
        let failed = |kind, status: Option<u16>, message: String| {
            self.transport
                .failure("response_url", kind, status, None, message)
        };
        let body = serde_json::json!({ "response_type": "ephemeral", "replace_original": false, "text": text });
        let answer = self
            .transport
            .http()
            .post(response_url)
            .json(&body)
            .send()
            .await
            .map_err(|e| crate::clients::transport::transport_error("slack", "response_url", &e))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 429 {
            Err(failed(
                crate::clients::error::FailureKind::Transient,
                Some(status.as_u16()),
                format!("HTTP {status}"),
            ))
        } else {
            Err(failed(
                crate::clients::error::FailureKind::Permanent,
                Some(status.as_u16()),
                format!("HTTP {status}"),
            ))
        }
    }

    /// Pins message `ts` of `channel` (pinned already counts as done).
    pub async fn pin(&self, channel: &str, ts: &str) -> Result<(), UpstreamError> {
        let params = [
            ("channel", channel.to_owned()),
            ("timestamp", ts.to_owned()),
        ];
        match self.call("pins.add", &params).await {
            Err(e) if e.code.as_deref() == Some("already_pinned") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The DM channel with `user` (`conversations.open`), cached.
    pub async fn dm_channel(&self, user: &str) -> Result<String, UpstreamError> {
        let key = cache::dm_channel(self.prefix(), &self.workspace, user);
        if let Some(id) = self.cached(&key).await {
            return Ok(id);
        }
        let answer = self
            .call("conversations.open", &[("users", user.to_owned())])
            .await?;
        let id = answer
            .pointer("/channel/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if id.is_empty() {
            return Err(self.transport.failure(
                "conversations.open",
                crate::clients::error::FailureKind::Permanent,
                None,
                None,
                "the answer has no channel id".to_owned(),
            ));
        }
        self.remember(&key, &id).await;
        Ok(id)
    }

    /// The Slack user with `email` (`users.lookupByEmail`), cached; None when there is none.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<String>, UpstreamError> {
        let key = cache::user_by_email(self.prefix(), &self.workspace, email);
        if let Some(id) = self.cached(&key).await {
            return Ok(Some(id));
        }
        match self
            .call("users.lookupByEmail", &[("email", email.to_owned())])
            .await
        {
            Ok(answer) => {
                let id = answer.pointer("/user/id").and_then(Value::as_str);
                if let Some(id) = id {
                    self.remember(&key, id).await;
                }
                Ok(id.map(str::to_owned))
            }
            Err(e) if e.code.as_deref() == Some("users_not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens modal `view` for the click `trigger_id` (valid for 3 s after the click).
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), UpstreamError> {
        let params = [
            ("trigger_id", trigger_id.to_owned()),
            ("view", view.to_string()),
        ];
        let policy = RetryPolicy {
            max_retries: 1,
            max_elapsed: Duration::from_secs(2),
            max_inline_wait: Duration::from_millis(500),
            ..self.transport.policy().clone()
        };
        self.call_under::<Value>(&policy, "views.open", &params)
            .await
            .map(|_| ())
    }

    /// The members of user group `group` (its id), cached for the look-up TTL.
    pub async fn usergroup_members(&self, group: &str) -> Result<Vec<String>, UpstreamError> {
        let key = cache::usergroup(self.prefix(), &self.workspace, group);
        if let Some(list) = self.cached(&key).await {
            return Ok(list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect());
        }
        let answer = self
            .call("usergroups.users.list", &[("usergroup", group.to_owned())])
            .await?;
        let users: Vec<String> = answer["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect();
        self.remember(&key, &users.join(",")).await;
        Ok(users)
    }
}
