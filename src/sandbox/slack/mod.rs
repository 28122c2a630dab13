//! The Slack Web API: `/api/<method>`, GET query, form or JSON bodies, bearer header or
//! `token` parameter, `{ok:false,error}` at HTTP 200, cursor pagination, tier rate limits with
//! 429 + `Retry-After`, about one message per second per channel, and OAuth v2 with token
//! rotation (single-use refresh tokens, `token_expired` for expired access tokens).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use serde_json::{Value, json};

use super::data::SlackChannel;
use super::{Shared, faults, lock};

mod authorize;
mod conversations;
mod messages;

/// Rotated tokens issued through `oauth.v2.access`.
#[derive(Debug, Default)]
pub struct Tokens {
    access: HashMap<String, Instant>,
    refresh: HashMap<String, bool>,
    used_codes: std::collections::HashSet<String>,
    /// Codes the authorize step handed out, until they are exchanged.
    issued_codes: HashMap<String, authorize::IssuedCode>,
    /// What each live refresh token was granted (its workspace and scopes carry over).
    grants: HashMap<String, authorize::IssuedCode>,
    /// Agent JWTs issued (iat) before this unix time are rejected.
    pub(crate) jwt_not_before: Option<i64>,
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/{method}", any(call))
        .route("/oauth/v2/authorize", axum::routing::get(authorize::page))
        .route(
            "/oauth/v2/authorize/decide",
            axum::routing::get(authorize::decide),
        )
}

pub(super) fn ok(mut v: Value) -> Value {
    v["ok"] = Value::Bool(true);
    v
}

pub(super) fn err(code: &str) -> Value {
    json!({ "ok": false, "error": code })
}

/// Arguments from the query string, a form body or a JSON body.
fn params(headers: &HeaderMap, query: Option<&str>, body: &Bytes) -> HashMap<String, Value> {
    let mut params: HashMap<String, Value> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        params.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            params.extend(map);
        }
    } else if !body.is_empty() {
        for (k, v) in url::form_urlencoded::parse(body) {
            params.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    params
}

pub(super) fn arg<'a>(params: &'a HashMap<String, Value>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(super) fn flag(params: &HashMap<String, Value>, name: &str) -> bool {
    match params.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        _ => false,
    }
}

pub(super) fn number(params: &HashMap<String, Value>, name: &str) -> Option<i64> {
    match params.get(name) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// Tier of each method (per method, per workspace, per app).
fn tier(method: &str) -> Option<usize> {
    match method {
        "users.list"
        | "usergroups.list"
        | "usergroups.users.list"
        | "conversations.list"
        | "conversations.create"
        | "conversations.rename"
        | "conversations.archive" => Some(1),
        "users.getPresence"
        | "users.lookupByEmail"
        | "conversations.info"
        | "conversations.open"
        | "conversations.history"
        | "conversations.replies"
        | "pins.add"
        | "chat.update"
        | "reactions.add" => Some(2),
        "conversations.members"
        | "auth.test"
        | "users.info"
        | "chat.postEphemeral"
        | "chat.getPermalink"
        | "views.open" => Some(3),
        _ => None,
    }
}

async fn call(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = params(&headers, query.as_deref(), &body);
    if method == "oauth.v2.access" {
        return axum::Json(oauth_access(&shared, &headers, &params)).into_response();
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| arg(&params, "token").map(str::to_owned));
    let Some(token) = token else {
        return axum::Json(err("not_authed")).into_response();
    };
    if let Some(error) = check_token(&shared, &token) {
        return axum::Json(err(error)).into_response();
    }
    if let Some(tier) = tier(&method)
        && let Some(wait) = over_tier(&shared, &method, &token, tier)
    {
        return faults::rate_limited(&shared, &format!("slack.{method}"), Some(wait));
    }
    let answer = match method.as_str() {
        "auth.test" => auth_test(&shared),
        "users.list" => users_list(&shared, &params),
        "users.getPresence" => presence(&shared, &params),
        "usergroups.list" => usergroups(&shared, &params),
        "usergroups.users.list" => usergroup_users(&shared, &params),
        "conversations.list" => conversations::conversations_list(&shared, &params),
        "conversations.info" => conversations::conversations_info(&shared, &params),
        "conversations.members" => conversations::conversations_members(&shared, &params),
        "conversations.create" => conversations::conversations_create(&shared, &params),
        "conversations.archive" => conversations::conversations_archive(&shared, &params),
        "conversations.rename" => conversations::conversations_rename(&shared, &params),
        "users.info" => users_info(&shared, &params),
        "users.lookupByEmail" => users_lookup(&shared, &params),
        "chat.postMessage" => match messages::post_message(&shared, &params) {
            Err(wait) => {
                return faults::rate_limited(&shared, "slack.chat.postMessage", Some(wait));
            }
            Ok(v) => v,
        },
        other => messages::call(&shared, other, &params).unwrap_or_else(|| err("unknown_method")),
    };
    axum::Json(answer).into_response()
}

fn check_token(shared: &Shared, token: &str) -> Option<&'static str> {
    let config = shared.config();
    if token == config.slack_bot_token {
        return None;
    }
    let tokens = lock(&shared.tokens);
    match tokens.access.get(token) {
        None => Some("invalid_auth"),
        Some(expires) if Instant::now() >= *expires => Some("token_expired"),
        Some(_) => None,
    }
}

