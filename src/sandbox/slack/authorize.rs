//! Slack's authorize step (`/oauth/v2/authorize`): a page that asks to allow or cancel the
//! install of the app with the requested scopes; allowing sends the browser to the
//! `redirect_uri` with a single-use `code` (and the `state` untouched), cancelling with
//! `error=access_denied`. `team=` picks another workspace than the sandbox's own, so a test
//! can install into the wrong one.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::super::{Shared, lock};

/// A code handed out by the authorize step, until `oauth.v2.access` takes it.
#[derive(Debug, Clone)]
pub struct IssuedCode {
    pub team_id: String,
    pub team_name: String,
    pub scopes: String,
    pub redirect_uri: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What the app sent, checked as Slack checks it.
fn checked<'a>(
    shared: &Shared,
    q: &'a HashMap<String, String>,
) -> Result<(&'a str, &'a str), Response> {
    let bad = |why: &str| (StatusCode::BAD_REQUEST, Html(format!("<p>{why}</p>"))).into_response();
    if q.get("client_id").map(String::as_str) != Some(shared.config().slack_client_id.as_str()) {
        return Err(bad("invalid_client_id"));
    }
    let redirect = q.get("redirect_uri").map(String::as_str).unwrap_or("");
    if url::Url::parse(redirect).is_err() {
        return Err(bad("bad_redirect_uri"));
    }
    Ok((redirect, q.get("state").map(String::as_str).unwrap_or("")))
}

/// `GET /oauth/v2/authorize`: the consent page.
pub async fn page(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refusal) = checked(&shared, &q) {
        return refusal;
    }
    let team = lock(&shared.world).workspace.team_name.clone();
    let hidden: String = q
        .iter()
        .map(|(k, v)| {
            format!(
                r#"<input type="hidden" name="{}" value="{}">"#,
                escape(k),
                escape(v)
            )
        })
        .collect();
    let scopes = escape(q.get("scope").map(String::as_str).unwrap_or(""));
    Html(format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Install app · Slack sandbox</title></head><body>
<h1>campaign-sync is requesting permission to access the {team} Slack workspace</h1><p>Scopes: <code>{scopes}</code></p>
<form method="get" action="authorize/decide">{hidden}<button name="decision" value="allow">Allow</button>
<button name="decision" value="deny">Cancel</button></form></body></html>"#,
        team = escape(&team)
    ))
    .into_response()
}

/// `GET /oauth/v2/authorize/decide?decision=allow|deny`: back to the app.
pub async fn decide(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (redirect, state) = match checked(&shared, &q) {
        Ok(v) => v,
        Err(refusal) => return refusal,
    };
    let Ok(mut back) = url::Url::parse(redirect) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if q.get("decision").map(String::as_str) != Some("allow") {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", state);
        return Redirect::to(back.as_str()).into_response();
    }
    let (own_id, own_name) = {
        let world = lock(&shared.world);
        (
            world.workspace.team_id.clone(),
            world.workspace.team_name.clone(),
        )
    };
    let team_id = q.get("team").cloned().unwrap_or(own_id.clone());
    let team_name = if team_id == own_id {
        own_name
    } else {
        format!("Workspace {team_id}")
    };
    let code = format!("sandbox-code-{}", uuid::Uuid::new_v4().simple());
    let issued = IssuedCode {
        team_id,
        team_name,
        scopes: q.get("scope").cloned().unwrap_or_default(),
        redirect_uri: redirect.to_owned(),
    };
    lock(&shared.tokens)
        .issued_codes
        .insert(code.clone(), issued);
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state);
    Redirect::to(back.as_str()).into_response()
}
