//! The internal API for the Campaign Manager, its OpenAPI document, and the CLI importers.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{TestApp, migrated_database, spawn_app, spawn_app_with};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-sync");

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    app.call_json(method, path, body.as_ref()).await
}

async fn put(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.put_json(path, &body).await
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    app.get_json(path).await
}

async fn audit_count(app: &TestApp, entity_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE entity_id = $1")
        .bind(entity_id)
        .fetch_one(&app.db)
        .await
        .expect("count")
}

fn spring() -> Value {
    json!({ "name": "Spring launch", "subject": "Spring is here", "status": "active", "slug": "spring", "mailjetCampaignId": 7_000_001 })
}

#[tokio::test]
async fn a_campaign_is_created_read_and_upserted_idempotently_with_an_audit_trail() {
    let app = spawn_app().await;
    let (status, created) = put(&app, "/api/campaigns/cmp-1", spring()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["mailjetCampaignId"], 7_000_001);
    assert_eq!(created["active"], true);
    let (status, same) = put(&app, "/api/campaigns/cmp-1", spring()).await;
    assert_eq!(status, 200);
    assert_eq!(
        same["updatedAt"], created["updatedAt"],
        "an identical upsert changes nothing"
    );
    assert_eq!(audit_count(&app, "cmp-1").await, 1);
    let mut changed = spring();
    changed["status"] = json!("paused");
    changed["slackChannel"] = json!("C0123ABCD");
    let (status, updated) = put(&app, "/api/campaigns/cmp-1", changed).await;
    assert_eq!(
        (
            status,
            updated["status"].as_str(),
            updated["slackChannel"].as_str()
        ),
        (200, Some("paused"), Some("C0123ABCD"))
    );
    let details: Value = sqlx::query_scalar(
        "SELECT details FROM audit_log WHERE entity_id = 'cmp-1' AND action = 'campaign.updated'",
    )
    .fetch_one(&app.db)
    .await
    .expect("audit");
    assert_eq!(
        details["status"],
        json!({ "from": "active", "to": "paused" })
    );
    assert_eq!(details["slackMapping"]["to"], "C0123ABCD");
    let (status, read) = get(&app, "/api/campaigns/cmp-1").await;
    assert_eq!((status, read["status"].as_str()), (200, Some("paused")));
}

#[tokio::test]
async fn a_campaign_shows_its_latest_statistics_and_last_sync() {
    let app = spawn_app().await;
    put(&app, "/api/campaigns/cmp-1", spring()).await;
    for (opened, at) in [(10, "2026-01-01T00:00:00Z"), (40, "2026-01-02T00:00:00Z")] {
        sqlx::query("INSERT INTO email_statistics (campaign_id, mailjet_campaign_id, sent, delivered, opened, open_rate, recorded_at) VALUES ('cmp-1', 7000001, 100, 90, $1, $1::float8 / 90, $2::timestamptz)")
            .bind(opened).bind(at).execute(&app.db).await.expect("stats");
    }
    sqlx::query("UPDATE mcp_integrations SET last_synced = '2026-01-02T00:00:05Z' WHERE internal_id = 'cmp-1'").execute(&app.db).await.expect("sync");
    let (_, read) = get(&app, "/api/campaigns/cmp-1").await;
    assert_eq!(read["latestStatistics"]["opened"], 40);
    assert_eq!(read["lastSynced"], "2026-01-02T00:00:05Z");
}

#[tokio::test]
async fn invalid_input_is_a_precise_400_and_changes_nothing() {
    let app = spawn_app().await;
    put(&app, "/api/campaigns/cmp-1", spring()).await;
    let (status, body) = put(&app, "/api/campaigns/cmp-1", json!({ "name": "", "status": "exploded", "slug": "Bad Slug", "mailjetCampaignId": -4, "slackChannel": "general" })).await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "name",
            "status",
            "slug",
            "mailjetCampaignId",
            "slackChannel"
        ]
    );
    assert!(
        body["error"]["details"][1]["expected"]
            .as_str()
            .is_some_and(|e| e.contains("draft"))
    );
    let (status, body) = put(
        &app,
        "/api/campaigns/cmp-1",
        json!({ "name": "x", "status": "draft", "colour": "red" }),
    )
    .await;
    assert_eq!(
        (status, body["error"]["details"][0]["field"].as_str()),
        (400, Some("colour"))
    );
    let (status, body) = put(&app, "/api/campaigns/cmp-1", json!({ "status": "draft" })).await;
    assert_eq!(
        (status, body["error"]["details"][0]["field"].as_str()),
        (400, Some("name"))
    );
    let response = app
        .client
        .put(app.url("/api/campaigns/cmp-1"))
        .bearer_auth(&app.env["API_TOKEN"])
        .body("{not json")
        .send()
        .await
        .expect("r");
    assert_eq!(response.status(), 400);
    let (status, _) = put(&app, "/api/campaigns/has%20space", spring()).await;
    assert_eq!(status, 400);
    let (_, read) = get(&app, "/api/campaigns/cmp-1").await;
    assert_eq!(
        (read["name"].as_str(), read["status"].as_str()),
        (Some("Spring launch"), Some("active")),
        "stored data untouched"
    );
    assert_eq!(audit_count(&app, "cmp-1").await, 1);
}

