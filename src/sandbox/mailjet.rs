//! Mailjet REST v3 (`/v3/REST/*`) and Send v3.1 (`/v3.1/send`) with Basic auth, and the MCP
//! agent (`/mailjet/*`, see `agent`), which shares the same data and send path.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Value, json};

use super::data::{Template, now};
use super::{Shared, lock};

#[path = "mailjet_agent.rs"]
mod agent;
#[path = "mailjet_send.rs"]
mod send;

use send::{send, send_v31};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3.1/send", post(send_v31))
        .route("/v3/REST/{resource}", any(rest_collection))
        .route("/v3/REST/{resource}/{id}", any(rest_item))
        .route("/v3/REST/{resource}/{id}/{sub}", any(rest_sub))
        .merge(agent::routes())
}

/// A REST error body.
pub fn rest_error(status: StatusCode, info: &str, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({ "ErrorInfo": info, "ErrorMessage": message, "StatusCode": status.as_u16() }),
        ),
    )
        .into_response()
}

pub(super) fn check_basic(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let config = shared.config();
    let presented =
        crate::auth::basic_credentials(headers).and_then(|raw| String::from_utf8(raw).ok());
    let expected = format!("{}:{}", config.mailjet_api_key, config.mailjet_api_secret);
    match presented {
        Some(p) if crate::auth::constant_time_eq(p.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(rest_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "API key authentication/authorization failure. You may be unauthorized to access the API or your API key may be expired. Visit API keys management section to check your keys.",
        )),
    }
}

/// Query parameters where the first occurrence of a repeated name wins (as Mailjet does).
pub fn first_wins(raw: Option<&str>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    params
}

/// The `{Count, Data, Total}` envelope with Mailjet's paging: Limit (default 10, 0 = max
/// 1000), Offset, Sort (`ID` or `ID DESC`), countOnly.
pub fn envelope(items: Vec<Value>, params: &HashMap<String, String>) -> Result<Value, Response> {
    envelope_of(
        items,
        params,
        |v| v["ID"].as_i64().unwrap_or(0),
        Value::clone,
    )
}

/// [`envelope`] over any items: only the returned page is turned into JSON. `Sort` sorts by
/// `ID` (ascending, or `ID DESC`).
pub fn envelope_of<T>(
    mut items: Vec<T>,
    params: &HashMap<String, String>,
    id: impl Fn(&T) -> i64,
    to_json: impl Fn(&T) -> Value,
) -> Result<Value, Response> {
    if params
        .get("countOnly")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    {
        return Ok(json!({ "Count": items.len(), "Data": [], "Total": items.len() }));
    }
    if let Some(sort) = params.get("Sort") {
        let mut parts = sort.split_whitespace();
        if parts.next() != Some("ID") {
            return Err(rest_error(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "The sandbox sorts by ID only",
            ));
        }
        let desc = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("DESC"));
        items.sort_by_key(|item| id(item));
        if desc {
            items.reverse();
        }
    }
    let number = |name: &str, default: usize| -> Result<usize, Response> {
        match params.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                rest_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    &format!("Invalid value for \"{name}\""),
                )
            }),
        }
    };
    let limit = match number("Limit", 10)? {
        0 => 1000,
        n => n.min(1000),
    };
    let offset = number("Offset", 0)?;
    let data: Vec<Value> = items.iter().skip(offset).take(limit).map(to_json).collect();
    Ok(json!({ "Count": data.len(), "Data": data, "Total": data.len() }))
}

fn ok_json(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// The integer filter named by the first of `names` present.
fn id_filter(params: &HashMap<String, String>, names: &[&str]) -> Result<Option<i64>, Response> {
    match names.iter().find_map(|n| params.get(*n)) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            rest_error(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &format!("Invalid value for \"{}\"", names[0]),
            )
        }),
    }
}

fn ok200(v: Value) -> Response {
    ok_json(StatusCode::OK, v)
}

fn not_found() -> Response {
    rest_error(StatusCode::NOT_FOUND, "", "Object not found")
}

