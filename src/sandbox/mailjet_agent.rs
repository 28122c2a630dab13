//! The Mailjet MCP agent (seed 002): `POST /mailjet/...` with an HS256 JWT. The contract is
//! in `docs/mailjet-agent.md`; bodies carry Mailjet's own field names.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::super::{Shared, lock};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/mailjet/{group}/{action}", post(dispatch))
        .route("/mailjet/{action}", post(dispatch_send))
}

fn agent_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": code, "message": message })),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
}

fn check_jwt(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let config = shared.config();
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(agent_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing bearer token",
        ));
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub", "iat"]);
    validation.leeway = 0;
    let decoded = jsonwebtoken::DecodingKey::from_secret(config.mcp_token.as_bytes())
        .and_then(|key| jsonwebtoken::decode::<Claims>(token, &key, &validation));
    match decoded {
        Ok(data)
            if lock(&shared.tokens)
                .jwt_not_before
                .is_some_and(|nb| data.claims.iat < nb) =>
        {
            Err(agent_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "token expired",
            ))
        }
        Ok(data) if data.claims.sub == config.agent_id => Ok(()),
        Ok(_) => Err(agent_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown agent (sub)",
        )),
        Err(e) => {
            let why = match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "invalid signature",
                _ => "invalid token",
            };
            Err(agent_error(StatusCode::UNAUTHORIZED, "unauthorized", why))
        }
    }
}

fn body_json(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        agent_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("malformed JSON: {e}"),
        )
    })
}

/// `{Count, Data, Total}` where Total counts every match (so a client can page).
fn page(items: Vec<Value>, body: &Value) -> Value {
    let total = items.len();
    let limit = body["limit"]
        .as_u64()
        .map(|l| l.clamp(1, 1000) as usize)
        .unwrap_or(10);
    let offset = body["offset"].as_u64().unwrap_or(0) as usize;
    let data: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    json!({ "Count": data.len(), "Data": data, "Total": total })
}

async fn dispatch_send(
    State(shared): State<Arc<Shared>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_jwt(&shared, &headers) {
        return r;
    }
    match action.as_str() {
        "send" => super::send(&shared, &body, 1),
        "send_bulk" => super::send(&shared, &body, 50),
        _ => agent_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("unknown tool {action:?}"),
        ),
    }
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    Path((group, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_jwt(&shared, &headers) {
        return r;
    }
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let result = match group.as_str() {
        "campaigns" => campaigns_tool(&shared, &action, &body),
        "templates" => templates_tool(&shared, &action, &body),
        "contacts" => contacts_tool(&shared, &action, &body),
        _ => Err(unknown_tool(&group, &action)),
    };
    match result {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(r) => r,
    }
}

fn campaigns_tool(shared: &Shared, action: &str, body: &Value) -> Result<Value, Response> {
    match action {
        "list" => Ok(campaigns(shared, body, |c| {
            body["status"].as_i64().is_none_or(|s| c["Status"] == s)
        })),
        "search" => {
            let query = body["query"].as_str().unwrap_or("").to_lowercase();
            Ok(campaigns(shared, body, |c| {
                c["Subject"]
                    .as_str()
                    .is_some_and(|s| s.to_lowercase().contains(&query))
            }))
        }
        "find_by_subject" => match body["subject"].as_str() {
            Some(subject) => Ok(campaigns(shared, body, |c| {
                c["Subject"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(subject.trim()))
            })),
            None => Err(agent_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "\"subject\" is required",
            )),
        },
        "statistics" => statistics(shared, body),
        _ => Err(unknown_tool("campaigns", action)),
    }
}

fn templates_tool(shared: &Shared, action: &str, body: &Value) -> Result<Value, Response> {
    match action {
        "list" => {
            let items = lock(&shared.world)
                .templates
                .values()
                .map(|t| t.to_json())
                .collect();
            Ok(page(items, body))
        }
        "get" => template_with_content(shared, body["id"].as_i64()),
        "create" => super::create_template(shared, body).map(|_| {
            let id = lock(&shared.world).templates.keys().next_back().copied();
            template_with_content(shared, id).unwrap_or(Value::Null)
        }),
        "update" => update_template(shared, body),
        _ => Err(unknown_tool("templates", action)),
    }
}

