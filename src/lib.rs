//! campaign-sync: keeps a Campaign Manager in sync with Mailjet and Slack.
//!
//! One binary, several processes (see `cli`): `web` (webhooks, API, metrics), `worker` (jobs
//! and schedules), `migrate` (the release phase), `doctor` (checks a deployment).

pub mod api;
pub mod auth;
pub mod chaos;
pub mod cli;
pub mod clients;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod doctor;
pub mod jobs;
pub mod queue;
pub mod redis_conn;
pub mod router;
pub mod sandbox;
pub mod scheduler;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod webhooks;
pub mod worker;
