//! The Redis connection: TLS (`rediss://`, with the opt-in for self-signed certificates),
//! timeouts, automatic reconnection, and the key prefix every key of ours carries.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;

use crate::config::RedisSettings;

/// Errors opening Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// REDIS_URL is not set.
    #[error("REDIS_URL is not set")]
    NotConfigured,
    /// The URL was rejected by the client (the message never contains the URL).
    #[error("REDIS_URL is not usable: {0}")]
    BadUrl(String),
}

/// The URL handed to the client: `#insecure` is added when self-signed certificates are
/// accepted, the form the `redis` crate understands.
fn client_url(settings: &RedisSettings) -> Result<String, RedisSetupError> {
    let url = settings
        .url
        .as_ref()
        .ok_or(RedisSetupError::NotConfigured)?;
    let mut url = url.expose_secret().to_owned();
    if settings.tls_insecure && !url.ends_with("#insecure") {
        url.push_str("#insecure");
    }
    Ok(url)
}

/// A client for the configured URL.
pub fn client(settings: &RedisSettings) -> Result<redis::Client, RedisSetupError> {
    let url = client_url(settings)?;
    redis::Client::open(url).map_err(|e| RedisSetupError::BadUrl(describe(&e)))
}

/// A multiplexed connection that reconnects by itself, with exponential backoff between
/// attempts. It connects on first use, so a process starts while Redis is down.
pub fn connection(settings: &RedisSettings) -> Result<ConnectionManager, RedisSetupError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.response_timeout))
        .set_number_of_retries(3)
        .set_max_delay(std::time::Duration::from_secs(2));
    client(settings)?
        .get_connection_manager_lazy(config)
        .map_err(|e| RedisSetupError::BadUrl(describe(&e)))
}

/// Builds our keys: `{prefix}:{rest}`. Keys of one queue additionally carry a `{hash tag}`
/// (added by the queue) so that they live in one slot on Redis Cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{name}`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
}

/// A short description of a Redis error that never includes the URL or credentials.
pub fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else {
        e.category().to_owned()
    }
}
