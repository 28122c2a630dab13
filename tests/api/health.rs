use serde_json::Value;

use crate::helpers::{closed_port, migrated_database, spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_is_ready_when_postgres_and_redis_answer() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    assert_eq!(body["checks"]["redis"]["status"], "ok");
}

#[tokio::test]
async fn readyz_is_503_naming_postgres_when_postgres_is_unreachable() {
    let (_, db) = migrated_database().await;
    let bad = format!("postgres://postgres@127.0.0.1:{}/none", closed_port());
    let app = spawn_app_with(bad.clone(), db, |env| {
        env.insert("DATABASE_URL".into(), bad);
    })
    .await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["failed"], serde_json::json!(["postgres"]));
    assert_eq!(body["checks"]["redis"]["status"], "ok");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no connection details leak: {body}"
    );
}

#[tokio::test]
async fn readyz_is_503_naming_redis_when_redis_is_unreachable() {
    let (url, db) = migrated_database().await;
    let app = spawn_app_with(url, db, |env| {
        env.insert(
            "REDIS_URL".into(),
            format!("redis://127.0.0.1:{}", closed_port()),
        );
    })
    .await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["failed"], serde_json::json!(["redis"]));
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
}

#[tokio::test]
async fn readyz_gives_up_on_a_silent_dependency_within_its_timeout() {
    // A listener that accepts and never answers: Redis "hangs".
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let (url, db) = migrated_database().await;
    let app = spawn_app_with(url, db, |env| {
        env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}"));
        env.insert("READINESS_TIMEOUT_MS".into(), "300".into());
    })
    .await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["failed"], serde_json::json!(["redis"]));
}
