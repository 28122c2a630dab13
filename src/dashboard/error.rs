//! What the dashboard answers when something is wrong: an HTML page that says what and what to
//! do, with the right status (never a 5xx for bad input).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::document;

/// An error of a dashboard page or action.
#[derive(Debug)]
pub enum DashError {
    /// Not signed in, or the session expired: go to the sign-in page.
    SignIn,
    /// Neither dashboard token is set.
    NotConfigured,
    /// The request is malformed (400).
    BadRequest(String),
    /// Signed in, but not allowed (403): a viewer acting, a missing CSRF token.
    Forbidden(String),
    /// No such thing (404).
    NotFound(String),
    /// Postgres or Redis did not answer (503).
    Unavailable(&'static str),
}

impl DashError {
    /// A database error: unavailable (logged once).
    pub fn db(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "dashboard: database query failed");
        DashError::Unavailable("the database did not answer; retry in a moment")
    }

    /// A queue (Redis) error: unavailable (logged once).
    pub fn redis(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "dashboard: Redis failed");
        DashError::Unavailable("Redis did not answer; retry in a moment")
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            DashError::SignIn => return Redirect::to("/dashboard/login").into_response(),
            DashError::NotConfigured => (
                StatusCode::NOT_FOUND,
                "Dashboard not configured",
                "Set DASHBOARD_ADMIN_TOKEN and/or DASHBOARD_VIEWER_TOKEN (at least 16 characters each) on the web process to use the dashboard.".to_owned(),
            ),
            DashError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            DashError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            DashError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            DashError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", m.to_owned()),
        };
        let page = document::bare(
            title,
            html! {
                main.signin {
                    h1 { (title) }
                    p role="alert" { (message) }
                    p { a href="/dashboard" { "Back to the dashboard" } }
                }
            },
        );
        (status, page).into_response()
    }
}