async fn rest_collection(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(resource): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    if let Err(r) = check_basic(&shared, &headers) {
        return r;
    }
    let params = first_wins(q.as_deref());
    let result = match (method.as_str(), resource.as_str()) {
        ("GET", "campaign") => list_campaigns(&shared, &params).map(ok200),
        ("GET", "statcounters") => statcounters(&shared, &params).map(ok200),
        ("GET", "template") => list_templates(&shared, &params).map(ok200),
        ("POST", "template") => parse_body(&body).and_then(|b| create_template(&shared, &b)),
        ("GET", "contact") => list_contacts(&shared, &params).map(ok200),
        ("POST", "contact") => parse_body(&body).and_then(|b| create_contact(&shared, &b)),
        ("GET", "message") => list_messages(&shared, &params).map(ok200),
        (_, "campaign" | "statcounters" | "template" | "contact" | "message") => Err(rest_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            "Method not allowed for this resource",
        )),
        _ => Err(rest_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &format!("Unknown resource: \"{resource}\""),
        )),
    };
    result.unwrap_or_else(|r| r)
}

async fn rest_item(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path((resource, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_basic(&shared, &headers) {
        return r;
    }
    let result = match (method.as_str(), resource.as_str()) {
        ("GET", "campaign") => id
            .parse::<i64>()
            .ok()
            .and_then(|id| lock(&shared.world).campaign(id).map(|c| c.to_json()))
            .map(one)
            .ok_or_else(not_found),
        ("GET", "template") => with_template(&shared, &id, |t| Ok(one(t.to_json()))),
        ("PUT", "template") => parse_body(&body).and_then(|b| {
            with_template(&shared, &id, |t| {
                if let Some(name) = b["Name"].as_str() {
                    t.name = name.to_owned();
                }
                t.updated_at = now();
                Ok(one(t.to_json()))
            })
        }),
        ("DELETE", "template") => {
            let removed = id
                .parse::<i64>()
                .ok()
                .and_then(|id| lock(&shared.world).templates.remove(&id));
            removed.map(|_| Value::Null).ok_or_else(not_found)
        }
        ("GET", "contact") => find_contact(&shared, &id).map(one).ok_or_else(not_found),
        ("PUT", "contact") => parse_body(&body).and_then(|b| update_contact(&shared, &id, &b)),
        ("GET", "message") => id
            .parse::<i64>()
            .ok()
            .and_then(|id| message_json(&shared, id))
            .map(one)
            .ok_or_else(not_found),
        _ => Err(rest_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &format!("Unknown resource: \"{resource}\""),
        )),
    };
    match result {
        Ok(v) if v.is_null() => StatusCode::NO_CONTENT.into_response(),
        Ok(v) => ok_json(StatusCode::OK, v),
        Err(r) => r,
    }
}

async fn rest_sub(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path((resource, id, sub)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_basic(&shared, &headers) {
        return r;
    }
    if resource != "template" || sub != "detailcontent" {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &format!("Unknown resource: \"{resource}/{sub}\""),
        );
    }
    let result = match method.as_str() {
        "GET" => with_template(&shared, &id, |t| Ok(one(t.detail_json()))),
        // POST empties omitted parts; PUT keeps them.
        "POST" | "PUT" => parse_body(&body).and_then(|b| {
            with_template(&shared, &id, |t| {
                let replace = method == Method::POST;
                set_part(&mut t.html, &b["Html-part"], replace);
                set_part(&mut t.text, &b["Text-part"], replace);
                if let Some(subject) = b["Headers"]["Subject"].as_str() {
                    t.subject = subject.to_owned();
                }
                t.updated_at = now();
                Ok(one(t.detail_json()))
            })
        }),
        _ => Err(rest_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            "Method not allowed for this resource",
        )),
    };
    let status = if method == Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    result.map(|v| ok_json(status, v)).unwrap_or_else(|r| r)
}

