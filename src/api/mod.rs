//! The internal API under `/api/` (campaigns, team members, email requests, their OpenAPI
//! document and Swagger UI), health checks and metrics. `crate::router` mounts these beside the
//! webhook receivers and wraps them in the one set of layers.

mod alerts;
mod analytics;
mod approvals;
mod audit;
pub mod auth;
mod campaigns;
pub mod email_requests;
pub mod error;
pub mod health;
mod input;
pub mod metrics;
mod notifications;
mod openapi;
mod people;
mod revenue;
mod team_members;
mod templates;
mod upsert;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

/// The API's routes, the OpenAPI document and Swagger UI, health and metrics.
pub fn routes(state: AppState) -> Router<AppState> {
    let (api, openapi) = openapi::routes(state);
    let docs = utoipa_swagger_ui::SwaggerUi::new("/api/docs")
        .external_url_unchecked("/api/openapi.json", openapi);
    Router::new()
        .merge(api)
        .merge(docs)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
}
