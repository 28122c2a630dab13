//! A slash command as Slack delivers it (`/campaign-sync status`): form-encoded, signed, with a
//! `response_url` the service answers through later. Slack shows the body of the immediate
//! answer to the user who typed it; the sandbox keeps that answer as an ephemeral too.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ResponseUrl, Shared, bad_request, callbacks, lock};

/// Someone typing a command in a channel.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommandRequest {
    user: String,
    channel: String,
    #[serde(default)]
    text: String,
    /// The command (default `/campaign-sync`).
    #[serde(default)]
    command: Option<String>,
}

pub(super) async fn slash_command(
    State(shared): State<Arc<Shared>>,
    axum::Json(r): axum::Json<CommandRequest>,
) -> Response {
    let config = shared.config();
    let Some(url) = config.slack_commands_url.clone() else {
        return bad_request("no slack_commands_url is configured".to_owned());
    };
    let fields = form_fields(&shared, &r);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    let delivery = callbacks::deliver_signed(
        &shared,
        &url,
        body.into_bytes(),
        "application/x-www-form-urlencoded",
        None,
    )
    .await;
    let answer = delivery.answer;
    if delivery.status == Some(200) && answer["text"].is_string() {
        lock(&shared.world).workspace.ephemerals.push(json!({ "channel": r.channel, "user": r.user, "text": answer["text"], "via": "command" }));
    }
    let form: serde_json::Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    axum::Json(json!({ "form": form, "status": delivery.status, "elapsedMs": delivery.elapsed_ms, "answer": answer }))
        .into_response()
}

/// The form Slack posts for the command `r`, with a fresh `response_url`.
fn form_fields(shared: &Shared, r: &CommandRequest) -> Vec<(&'static str, String)> {
    let response_id = register(shared, r);
    let (team, channel_name) = team_and_channel(shared, &r.channel);
    let now = chrono::Utc::now();
    let response_url = format!(
        "http://{}/_sandbox/slack/response/{response_id}",
        super::clicks::config_host(shared)
    );
    vec![
        ("token", "sandbox-verification-token".to_owned()),
        ("team_id", team),
        ("team_domain", "sandbox".to_owned()),
        ("channel_id", r.channel.clone()),
        ("channel_name", channel_name),
        ("user_id", r.user.clone()),
        ("user_name", r.user.to_lowercase()),
        (
            "command",
            r.command
                .clone()
                .unwrap_or_else(|| "/campaign-sync".to_owned()),
        ),
        ("text", r.text.clone()),
        ("api_app_id", "A0SANDBOX1".to_owned()),
        ("response_url", response_url),
        (
            "trigger_id",
            format!(
                "{}.{}.sandbox",
                now.timestamp(),
                now.timestamp_subsec_micros()
            ),
        ),
    ]
}

/// A fresh `response_url` id for the command `r`.
fn register(shared: &Shared, r: &CommandRequest) -> String {
    let config = shared.config();
    let response_id = uuid::Uuid::new_v4().simple().to_string();
    lock(&shared.response_urls).insert(
        response_id.clone(),
        ResponseUrl {
            channel: r.channel.clone(),
            user: r.user.clone(),
            message_ts: String::new(),
            uses: 0,
            expires: Instant::now() + config.slack_response_url_ttl,
        },
    );
    response_id
}

/// The workspace's team id and the name of `channel` as a command's form gives them.
fn team_and_channel(shared: &Shared, channel: &str) -> (String, String) {
    let world = lock(&shared.world);
    let ws = &world.workspace;
    let name = ws
        .channels
        .iter()
        .find(|c| c.id == channel)
        .map(|c| c.name.clone());
    (
        ws.team_id.clone(),
        name.unwrap_or_else(|| "privategroup".to_owned()),
    )
}
