//! `GET /healthz` (the process is alive) and `GET /readyz` (Postgres and Redis answer).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// The process is alive and serving.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when Postgres and Redis both answer within the readiness timeout, else 503 naming
/// each dependency that failed and why.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let timeout = state.settings.server.readiness_timeout;
    let (pg, redis) = tokio::join!(
        check_postgres(&state, timeout),
        check_redis(&state, timeout)
    );
    let ready = pg.is_ok() && redis.is_ok();
    let describe = |r: &Result<(), String>| match r {
        Ok(()) => json!({ "status": "ok" }),
        Err(e) => json!({ "status": "failed", "error": e }),
    };
    let failed: Vec<&str> = [("postgres", &pg), ("redis", &redis)]
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| *name)
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "failed": failed,
        "checks": { "postgres": describe(&pg), "redis": describe(&redis) },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn check_postgres(state: &AppState, timeout: Duration) -> Result<(), String> {
    let query = crate::store::ping(&state.db);
    match tokio::time::timeout(timeout, query).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(crate::store::describe_sqlx(&e)),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn check_redis(state: &AppState, timeout: Duration) -> Result<(), String> {
    let mut conn = state.redis.clone();
    let ping = redis::cmd("PING");
    match tokio::time::timeout(timeout, ping.query_async::<String>(&mut conn)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(crate::redis_conn::describe(&e)),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
