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
use serde_json::{Value, json};

use super::slack_signature;
use crate::api::AppState;
use crate::api::auth::constant_time_eq;
use crate::api::error::ApiError;
use crate::jobs::webhook_events::{NAME as PROCESS_JOB, QUEUE};
use crate::queue::{EnqueueOptions, Queue};

/// One event ready to be stored.
pub struct NewEvent {
    /// Identity used to deduplicate deliveries of the same event.
    pub external_id: String,
    /// `sent`, `open`, `user_change`, `block_actions`, …
    pub event_type: String,
    /// The event as received.
    pub payload: Value,
}

fn outcome(source: &str, outcome: &str) {
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

/// Stores events (one statement, duplicates skipped) and returns the ids of the new rows.
pub async fn store(
    state: &AppState,
    source: &str,
    events: &[NewEvent],
) -> Result<Vec<i64>, ApiError> {
    let external: Vec<&str> = events.iter().map(|e| e.external_id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let payloads: Vec<Value> = events.iter().map(|e| e.payload.clone()).collect();
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO webhook_events (source, external_id, event_type, payload)
         SELECT $1, e, t, p FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS x(e, t, p)
         ON CONFLICT (source, external_id) DO NOTHING RETURNING id",
    )
    .bind(source)
    .bind(&external)
    .bind(&types)
    .bind(&payloads)
    .fetch_all(&state.db)
    .await;
    match inserted {
        Ok(ids) => {
            for t in &types {
                metrics::counter!("webhook_events_total", "source" => source.to_owned(), "type" => (*t).to_owned()).increment(1);
            }
            let duplicates = events.len() - ids.len();
            if duplicates > 0 {
                metrics::counter!("webhook_events_duplicate_total", "source" => source.to_owned())
                    .increment(duplicates as u64);
            }
            Ok(ids)
        }
        Err(e) => {
            outcome(source, "unavailable");
            tracing::warn!(source, error = %crate::api::health::describe_sqlx(&e), "could not store webhook events; answering 503 so the sender retries");
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
    let mailjet = &state.settings.mailjet;
    let (Some(user), Some(password)) = (&mailjet.webhook_user, &mailjet.webhook_password) else {
        return Err(refuse(
            S,
            StatusCode::UNAUTHORIZED,
            "webhook credentials are not configured",
        ));
    };
    let expected = format!("{}:{}", user.expose_secret(), password.expose_secret());
    let presented = crate::api::auth::basic_credentials(&headers).unwrap_or_default();
    if !constant_time_eq(&presented, expected.as_bytes()) {
        return Err(refuse(
            S,
            StatusCode::UNAUTHORIZED,
            "invalid Basic credentials",
        ));
    }
    let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
        outcome(S, "bad_request");
        ApiError::BadRequest(format!("body is not JSON: {e}"))
    })?;
    let items = match parsed {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(refuse(
                S,
                StatusCode::BAD_REQUEST,
                "expected an event object or an array of them",
            ));
        }
    };
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        events.push(mailjet_event(item).map_err(|why| {
            outcome(S, "bad_request");
            ApiError::BadRequest(format!("event {i}: {why}"))
        })?);
    }
    let ids = store(&state, S, &events).await?;
    kick(&state, ids).await;
    outcome(S, "accepted");
    Ok((
        StatusCode::OK,
        axum::Json(json!({ "accepted": events.len() })),
    )
        .into_response())
}

/// The identity of a Mailjet event: message, type, time (and the URL of a click).
fn mailjet_event(item: Value) -> Result<NewEvent, String> {
    let event = item
        .get("event")
        .and_then(Value::as_str)
        .ok_or("\"event\" is missing or not a string")?
        .to_owned();
    let time = item
        .get("time")
        .and_then(Value::as_i64)
        .ok_or("\"time\" is missing or not an integer (unix seconds)")?;
    let message_id = match item.get("MessageID") {
        Some(Value::Number(n)) => n.as_i64().ok_or("\"MessageID\" is not a 64-bit integer")?,
        _ => return Err("\"MessageID\" is missing or not an integer".to_owned()),
    };
    let email = item.get("email").and_then(Value::as_str).unwrap_or("");
    let url = item.get("url").and_then(Value::as_str).unwrap_or("");
    let external_id = format!(
        "{message_id}:{event}:{time}:{}:{url}",
        email.to_ascii_lowercase()
    );
    Ok(NewEvent {
        external_id: truncate_id(external_id),
        event_type: event,
        payload: item,
    })
}

fn truncate_id(mut id: String) -> String {
    if id.len() > 512 {
        let mut end = 512;
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        id.truncate(end);
    }
    id
}

fn verify_slack(
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
    let envelope: Value = serde_json::from_slice(&body).map_err(|e| {
        outcome(S, "bad_request");
        ApiError::BadRequest(format!("body is not JSON: {e}"))
    })?;
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
        Some("event_callback") => {
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
            let ids = store(
                &state,
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
            kick(&state, ids).await;
            Ok(StatusCode::OK.into_response())
        }
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
    let payload: Value = serde_json::from_str(&payload).map_err(|e| {
        outcome(S, "bad_request");
        ApiError::BadRequest(format!("payload is not JSON: {e}"))
    })?;
    let kind = payload
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(S, StatusCode::BAD_REQUEST, "payload has no \"type\""))?
        .to_owned();
    // A click is identified by its user, message and action time; Slack does not resend them.
    let user = payload
        .pointer("/user/id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let action_ts = payload
        .pointer("/actions/0/action_ts")
        .and_then(Value::as_str)
        .unwrap_or("");
    let trigger = payload
        .get("trigger_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let external_id = truncate_id(format!("{kind}:{user}:{action_ts}:{trigger}"));
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
    kick(&state, ids).await;
    outcome(S, "accepted");
    metrics::histogram!("webhook_ack_seconds", "source" => S)
        .record(started.elapsed().as_secs_f64());
    Ok(StatusCode::OK.into_response())
}
