//! Send v3.1 (`/v3.1/send`) as Mailjet answers it, shared with the agent's `send` and
//! `send_bulk`: global and per-message validation, merged globals, one result per message,
//! and every accepted message recorded once (with its webhook events scheduled).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::data::now;
use super::super::{Shared, callbacks, lock};
use super::{check_basic, valid_email};

fn global_error(code: &str, message: &str, status: StatusCode) -> Response {
    let body = json!({ "ErrorIdentifier": uuid::Uuid::new_v4().to_string(), "ErrorCode": code, "ErrorMessage": message, "StatusCode": status.as_u16() });
    (status, axum::Json(body)).into_response()
}

pub(super) async fn send_v31(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if check_basic(&shared, &headers).is_err() {
        return global_error("mj-0015", "Invalid credentials", StatusCode::UNAUTHORIZED);
    }
    send(&shared, &body, 50)
}

/// Send v3.1: every message is validated and sent on its own; HTTP 400 when any failed.
pub(crate) fn send(shared: &Shared, body: &[u8], max_messages: usize) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return global_error(
            "mj-0002",
            "Malformed JSON, please review the syntax and properties types.",
            StatusCode::BAD_REQUEST,
        );
    };
    let Some(messages) = request["Messages"].as_array() else {
        return global_error(
            "mj-0003",
            "Missing mandatory property \"Messages\".",
            StatusCode::BAD_REQUEST,
        );
    };
    if messages.is_empty() {
        return global_error(
            "mj-0007",
            "Empty array: \"Messages\".",
            StatusCode::BAD_REQUEST,
        );
    }
    if messages.len() > max_messages {
        return global_error(
            "mj-0008",
            &format!("Too many elements in \"Messages\": at most {max_messages}."),
            StatusCode::BAD_REQUEST,
        );
    }
    let sandbox_mode = request["SandboxMode"].as_bool().unwrap_or(false);
    let globals = request.get("Globals").cloned().unwrap_or(Value::Null);
    let results: Vec<Value> = messages
        .iter()
        .map(|m| send_one(shared, &merge(&globals, m), sandbox_mode))
        .collect();
    let failed = results.iter().any(|r| r["Status"] == "error");
    let status = if failed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, axum::Json(json!({ "Messages": results }))).into_response()
}

fn merge(globals: &Value, message: &Value) -> Value {
    let mut merged = globals.as_object().cloned().unwrap_or_default();
    if let Some(m) = message.as_object() {
        for (k, v) in m {
            merged.insert(k.clone(), v.clone());
        }
    }
    Value::Object(merged)
}

fn message_error(code: &str, status: u16, message: &str, related: &[&str]) -> Value {
    json!({ "Status": "error", "Errors": [{ "ErrorIdentifier": uuid::Uuid::new_v4().to_string(), "ErrorCode": code, "StatusCode": status, "ErrorMessage": message, "ErrorRelatedTo": related }] })
}

