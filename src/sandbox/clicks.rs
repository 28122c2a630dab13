//! What a Slack user does to the service's messages, as Slack delivers it, signed: a click on
//! a button (`block_actions`, with a `response_url`) and the submission of a modal
//! (`view_submission`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ResponseUrl, bad_request};
use super::{Shared, callbacks, lock};

/// An approver's click on a button of a message the service posted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InteractionRequest {
    action_id: String,
    value: String,
    channel: String,
    message_ts: String,
    user: String,
    #[serde(default)]
    block_id: Option<String>,
}

pub(super) async fn slack_interaction(
    State(shared): State<Arc<Shared>>,
    axum::Json(r): axum::Json<InteractionRequest>,
) -> Response {
    let Some(url) = shared.config().slack_interactions_url.clone() else {
        return bad_request("no slack_interactions_url is configured".to_owned());
    };
    let (team, channel_name, message) = clicked_message(&shared, &r);
    let now = chrono::Utc::now();
    let response_id = uuid::Uuid::new_v4().simple().to_string();
    let config = shared.config();
    lock(&shared.response_urls).insert(
        response_id.clone(),
        ResponseUrl {
            channel: r.channel.clone(),
            user: r.user.clone(),
            message_ts: r.message_ts.clone(),
            uses: 0,
            expires: std::time::Instant::now() + config.slack_response_url_ttl,
        },
    );
    let response_url = format!(
        "http://{}/_sandbox/slack/response/{response_id}",
        config_host(&shared)
    );
    let payload = json!({
        "type": "block_actions",
        "user": { "id": r.user, "username": r.user.to_lowercase(), "name": r.user.to_lowercase(), "team_id": team },
        "api_app_id": "A0SANDBOX1", "token": "sandbox-verification-token",
        "container": { "type": "message", "message_ts": r.message_ts, "channel_id": r.channel, "is_ephemeral": false },
        "trigger_id": format!("{}.{}.sandbox", now.timestamp(), now.timestamp_subsec_micros()),
        "team": { "id": team, "domain": "sandbox" }, "enterprise": null, "is_enterprise_install": false,
        "channel": { "id": r.channel, "name": channel_name }, "message": message, "state": { "values": {} },
        "response_url": response_url,
        "actions": [{ "type": "button", "action_id": r.action_id, "block_id": r.block_id.clone().unwrap_or_else(|| "approval_actions".to_owned()),
            "text": { "type": "plain_text", "text": r.action_id, "emoji": true }, "value": r.value,
            "action_ts": format!("{}.{:06}", now.timestamp(), now.timestamp_subsec_micros()) }],
    });
    deliver_payload(&shared, &url, payload).await
}

/// The team, the channel's name and the message as Slack shows it in a click's payload.
fn clicked_message(shared: &Shared, r: &InteractionRequest) -> (String, String, Value) {
    let world = lock(&shared.world);
    let ws = &world.workspace;
    let channel_name = ws
        .channels
        .iter()
        .find(|c| c.id == r.channel)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let message = ws.messages.get(&(r.channel.clone(), r.message_ts.clone())).map(|m| json!({ "type": "message", "ts": m.ts, "text": m.text, "bot_id": "B0SANDBOT1", "blocks": m.blocks })).unwrap_or(json!({ "type": "message", "ts": r.message_ts, "text": "", "blocks": [] }));
    (ws.team_id.clone(), channel_name, message)
}

pub(super) fn config_host(shared: &Shared) -> String {
    lock(&shared.own_addr)
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

/// A modal's submission: the view opened by `views.open`, the submitter, and the values of
/// its inputs (`{block_id: {action_id: text}}`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmissionRequest {
    view_id: String,
    user: String,
    #[serde(default)]
    values: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

pub(super) async fn view_submission(
    State(shared): State<Arc<Shared>>,
    axum::Json(r): axum::Json<SubmissionRequest>,
) -> Response {
    let Some(url) = shared.config().slack_interactions_url.clone() else {
        return bad_request("no slack_interactions_url is configured".to_owned());
    };
    let (team, view) = {
        let world = lock(&shared.world);
        let view = world
            .workspace
            .views
            .iter()
            .find(|v| v["id"] == r.view_id.as_str())
            .cloned();
        (world.workspace.team_id.clone(), view)
    };
    let Some(mut view) = view else {
        return bad_request(format!("no modal {:?} was opened", r.view_id));
    };
    let values: serde_json::Map<String, Value> = r
        .values
        .iter()
        .map(|(block, inputs)| {
            let inputs: serde_json::Map<String, Value> = inputs
                .iter()
                .map(|(action, text)| {
                    (
                        action.clone(),
                        json!({ "type": "plain_text_input", "value": text }),
                    )
                })
                .collect();
            (block.clone(), Value::Object(inputs))
        })
        .collect();
    view["state"] = json!({ "values": values });
    view["team_id"] = json!(team);
    let now = chrono::Utc::now();
    let payload = json!({
        "type": "view_submission", "team": { "id": team, "domain": "sandbox" },
        "user": { "id": r.user, "username": r.user.to_lowercase(), "name": r.user.to_lowercase(), "team_id": team },
        "api_app_id": "A0SANDBOX1", "token": "sandbox-verification-token",
        "trigger_id": format!("{}.{}.sandbox", now.timestamp(), now.timestamp_subsec_micros()),
        "view": view, "response_urls": [], "is_enterprise_install": false, "enterprise": null,
    });
    deliver_payload(&shared, &url, payload).await
}

/// POSTs an interaction `payload` as Slack does (form field `payload`, signed) and answers
/// with the payload and what became of the delivery.
async fn deliver_payload(shared: &Shared, url: &str, payload: Value) -> Response {
    let body = format!(
        "payload={}",
        url::form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>()
    );
    let delivery = callbacks::deliver_signed(
        shared,
        url,
        body.into_bytes(),
        "application/x-www-form-urlencoded",
        None,
    )
    .await;
    axum::Json(json!({ "payload": payload, "delivery": delivery })).into_response()
}
