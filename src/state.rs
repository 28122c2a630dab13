//! What every HTTP handler may use (the API's and the webhook receivers'); cheap to clone.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::config::Settings;
use crate::redis_conn::Keys;

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The validated settings.
    pub settings: Arc<Settings>,
    /// Postgres pool.
    pub db: PgPool,
    /// Redis connection (multiplexed, reconnecting).
    pub redis: ConnectionManager,
    /// Redis key builder with this deployment's prefix.
    pub keys: Keys,
    /// The process's metrics recorder.
    pub prometheus: PrometheusHandle,
}