/// Seconds to wait when `token` has used up `method`'s tier in the last minute.
fn over_tier(shared: &Shared, method: &str, token: &str, tier: usize) -> Option<u64> {
    let per_minute = shared.config().slack_tiers_per_minute[tier] as usize;
    let mut limits = lock(&shared.limits);
    let window = limits
        .slack
        .entry((method.to_owned(), token.to_owned()))
        .or_default();
    let now = Instant::now();
    // Times are in order: dropping expired ones from the front is amortised O(1).
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        window.pop_front();
    }
    if window.len() >= per_minute {
        let oldest = window.front().copied().unwrap_or(now);
        let wait = Duration::from_secs(60).saturating_sub(now.duration_since(oldest));
        return Some(wait.as_secs().max(1));
    }
    window.push_back(now);
    None
}

fn auth_test(shared: &Shared) -> Value {
    let world = lock(&shared.world);
    let ws = &world.workspace;
    ok(
        json!({ "url": "https://sandbox.slack.example/", "team": ws.team_name, "user": "campaign-sync", "team_id": ws.team_id, "user_id": ws.bot_user_id, "bot_id": "B0SANDBOT1", "is_enterprise_install": false }),
    )
}

pub(super) fn encode_cursor(kind: &str, index: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{index}"))
}

pub(super) fn decode_cursor(kind: &str, cursor: Option<&str>) -> Result<usize, Value> {
    let Some(cursor) = cursor else { return Ok(0) };
    base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            s.strip_prefix(&format!("{kind}:"))
                .and_then(|i| i.parse().ok())
        })
        .ok_or_else(|| err("invalid_cursor"))
}

/// One page of `items` from the cursor, with `response_metadata.next_cursor` ("" at the end);
/// only the page is turned into JSON.
pub(super) fn paginate<T>(
    shared: &Shared,
    kind: &str,
    items: &[T],
    params: &HashMap<String, Value>,
    default_limit: usize,
    key: &str,
    to_json: impl Fn(&T) -> Value,
) -> Value {
    let start = match decode_cursor(kind, arg(params, "cursor")) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut limit = number(params, "limit")
        .map(|l| l.clamp(1, 1000) as usize)
        .unwrap_or(default_limit);
    if shared.config().slack_short_pages && limit > 1 && fastrand::bool() {
        limit = fastrand::usize(1..limit);
    }
    let end = (start + limit).min(items.len());
    let page: Vec<Value> = items
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(to_json)
        .collect();
    let next = if end < items.len() {
        encode_cursor(kind, end)
    } else {
        String::new()
    };
    let mut out = json!({ "response_metadata": { "next_cursor": next } });
    out[key] = Value::Array(page);
    ok(out)
}

