//! The control API under `/_sandbox/`: reset, faults, what was sent and requested, and Slack
//! callbacks on command.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::bad_request;
use super::data::Workspace;
use super::data::World;
use super::faults::{Fault, LimitState};
use super::{Shared, callbacks, lock, slack};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/reset", post(reset))
        .route(
            "/_sandbox/faults",
            post(add_faults).delete(clear_faults).get(list_faults),
        )
        .route("/_sandbox/sends", get(sends))
        .route("/_sandbox/requests", get(requests))
        .route("/_sandbox/slack/messages", get(slack_messages))
        .route("/_sandbox/slack/events", post(slack_event))
        .route(
            "/_sandbox/slack/interactions",
            post(super::clicks::slack_interaction),
        )
        .route(
            "/_sandbox/slack/view_submission",
            post(super::clicks::view_submission),
        )
        .route("/_sandbox/slack/response/{id}", post(response_url))
        .route(
            "/_sandbox/slack/commands",
            post(super::commands::slash_command),
        )
}

/// `response_url`: up to N uses within the TTL; `replace_original` changes the message,
/// `delete_original` removes it. 404 once used up or expired.
async fn response_url(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let config = shared.config();
    let target = {
        let mut urls = lock(&shared.response_urls);
        match urls.get_mut(&id) {
            Some(u)
                if u.uses < config.slack_response_url_uses
                    && std::time::Instant::now() < u.expires =>
            {
                u.uses += 1;
                Some((u.channel.clone(), u.message_ts.clone(), u.user.clone()))
            }
            _ => None,
        }
    };
    let Some((channel, ts, user)) = target else {
        return (StatusCode::NOT_FOUND, "expired_url").into_response();
    };
    let mut world = lock(&shared.world);
    if body["response_type"] == "ephemeral" && body["replace_original"] != true {
        world.workspace.ephemerals.push(json!({ "channel": channel, "user": user, "text": body["text"], "blocks": body.get("blocks"), "via": "response_url" }));
        return (StatusCode::OK, "ok").into_response();
    }
    let key = (channel, ts);
    if body["delete_original"].as_bool() == Some(true) {
        world.workspace.messages.remove(&key);
    } else if body["replace_original"].as_bool() == Some(true)
        && let Some(message) = world.workspace.messages.get_mut(&key)
    {
        message.text = body["text"].as_str().unwrap_or("").to_owned();
        message.blocks = body.get("blocks").cloned().unwrap_or(Value::Null);
    }
    (StatusCode::OK, "ok").into_response()
}

async fn reset(State(shared): State<Arc<Shared>>) -> Response {
    let seed = shared.config().seed.clone();
    *lock(&shared.world) = World::seeded(&seed);
    lock(&shared.sends).clear();
    lock(&shared.requests).clear();
    lock(&shared.faults).clear();
    *lock(&shared.limits) = LimitState::default();
    *lock(&shared.tokens) = slack::Tokens::default();
    lock(&shared.response_urls).clear();
    axum::Json(json!({ "reset": true })).into_response()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FaultRequest {
    Expire { expire_tokens: bool },
    Many(Vec<Fault>),
    One(Fault),
}

async fn add_faults(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(format!(
                "expected a fault, a list of faults or {{\"expire_tokens\": true}}: {e}"
            ));
        }
    };
    let faults = match request {
        FaultRequest::Expire { expire_tokens } => {
            if expire_tokens {
                slack::expire_all(&shared);
            }
            return axum::Json(json!({ "expired_tokens": expire_tokens })).into_response();
        }
        FaultRequest::Many(f) => f,
        FaultRequest::One(f) => vec![f],
    };
    for fault in &faults {
        if !(0.0..=1.0).contains(&fault.error_rate) || !(0.0..=1.0).contains(&fault.drop_rate) {
            return bad_request("error_rate and drop_rate must be between 0 and 1".to_owned());
        }
    }
    let mut stored = lock(&shared.faults);
    for mut fault in faults {
        fault.storm_until = fault
            .rate_limit_for_secs
            .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
        stored.push(fault);
    }
    axum::Json(json!({ "faults": stored.len() })).into_response()
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    lock(&shared.faults).clear();
    axum::Json(json!({ "faults": 0 })).into_response()
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(json!({ "faults": *lock(&shared.faults) })).into_response()
}

/// `GET /_sandbox/sends[?list=false]`: what `list=false` leaves out is the list itself, for
/// callers that need only the counts of a very large send.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendsQuery {
    #[serde(default = "listed")]
    list: bool,
}

fn listed() -> bool {
    true
}

