//! Messages: `chat.postMessage` (threads, message metadata), `chat.update`, `reactions.add`,
//! `chat.postEphemeral`, `chat.getPermalink`, `conversations.open` (DMs),
//! `conversations.history` (with `include_all_metadata`) and `views.open`. Everything posted is
//! kept for `GET /_sandbox/slack/messages`.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};

use super::{arg, decode_cursor, encode_cursor, err, find_channel, flag, number, ok};
use crate::sandbox::data::SlackChannel;
use crate::sandbox::{Shared, lock};

/// The message methods other than `chat.postMessage`; None for any other method.
pub(super) fn call(
    shared: &Shared,
    method: &str,
    params: &HashMap<String, Value>,
) -> Option<Value> {
    Some(match method {
        "conversations.open" => conversations_open(shared, params),
        "conversations.history" => conversations_history(shared, params),
        "conversations.replies" => conversations_replies(shared, params),
        "chat.postEphemeral" => post_ephemeral(shared, params),
        "chat.getPermalink" => permalink(shared, params),
        "views.open" => views_open(shared, params),
        "chat.update" => chat_update(shared, params),
        "reactions.add" => reactions_add(shared, params),
        "pins.add" => pins_add(shared, params),
        _ => return None,
    })
}

/// A JSON parameter given as a string (form, query) or as JSON (a JSON body).
fn json_param(params: &HashMap<String, Value>, name: &str) -> Option<Value> {
    match params.get(name)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        v => Some(v.clone()),
    }
}

/// About one message per second per channel, with a burst of three.
fn channel_allows(shared: &Shared, channel: &str) -> Result<(), u64> {
    let rate = shared.config().slack_post_per_channel_per_sec.max(1) as f64;
    let burst = 3.0_f64.max(rate);
    let mut limits = lock(&shared.limits);
    let now = Instant::now();
    let (tokens, last) = limits
        .channels
        .entry(channel.to_owned())
        .or_insert((burst, now));
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        Ok(())
    } else {
        Err(1)
    }
}

pub(super) fn post_message(shared: &Shared, params: &HashMap<String, Value>) -> Result<Value, u64> {
    let text = arg(params, "text").unwrap_or("").to_owned();
    let blocks = match params.get("blocks") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    if text.is_empty() && !blocks.is_array() {
        return Ok(err("no_text"));
    }
    if blocks.as_array().is_some_and(|b| b.len() > 50) {
        return Ok(err("invalid_blocks"));
    }
    let channel_id = {
        let mut world = lock(&shared.world);
        match arg(params, "channel").and_then(|c| find_channel(&mut world.workspace.channels, c)) {
            None => return Ok(err("channel_not_found")),
            Some(c) if c.is_archived => return Ok(err("is_archived")),
            Some(c) => c.id.clone(),
        }
    };
    channel_allows(shared, &channel_id)?;
    let mut world = lock(&shared.world);
    let ws = &mut world.workspace;
    let Some(channel) = ws.channels.iter_mut().find(|c| c.id == channel_id) else {
        return Ok(err("channel_not_found"));
    };
    let now = chrono::Utc::now();
    let (mut secs, mut micros) = (now.timestamp(), i64::from(now.timestamp_subsec_micros()));
    if (secs, micros) <= channel.last_ts {
        (secs, micros) = channel.last_ts;
        micros += 1;
        if micros >= 1_000_000 {
            secs += 1;
            micros = 0;
        }
    }
    channel.last_ts = (secs, micros);
    let ts = format!("{secs}.{micros:06}");
    let thread_ts = arg(params, "thread_ts").map(str::to_owned);
    if let Some(parent) = &thread_ts
        && !ws
            .messages
            .contains_key(&(channel_id.clone(), parent.clone()))
    {
        return Ok(err("thread_not_found"));
    }
    let Some(metadata) = metadata_of(params) else {
        return Ok(err("invalid_metadata_format"));
    };
    let stored = crate::sandbox::data::SlackMessage {
        channel: channel_id.clone(),
        ts: ts.clone(),
        text,
        blocks,
        reactions: Vec::new(),
        thread_ts,
        metadata,
        updates: 0,
        attachments: json_param(params, "attachments").unwrap_or(Value::Null),
        pinned: false,
    };
    let message = message_json(&stored, true);
    ws.messages.insert((channel_id.clone(), ts.clone()), stored);
    Ok(ok(
        json!({ "channel": channel_id, "ts": ts, "message": message }),
    ))
}

