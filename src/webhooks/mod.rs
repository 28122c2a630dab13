//! Webhooks in: one module per sender. Each verifies over the raw bytes, in constant time,
//! before anything is parsed or stored.

mod command;
pub mod intake;
mod modal;
pub mod receive;
pub mod replay;
pub mod slack_signature;

use axum::Router;
use axum::routing::post;

use crate::state::AppState;

/// The receivers' routes (`crate::router` mounts them beside the API).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/mailjet", post(receive::mailjet))
        .route("/webhooks/slack/events", post(receive::slack_events))
        .route(
            "/webhooks/slack/interactions",
            post(receive::slack_interactions),
        )
        .route("/webhooks/slack/commands", post(command::slack_commands))
}