async fn sends(State(shared): State<Arc<Shared>>, Query(query): Query<SendsQuery>) -> Response {
    let all = lock(&shared.sends);
    let accepted: u64 = all.values().map(|s| u64::from(s.accepted)).sum();
    let duplicates = all.values().filter(|s| s.accepted > 1).count();
    let events = *lock(&shared.event_counts);
    let mut answer = json!({ "messages": all.len(), "accepted": accepted, "duplicates": duplicates, "events": events });
    if query.list {
        let sends: Vec<&super::SendRecord> = all.values().collect();
        answer["sends"] = json!(sends);
    }
    drop(all);
    axum::Json(answer).into_response()
}

/// Every Slack message posted (with its thread, metadata, reactions and how often it was
/// updated), every ephemeral message and every modal opened: what users would have seen.
async fn slack_messages(State(shared): State<Arc<Shared>>) -> Response {
    let world = lock(&shared.world);
    let ws = &world.workspace;
    let mut messages: Vec<&super::data::SlackMessage> = ws.messages.values().collect();
    messages.sort_by(|a, b| (&a.channel, &a.ts).cmp(&(&b.channel, &b.ts)));
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|m| json!({ "channel": m.channel, "ts": m.ts, "thread_ts": m.thread_ts, "text": m.text, "blocks": m.blocks,
            "metadata": m.metadata, "reactions": m.reactions, "updates": m.updates, "attachments": m.attachments, "pinned": m.pinned }))
        .collect();
    axum::Json(json!({ "messages": messages, "ephemerals": ws.ephemerals, "views": ws.views }))
        .into_response()
}

async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(json!({ "endpoints": *lock(&shared.requests) })).into_response()
}

/// What to emit: `type` is user_change, team_join, channel_created, channel_rename,
/// member_joined_channel or message; the other fields say which user or channel and what
/// changed (or, for a message, who posted where, in which thread).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventRequest {
    #[serde(rename = "type")]
    kind: String,
    user: Option<String>,
    channel: Option<String>,
    name: Option<String>,
    email: Option<String>,
    real_name: Option<String>,
    deleted: Option<bool>,
    /// A `message`'s text.
    text: Option<String>,
    /// A `message` replying in this thread.
    thread_ts: Option<String>,
    /// Deliver this exact envelope again (a replay), instead of a new event.
    replay: Option<Value>,
}

async fn slack_event(
    State(shared): State<Arc<Shared>>,
    axum::Json(request): axum::Json<EventRequest>,
) -> Response {
    let Some(url) = shared.config().slack_events_url.clone() else {
        return bad_request("no slack_events_url is configured".to_owned());
    };
    let envelope = match request.replay.clone() {
        Some(envelope) => envelope,
        None => match apply_event(&shared, &request) {
            Ok(event) => callbacks::envelope(&shared, event),
            Err(e) => return bad_request(e),
        },
    };
    let event_id = envelope["event_id"].clone();
    let delivery = callbacks::deliver_event(shared.clone(), url, envelope.clone()).await;
    axum::Json(json!({ "event_id": event_id, "envelope": envelope, "first_delivery": delivery }))
        .into_response()
}

/// Changes the workspace as the event says, and returns the inner event.
fn apply_event(shared: &Shared, r: &EventRequest) -> Result<Value, String> {
    let mut world = lock(&shared.world);
    let ws = &mut world.workspace;
    let now = super::data::now();
    match r.kind.as_str() {
        "user_change" | "team_join" => user_event(ws, r, now),
        "channel_created" => channel_created(ws, r, now),
        "channel_rename" => channel_rename(ws, r, now),
        "member_joined_channel" => member_joined(ws, r, now),
        "message" => user_message(ws, r),
        other => Err(format!(
            "unsupported event type {other:?}; expected user_change, team_join, channel_created, channel_rename, member_joined_channel or message"
        )),
    }
}

/// A person posts in a channel (`message.channels`): the event Slack sends, with a `ts`
/// after the channel's last.
fn user_message(ws: &mut Workspace, r: &EventRequest) -> Result<Value, String> {
    let user = r.user.clone().ok_or("message needs \"user\"")?;
    let channel_id = r.channel.clone().ok_or("message needs \"channel\"")?;
    let channel = ws
        .channels
        .iter_mut()
        .find(|c| c.id == channel_id)
        .ok_or_else(|| format!("no channel {channel_id}"))?;
    let now = chrono::Utc::now();
    let mut next = (now.timestamp(), i64::from(now.timestamp_subsec_micros()));
    if next <= channel.last_ts {
        next = (channel.last_ts.0, channel.last_ts.1 + 1);
        if next.1 >= 1_000_000 {
            next = (next.0 + 1, 0);
        }
    }
    channel.last_ts = next;
    let ts = format!("{}.{:06}", next.0, next.1);
    let mut event = json!({
        "type": "message", "channel": channel_id, "user": user, "text": r.text.clone().unwrap_or_default(),
        "ts": ts, "event_ts": ts, "channel_type": if channel.is_private { "group" } else { "channel" },
        "team": ws.team_id, "blocks": [{ "type": "rich_text", "block_id": "sb1", "elements": [] }],
    });
    if let Some(parent) = &r.thread_ts {
        event["thread_ts"] = json!(parent);
    }
    Ok(event)
}