fn users_list(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let world = lock(&shared.world);
    let ws = &world.workspace;
    let mut page = paginate(shared, "user", &ws.users, params, 1000, "members", |u| {
        u.to_json(&ws.team_id)
    });
    if page["ok"] == true {
        page["cache_ts"] = json!(super::data::now());
    }
    page
}

fn users_info(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let world = lock(&shared.world);
    let ws = &world.workspace;
    match arg(params, "user").and_then(|id| ws.users.iter().find(|u| u.id == id)) {
        Some(user) => ok(json!({ "user": user.to_json(&ws.team_id) })),
        None => err("user_not_found"),
    }
}

fn users_lookup(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let world = lock(&shared.world);
    let ws = &world.workspace;
    let Some(email) = arg(params, "email") else {
        return err("invalid_arguments");
    };
    match ws
        .users
        .iter()
        .find(|u| !u.deleted && u.email.eq_ignore_ascii_case(email))
    {
        Some(user) => ok(json!({ "user": user.to_json(&ws.team_id) })),
        None => err("users_not_found"),
    }
}

fn presence(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let world = lock(&shared.world);
    match arg(params, "user").and_then(|id| world.workspace.users.iter().find(|u| u.id == id)) {
        Some(user) => ok(json!({ "presence": user.presence })),
        None => err("user_not_found"),
    }
}

/// The members of seeded group `i` (0 marketing, 1 design, 2 approvers).
fn group_members(ws: &super::data::Workspace, i: usize) -> Vec<&str> {
    ws.users
        .iter()
        .filter(|u| !u.deleted && !u.is_bot)
        .skip(i * 3)
        .step_by(5)
        .take(10)
        .map(|u| u.id.as_str())
        .collect()
}

/// `usergroups.users.list`: the user ids of one group.
fn usergroup_users(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let world = lock(&shared.world);
    let ws = &world.workspace;
    let index = arg(params, "usergroup")
        .and_then(|g| g.strip_prefix("S0SANDBX"))
        .and_then(|i| i.parse::<usize>().ok());
    match index.filter(|i| *i < 3) {
        Some(i) => ok(json!({ "users": group_members(ws, i) })),
        None => err("no_such_subteam"),
    }
}

fn usergroups(shared: &Shared, params: &HashMap<String, Value>) -> Value {
    let world = lock(&shared.world);
    let ws = &world.workspace;
    let groups: Vec<Value> = ["marketing", "design", "approvers"]
        .iter()
        .enumerate()
        .map(|(i, handle)| {
            let users = group_members(ws, i);
            let mut group = json!({
                "id": format!("S0SANDBX{i}"), "team_id": ws.team_id, "is_usergroup": true, "is_subteam": true,
                "name": handle, "description": format!("The {handle} team"), "handle": handle, "is_external": false,
                "date_create": 1_767_225_600, "date_update": 1_767_225_600, "date_delete": 0, "auto_type": null,
                "created_by": ws.bot_user_id, "updated_by": ws.bot_user_id, "deleted_by": null,
                "prefs": { "channels": [], "groups": [] }, "channel_count": 0,
            });
            if flag(params, "include_users") {
                group["users"] = json!(users);
            }
            if flag(params, "include_count") {
                group["user_count"] = json!(users.len());
            }
            group
        })
        .collect();
    ok(json!({ "usergroups": groups }))
}

pub(super) fn find_channel<'a>(
    channels: &'a mut [SlackChannel],
    key: &str,
) -> Option<&'a mut SlackChannel> {
    let name = key.trim_start_matches('#');
    channels.iter_mut().find(|c| c.id == key || c.name == name)
}

fn client_credentials(
    headers: &HeaderMap,
    params: &HashMap<String, Value>,
) -> (Option<String>, Option<String>) {
    let basic = crate::auth::basic_credentials(headers)
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (
            arg(params, "client_id").map(str::to_owned),
            arg(params, "client_secret").map(str::to_owned),
        ),
    }
}

