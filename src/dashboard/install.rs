//! Installing the Slack app. `GET /slack/install` sends a signed-in admin (via
//! `/dashboard/slack/install`) to Slack's authorize page with the scopes the service needs and a
//! `state` that is signed (HMAC-SHA256 with the app's client secret), expires in ten minutes,
//! is bound to the browser that started it (a cookie) and can be used once (a Redis key taken
//! with GETDEL). `GET /slack/oauth/callback` checks all of that, exchanges the code, refuses
//! another workspace than `SLACK_WORKSPACE_ID`, stores the tokens sealed (replacing an earlier
//! install in one statement) and says what happened; every outcome is audited.

use aws_lc_rs::hmac;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use maud::{Markup, html};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::document;
use super::error::DashError;
use super::session::Operator;
use crate::auth::constant_time_eq;
use crate::clients::slack::tokens::TokenStore;
use crate::config::AppEnv;
use crate::state::AppState;
use crate::store::audit::{self, Actor};

/// How long an install link lasts.
const STATE_TTL_SECS: i64 = 600;
const COOKIE: &str = "cs_slack_install";

/// `GET /slack/install`: the dashboard's session cookie lives under `/dashboard`.
pub async fn redirect() -> Redirect {
    Redirect::to("/dashboard/slack/install")
}

/// `GET /dashboard/slack/install`: an admin is sent to Slack's authorize page.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
) -> Result<Response, DashError> {
    if !operator.session.is_admin() {
        return Err(DashError::Forbidden(
            "only an admin may install the Slack app; sign in with the admin token".to_owned(),
        ));
    }
    let store = token_store(&state)?;
    let nonce = crate::store::random_token().map_err(DashError::redis)?;
    let expires = chrono::Utc::now().timestamp() + STATE_TTL_SECS;
    let signed = sign(&store, &nonce, expires);
    let mut conn = state.redis.clone();
    let _: () = redis::cmd("SET")
        .arg(state_key(&state, &nonce))
        .arg(operator.actor().name)
        .arg("EX")
        .arg(STATE_TTL_SECS)
        .query_async(&mut conn)
        .await
        .map_err(DashError::redis)?;
    let mut authorize = store
        .api_url
        .join("../oauth/v2/authorize")
        .map_err(|_| DashError::BadRequest("SLACK_API_URL cannot be joined".to_owned()))?;
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &store.client_id)
        .append_pair("scope", &crate::clients::slack::scopes::SCOPES.join(","))
        .append_pair("state", &signed)
        .append_pair("redirect_uri", &redirect_uri(&state, &headers));
    let cookie = format!(
        "{COOKIE}={nonce}; Path=/slack/oauth; HttpOnly; SameSite=Lax; Max-Age={STATE_TTL_SECS}{}",
        secure(&state)
    );
    let mut response = Redirect::to(authorize.as_str()).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// What Slack sends the browser back with.
#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /slack/oauth/callback`: checks the state, exchanges the code, stores the tokens.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    let (outcome, consumed) = finish(&state, &headers, &answer).await;
    let (status, title, body) = match outcome {
        Ok(done) => (StatusCode::OK, "Slack installed", installed_page(&done)),
        Err(Refusal::Unavailable(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Install not finished",
            html! { p role="alert" { (why) } },
        ),
        Err(Refusal::Refused(status, why)) => (
            status,
            "Install failed",
            html! { p role="alert" { (why) } p { "Nothing was stored. " a href="/slack/install" { "Start again" } "." } },
        ),
    };
    let page = document::bare(title, html! { main.signin { h1 { (title) } (body) } });
    let clear = format!(
        "{COOKIE}=; Path=/slack/oauth; HttpOnly; SameSite=Lax; Max-Age=0{}",
        secure(&state)
    );
    let mut response = (status, page).into_response();
    // Only a state that was used clears the browser's: a forged callback must not end a real
    // install in progress.
    if consumed && let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Why an install did not finish.
enum Refusal {
    /// The request or Slack's answer says no (4xx): shown as is.
    Refused(StatusCode, String),
    /// Redis, Postgres or Slack did not answer (503).
    Unavailable(String),
}

fn refused(status: StatusCode, why: impl Into<String>) -> Refusal {
    Refusal::Refused(status, why.into())
}

/// A finished install.
struct Done {
    team_id: String,
    team_name: String,
    scopes: String,
    by: String,
}

/// The install's outcome, and whether the state was used up.
async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    answer: &Callback,
) -> (Result<Done, Refusal>, bool) {
    let Ok(store) = token_store(state) else {
        let why = "Slack OAuth is not set up on this deployment (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and ENCRYPTION_KEYS)";
        return (Err(refused(StatusCode::NOT_FOUND, why)), false);
    };
    match take_state(state, &store, headers, answer.state.as_deref()).await {
        Ok(by) => (install(state, &store, headers, answer, by).await, true),
        Err(refusal) => (Err(refusal), false),
    }
}

