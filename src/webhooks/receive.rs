//! The three webhook endpoints. Each checks the sender over the raw bytes first, then parses,
//! stores every event in `webhook_events` (deduplicated on its identity) and only then answers
//! 200; processing is kicked through the queue, and a sweeper catches anything the queue missed.
//! Postgres down → 503 (the sender retries; nothing is half-stored). Redis down → still 200.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{intake, slack_signature};
use crate::api::error::ApiError;
use crate::auth::constant_time_eq;
use crate::jobs::process_webhook_events::{NAME as PROCESS_JOB, QUEUE};
use crate::queue::{EnqueueOptions, Queue};
use crate::state::AppState;

pub use crate::store::webhook_events::NewEvent;
use crate::store::webhook_events::{self, NewRejection};

pub(super) fn outcome(source: &str, outcome: &str) {
    metrics::counter!("webhook_requests_total", "source" => source.to_owned(), "outcome" => outcome.to_owned()).increment(1);
}

fn refuse(source: &str, status: StatusCode, why: &'static str) -> ApiError {
    outcome(
        source,
        if status == StatusCode::UNAUTHORIZED {
            "unauthorized"
        } else {
            "bad_request"
        },
    );
    match status {
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized(why),
        _ => ApiError::BadRequest(why.to_owned()),
    }
}

/// Stores events (duplicates skipped) and returns the ids of the new rows.
pub async fn store(
    state: &AppState,
    source: &str,
    events: &[NewEvent],
) -> Result<Vec<i64>, ApiError> {
    store_delivery(state, source, events, &[]).await
}

/// Stores the events and the rejections of one delivery in one transaction and returns the
/// ids of the new event rows; Postgres failing is a 503 so the sender retries.
async fn store_delivery(
    state: &AppState,
    source: &str,
    events: &[NewEvent],
    rejections: &[NewRejection],
) -> Result<Vec<i64>, ApiError> {
    match webhook_events::store_delivery(&state.db, source, events, rejections).await {
        Ok(ids) => {
            for e in events {
                metrics::counter!("webhook_events_total", "source" => source.to_owned(), "type" => e.event_type.clone()).increment(1);
            }
            let duplicates = events.len() - ids.len();
            if duplicates > 0 {
                metrics::counter!("webhook_events_duplicate_total", "source" => source.to_owned())
                    .increment(duplicates as u64);
            }
            if !rejections.is_empty() {
                metrics::counter!("webhook_events_rejected_total", "source" => source.to_owned())
                    .increment(rejections.len() as u64);
            }
            Ok(ids)
        }
        Err(e) => {
            outcome(source, "unavailable");
            tracing::warn!(source, error = %crate::store::describe_sqlx(&e), "could not store webhook events; answering 503 so the sender retries");
            Err(ApiError::Unavailable(
                "events could not be stored; retry later".to_owned(),
            ))
        }
    }
}

/// Kicks processing of `ids`. A failure is logged only: the rows are stored, and the sweeper
/// enqueues whatever stays unprocessed.
pub async fn kick(state: &AppState, ids: Vec<i64>) {
    if ids.is_empty() {
        return;
    }
    let queue = Queue::new(state.redis.clone(), state.keys.prefix(), QUEUE);
    let options = EnqueueOptions {
        trigger: Some("webhook".to_owned()),
        ..Default::default()
    };
    let enqueue = queue.enqueue(PROCESS_JOB, json!({ "ids": ids }), options);
    match tokio::time::timeout(Duration::from_millis(500), enqueue).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not enqueue webhook processing; the sweeper will")
        }
        Err(_) => tracing::warn!("enqueueing webhook processing timed out; the sweeper will"),
    }
}