fn set_part(part: &mut String, value: &Value, replace: bool) {
    match value.as_str() {
        Some(v) => *part = v.to_owned(),
        None if replace => part.clear(),
        None => {}
    }
}

fn one(v: Value) -> Value {
    json!({ "Count": 1, "Data": [v], "Total": 1 })
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|_| {
        rest_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "Malformed JSON, please review the syntax and properties types.",
        )
    })
}

pub(crate) fn list_campaigns(
    shared: &Shared,
    params: &HashMap<String, String>,
) -> Result<Value, Response> {
    let id = id_filter(params, &["CampaignID"])?;
    let subject = params.get("Subject");
    let world = lock(&shared.world);
    let items: Vec<&super::data::Campaign> = world
        .campaigns
        .iter()
        .filter(|c| id.is_none_or(|id| id == c.id))
        .filter(|c| subject.is_none_or(|s| c.subject.eq_ignore_ascii_case(s)))
        .collect();
    envelope_of(items, params, |c| c.id, |c| c.to_json())
}

pub(crate) fn statcounters(
    shared: &Shared,
    params: &HashMap<String, String>,
) -> Result<Value, Response> {
    let source = params
        .get("CounterSource")
        .map(String::as_str)
        .unwrap_or("");
    if source != "Campaign" {
        return Err(rest_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "The sandbox supports CounterSource=Campaign",
        ));
    }
    // Mailjet refuses a statcounters query without its timing and resolution.
    for (name, allowed) in [
        ("CounterTiming", &["Message", "Event"][..]),
        (
            "CounterResolution",
            &["Lifetime", "Day", "Hour", "Highest"][..],
        ),
    ] {
        match params.get(name).map(String::as_str) {
            Some(v) if allowed.contains(&v) => {}
            _ => {
                return Err(rest_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    &format!("{name} is required: one of {}", allowed.join(", ")),
                ));
            }
        }
    }
    let id = id_filter(params, &["SourceId", "SourceID"])?;
    let world = lock(&shared.world);
    let items = world
        .campaigns
        .iter()
        .filter(|c| id.is_none_or(|id| id == c.id))
        .collect::<Vec<_>>();
    envelope_of(items, params, |c| c.id, |c| c.statcounters(1))
}

fn list_templates(shared: &Shared, params: &HashMap<String, String>) -> Result<Value, Response> {
    let items = lock(&shared.world)
        .templates
        .values()
        .filter(|t| params.get("Name").is_none_or(|n| &t.name == n))
        .map(Template::to_json)
        .collect();
    envelope(items, params)
}

fn with_template(
    shared: &Shared,
    id: &str,
    f: impl FnOnce(&mut Template) -> Result<Value, Response>,
) -> Result<Value, Response> {
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let mut world = lock(&shared.world);
    let template = world.templates.get_mut(&id).ok_or_else(not_found)?;
    f(template)
}

pub(crate) fn create_template(shared: &Shared, body: &Value) -> Result<Response, Response> {
    let Some(name) = body["Name"].as_str().filter(|n| !n.is_empty()) else {
        return Err(rest_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "Mandatory property \"Name\" is missing",
        ));
    };
    let mut world = lock(&shared.world);
    if world.templates.values().any(|t| t.name == name) {
        return Err(rest_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "A template with this name already exists",
        ));
    }
    let id = world
        .templates
        .keys()
        .next_back()
        .copied()
        .unwrap_or(4_000_000)
        + 1;
    let template = Template {
        id,
        name: name.to_owned(),
        categories: body["Categories"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        purposes: vec!["marketing".to_owned()],
        html: body["Html-part"].as_str().unwrap_or("").to_owned(),
        text: body["Text-part"].as_str().unwrap_or("").to_owned(),
        subject: String::new(),
        created_at: now(),
        updated_at: now(),
    };
    let out = one(template.to_json());
    world.templates.insert(id, template);
    Ok(ok_json(StatusCode::CREATED, out))
}