/// The message metadata posted (Null without any); None when it is not
/// `{event_type: string, event_payload: object}`.
fn metadata_of(params: &HashMap<String, Value>) -> Option<Value> {
    let metadata = json_param(params, "metadata").unwrap_or(Value::Null);
    let well_formed = metadata["event_type"].is_string() && metadata["event_payload"].is_object();
    (metadata.is_null() || well_formed).then_some(metadata)
}

pub(super) fn chat_update(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let (Some(channel), Some(ts)) = (arg(params, "channel"), arg(params, "ts")) else {
        return err("message_not_found");
    };
    let mut world = lock(&shared.world);
    let Some(message) = message_mut(&mut world, channel, ts) else {
        return err("message_not_found");
    };
    message.updates += 1;
    if let Some(text) = arg(params, "text") {
        message.text = text.to_owned();
    }
    match params.get("blocks") {
        Some(Value::String(s)) => message.blocks = serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => message.blocks = v.clone(),
        None => {}
    }
    if let Some(attachments) = json_param(params, "attachments") {
        message.attachments = attachments;
    }
    ok(
        json!({ "channel": channel, "ts": ts, "text": message.text, "message": { "text": message.text, "blocks": message.blocks } }),
    )
}

pub(super) fn reactions_add(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let (Some(channel), Some(ts)) = (arg(params, "channel"), arg(params, "timestamp")) else {
        return err("no_item_specified");
    };
    let Some(name) = arg(params, "name") else {
        return err("invalid_name");
    };
    let mut world = lock(&shared.world);
    let Some(message) = message_mut(&mut world, channel, ts) else {
        return err("message_not_found");
    };
    if message.reactions.iter().any(|r| r == name) {
        return err("already_reacted");
    }
    message.reactions.push(name.to_owned());
    ok(json!({}))
}

/// The posted message `ts` of `channel`.
fn message_mut<'a>(
    world: &'a mut crate::sandbox::data::World,
    channel: &str,
    ts: &str,
) -> Option<&'a mut crate::sandbox::data::SlackMessage> {
    world
        .workspace
        .messages
        .get_mut(&(channel.to_owned(), ts.to_owned()))
}

/// A message as `conversations.history` and `chat.postMessage` give it.
pub(crate) fn message_json(m: &crate::sandbox::data::SlackMessage, with_metadata: bool) -> Value {
    let mut message = json!({ "type": "message", "subtype": "bot_message", "bot_id": "B0SANDBOT1", "username": "campaign-sync",
        "text": m.text, "ts": m.ts, "blocks": m.blocks });
    if let Some(parent) = &m.thread_ts {
        message["thread_ts"] = json!(parent);
    }
    if with_metadata && !m.metadata.is_null() {
        message["metadata"] = m.metadata.clone();
    }
    if m.attachments.as_array().is_some_and(|a| !a.is_empty()) {
        message["attachments"] = m.attachments.clone();
    }
    if m.pinned {
        message["pinned_to"] = json!([m.channel]);
    }
    if m.updates > 0 {
        message["edited"] = json!({ "user": "U0SANDBOT1", "ts": m.ts });
    }
    message
}