/// After the state checked out: the exchange, stored and audited whatever its outcome.
async fn install(
    state: &AppState,
    store: &TokenStore,
    headers: &HeaderMap,
    answer: &Callback,
    by: String,
) -> Result<Done, Refusal> {
    let actor = Actor::new(&by);
    let result = exchange(state, store, headers, answer, &by).await;
    let (outcome, details) = match &result {
        Ok(done) => ("ok", json!({ "team": done.team_id, "scopes": done.scopes })),
        Err(Refusal::Refused(_, why) | Refusal::Unavailable(why)) => {
            ("failed", json!({ "reason": why }))
        }
    };
    let entity = store.workspace.clone();
    if let Err(e) = record(state, &actor, outcome, &entity, details).await {
        tracing::warn!(error = %crate::store::describe_sqlx(&e), "could not audit a Slack install");
    }
    result
}

async fn record(
    state: &AppState,
    actor: &Actor,
    outcome: &str,
    workspace: &str,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let mut conn = state.db.acquire().await?;
    audit::record_outcome(
        &mut conn,
        actor,
        "slack.install",
        "slack_workspace",
        workspace,
        outcome,
        details,
    )
    .await
}

/// Checks the state (signature, expiry, browser, single use): the actor who started it.
async fn take_state(
    state: &AppState,
    store: &TokenStore,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<String, Refusal> {
    let forged = || {
        refused(
            StatusCode::BAD_REQUEST,
            "the install link's state was not issued by this service or was altered; start again at /slack/install",
        )
    };
    let raw = raw.ok_or_else(|| {
        refused(
            StatusCode::BAD_REQUEST,
            "Slack's answer has no state; start again at /slack/install",
        )
    })?;
    let (nonce, expires) = verify(store, raw).ok_or_else(forged)?;
    if expires < chrono::Utc::now().timestamp() {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "the install link expired (links last 10 minutes); start again at /slack/install",
        ));
    }
    let browser = document::cookie(headers, COOKIE);
    if !browser.is_some_and(|c| constant_time_eq(c.as_bytes(), nonce.as_bytes())) {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "this install was started in another browser (or its cookie was blocked); start again at /slack/install in this one",
        ));
    }
    let mut conn = state.redis.clone();
    let by: Option<String> = redis::cmd("GETDEL")
        .arg(state_key(state, &nonce))
        .query_async(&mut conn)
        .await
        .map_err(|e| {
            Refusal::Unavailable(format!(
                "Redis did not answer ({}); start again in a moment",
                crate::redis_conn::describe(&e)
            ))
        })?;
    by.ok_or_else(|| {
        refused(
            StatusCode::BAD_REQUEST,
            "this install link was already used; start again at /slack/install",
        )
    })
}

