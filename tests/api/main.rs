//! The integration tests: one binary, real Postgres and Redis, the app over real HTTP.

mod helpers;

mod cli;
mod health;
mod http;
mod queue;
mod schema;
