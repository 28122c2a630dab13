//! The operator's dashboard at `/dashboard`: server-rendered pages (maud), embedded assets, a
//! live region each page refreshes while visible, and actions that are CSRF-checked POSTs
//! allowed to admins only and recorded in the audit log. It reads what the API and the CLI
//! read (the store, the queues, the per-minute timelines); it never calls an upstream.

mod assets;
mod campaigns;
mod chart;
mod dead;
mod document;
mod error;
mod install;
mod jobs;
mod layout;
mod overview;
mod requests;
mod session;
mod webhooks;
mod workflows;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::state::AppState;

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(overview::page))
        .route("/dashboard/", get(overview::page))
        .route(
            "/dashboard/login",
            get(session::login_page).post(session::login),
        )
        .route("/dashboard/logout", post(session::logout))
        .route("/dashboard/schedules", get(jobs::schedules))
        .route("/dashboard/schedules/run", post(jobs::run_now))
        .route("/dashboard/queues", get(jobs::queues))
        .route("/dashboard/queues/pause", post(jobs::pause))
        .route("/dashboard/queues/resume", post(jobs::resume))
        .route("/dashboard/dead", get(dead::page))
        .route("/dashboard/dead/task", get(dead::task))
        .route("/dashboard/dead/act", post(dead::act))
        .route("/dashboard/email-requests", get(requests::list))
        .route("/dashboard/email-requests/{id}", get(requests::detail))
        .route(
            "/dashboard/email-requests/{id}/cancel",
            post(requests::cancel),
        )
        .route("/dashboard/campaigns", get(campaigns::list))
        .route("/dashboard/campaigns/{id}", get(campaigns::detail))
        .route("/dashboard/webhooks", get(webhooks::page))
        .route("/dashboard/webhooks/replay", post(webhooks::replay))
        .route("/dashboard/approvals", get(workflows::approvals))
        .route("/dashboard/analytics", get(workflows::analytics))
        .route("/dashboard/audit", get(workflows::audit))
        .route("/dashboard/slack/install", get(install::start))
        .route("/slack/install", get(install::redirect))
        .route("/slack/oauth/callback", get(install::callback))
        .route("/dashboard/assets/{tag}/dashboard.css", get(assets::css))
        .route("/dashboard/assets/{tag}/dashboard.js", get(assets::js))
        .layer(middleware::from_fn(security_headers))
}

/// No framing, no other origin's scripts or styles, no caching of pages, no referrer.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/dashboard/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
