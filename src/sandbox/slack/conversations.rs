//! Channels: `conversations.list|info|members|create|rename|archive`.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{arg, err, find_channel, flag, number, ok, paginate};
use crate::sandbox::data::SlackChannel;
use crate::sandbox::{Shared, lock};

pub(super) fn conversations_list(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    if number(params, "limit").is_some_and(|l| !(1..1000).contains(&l)) {
        return err("invalid_limit");
    }
    let types = arg(params, "types").unwrap_or("public_channel");
    let (public, private) = (
        types.contains("public_channel"),
        types.contains("private_channel"),
    );
    let exclude_archived = flag(params, "exclude_archived");
    let world = lock(&shared.world);
    let channels: Vec<&SlackChannel> = world
        .workspace
        .channels
        .iter()
        .filter(|c| c.im_user.is_none() || types.contains("im"))
        .filter(|c| c.im_user.is_some() || (c.is_private && private) || (!c.is_private && public))
        .filter(|c| !(exclude_archived && c.is_archived))
        .collect();
    paginate(shared, "channel", &channels, params, 100, "channels", |c| {
        c.to_json(true)
    })
}

pub(super) fn conversations_info(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let mut world = lock(&shared.world);
    let include = flag(params, "include_num_members");
    match arg(params, "channel").and_then(|c| find_channel(&mut world.workspace.channels, c)) {
        Some(channel) => ok(json!({ "channel": channel.to_json(include) })),
        None => err("channel_not_found"),
    }
}

pub(super) fn conversations_members(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    if number(params, "limit").is_some_and(|l| !(1..=1000).contains(&l)) {
        return err("invalid_limit");
    }
    let mut world = lock(&shared.world);
    let Some(channel) =
        arg(params, "channel").and_then(|c| find_channel(&mut world.workspace.channels, c))
    else {
        return err("channel_not_found");
    };
    paginate(
        shared,
        "member",
        &channel.members,
        params,
        100,
        "members",
        |m| Value::String(m.clone()),
    )
}

/// Slack's channel-name rules: the error for `name`, if it breaks one.
fn name_error(shared: &Shared, name: &str) -> Option<&'static str> {
    if name.chars().count() > shared.config().slack_channel_name_max {
        return Some("invalid_name_maxlength");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Some("invalid_name_specials");
    }
    None
}

pub(super) fn conversations_create(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let Some(name) = arg(params, "name") else {
        return err("invalid_name_required");
    };
    if let Some(e) = name_error(shared, name) {
        return err(e);
    }
    let mut world = lock(&shared.world);
    let ws = &mut world.workspace;
    if ws.channels.iter().any(|c| c.name == name) {
        return err("name_taken");
    }
    let channel = SlackChannel {
        id: format!("C{:08X}", 0x3000_0000u32 as usize + ws.channels.len()),
        name: name.to_owned(),
        purpose: String::new(),
        topic: String::new(),
        is_private: flag(params, "is_private"),
        is_archived: false,
        created: crate::sandbox::data::now(),
        creator: ws.bot_user_id.clone(),
        members: vec![ws.bot_user_id.clone()],
        previous_names: Vec::new(),
        last_ts: (0, 0),
        im_user: None,
    };
    let out = channel.to_json(false);
    ws.channels.push(channel);
    ok(json!({ "channel": out }))
}

pub(super) fn conversations_rename(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let Some(name) = arg(params, "name") else {
        return err("invalid_name_required");
    };
    if let Some(e) = name_error(shared, name) {
        return err(e);
    }
    let mut world = lock(&shared.world);
    let channels = &mut world.workspace.channels;
    if channels.iter().any(|c| c.name == name) {
        return err("name_taken");
    }
    match arg(params, "channel").and_then(|c| find_channel(channels, c)) {
        None => err("channel_not_found"),
        Some(c) if c.is_archived => err("is_archived"),
        Some(c) => {
            let old = std::mem::replace(&mut c.name, name.to_owned());
            c.previous_names.push(old);
            ok(json!({ "channel": c.to_json(false) }))
        }
    }
}

pub(super) fn conversations_archive(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let mut world = lock(&shared.world);
    match arg(params, "channel").and_then(|c| find_channel(&mut world.workspace.channels, c)) {
        None => err("channel_not_found"),
        Some(c) if c.is_archived => err("already_archived"),
        Some(c) => {
            c.is_archived = true;
            ok(json!({}))
        }
    }
}