/// `POST /webhooks/mailjet`: Basic auth, one event object or a grouped array.
pub async fn mailjet(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    const S: &str = "mailjet";
    verify_mailjet(&state, &headers)?;
    let items = intake::split_group(&body).map_err(|why| {
        outcome(S, "bad_request");
        ApiError::BadRequest(why)
    })?;
    let (events, rejections) = mailjet_events(&items);
    let ids = store_delivery(&state, S, &events, &rejections).await?;
    kick(&state, ids).await;
    // 200 even with rejected events: they are kept for an operator, and a retry by Mailjet
    // would neither mend them nor let the good events through any sooner.
    outcome(
        S,
        if rejections.is_empty() {
            "accepted"
        } else {
            "partly_rejected"
        },
    );
    let rejected: Vec<Value> = rejections
        .iter()
        .map(|r| json!({ "index": r.position, "reason": r.reason }))
        .collect();
    Ok((
        StatusCode::OK,
        axum::Json(
            json!({ "accepted": events.len(), "rejected": rejected.len(), "rejections": rejected }),
        ),
    )
        .into_response())
}

/// Mailjet's Basic credentials, compared in constant time.
fn verify_mailjet(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    const S: &str = "mailjet";
    let mailjet = &state.settings.mailjet;
    let (Some(user), Some(password)) = (&mailjet.webhook_user, &mailjet.webhook_password) else {
        return Err(refuse(
            S,
            StatusCode::UNAUTHORIZED,
            "webhook credentials are not configured",
        ));
    };
    let expected = format!("{}:{}", user.expose_secret(), password.expose_secret());
    let presented = crate::auth::basic_credentials(headers).unwrap_or_default();
    if constant_time_eq(&presented, expected.as_bytes()) {
        Ok(())
    } else {
        Err(refuse(
            S,
            StatusCode::UNAUTHORIZED,
            "invalid Basic credentials",
        ))
    }
}

/// A delivery's events: those that can be used, and the others as rejections.
fn mailjet_events(items: &[&RawValue]) -> (Vec<NewEvent>, Vec<NewRejection>) {
    let mut events = Vec::with_capacity(items.len());
    let mut rejections = Vec::new();
    for (i, raw) in items.iter().enumerate() {
        match intake::mailjet_event(raw.get()) {
            Ok(event) => events.push(event),
            Err(why) => rejections.push(NewRejection {
                position: i32::try_from(i).unwrap_or(i32::MAX),
                raw: raw.get().as_bytes().to_vec(),
                reason: format!("event {i}: {why}"),
            }),
        }
    }
    (events, rejections)
}

pub(super) fn truncate_id(mut id: String) -> String {
    if id.len() > 512 {
        let mut end = 512;
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        id.truncate(end);
    }
    id
}

pub(super) fn verify_slack(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    source: &str,
) -> Result<(), ApiError> {
    let Some(secret) = &state.settings.slack.signing_secret else {
        return Err(refuse(
            source,
            StatusCode::UNAUTHORIZED,
            "the signing secret is not configured",
        ));
    };
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    slack_signature::verify(
        secret.expose_secret().as_bytes(),
        get("x-slack-request-timestamp"),
        get("x-slack-signature"),
        body,
        now,
    )
    .map_err(|e| {
        let why = match e {
            slack_signature::SignatureError::Stale => {
                "request timestamp is outside the 300 s window"
            }
            slack_signature::SignatureError::Missing(_) => "missing or malformed signature headers",
            slack_signature::SignatureError::Mismatch => "signature does not match",
        };
        refuse(source, StatusCode::UNAUTHORIZED, why)
    })
}

/// `POST /webhooks/slack/events`: v0 signature, `url_verification`, `event_callback`
/// deduplicated on `event_id` (Slack's retries are answered 200 and not processed twice).
pub async fn slack_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    const S: &str = "slack_events";
    verify_slack(&state, &headers, &body, S)?;
    let mut envelope: Value = serde_json::from_slice(&body).map_err(|e| {
        outcome(S, "bad_request");
        ApiError::BadRequest(format!("body is not JSON: {e}"))
    })?;
    if intake::sanitize(&mut envelope) {
        metrics::counter!("webhook_events_sanitized_total", "source" => S).increment(1);
    }
    match envelope.get("type").and_then(Value::as_str) {
        Some("url_verification") => {
            let challenge = envelope
                .get("challenge")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    refuse(
                        S,
                        StatusCode::BAD_REQUEST,
                        "url_verification without a challenge",
                    )
                })?;
            outcome(S, "challenge");
            Ok(axum::Json(json!({ "challenge": challenge })).into_response())
        }
        Some("event_callback") => event_callback(&state, &headers, envelope).await,
        Some(_) => {
            outcome(S, "ignored");
            Ok(StatusCode::OK.into_response())
        }
        None => Err(refuse(
            S,
            StatusCode::BAD_REQUEST,
            "the body has no \"type\"",
        )),
    }
}