/// `team_join` adds a user, `user_change` changes one.
fn user_event(ws: &mut Workspace, r: &EventRequest, now: i64) -> Result<Value, String> {
    let team = ws.team_id.clone();
    let user = if r.kind == "team_join" {
        let id = r
            .user
            .clone()
            .unwrap_or_else(|| format!("U{:08X}", 0x4000_0000u32 as usize + ws.users.len()));
        let email = r
            .email
            .clone()
            .unwrap_or_else(|| format!("{}@example.com", id.to_lowercase()));
        ws.users.push(super::data::SlackUser {
            id: id.clone(),
            name: id.to_lowercase(),
            real_name: r.real_name.clone().unwrap_or_default(),
            display_name: id.to_lowercase(),
            email,
            deleted: false,
            is_bot: false,
            presence: "active",
            updated: now,
        });
        ws.users.last_mut().ok_or("no user")?
    } else {
        let id = r.user.as_deref().ok_or("user_change needs \"user\"")?;
        ws.users
            .iter_mut()
            .find(|u| u.id == id)
            .ok_or_else(|| format!("no user {id}"))?
    };
    if let Some(email) = &r.email {
        user.email = email.clone();
    }
    if let Some(real_name) = &r.real_name {
        user.real_name = real_name.clone();
    }
    if let Some(deleted) = r.deleted {
        user.deleted = deleted;
    }
    user.updated = now;
    Ok(
        json!({ "type": r.kind, "user": user.to_json(&team), "cache_ts": now, "event_ts": format!("{now}.000100") }),
    )
}

fn channel_created(ws: &mut Workspace, r: &EventRequest, now: i64) -> Result<Value, String> {
    let name = r.name.clone().ok_or("channel_created needs \"name\"")?;
    let id = format!("C{:08X}", 0x5000_0000u32 as usize + ws.channels.len());
    let creator = ws.bot_user_id.clone();
    ws.channels.push(super::data::SlackChannel {
        id: id.clone(),
        name: name.clone(),
        purpose: String::new(),
        topic: String::new(),
        is_private: false,
        is_archived: false,
        created: now,
        creator: creator.clone(),
        members: vec![creator.clone()],
        previous_names: Vec::new(),
        last_ts: (0, 0),
        im_user: None,
    });
    Ok(
        json!({ "type": "channel_created", "channel": { "id": id, "name": name, "name_normalized": name, "created": now, "creator": creator, "is_channel": true, "is_private": false }, "event_ts": format!("{now}.000200") }),
    )
}

fn channel_rename(ws: &mut Workspace, r: &EventRequest, now: i64) -> Result<Value, String> {
    let id = r
        .channel
        .as_deref()
        .ok_or("channel_rename needs \"channel\"")?;
    let name = r.name.clone().ok_or("channel_rename needs \"name\"")?;
    let channel = ws
        .channels
        .iter_mut()
        .find(|c| c.id == id)
        .ok_or_else(|| format!("no channel {id}"))?;
    let old = std::mem::replace(&mut channel.name, name.clone());
    channel.previous_names.push(old);
    Ok(
        json!({ "type": "channel_rename", "channel": { "id": id, "name": name, "name_normalized": name, "created": channel.created, "is_channel": true, "is_mpim": false }, "event_ts": format!("{now}.000300") }),
    )
}

fn member_joined(ws: &mut Workspace, r: &EventRequest, now: i64) -> Result<Value, String> {
    let team = ws.team_id.clone();
    let user = r
        .user
        .clone()
        .ok_or("member_joined_channel needs \"user\"")?;
    let id = r
        .channel
        .as_deref()
        .ok_or("member_joined_channel needs \"channel\"")?;
    let channel = ws
        .channels
        .iter_mut()
        .find(|c| c.id == id)
        .ok_or_else(|| format!("no channel {id}"))?;
    if !channel.members.contains(&user) {
        channel.members.push(user.clone());
    }
    Ok(
        json!({ "type": "member_joined_channel", "user": user, "channel": id, "channel_type": "C", "team": team, "event_ts": format!("{now}.000400") }),
    )
}