/// Slack's decision, the code exchange, the workspace check and the stored tokens.
async fn exchange(
    state: &AppState,
    store: &TokenStore,
    headers: &HeaderMap,
    answer: &Callback,
    by: &str,
) -> Result<Done, Refusal> {
    if let Some(error) = answer.error.as_deref() {
        return Err(denial(error));
    }
    let code = answer
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            refused(
                StatusCode::BAD_REQUEST,
                "Slack's answer has neither a code nor an error",
            )
        })?;
    let uri = redirect_uri(state, headers);
    let exchanged = store
        .exchange(code, Some(&uri))
        .await
        .map_err(|e| match e.kind {
            crate::clients::error::FailureKind::Permanent => refused(
                StatusCode::BAD_REQUEST,
                format!("Slack refused the code: {}", e.message),
            ),
            _ => Refusal::Unavailable(format!(
                "Slack did not answer the code exchange ({}); start again",
                e.message
            )),
        })?;
    let team_id = exchanged.team_id().unwrap_or_default().to_owned();
    let team_name = exchanged.team_name().unwrap_or_default().to_owned();
    if let Some(expected) = state.settings.slack.workspace_id.as_deref()
        && expected != team_id
    {
        return Err(refused(
            StatusCode::FORBIDDEN,
            format!(
                "wrong workspace: this deployment serves {expected}, but the app was installed into {team_id} ({team_name}); remove it there and install it into {expected}"
            ),
        ));
    }
    store.save_install(&exchanged, by).await.map_err(|e| {
        Refusal::Unavailable(format!("the tokens could not be stored ({})", e.message))
    })?;
    Ok(Done {
        team_id,
        team_name,
        scopes: exchanged.scopes().to_owned(),
        by: by.to_owned(),
    })
}

/// Slack's `error=` answer, in words.
fn denial(error: &str) -> Refusal {
    let why = if error == "access_denied" {
        "the install was denied in Slack (access_denied)".to_owned()
    } else {
        format!(
            "Slack answered {:?}",
            error.chars().take(64).collect::<String>()
        )
    };
    refused(StatusCode::FORBIDDEN, why)
}

fn installed_page(done: &Done) -> Markup {
    html! {
        p role="status" { "The Slack app is installed in " strong { (done.team_name) } " (" code { (done.team_id) } ") by " (done.by) "." }
        p { "Granted scopes: " code { (done.scopes) } }
        p { "Slack jobs use the new tokens from now on. " a href="/dashboard" { "Back to the dashboard" } }
    }
}

fn token_store(state: &AppState) -> Result<TokenStore, DashError> {
    let store =
        crate::clients::slack_token_store(&state.settings, state.db.clone(), state.redis.clone())
            .map_err(|e| DashError::BadRequest(e.to_string()))?;
    store.ok_or_else(|| DashError::NotFound("Slack OAuth is not set up: set SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and ENCRYPTION_KEYS to install the app (a static SLACK_BOT_TOKEN needs no install)".to_owned()))
}

fn state_key(state: &AppState, nonce: &str) -> String {
    state.keys.key(&format!("slack-install:{nonce}"))
}

/// Where Slack sends the browser back: `PUBLIC_URL`, else the host this request came to.
fn redirect_uri(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(base) = &state.settings.server.public_url
        && let Ok(url) = base.join("/slack/oauth/callback")
    {
        return url.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}/slack/oauth/callback")
}

fn secure(state: &AppState) -> &'static str {
    if state.settings.app_env == AppEnv::Development {
        ""
    } else {
        "; Secure"
    }
}

fn mac(store: &TokenStore, payload: &str) -> String {
    let key = hmac::Key::new(
        hmac::HMAC_SHA256,
        store.client_secret.expose_secret().as_bytes(),
    );
    let tag = hmac::sign(&key, format!("slack-install|{payload}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// `nonce.expiry.mac`.
fn sign(store: &TokenStore, nonce: &str, expires: i64) -> String {
    let payload = format!("{nonce}.{expires}");
    let tag = mac(store, &payload);
    format!("{payload}.{tag}")
}

/// The nonce and expiry of a state this service signed.
fn verify(store: &TokenStore, raw: &str) -> Option<(String, i64)> {
    let (payload, tag) = raw.rsplit_once('.')?;
    if !constant_time_eq(mac(store, payload).as_bytes(), tag.as_bytes()) {
        return None;
    }
    let (nonce, expires) = payload.split_once('.')?;
    Some((nonce.to_owned(), expires.parse().ok()?))
}