/// An `event_callback`, stored once per `event_id`.
async fn event_callback(
    state: &AppState,
    headers: &HeaderMap,
    envelope: Value,
) -> Result<Response, ApiError> {
    const S: &str = "slack_events";
    let event_id = envelope
        .get("event_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            refuse(
                S,
                StatusCode::BAD_REQUEST,
                "event_callback without an event_id",
            )
        })?
        .to_owned();
    let event_type = envelope
        .pointer("/event/type")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let mut envelope = envelope;
    if event_type == "message" {
        drop_message_content(&mut envelope);
    }
    let ids = store(
        state,
        S,
        &[NewEvent {
            external_id: event_id,
            event_type,
            payload: envelope,
        }],
    )
    .await?;
    let retry = headers.contains_key("x-slack-retry-num");
    outcome(
        S,
        if ids.is_empty() && retry {
            "retry_duplicate"
        } else if ids.is_empty() {
            "duplicate"
        } else {
            "accepted"
        },
    );
    kick(state, ids).await;
    Ok(StatusCode::OK.into_response())
}

/// What people write is not ours to keep: a message event is stored without its text,
/// blocks, attachments and files (and an edit without the old and new message).
fn drop_message_content(envelope: &mut Value) {
    if let Some(event) = envelope.get_mut("event").and_then(Value::as_object_mut) {
        for key in [
            "text",
            "blocks",
            "attachments",
            "files",
            "message",
            "previous_message",
        ] {
            event.remove(key);
        }
    }
}

/// A click is identified by its user, message and action time (a modal's submission by its
/// trigger); Slack does not resend them.
fn interaction_id(kind: &str, payload: &Value) -> String {
    let get = |pointer: &str| {
        payload
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let (user, action_ts, trigger) = (
        get("/user/id"),
        get("/actions/0/action_ts"),
        get("/trigger_id"),
    );
    truncate_id(format!("{kind}:{user}:{action_ts}:{trigger}"))
}

/// `POST /webhooks/slack/interactions`: v0 signature, form-encoded `payload`; `block_actions`
/// are stored and processed by a job. Acknowledged at once (Slack allows 3 s).
pub async fn slack_interactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    const S: &str = "slack_interactions";
    let started = Instant::now();
    verify_slack(&state, &headers, &body, S)?;
    let payload = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| {
            refuse(
                S,
                StatusCode::BAD_REQUEST,
                "form field \"payload\" is missing",
            )
        })?;
    let mut payload: Value = serde_json::from_str(&payload).map_err(|e| {
        outcome(S, "bad_request");
        ApiError::BadRequest(format!("payload is not JSON: {e}"))
    })?;
    if intake::sanitize(&mut payload) {
        metrics::counter!("webhook_events_sanitized_total", "source" => S).increment(1);
    }
    let kind = payload
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(S, StatusCode::BAD_REQUEST, "payload has no \"type\""))?
        .to_owned();
    let external_id = interaction_id(&kind, &payload);
    let modal = super::modal::asked(&payload);
    let ids = store(
        &state,
        S,
        &[NewEvent {
            external_id,
            event_type: kind,
            payload,
        }],
    )
    .await?;
    let fresh = !ids.is_empty();
    kick(&state, ids).await;
    if let Some(ask) = modal.filter(|_| fresh) {
        super::modal::open(&state, ask).await;
    }
    outcome(S, "accepted");
    metrics::histogram!("webhook_ack_seconds", "source" => S)
        .record(started.elapsed().as_secs_f64());
    Ok(StatusCode::OK.into_response())
}