#[tokio::test]
async fn nul_in_any_text_field_is_a_400_naming_the_field_never_a_500() {
    let app = spawn_app().await;
    let mut campaign = spring();
    campaign["name"] = json!("Spring\u{0}launch");
    let (status, body) = put(&app, "/api/campaigns/spring", campaign).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "name", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("U+0000")),
        "{body}"
    );
    let member = json!({ "name": "Ada\u{0}", "email": "ada@example.com" });
    let (status, body) = put(&app, "/api/team-members/ada", member).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "name", "{body}");
    let batch = json!({ "items": [{ "id": "x", "name": "X", "subject": "\u{0}" }] });
    let (status, body) = app.post_json("/api/campaigns:batch", &batch).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("items[0].subject"), "{body}");
    let (status, _) = get(&app, "/api/campaigns/spring").await;
    assert_eq!(status, 404, "nothing stored");
}

#[tokio::test]
async fn a_mapping_or_slug_already_used_elsewhere_is_a_409_that_stores_nothing() {
    let app = spawn_app().await;
    put(&app, "/api/campaigns/cmp-1", json!({ "name": "A", "status": "active", "slug": "a", "mailjetCampaignId": 1, "slackChannel": "C000000A1" })).await;
    for (field, value) in [
        ("mailjetCampaignId", json!(1)),
        ("slug", json!("a")),
        ("slackChannel", json!("C000000A1")),
    ] {
        let mut body = json!({ "name": "B", "status": "draft" });
        body[field] = value;
        let (status, answer) = put(&app, "/api/campaigns/cmp-2", body).await;
        assert_eq!(status, 409, "{field}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cmp-1")),
            "{answer}"
        );
    }
    assert_eq!(
        get(&app, "/api/campaigns/cmp-2").await.0,
        404,
        "nothing was stored"
    );
}

#[tokio::test]
async fn unknown_ids_are_404_and_deactivation_keeps_history() {
    let app = spawn_app().await;
    assert_eq!(get(&app, "/api/campaigns/nope").await.0, 404);
    assert_eq!(get(&app, "/api/team-members/nope").await.0, 404);
    assert_eq!(
        call(
            &app,
            reqwest::Method::POST,
            "/api/campaigns/nope/deactivate",
            None
        )
        .await
        .0,
        404
    );
    put(&app, "/api/campaigns/cmp-1", spring()).await;
    sqlx::query("INSERT INTO email_statistics (campaign_id, mailjet_campaign_id, sent) VALUES ('cmp-1', 7000001, 5)").execute(&app.db).await.expect("stats");
    let (status, deleted) = call(
        &app,
        reqwest::Method::POST,
        "/api/campaigns/cmp-1/deactivate",
        None,
    )
    .await;
    assert_eq!((status, deleted["active"].as_bool()), (200, Some(false)));
    assert!(deleted["deactivatedAt"].is_string());
    assert_eq!(deleted["latestStatistics"]["sent"], 5, "history kept");
    let (_, again) = call(
        &app,
        reqwest::Method::POST,
        "/api/campaigns/cmp-1/deactivate",
        None,
    )
    .await;
    assert_eq!(again["active"], false);
    let (status, read) = get(&app, "/api/campaigns/cmp-1").await;
    assert_eq!(
        (status, read["active"].as_bool()),
        (200, Some(false)),
        "still readable"
    );
    let (status, _) = call(&app, reqwest::Method::DELETE, "/api/campaigns/cmp-1", None).await;
    assert_eq!(status, 405, "deactivation is not a DELETE");
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE entity_id = 'cmp-1' ORDER BY id")
            .fetch_all(&app.db)
            .await
            .expect("audit");
    assert_eq!(actions, ["campaign.created", "campaign.deactivated"]);
}

