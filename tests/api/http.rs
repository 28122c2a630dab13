use serde_json::Value;

use crate::helpers::{migrated_database, spawn_app, spawn_app_with};

#[tokio::test]
async fn metrics_needs_the_metrics_token() {
    let app = spawn_app().await;
    let none = app.get("/metrics").await;
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn metrics_with_the_token_exposes_request_counts() {
    let app = spawn_app().await;
    app.get("/healthz").await;
    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(app.metrics_token())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("text");
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/healthz",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    let response = app.get("/no/such/route").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["message"], "no such route");
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_json_413() {
    let (url, db) = migrated_database().await;
    let app = spawn_app_with(url, db, |env| {
        env.insert("BODY_LIMIT_BYTES".into(), "2048".into());
    })
    .await;
    let body = vec![b'x'; 2049];
    let response = app
        .client
        .post(app.url("/healthz"))
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn herokus_request_id_is_kept_and_echoed() {
    let app = spawn_app().await;
    let id = "f9ed4675-f4d8-4d2b-a6a4-7dea4a7e1a2d";
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", id)
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], id);
}

#[tokio::test]
async fn a_request_without_an_id_gets_a_fresh_one_and_junk_ids_are_replaced() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    let generated = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let junk = "a".repeat(500);
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", &junk)
        .send()
        .await
        .expect("request");
    let replaced = response.headers()["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(replaced).is_ok(), "{replaced}");
}
