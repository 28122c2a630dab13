//! The integration tests: one binary, real Postgres and Redis, the app over real HTTP.

mod helpers;

mod analytics;
mod architecture;
mod audit_trail;
mod chaos;
mod chaos_command;
mod cli;
mod clients;
mod dashboard;
mod deploy_files;
mod email;
mod email_requests_list;
mod health;
mod http;
mod internal_api;
mod jobs_cli;
mod metrics_exposition;
mod openapi_fuzz;
mod privacy;
mod queue;
mod reconcile;
mod sandbox;
mod sandbox_callbacks;
mod sandbox_slack;
mod sandbox_slack_web;
mod schedules;
mod schema;
mod secrets_hygiene;
mod slack_client;
mod slack_exactly_once;
mod slack_install;
mod slack_reminders;
mod slack_workflows;
mod syncs;
mod webhooks;
