//! Signing in and out, and who is asking: a session cookie (HttpOnly, SameSite=Strict, Secure
//! outside development, expiring) names a stored session whose role says whether the
//! operator may act. Every action is a POST carrying the session's CSRF token.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, extract::Query};
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::document;
use super::error::DashError;
use crate::auth::constant_time_eq;
use crate::config::AppEnv;
use crate::state::AppState;
use crate::store::audit::{self, Actor};
use crate::store::dashboard_sessions::{self, Session};

const COOKIE: &str = "cs_dashboard";

/// The signed-in operator of a page request (any role). Unsigned requests are sent to the
/// sign-in page.
pub struct Operator {
    pub session: Session,
    pub request_id: Option<String>,
}

impl Operator {
    /// The audit actor of this operator's actions.
    pub fn actor(&self) -> Actor {
        Actor {
            name: format!("dashboard:{}:{}", self.session.role, self.session.name),
            request_id: self.request_id.clone(),
        }
    }

    /// Refuses an operator who may only look, and a form without this session's CSRF token.
    pub fn may_act(&self, csrf: &str) -> Result<(), DashError> {
        if !constant_time_eq(csrf.as_bytes(), self.session.csrf.as_bytes()) {
            return Err(DashError::Forbidden(
                "the form's CSRF token is missing or stale; reload the page and try again"
                    .to_owned(),
            ));
        }
        if !self.session.is_admin() {
            return Err(DashError::Forbidden(
                "you are signed in as a viewer, who may only look; sign in with the admin token to act"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, DashError> {
        if !configured(state) {
            return Err(DashError::NotConfigured);
        }
        let Some(id) = cookie(&parts.headers) else {
            return Err(DashError::SignIn);
        };
        let session = dashboard_sessions::find(&state.db, &id)
            .await
            .map_err(DashError::db)?
            .ok_or(DashError::SignIn)?;
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Operator {
            session,
            request_id,
        })
    }
}

fn configured(state: &AppState) -> bool {
    let d = &state.settings.dashboard;
    d.admin_token.is_some() || d.viewer_token.is_some()
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    document::cookie(headers, COOKIE)
        .filter(|v| !v.is_empty() && v.len() <= 100)
        .map(str::to_owned)
}

/// Where to go after signing in (only a dashboard path, never another site).
#[derive(Debug, Deserialize)]
pub struct Next {
    next: Option<String>,
}

fn safe_next(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with("/dashboard") && !n.contains("//") && !n.contains('\\'))
        .unwrap_or("/dashboard")
}

/// `GET /dashboard/login`.
pub async fn login_page(
    State(state): State<AppState>,
    next: Result<Query<Next>, axum::extract::rejection::QueryRejection>,
) -> Result<Markup, DashError> {
    if !configured(&state) {
        return Err(DashError::NotConfigured);
    }
    let next = next.ok().and_then(|Query(n)| n.next);
    Ok(login_form(safe_next(next.as_deref()), None))
}

fn login_form(next: &str, problem: Option<&str>) -> Markup {
    document::bare(
        "Sign in",
        html! {
            main.signin {
                h1 { "campaign-sync" }
                p { "Sign in with the dashboard's admin token (may act) or viewer token (may only look)." }
                @if let Some(p) = problem { p.problem role="alert" { (p) } }
                form method="post" action="/dashboard/login" {
                    input type="hidden" name="next" value=(next);
                    label for="name" { "Your name (recorded with every action)" }
                    input #name name="name" required maxlength="80" autocomplete="username";
                    label for="token" { "Token" }
                    input #token name="token" type="password" required autocomplete="current-password";
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
    next: Option<String>,
}

/// `POST /dashboard/login`: checks the token in constant time and starts a session.
pub async fn login(
    State(state): State<AppState>,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Result<Response, DashError> {
    if !configured(&state) {
        return Err(DashError::NotConfigured);
    }
    let Form(form) =
        form.map_err(|e| DashError::BadRequest(format!("sign-in form: {}", e.body_text())))?;
    let next = safe_next(form.next.as_deref()).to_owned();
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        let page = login_form(&next, Some("Give your name (1 to 80 characters)."));
        return Ok((axum::http::StatusCode::BAD_REQUEST, page).into_response());
    }
    let d = &state.settings.dashboard;
    let role = if matches_token(d.admin_token.as_ref(), &form.token) {
        "admin"
    } else if matches_token(d.viewer_token.as_ref(), &form.token) {
        "viewer"
    } else {
        let page = login_form(
            &next,
            Some("That token is not the admin or the viewer token."),
        );
        return Ok((axum::http::StatusCode::UNAUTHORIZED, page).into_response());
    };
    let id = dashboard_sessions::create(&state.db, role, name, d.session_ttl)
        .await
        .map_err(DashError::db)?;
    let actor = Actor::new(&format!("dashboard:{role}:{name}"));
    let mut conn = state.db.acquire().await.map_err(DashError::db)?;
    audit::record(
        &mut conn,
        &actor,
        "dashboard.sign_in",
        "dashboard_session",
        role,
        serde_json::json!({}),
    )
    .await
    .map_err(DashError::db)?;
    let cookie = session_cookie(&state, &id, d.session_ttl.as_secs());
    Ok(with_cookie(Redirect::to(&next).into_response(), &cookie))
}

fn matches_token(expected: Option<&SecretString>, presented: &str) -> bool {
    expected.is_some_and(|t| {
        constant_time_eq(t.expose_secret().as_bytes(), presented.trim().as_bytes())
    })
}

fn session_cookie(state: &AppState, value: &str, max_age: u64) -> String {
    let secure = if state.settings.app_env == AppEnv::Development {
        ""
    } else {
        "; Secure"
    };
    format!(
        "{COOKIE}={value}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    )
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The sign-out form.
#[derive(Debug, Deserialize)]
pub struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// `POST /dashboard/logout`: ends the session (a viewer may sign out too).
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    Form(form): Form<SignOut>,
) -> Result<Response, DashError> {
    if !constant_time_eq(form.csrf.as_bytes(), operator.session.csrf.as_bytes()) {
        return Err(DashError::Forbidden(
            "the form's CSRF token is missing or stale".to_owned(),
        ));
    }
    if let Some(id) = cookie(&headers) {
        dashboard_sessions::delete(&state.db, &id)
            .await
            .map_err(DashError::db)?;
    }
    let cookie = session_cookie(&state, "", 0);
    Ok(with_cookie(
        Redirect::to("/dashboard/login").into_response(),
        &cookie,
    ))
}
