//! `POST /webhooks/slack/commands`: the `/campaign-sync` slash command, signed like events
//! (v0 over the raw bytes). It answers within Slack's 3 s with an ephemeral acknowledgement
//! (or the usage, or a refusal); the command itself is stored as a `slack_commands` event and
//! answered by `process_webhook_events` through the command's `response_url`.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::receive::{NewEvent, kick, outcome, store, truncate_id, verify_slack};
use crate::api::error::ApiError;
use crate::state::AppState;

const S: &str = "slack_commands";

/// What `/campaign-sync` can do.
pub const USAGE: &str = "*/campaign-sync* — what you can ask:\n\
• `status` — schedules and their last runs, queues, alerts firing\n\
• `campaign SLUG` — a campaign's latest statistics and its approvals\n\
• `retry-dead` — send every dead-lettered task back to its queue (admins only)\n\
• `help` — this list";

/// A command as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    Status,
    Campaign(String),
    RetryDead,
    Help,
}

/// `text` of the command as one of the sub-commands; unknown words ask for help.
pub fn parse(text: &str) -> Ask {
    let mut words = text.split_whitespace();
    match (
        words.next().map(str::to_lowercase).as_deref(),
        words.next(),
        words.next(),
    ) {
        (Some("status"), None, _) => Ask::Status,
        (Some("campaign"), Some(slug), None) => Ask::Campaign(slug.to_owned()),
        (Some("retry-dead"), None, _) => Ask::RetryDead,
        _ => Ask::Help,
    }
}

fn ephemeral(text: &str) -> Response {
    Json(json!({ "response_type": "ephemeral", "text": text })).into_response()
}

/// The command's form fields; a missing one is a 400 naming it.
fn fields(body: &[u8]) -> Result<Value, ApiError> {
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body).into_owned().collect();
    let mut out = serde_json::Map::new();
    for name in [
        "command",
        "user_id",
        "channel_id",
        "response_url",
        "trigger_id",
    ] {
        match form.get(name).filter(|v| !v.is_empty() && v.len() <= 2000) {
            Some(v) => out.insert(name.to_owned(), json!(v)),
            None => {
                outcome(S, "bad_request");
                return Err(ApiError::BadRequest(format!(
                    "form field {name:?} is missing, empty or longer than 2000 characters"
                )));
            }
        };
    }
    for name in ["text", "team_id", "user_name"] {
        let v: String = form
            .get(name)
            .map(String::as_str)
            .unwrap_or("")
            .chars()
            .take(2000)
            .collect();
        out.insert(name.to_owned(), json!(v));
    }
    Ok(Value::Object(out))
}

/// Verifies, answers the usage or a refusal at once, or stores the command for the job and
/// acknowledges it.
pub async fn slack_commands(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    verify_slack(&state, &headers, &body, S)?;
    let mut payload = fields(&body)?;
    if super::intake::sanitize(&mut payload) {
        metrics::counter!("webhook_events_sanitized_total", "source" => S).increment(1);
    }
    let text = payload["text"].as_str().unwrap_or("");
    let ask = parse(text);
    let user = payload["user_id"].as_str().unwrap_or("");
    let (event_type, answer) = match ask {
        Ask::Help => {
            outcome(S, "answered");
            return Ok(ephemeral(USAGE));
        }
        Ask::RetryDead => {
            if let Err(refusal) = state.settings.alerts.may_retry_dead(user) {
                outcome(S, "refused");
                return Ok(ephemeral(refusal));
            }
            ("retry-dead", "Retrying the dead letters…")
        }
        Ask::Status => ("status", "Gathering the status…"),
        Ask::Campaign(_) => ("campaign", "Looking the campaign up…"),
    };
    let trigger = payload["trigger_id"].as_str().unwrap_or("");
    let external_id = truncate_id(format!("command:{trigger}"));
    let ids = store(
        &state,
        S,
        &[NewEvent {
            external_id,
            event_type: event_type.to_owned(),
            payload,
        }],
    )
    .await?;
    kick(&state, ids).await;
    outcome(S, "accepted");
    metrics::histogram!("webhook_ack_seconds", "source" => S)
        .record(started.elapsed().as_secs_f64());
    Ok((StatusCode::OK, ephemeral(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_commands_are_read_case_insensitively_and_anything_else_asks_for_help() {
        assert_eq!(parse("status"), Ask::Status);
        assert_eq!(parse("  STATUS "), Ask::Status);
        assert_eq!(
            parse("campaign spring-gala"),
            Ask::Campaign("spring-gala".to_owned())
        );
        assert_eq!(parse("campaign"), Ask::Help);
        assert_eq!(parse("campaign a b"), Ask::Help);
        assert_eq!(parse("retry-dead"), Ask::RetryDead);
        assert_eq!(parse(""), Ask::Help);
        assert_eq!(parse("deploy prod"), Ask::Help);
    }
}
