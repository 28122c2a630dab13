//! Upstream clients. So far: the Redis cache of Slack look-ups, whose keys the webhook
//! processing invalidates.

pub mod slack_cache;