/// `conversations.open`: the DM channel with one user (the same one every time).
pub(super) fn conversations_open(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let Some(users) = arg(params, "users") else {
        return err("users_list_not_supplied");
    };
    if users.contains(',') {
        return err("not_supported");
    }
    let mut world = lock(&shared.world);
    let ws = &mut world.workspace;
    if !ws.users.iter().any(|u| u.id == users && !u.deleted) {
        return err("user_not_found");
    }
    let id = format!("D{}", users.trim_start_matches(['U', 'W']));
    if !ws.channels.iter().any(|c| c.id == id) {
        ws.channels.push(SlackChannel {
            id: id.clone(),
            name: String::new(),
            purpose: String::new(),
            topic: String::new(),
            is_private: true,
            is_archived: false,
            created: crate::sandbox::data::now(),
            creator: users.to_owned(),
            members: vec![users.to_owned(), ws.bot_user_id.clone()],
            previous_names: Vec::new(),
            last_ts: (0, 0),
            im_user: Some(users.to_owned()),
        });
    }
    ok(json!({ "channel": { "id": id } }))
}

/// `conversations.history`: newest first, `limit` (default 100, at most 999) per page, top-level
/// messages only (replies stay in their thread), metadata with `include_all_metadata`.
pub(super) fn conversations_history(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let limit = number(params, "limit").unwrap_or(100);
    if !(1..1000).contains(&limit) {
        return err("invalid_limit");
    }
    let start = match decode_cursor("history", arg(params, "cursor")) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let with_metadata = flag(params, "include_all_metadata");
    let mut world = lock(&shared.world);
    let Some(channel) =
        arg(params, "channel").and_then(|c| find_channel(&mut world.workspace.channels, c))
    else {
        return err("channel_not_found");
    };
    let channel = channel.id.clone();
    let mut messages: Vec<&crate::sandbox::data::SlackMessage> = world
        .workspace
        .messages
        .values()
        .filter(|m| m.channel == channel && m.thread_ts.is_none() && after_oldest(params, &m.ts))
        .collect();
    messages.sort_by_key(|m| std::cmp::Reverse(ts_key(&m.ts)));
    let end = (start + limit as usize).min(messages.len());
    let page: Vec<Value> = messages
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|m| message_json(m, with_metadata))
        .collect();
    let more = end < messages.len();
    let next = if more {
        encode_cursor("history", end)
    } else {
        String::new()
    };
    ok(
        json!({ "messages": page, "has_more": more, "pin_count": 0, "response_metadata": { "next_cursor": next } }),
    )
}

/// Whether `ts` is after the `oldest` parameter (exclusive, as Slack's), if any.
fn after_oldest(params: &HashMap<String, Value>, ts: &str) -> bool {
    match arg(params, "oldest") {
        Some(oldest) => ts_key(ts) > ts_key(oldest),
        None => true,
    }
}

/// `conversations.replies`: the parent and its replies, oldest first, `limit` per page,
/// metadata with `include_all_metadata`; `oldest` bounds the replies.
pub(super) fn conversations_replies(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let limit = number(params, "limit").unwrap_or(100);
    if !(1..1000).contains(&limit) {
        return err("invalid_limit");
    }
    let start = match decode_cursor("replies", arg(params, "cursor")) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let Some(parent) = arg(params, "ts") else {
        return err("thread_not_found");
    };
    let with_metadata = flag(params, "include_all_metadata");
    let mut world = lock(&shared.world);
    let Some(channel) =
        arg(params, "channel").and_then(|c| find_channel(&mut world.workspace.channels, c))
    else {
        return err("channel_not_found");
    };
    let channel = channel.id.clone();
    let messages = &world.workspace.messages;
    let Some(head) = messages.get(&(channel.clone(), parent.to_owned())) else {
        return err("thread_not_found");
    };
    let mut thread: Vec<&crate::sandbox::data::SlackMessage> = messages
        .values()
        .filter(|m| {
            m.channel == channel
                && m.thread_ts.as_deref() == Some(parent)
                && after_oldest(params, &m.ts)
        })
        .collect();
    thread.sort_by_key(|m| ts_key(&m.ts));
    thread.insert(0, head);
    let end = (start + limit as usize).min(thread.len());
    let page: Vec<Value> = thread
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|m| message_json(m, with_metadata))
        .collect();
    let more = end < thread.len();
    let next = if more {
        encode_cursor("replies", end)
    } else {
        String::new()
    };
    ok(json!({ "messages": page, "has_more": more, "response_metadata": { "next_cursor": next } }))
}