#[tokio::test]
async fn campaigns_are_listed_by_page_and_activity() {
    let app = spawn_app().await;
    for i in 0..5 {
        put(
            &app,
            &format!("/api/campaigns/cmp-{i}"),
            json!({ "name": format!("C{i}"), "status": "active", "active": i % 2 == 0 }),
        )
        .await;
    }
    let (_, page) = get(&app, "/api/campaigns?active=true&page=1&perPage=2").await;
    assert_eq!(
        (
            page["total"].as_i64(),
            page["items"].as_array().map(Vec::len)
        ),
        (Some(3), Some(2))
    );
    assert_eq!(page["items"][0]["id"], "cmp-0");
    let (_, last) = get(&app, "/api/campaigns?active=true&page=2&perPage=2").await;
    assert_eq!(last["items"][0]["id"], "cmp-4");
    let (_, all) = get(&app, "/api/campaigns").await;
    assert_eq!(all["total"], 5);
    for bad in [
        "/api/campaigns?page=0",
        "/api/campaigns?page=9223372036854775807",
        "/api/campaigns?page=1000000001",
        "/api/campaigns?perPage=501",
        "/api/campaigns?active=maybe",
        "/api/campaigns?sort=name",
    ] {
        assert_eq!(get(&app, bad).await.0, 400, "{bad}");
    }
}