/// `oauth.v2.access`: code exchange and refresh-token rotation.
fn oauth_access(shared: &Shared, headers: &HeaderMap, params: &HashMap<String, Value>) -> Value {
    let config = shared.config();
    let (client_id, client_secret) = client_credentials(headers, params);
    if client_id.as_deref() != Some(config.slack_client_id.as_str()) {
        return err("invalid_client_id");
    }
    if client_secret.as_deref() != Some(config.slack_client_secret.as_str()) {
        return err("bad_client_secret");
    }
    let mut tokens = lock(&shared.tokens);
    let issued = match take_grant(&mut tokens, params) {
        Ok(issued) => issued,
        Err(refusal) => return refusal,
    };
    let access = format!("xoxe.xoxb-1-{}", uuid::Uuid::new_v4().simple());
    let refresh = format!("xoxe-1-{}", uuid::Uuid::new_v4().simple());
    tokens
        .access
        .insert(access.clone(), Instant::now() + config.slack_token_ttl);
    tokens.refresh.insert(refresh.clone(), true);
    if let Some(grant) = &issued {
        tokens.grants.insert(refresh.clone(), grant.clone());
    }
    drop(tokens);
    let world = lock(&shared.world);
    let ws = &world.workspace;
    let (team_id, team_name, scope) = match issued {
        Some(code) => (code.team_id, code.team_name, code.scopes),
        None => (
            ws.team_id.clone(),
            ws.team_name.clone(),
            DEFAULT_SCOPES.to_owned(),
        ),
    };
    ok(json!({
        "app_id": "A0SANDBOX1", "access_token": access, "expires_in": config.slack_token_ttl.as_secs(), "refresh_token": refresh,
        "token_type": "bot", "scope": scope,
        "bot_user_id": ws.bot_user_id, "team": { "id": team_id, "name": team_name }, "enterprise": null, "is_enterprise_install": false,
    }))
}

/// Uses up the grant (a code, once; a refresh token, once): the authorize step's record of a
/// code, if it came through it.
fn take_grant(
    tokens: &mut Tokens,
    params: &HashMap<String, Value>,
) -> Result<Option<authorize::IssuedCode>, Value> {
    match arg(params, "grant_type").unwrap_or("authorization_code") {
        "authorization_code" => {
            let Some(code) = arg(params, "code") else {
                return Err(err("invalid_code"));
            };
            if !code.starts_with("sandbox-code-") || !tokens.used_codes.insert(code.to_owned()) {
                return Err(err("invalid_code"));
            }
            let issued = tokens.issued_codes.remove(code);
            let sent = arg(params, "redirect_uri");
            if let Some(code) = &issued
                && sent.is_some_and(|uri| uri != code.redirect_uri)
            {
                return Err(err("bad_redirect_uri"));
            }
            Ok(issued)
        }
        "refresh_token" => {
            let Some(refresh) = arg(params, "refresh_token") else {
                return Err(err("invalid_refresh_token"));
            };
            match tokens.refresh.get_mut(refresh) {
                Some(valid) if *valid => *valid = false,
                _ => return Err(err("invalid_refresh_token")),
            }
            Ok(tokens.grants.remove(refresh))
        }
        _ => Err(err("invalid_grant_type")),
    }
}

/// The scopes granted to a code that did not come through the authorize step.
const DEFAULT_SCOPES: &str = "chat:write,users:read,users:read.email,channels:read,channels:manage,reactions:write,usergroups:read";

/// Expires every rotated access token now (and agent JWTs issued before now).
pub(crate) fn expire_all(shared: &Shared) {
    let mut tokens = lock(&shared.tokens);
    let now = Instant::now();
    for expires in tokens.access.values_mut() {
        *expires = now;
    }
    // Tokens issued before this second are refused; one minted now is accepted.
    tokens.jwt_not_before = Some(super::data::now());
}
