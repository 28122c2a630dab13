//! Upstream clients and the one retry layer they all use. So far: the retry layer and error
//! classification, the Mailjet agent's credentials and client, and the Redis cache of Slack
//! look-ups (whose keys the webhook processing invalidates). Issue 5 continues here.

pub mod auth;
pub mod crypto;
pub mod error;
pub mod limiter;
pub mod mailjet;
pub mod mailjet_agent;
pub mod retry;
pub mod slack;
pub mod slack_cache;
pub mod slack_tokens;