fn contacts_tool(shared: &Shared, action: &str, body: &Value) -> Result<Value, Response> {
    match action {
        "list" => {
            let items = lock(&shared.world)
                .contacts
                .values()
                .map(|c| c.to_json())
                .collect();
            Ok(page(items, body))
        }
        "create" => super::create_contact(shared, body).map(|_| {
            let email = body["Email"].as_str().unwrap_or("").to_ascii_lowercase();
            let world = lock(&shared.world);
            let id = world.contacts_by_email.get(&email).copied();
            id.and_then(|id| world.contacts.get(&id))
                .map(|c| json!({ "Count": 1, "Data": [c.to_json()], "Total": 1 }))
                .unwrap_or(Value::Null)
        }),
        "update" => {
            let key = body["id"]
                .as_i64()
                .map(|i| i.to_string())
                .or_else(|| body["Email"].as_str().map(str::to_owned))
                .unwrap_or_default();
            super::update_contact(shared, &key, body)
        }
        _ => Err(unknown_tool("contacts", action)),
    }
}

fn unknown_tool(group: &str, action: &str) -> Response {
    agent_error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("unknown tool {group}/{action}"),
    )
}

fn campaigns(shared: &Shared, body: &Value, keep: impl Fn(&Value) -> bool) -> Value {
    let items: Vec<Value> = lock(&shared.world)
        .campaigns
        .iter()
        .map(|c| c.to_json())
        .filter(|c| keep(c))
        .collect();
    page(items, body)
}

fn statistics(shared: &Shared, body: &Value) -> Result<Value, Response> {
    let ids: Vec<i64> = match (
        body["campaign_id"].as_i64(),
        body["campaign_ids"].as_array(),
    ) {
        (Some(id), _) => vec![id],
        (None, Some(ids)) if ids.len() <= 100 => ids.iter().filter_map(Value::as_i64).collect(),
        (None, Some(_)) => {
            return Err(agent_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "at most 100 campaign_ids",
            ));
        }
        (None, None) => {
            return Err(agent_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "\"campaign_id\" or \"campaign_ids\" is required",
            ));
        }
    };
    let world = lock(&shared.world);
    let rows: Vec<Value> = ids
        .iter()
        .filter_map(|id| world.campaign(*id))
        .map(|c| c.statcounters(1))
        .collect();
    if rows.is_empty() && body["campaign_id"].is_i64() {
        return Err(agent_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "Object not found",
        ));
    }
    Ok(json!({ "Count": rows.len(), "Data": rows, "Total": rows.len() }))
}

fn template_with_content(shared: &Shared, id: Option<i64>) -> Result<Value, Response> {
    let world = lock(&shared.world);
    let template = id
        .and_then(|id| world.templates.get(&id))
        .ok_or_else(|| agent_error(StatusCode::NOT_FOUND, "not_found", "Object not found"))?;
    let mut row = template.to_json();
    row["DetailContent"] = template.detail_json();
    Ok(json!({ "Count": 1, "Data": [row], "Total": 1 }))
}

fn update_template(shared: &Shared, body: &Value) -> Result<Value, Response> {
    let id = body["id"].as_i64();
    {
        let mut world = lock(&shared.world);
        let template = id
            .and_then(|id| world.templates.get_mut(&id))
            .ok_or_else(|| agent_error(StatusCode::NOT_FOUND, "not_found", "Object not found"))?;
        if let Some(name) = body["Name"].as_str() {
            template.name = name.to_owned();
        }
        if let Some(html) = body["Html-part"].as_str() {
            template.html = html.to_owned();
        }
        if let Some(text) = body["Text-part"].as_str() {
            template.text = text.to_owned();
        }
        template.updated_at = super::now();
    }
    template_with_content(shared, id)
}