fn list_contacts(shared: &Shared, params: &HashMap<String, String>) -> Result<Value, Response> {
    let items = lock(&shared.world)
        .contacts
        .values()
        .map(|c| c.to_json())
        .collect();
    envelope(items, params)
}

fn find_contact(shared: &Shared, id_or_email: &str) -> Option<Value> {
    let world = lock(&shared.world);
    let id = id_or_email.parse::<i64>().ok().or_else(|| {
        world
            .contacts_by_email
            .get(&id_or_email.to_ascii_lowercase())
            .copied()
    })?;
    world.contacts.get(&id).map(|c| c.to_json())
}

pub(crate) fn create_contact(shared: &Shared, body: &Value) -> Result<Response, Response> {
    let Some(email) = body["Email"].as_str().filter(|e| valid_email(e)) else {
        return Err(rest_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "Invalid or missing \"Email\"",
        ));
    };
    let mut world = lock(&shared.world);
    if world
        .contacts_by_email
        .contains_key(&email.to_ascii_lowercase())
    {
        return Err(rest_error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &format!("MJ18 A Contact resource with value \"{email}\" for Email already exists."),
        ));
    }
    let id = world.contact_for(email, body["Name"].as_str().unwrap_or(""));
    if let Some(contact) = world.contacts.get_mut(&id) {
        contact.excluded = body["IsExcludedFromCampaigns"].as_bool().unwrap_or(false);
    }
    let out = world
        .contacts
        .get(&id)
        .map(|c| one(c.to_json()))
        .unwrap_or(Value::Null);
    Ok(ok_json(StatusCode::CREATED, out))
}

pub(crate) fn update_contact(
    shared: &Shared,
    id_or_email: &str,
    body: &Value,
) -> Result<Value, Response> {
    let mut world = lock(&shared.world);
    let id = id_or_email
        .parse::<i64>()
        .ok()
        .or_else(|| {
            world
                .contacts_by_email
                .get(&id_or_email.to_ascii_lowercase())
                .copied()
        })
        .ok_or_else(not_found)?;
    let contact = world.contacts.get_mut(&id).ok_or_else(not_found)?;
    if let Some(name) = body["Name"].as_str() {
        contact.name = name.to_owned();
    }
    if let Some(excluded) = body["IsExcludedFromCampaigns"].as_bool() {
        contact.excluded = excluded;
    }
    Ok(one(contact.to_json()))
}

fn message_json(shared: &Shared, id: i64) -> Option<Value> {
    let world = lock(&shared.world);
    world.messages.iter().find(|m| m.id == id).map(|m| {
        json!({
            "ArrivedAt": super::data::iso(m.arrived_at), "AttachmentCount": 0, "AttemptCount": 0, "CampaignID": m.campaign_id,
            "ContactAlt": "", "ContactID": m.contact_id, "Delay": 0, "DestinationID": 0, "FilterTime": 0, "ID": m.id,
            "IsClickTracked": true, "IsHTMLPartIncluded": true, "IsOpenTracked": true, "IsTextPartIncluded": true,
            "IsUnsubTracked": false, "MessageSize": 1024, "SenderID": 1, "SpamassassinScore": 0, "SpamassRules": "",
            "StateID": 0, "StatePermanent": false, "Status": "sent", "Subject": "", "UUID": m.uuid, "CustomID": m.custom_id,
        })
    })
}

fn list_messages(shared: &Shared, params: &HashMap<String, String>) -> Result<Value, Response> {
    let ids: Vec<i64> = {
        let world = lock(&shared.world);
        match params.get("CustomID") {
            Some(custom) => world
                .messages_by_custom_id
                .get(custom)
                .map(|idx| idx.iter().map(|i| world.messages[*i].id).collect())
                .unwrap_or_default(),
            None => world.messages.iter().map(|m| m.id).collect(),
        }
    };
    let items = ids
        .into_iter()
        .filter_map(|id| message_json(shared, id))
        .collect();
    envelope(items, params)
}

/// A loose address check (what Mailjet rejects as mj-0013).
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains(char::is_whitespace)
        && email.len() <= 254
}