#[tokio::test]
async fn team_members_are_upserted_with_unique_emails_and_show_their_slack_identity() {
    let app = spawn_app().await;
    let (status, created) = put(
        &app,
        "/api/team-members/tm-1",
        json!({ "email": "Ann@Example.com", "name": "Ann" }),
    )
    .await;
    assert_eq!((status, created["slack"].is_null()), (201, true));
    let (status, body) = put(
        &app,
        "/api/team-members/tm-2",
        json!({ "email": "ann@example.com", "name": "Other" }),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = put(
        &app,
        "/api/team-members/tm-2",
        json!({ "email": "not an address" }),
    )
    .await;
    assert_eq!(
        (status, body["error"]["details"][0]["field"].as_str()),
        (400, Some("email"))
    );
    sqlx::query("INSERT INTO slack_integrations (team_member_id, workspace_id, slack_user_id, slack_username, availability) VALUES ('tm-1', 'T1', 'U123', 'ann', 'active')")
        .execute(&app.db).await.expect("identity");
    let (_, read) = get(&app, "/api/team-members/tm-1").await;
    assert_eq!(read["slack"]["slackUserId"], "U123");
    assert_eq!(read["slack"]["availability"], "active");
    let (status, _) = put(
        &app,
        "/api/team-members/tm-1",
        json!({ "email": "Ann@Example.com", "name": "Ann" }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        audit_count(&app, "tm-1").await,
        1,
        "unchanged upserts are not logged"
    );
}

#[tokio::test]
async fn a_batch_is_one_transaction_with_problems_reported_by_index() {
    let app = spawn_app().await;
    let good =
        |i: usize| json!({ "id": format!("cmp-{i}"), "name": format!("C{i}"), "status": "draft" });
    let (status, report) = call(
        &app,
        reqwest::Method::POST,
        "/api/campaigns:batch",
        Some(json!({ "items": [good(1), good(2)] })),
    )
    .await;
    assert_eq!(
        (status, report["created"].as_u64()),
        (200, Some(2)),
        "{report}"
    );
    let (status, report) = call(
        &app,
        reqwest::Method::POST,
        "/api/campaigns:batch",
        Some(json!({ "items": [good(1), good(3)] })),
    )
    .await;
    assert_eq!(
        (
            status,
            report["unchanged"].as_u64(),
            report["created"].as_u64()
        ),
        (200, Some(1), Some(1))
    );
    let bad = json!({ "items": [good(4), { "id": "cmp-5", "name": "", "status": "draft" }, good(4), { "name": "no id", "status": "draft" }] });
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/campaigns:batch",
        Some(bad),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let indexes: Vec<u64> = body["error"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["index"].as_u64())
        .collect();
    assert_eq!(indexes, [1, 2, 3]);
    assert_eq!(
        get(&app, "/api/campaigns/cmp-4").await.0,
        404,
        "nothing of a bad batch is stored"
    );
    // Only a repeated id: well-formed, refused for what it says (422), nothing stored.
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/campaigns:batch",
        Some(json!({ "items": [good(8), good(8)] })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["items"][0]["index"].as_u64()),
        (422, Some(1)),
        "{body}"
    );
    assert_eq!(get(&app, "/api/campaigns/cmp-8").await.0, 404);
    // A whole number written with a fraction is an integer to JSON Schema, and so to us.
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/campaigns:batch",
        Some(json!({ "items": [{ "id": "cmp-9", "name": "C9", "status": "draft", "mailjetCampaignId": 34753689720.0 }] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get(&app, "/api/campaigns/cmp-9").await.1["mailjetCampaignId"],
        34_753_689_720_i64
    );
    put(
        &app,
        "/api/campaigns/other",
        json!({ "name": "O", "status": "draft", "mailjetCampaignId": 99 }),
    )
    .await;
    let conflicting = json!({ "items": [good(6), { "id": "cmp-7", "name": "C7", "status": "draft", "mailjetCampaignId": 99 }] });
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/campaigns:batch",
        Some(conflicting),
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("item 1 (cmp-7)")),
        "{body}"
    );
    assert_eq!(
        get(&app, "/api/campaigns/cmp-6").await.0,
        404,
        "the whole batch rolled back"
    );
    let too_many: Vec<Value> = (0..1001).map(good).collect();
    assert_eq!(
        call(
            &app,
            reqwest::Method::POST,
            "/api/campaigns:batch",
            Some(json!({ "items": too_many }))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &app,
            reqwest::Method::POST,
            "/api/campaigns:batch",
            Some(json!({ "items": [] }))
        )
        .await
        .0,
        400
    );
    let members = json!({ "items": [{ "id": "tm-1", "email": "a@example.com" }, { "id": "tm-2", "email": "b@example.com", "name": "B" }] });
    let (status, report) = call(
        &app,
        reqwest::Method::POST,
        "/api/team-members:batch",
        Some(members),
    )
    .await;
    assert_eq!((status, report["created"].as_u64()), (200, Some(2)));
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_stores_nothing() {
    let (url, db) = migrated_database().await;
    let app = spawn_app_with(url, db, |env| {
        env.insert("BODY_LIMIT_BYTES".into(), "4096".into());
    })
    .await;
    let items: Vec<Value> = (0..100)
        .map(|i| json!({ "id": format!("c{i}"), "name": "x".repeat(40), "status": "draft" }))
        .collect();
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/campaigns:batch",
        Some(json!({ "items": items })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM campaigns")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn every_api_route_is_in_the_openapi_document_and_requires_the_token() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/openapi.json")
        .await
        .json()
        .await
        .expect("openapi json");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("methods").keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let expected = [
        "DELETE /api/people/{email}",
        "GET /api/alerts",
        "GET /api/analytics/email",
        "GET /api/analytics/team",
        "GET /api/analytics/top-content",
        "GET /api/approvals",
        "GET /api/approvals/{id}",
        "GET /api/audit",
        "GET /api/campaigns",
        "GET /api/campaigns/{id}",
        "GET /api/campaigns/{id}/metrics",
        "GET /api/email-requests",
        "GET /api/email-requests/{id}",
        "GET /api/notifications",
        "GET /api/notifications/{id}",
        "GET /api/people/{email}",
        "GET /api/team-members/{id}",
        "GET /api/templates",
        "POST /api/approvals",
        "POST /api/campaigns/{id}/deactivate",
        "POST /api/campaigns:batch",
        "POST /api/email-requests",
        "POST /api/email-requests/{id}/cancel",
        "POST /api/notifications",
        "POST /api/team-members:batch",
        "PUT /api/campaigns/{id}",
        "PUT /api/campaigns/{id}/revenue/{date}",
        "PUT /api/team-members/{id}",
    ];
    assert_eq!(documented, expected);
    // Query parameters are documented as query parameters (generated clients send them).
    for (path, name) in [
        ("/api/campaigns", "perPage"),
        ("/api/email-requests", "status"),
        ("/api/email-requests/{id}", "after"),
    ] {
        let params = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters");
        let param = params
            .iter()
            .find(|p| p["name"] == name)
            .expect("documented");
        assert_eq!(param["in"], "query", "{path} {name}: {param}");
    }
    // Every documented operation is served, and none without the token.
    for operation in &documented {
        let (method, path) = operation.split_once(' ').expect("op");
        let path = path.replace("{id}", "x1");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let anonymous = app
            .client
            .request(method.clone(), app.url(&path))
            .json(&json!({}))
            .send()
            .await
            .expect("r");
        assert_eq!(anonymous.status(), 401, "{operation}");
        let wrong = app
            .client
            .request(method, app.url(&path))
            .bearer_auth("wrong-token-wrong-token")
            .json(&json!({}))
            .send()
            .await
            .expect("r");
        assert_eq!(wrong.status(), 401, "{operation}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(
        doc["components"]["schemas"]["CampaignInput"]["properties"]["mailjetCampaignId"]
            .is_object()
    );
    // What the derive macros cannot say is said too: a batch item is the resource plus its id,
    // the recipients limit is the setting, and an accepted request links to its reading.
    let schemas = &doc["components"]["schemas"];
    let body = &doc["paths"]["/api/team-members:batch"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/TeamMemberBatch");
    let item = &schemas["TeamMemberBatchItem"];
    assert_eq!(item["required"], json!(["id", "email"]), "{item}");
    assert_eq!(item["additionalProperties"], false);
    assert_eq!(
        schemas["CampaignBatch"]["properties"]["items"]["maxItems"],
        1000
    );
    assert_eq!(
        schemas["EmailRequestInput"]["properties"]["recipients"]["maxItems"],
        app.settings.email.max_recipients
    );
    assert_eq!(
        schemas["RecipientInput"]["properties"]["email"]["pattern"],
        schemas["TeamMemberInput"]["properties"]["email"]["pattern"]
    );
    assert_eq!(
        doc["paths"]["/api/email-requests"]["post"]["responses"]["202"]["links"]["GetEmailRequest"]
            ["operationId"],
        "get_email_request"
    );
    let ui = app.get("/api/docs/").await;
    assert_eq!(ui.status(), 200);
    assert!(
        ui.text().await.expect("html").contains("swagger"),
        "Swagger UI is served offline"
    );
}

fn import(app: &TestApp, what: &str, file: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .env_clear()
        .envs(&app.env)
        .args([what, "import"])
        .arg(file)
        .output()
        .expect("import")
}

#[tokio::test]
async fn the_cli_imports_csv_and_json_through_the_same_checks() {
    let app = spawn_app().await;
    let dir = std::env::temp_dir().join(format!("cs-import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let csv = dir.join("campaigns.csv");
    std::fs::write(&csv, "id,name,subject,status,active,slug,mailjet_campaign_id\nc-1,Spring,Spring is here,active,true,spring,7000001\nc-2,Summer,,draft,no,,\n").expect("write");
    let out = import(&app, "campaigns", &csv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "campaigns: 2 rows: 2 created, 0 updated, 0 unchanged"
    );
    let again = import(&app, "campaigns", &csv);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "campaigns: 2 rows: 0 created, 0 updated, 2 unchanged"
    );
    let (_, c1) = get(&app, "/api/campaigns/c-1").await;
    assert_eq!(c1["mailjetCampaignId"], 7_000_001);
    let (_, c2) = get(&app, "/api/campaigns/c-2").await;
    assert_eq!(c2["active"], false);
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "id,name,status\nc-3,Fine,draft\nc-4,,draft\nc-5,Five,launched\n",
    )
    .expect("write");
    let out = import(&app, "campaigns", &bad);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 3: column \"name\": missing field")
            && stderr.contains("line 4: column \"status\": \"launched\" is not a status")
            && !stderr.contains("openapi"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 of 3 rows are invalid; nothing was stored"),
        "{stderr}"
    );
    assert_eq!(
        get(&app, "/api/campaigns/c-3").await.0,
        404,
        "nothing stored when a row is invalid"
    );
    let json_file = dir.join("team.json");
    std::fs::write(
        &json_file,
        json!([{ "id": "tm-1", "email": "a@example.com", "name": "A" }]).to_string(),
    )
    .expect("write");
    let out = import(&app, "team", &json_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get(&app, "/api/team-members/tm-1").await.1["email"],
        "a@example.com"
    );
    let wrong = dir.join("team.txt");
    std::fs::write(&wrong, "x").expect("write");
    assert_eq!(import(&app, "team", &wrong).status.code(), Some(2));
    let actor: String = sqlx::query_scalar("SELECT actor FROM audit_log WHERE entity_id = 'tm-1'")
        .fetch_one(&app.db)
        .await
        .expect("audit");
    assert_eq!(actor, "cli");
    std::fs::remove_dir_all(&dir).ok();
}