fn recipients(message: &Value, field: &str) -> Vec<(String, String)> {
    message[field]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["Email"].as_str().unwrap_or("").to_owned(),
                        r["Name"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn send_one(shared: &Shared, message: &Value, sandbox_mode: bool) -> Value {
    let to = recipients(message, "To");
    let cc = recipients(message, "Cc");
    let bcc = recipients(message, "Bcc");
    if let Err(refused) = check_message(shared, message, &to, &cc, &bcc) {
        return refused;
    }
    let custom_id = message["CustomID"].as_str().unwrap_or("").to_owned();
    let payload = message["EventPayload"].as_str().unwrap_or("").to_owned();
    let accepted = |list: &[(String, String)]| -> Vec<Value> {
        list.iter()
            .map(|(email, name)| accept(shared, email, name, &custom_id, &payload, sandbox_mode))
            .collect()
    };
    json!({ "Status": "success", "CustomID": custom_id, "To": accepted(&to), "Cc": accepted(&cc), "Bcc": accepted(&bcc) })
}

/// Mailjet's checks of one message, in its order; the first failure's message result.
fn check_message(
    shared: &Shared,
    message: &Value,
    to: &[(String, String)],
    cc: &[(String, String)],
    bcc: &[(String, String)],
) -> Result<(), Value> {
    if to.is_empty() {
        return Err(message_error(
            "mj-0007",
            400,
            "Empty array: \"To\".",
            &["To"],
        ));
    }
    if to.len() + cc.len() + bcc.len() > 50 {
        return Err(message_error(
            "send-0015",
            400,
            "Too many recipients: at most 50.",
            &["To", "Cc", "Bcc"],
        ));
    }
    if let Some((bad, _)) = to
        .iter()
        .chain(cc)
        .chain(bcc)
        .find(|(e, _)| !valid_email(e))
    {
        return Err(message_error(
            "mj-0013",
            400,
            &format!("\"{bad}\" is an invalid email address."),
            &["To[0].Email"],
        ));
    }
    check_content(shared, message)
}

/// The message's content and sender: a part or a known template, an authorised `From`.
fn check_content(shared: &Shared, message: &Value) -> Result<(), Value> {
    let template = message["TemplateID"].as_i64();
    if message["TextPart"].as_str().is_none()
        && message["HTMLPart"].as_str().is_none()
        && template.is_none()
    {
        return Err(message_error(
            "send-0003",
            400,
            "At least \"HTMLPart\", \"TextPart\" or \"TemplateID\" must be provided.",
            &["HTMLPart", "TextPart"],
        ));
    }
    if let Some(id) = template
        && !lock(&shared.world).templates.contains_key(&id)
    {
        return Err(message_error(
            "send-0010",
            400,
            &format!("Template ID \"{id}\" doesn't exist for your account."),
            &["TemplateID"],
        ));
    }
    let from = message["From"]["Email"].as_str().unwrap_or("");
    if from.is_empty() && template.is_none() {
        return Err(message_error(
            "mj-0003",
            400,
            "Missing mandatory property \"From\".",
            &["From"],
        ));
    }
    if from.ends_with("@unverified.example") {
        return Err(message_error(
            "send-0008",
            403,
            &format!("\"{from}\" is not an authorized sender email address for your account."),
            &["From"],
        ));
    }
    Ok(())
}

fn accept(
    shared: &Shared,
    email: &str,
    name: &str,
    custom_id: &str,
    payload: &str,
    sandbox_mode: bool,
) -> Value {
    {
        let mut sends = lock(&shared.sends);
        let record = sends
            .entry((custom_id.to_owned(), email.to_ascii_lowercase()))
            .or_default();
        record.custom_id = custom_id.to_owned();
        record.email = email.to_owned();
        record.accepted += 1;
        record.sandbox_mode = sandbox_mode;
    }
    if sandbox_mode {
        return json!({ "Email": email, "MessageUUID": "", "MessageID": 0, "MessageHref": "https://api.mailjet.com/v3/REST/message/0" });
    }
    let mut world = lock(&shared.world);
    let contact_id = world.contact_for(email, name);
    world.next_message_id += 1 + fastrand::i64(0..1000);
    let id = world.next_message_id;
    let uuid = uuid::Uuid::new_v4().to_string();
    let message = super::super::data::SentMessage {
        id,
        uuid: uuid.clone(),
        email: email.to_owned(),
        custom_id: custom_id.to_owned(),
        payload: payload.to_owned(),
        campaign_id: 0,
        contact_id,
        arrived_at: now(),
    };
    let index = world.messages.len();
    world.messages.push(message.clone());
    world
        .messages_by_custom_id
        .entry(custom_id.to_owned())
        .or_default()
        .push(index);
    drop(world);
    callbacks::schedule_events(shared, &message);
    json!({ "Email": email, "MessageUUID": uuid, "MessageID": id, "MessageHref": format!("https://api.mailjet.com/v3/REST/message/{id}") })
}