/// `pins.add`: pins a message of the channel.
pub(super) fn pins_add(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let (Some(channel), Some(ts)) = (arg(params, "channel"), arg(params, "timestamp")) else {
        return err("no_item_specified");
    };
    let mut world = lock(&shared.world);
    let Some(message) = message_mut(&mut world, channel, ts) else {
        return err("message_not_found");
    };
    if message.pinned {
        return err("already_pinned");
    }
    message.pinned = true;
    ok(json!({}))
}

fn ts_key(ts: &str) -> (i64, i64) {
    let (secs, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    (secs.parse().unwrap_or(0), micros.parse().unwrap_or(0))
}

/// `chat.postEphemeral`: seen by one member of the channel only; kept for the control API.
pub(super) fn post_ephemeral(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let text = arg(params, "text").unwrap_or("").to_owned();
    let blocks = json_param(params, "blocks").unwrap_or(Value::Null);
    if text.is_empty() && !blocks.is_array() {
        return err("no_text");
    }
    let mut world = lock(&shared.world);
    let Some(user) = arg(params, "user").map(str::to_owned) else {
        return err("user_not_found");
    };
    let Some(channel) =
        arg(params, "channel").and_then(|c| find_channel(&mut world.workspace.channels, c))
    else {
        return err("channel_not_found");
    };
    if !channel.members.contains(&user) {
        return err("user_not_in_channel");
    }
    let channel = channel.id.clone();
    let ts = format!(
        "{}.{:06}",
        crate::sandbox::data::now(),
        world.workspace.ephemerals.len() % 1_000_000
    );
    world.workspace.ephemerals.push(json!({ "channel": channel, "user": user, "text": text, "blocks": blocks, "message_ts": ts, "thread_ts": arg(params, "thread_ts") }));
    ok(json!({ "message_ts": ts }))
}

/// `chat.getPermalink`: the message's link, as Slack forms it.
pub(super) fn permalink(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let (Some(channel), Some(ts)) = (arg(params, "channel"), arg(params, "message_ts")) else {
        return err("invalid_arguments");
    };
    let world = lock(&shared.world);
    let Some(m) = world
        .workspace
        .messages
        .get(&(channel.to_owned(), ts.to_owned()))
    else {
        return err("message_not_found");
    };
    let mut link = format!(
        "https://sandbox.slack.com/archives/{channel}/p{}",
        ts.replace('.', "")
    );
    if let Some(parent) = &m.thread_ts {
        link.push_str(&format!("?thread_ts={parent}&cid={channel}"));
    }
    ok(json!({ "channel": channel, "permalink": link }))
}

/// `views.open`: a modal for a click's `trigger_id` (Slack's expire after 3 s; any the sandbox
/// issued or a test made up is taken), kept for the control API.
pub(super) fn views_open(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let Some(trigger) = arg(params, "trigger_id").filter(|t| !t.is_empty()) else {
        return err("invalid_trigger_id");
    };
    let Some(view) = json_param(params, "view").filter(|v| v.is_object()) else {
        return err("invalid_arguments");
    };
    if view["type"] != "modal" || !view["title"].is_object() || !view["blocks"].is_array() {
        return err("invalid_arguments");
    }
    let mut world = lock(&shared.world);
    let id = format!("V{:010}", world.workspace.views.len() + 1);
    let mut opened = view.clone();
    opened["id"] = json!(id);
    opened["trigger_id"] = json!(trigger);
    world.workspace.views.push(opened.clone());
    ok(json!({ "view": opened }))
}
