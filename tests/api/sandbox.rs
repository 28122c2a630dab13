//! Contract tests of the sandbox: each surface behaves as the reference says the real one does.

use std::time::Duration;

use axum::http::HeaderMap;
use campaign_sync::sandbox::{Sandbox, SandboxConfig, SeedSpec};
use serde_json::{Value, json};

pub(crate) async fn start(change: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
    let seed = SeedSpec {
        seed: 7,
        campaigns: 25,
        templates: 3,
        users: 250,
        channels: 12,
    };
    crate::helpers::spawn_sandbox(seed, change).await
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn mj_get(sandbox: &Sandbox, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{}{path}", sandbox.base_url()))
        .basic_auth("sandbox-key", Some("sandbox-secret"))
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn slack(
    sandbox: &Sandbox,
    method: &str,
    token: &str,
    form: &[(&str, &str)],
) -> (u16, HeaderMap, Value) {
    let r = client()
        .post(format!("{}/{method}", sandbox.slack_api_url()))
        .bearer_auth(token)
        .form(form)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn send(sandbox: &Sandbox, body: Value) -> (u16, Value) {
    let r = client()
        .post(format!("{}/v3.1/send", sandbox.base_url()))
        .basic_auth("sandbox-key", Some("sandbox-secret"))
        .json(&body)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

pub(crate) fn message(email: &str, custom_id: &str) -> Value {
    json!({ "From": { "Email": "news@example.com" }, "To": [{ "Email": email }], "TemplateID": 4_000_000, "TemplateLanguage": true, "CustomID": custom_id })
}

#[tokio::test]
async fn mailjet_rest_refuses_bad_credentials_with_its_error_body() {
    let sandbox = start(|_| {}).await;
    let r = client()
        .get(format!("{}/v3/REST/campaign", sandbox.base_url()))
        .basic_auth("sandbox-key", Some("wrong"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["StatusCode"], 401);
    assert!(
        body["ErrorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("API key authentication"))
    );
    let (status, body) = mj_get(&sandbox, "/v3/REST/contacts").await;
    assert_eq!(
        (status, body["ErrorMessage"].as_str()),
        (400, Some("Unknown resource: \"contacts\""))
    );
}

#[tokio::test]
async fn mailjet_rest_pages_with_limit_and_offset_to_an_empty_page() {
    let sandbox = start(|_| {}).await;
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let (status, page) = mj_get(
            &sandbox,
            &format!("/v3/REST/campaign?Limit=10&Offset={offset}"),
        )
        .await;
        assert_eq!(status, 200);
        let data = page["Data"].as_array().expect("Data").clone();
        assert_eq!(page["Count"], data.len());
        assert_eq!(
            page["Total"],
            data.len(),
            "without countOnly, Total is the page's size"
        );
        if data.is_empty() {
            break;
        }
        seen.extend(data.iter().map(|c| c["ID"].as_i64().expect("ID")));
        offset += 10;
    }
    assert_eq!(seen.len(), 25);
    let (_, count) = mj_get(&sandbox, "/v3/REST/campaign?countOnly=1").await;
    assert_eq!(count, json!({ "Count": 25, "Data": [], "Total": 25 }));
    let (_, default) = mj_get(&sandbox, "/v3/REST/campaign").await;
    assert_eq!(default["Count"], 10, "Limit defaults to 10");
    let (_, all) = mj_get(&sandbox, "/v3/REST/campaign?Limit=0").await;
    assert_eq!(all["Count"], 25, "Limit=0 means the maximum");
    let (_, first_wins) = mj_get(&sandbox, "/v3/REST/campaign?Limit=2&Limit=5").await;
    assert_eq!(
        first_wins["Count"], 2,
        "the first of a repeated filter wins"
    );
    let (_, sorted) = mj_get(&sandbox, "/v3/REST/campaign?Limit=1&Sort=ID+DESC").await;
    assert_eq!(
        sorted["Data"][0]["ID"],
        seen.iter().max().copied().expect("ids")
    );
}

#[tokio::test]
async fn mailjet_statcounters_use_mailjets_field_names() {
    let sandbox = start(|_| {}).await;
    for incomplete in [
        "/v3/REST/statcounters?SourceId=7000003&CounterSource=Campaign",
        "/v3/REST/statcounters?SourceId=7000003&CounterSource=Campaign&CounterTiming=Message",
        "/v3/REST/statcounters?SourceId=7000003&CounterSource=Campaign&CounterTiming=Message&CounterResolution=Weekly",
    ] {
        let (status, body) = mj_get(&sandbox, incomplete).await;
        assert_eq!(status, 400, "Mailjet refuses {incomplete}: {body}");
    }
    let (status, body) = mj_get(&sandbox, "/v3/REST/statcounters?SourceId=7000003&CounterSource=Campaign&CounterTiming=Message&CounterResolution=Lifetime").await;
    assert_eq!(status, 200);
    let row = &body["Data"][0];
    assert_eq!(row["SourceID"], 7000003);
    for field in [
        "MessageSentCount",
        "MessageOpenedCount",
        "MessageClickedCount",
        "MessageHardBouncedCount",
        "MessageSpamCount",
        "MessageUnsubscribedCount",
        "MessageBlockedCount",
        "Total",
    ] {
        assert!(row[field].is_i64(), "{field} in {row}");
    }
    assert!(
        row.get("MessageDeliveredCount").is_none(),
        "Mailjet has no such field"
    );
}

#[tokio::test]
async fn send_answers_400_on_mixed_results_and_applies_the_good_messages() {
    let sandbox = start(|_| {}).await;
    let body = json!({ "Messages": [message("ok@example.com", "s-1"), message("not-an-address", "s-2"), { "From": { "Email": "x@unverified.example" }, "To": [{ "Email": "b@example.com" }], "TextPart": "hi", "CustomID": "s-3" }] });
    let (status, answer) = send(&sandbox, body).await;
    assert_eq!(status, 400);
    let results = answer["Messages"].as_array().expect("results");
    assert_eq!(results[0]["Status"], "success");
    let id = results[0]["To"][0]["MessageID"]
        .as_i64()
        .expect("int64 MessageID");
    assert!(id > 1 << 53, "ids exceed 2^53 like Mailjet's: {id}");
    assert_eq!(results[0]["CustomID"], "s-1");
    assert_eq!(results[1]["Errors"][0]["ErrorCode"], "mj-0013");
    assert_eq!(results[2]["Errors"][0]["ErrorCode"], "send-0008");
    assert_eq!(results[2]["Errors"][0]["StatusCode"], 403);
    let sends = sandbox.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!((sends[0].custom_id.as_str(), sends[0].accepted), ("s-1", 1));
    // The control endpoint: the list, the counts alone, and a clear 400 for a bad option.
    let http = reqwest::Client::new();
    let control = |query: &'static str| {
        http.get(format!("{}/_sandbox/sends{query}", sandbox.base_url()))
            .send()
    };
    let json_of = |query: &'static str| async move {
        let answer = control(query).await.expect("sends");
        answer.json::<Value>().await.expect("json")
    };
    let listed = json_of("").await;
    assert_eq!(
        (listed["messages"].as_u64(), listed["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(listed["sends"][0]["custom_id"], "s-1");
    let counts = json_of("?list=false").await;
    assert_eq!(
        (counts["messages"].as_u64(), counts["accepted"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(counts.get("sends").is_none(), "{counts}");
    let bad = control("?list=maybe").await.expect("sends");
    assert_eq!(bad.status(), 400);
    let (_, found) = mj_get(&sandbox, "/v3/REST/message?CustomID=s-1").await;
    assert_eq!(found["Data"][0]["ID"], id);
}

#[tokio::test]
async fn send_rejects_whole_calls_with_global_errors_and_honours_sandbox_mode() {
    let sandbox = start(|_| {}).await;
    let r = client()
        .post(format!("{}/v3.1/send", sandbox.base_url()))
        .basic_auth("sandbox-key", Some("sandbox-secret"))
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["ErrorCode"],
        "mj-0002"
    );
    let fifty_one: Vec<Value> = (0..51)
        .map(|i| message(&format!("r{i}@example.com"), &format!("c{i}")))
        .collect();
    let (status, body) = send(&sandbox, json!({ "Messages": fifty_one })).await;
    assert_eq!((status, body["ErrorCode"].as_str()), (400, Some("mj-0008")));
    let (status, body) = send(
        &sandbox,
        json!({ "SandboxMode": true, "Messages": [message("t@example.com", "t-1")] }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["Messages"][0]["To"][0]["MessageID"], 0);
    assert_eq!(body["Messages"][0]["To"][0]["MessageUUID"], "");
    assert!(sandbox.sends()[0].sandbox_mode);
    let r = client()
        .post(format!("{}/v3.1/send", sandbox.base_url()))
        .basic_auth("sandbox-key", Some("nope"))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.json::<Value>().await.expect("json")["ErrorCode"],
        "mj-0015"
    );
}

#[tokio::test]
async fn mailjet_answers_429_with_retry_after_over_its_per_key_rate() {
    let sandbox = start(|c| c.mailjet_rate_per_sec = Some(3)).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    // Ten at once: more than three a second even when a busy machine spreads them over two.
    for _ in 0..10 {
        let r = client()
            .get(format!("{}/v3/REST/campaign?Limit=1", sandbox.base_url()))
            .basic_auth("sandbox-key", Some("sandbox-secret"))
            .send()
            .await
            .expect("request");
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let requests: Value = client()
        .get(format!("{}/_sandbox/requests", sandbox.base_url()))
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    let stats = &requests["endpoints"]["mailjet.rest.campaign"];
    assert_eq!(stats["count"], 10);
    assert!(stats["rate_limited"].as_u64().unwrap_or(0) >= 1);
}

fn jwt(secret: &str, sub: &str, iat: i64, exp: i64) -> String {
    let claims = json!({ "sub": sub, "iat": iat, "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("key"),
    )
    .expect("jwt")
}

#[tokio::test]
async fn the_agent_checks_its_jwt_and_proxies_mailjet_data() {
    let sandbox = start(|_| {}).await;
    let now = chrono::Utc::now().timestamp();
    let call = |token: Option<String>, path: &'static str, body: Value| {
        let url = format!("{}{path}", sandbox.base_url());
        async move {
            let mut request = client().post(url).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let r = request.send().await.expect("request");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let good = jwt(
        "sandbox-mcp-signing-secret",
        "campaign-manager-client",
        now,
        now + 86_400,
    );
    assert_eq!(
        call(None, "/mailjet/campaigns/list", json!({})).await.0,
        401
    );
    assert_eq!(
        call(
            Some(jwt(
                "wrong-secret",
                "campaign-manager-client",
                now,
                now + 60
            )),
            "/mailjet/campaigns/list",
            json!({})
        )
        .await
        .0,
        401
    );
    let (status, body) = call(
        Some(jwt(
            "sandbox-mcp-signing-secret",
            "campaign-manager-client",
            now - 100,
            now - 10,
        )),
        "/mailjet/campaigns/list",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("token expired"))
    );
    let (status, list) = call(
        Some(good.clone()),
        "/mailjet/campaigns/list",
        json!({ "limit": 10, "offset": 20 }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (list["Count"].as_u64(), list["Total"].as_u64()),
        (Some(5), Some(25))
    );
    let subject = list["Data"][0]["Subject"]
        .as_str()
        .expect("subject")
        .to_uppercase();
    let (_, found) = call(
        Some(good.clone()),
        "/mailjet/campaigns/find_by_subject",
        json!({ "subject": subject }),
    )
    .await;
    assert_eq!(found["Count"], 1, "subject match ignores case");
    let id = found["Data"][0]["ID"].clone();
    let (_, stats) = call(
        Some(good.clone()),
        "/mailjet/campaigns/statistics",
        json!({ "campaign_id": id }),
    )
    .await;
    assert_eq!(stats["Data"][0]["SourceID"], id);
    let (status, _) = call(
        Some(good.clone()),
        "/mailjet/campaigns/statistics",
        json!({ "campaign_id": 1 }),
    )
    .await;
    assert_eq!(status, 404);
    let (_, template) = call(
        Some(good.clone()),
        "/mailjet/templates/get",
        json!({ "id": 4_000_001 }),
    )
    .await;
    assert!(
        template["Data"][0]["DetailContent"]["Html-part"]
            .as_str()
            .is_some_and(|h| h.contains("{{var:first_name}}"))
    );
    let (status, sent) = call(
        Some(good.clone()),
        "/mailjet/send_bulk",
        json!({ "Messages": [message("a@example.com", "b-1"), message("b@example.com", "b-2")] }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sent["Messages"].as_array().map(Vec::len), Some(2));
    let (status, _) = call(
        Some(good),
        "/mailjet/send",
        json!({ "Messages": [message("a@example.com", "x-1"), message("b@example.com", "x-2")] }),
    )
    .await;
    assert_eq!(status, 400, "send takes one message");
}

#[tokio::test]
async fn faults_add_latency_errors_storms_and_dropped_connections() {
    let sandbox = start(|_| {}).await;
    let fault = |body: Value| {
        let url = format!("{}/_sandbox/faults", sandbox.base_url());
        async move {
            client()
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("fault")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        fault(json!({ "endpoint": "mailjet.rest.campaign", "latency_ms": 300 })).await,
        200
    );
    let started = std::time::Instant::now();
    assert_eq!(mj_get(&sandbox, "/v3/REST/campaign").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        fault(json!({ "endpoint": "slack", "error_rate": 1.0, "error_status": 503 })).await,
        200
    );
    assert_eq!(
        slack(&sandbox, "auth.test", "sandbox-bot-token", &[])
            .await
            .0,
        503
    );
    assert_eq!(
        fault(
            json!({ "endpoint": "mailjet.send", "rate_limit_for_secs": 30, "retry_after_secs": 7 })
        )
        .await,
        200
    );
    let r = client()
        .post(format!("{}/v3.1/send", sandbox.base_url()))
        .basic_auth("sandbox-key", Some("sandbox-secret"))
        .json(&json!({}))
        .send()
        .await
        .expect("r");
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["retry-after"].to_str().ok()
        ),
        (429, Some("7"))
    );
    assert_eq!(
        fault(json!({ "endpoint": "mailjet.rest.template", "drop_rate": 1.0 })).await,
        200
    );
    let dropped = client()
        .get(format!("{}/v3/REST/template", sandbox.base_url()))
        .basic_auth("sandbox-key", Some("sandbox-secret"))
        .send()
        .await;
    let failed = match dropped {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(failed, "the connection was cut");
    assert_eq!(
        fault(json!({ "endpoint": "x", "error_rate": 2.0 })).await,
        400
    );
    assert_eq!(fault(json!({ "no_such_field": 1 })).await, 400);
    client()
        .delete(format!("{}/_sandbox/faults", sandbox.base_url()))
        .send()
        .await
        .expect("clear");
    assert_eq!(
        slack(&sandbox, "auth.test", "sandbox-bot-token", &[])
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn the_same_seed_gives_the_same_data_and_reset_restores_it() {
    let a = start(|_| {}).await;
    let b = start(|_| {}).await;
    assert_eq!(
        mj_get(&a, "/v3/REST/campaign?Limit=0").await.1,
        mj_get(&b, "/v3/REST/campaign?Limit=0").await.1
    );
    let users = |s: &Sandbox| {
        let url = format!("{}/users.list", s.slack_api_url());
        async move {
            client()
                .get(url)
                .bearer_auth("sandbox-bot-token")
                .send()
                .await
                .expect("r")
                .json::<Value>()
                .await
                .expect("json")["members"]
                .clone()
        }
    };
    assert_eq!(users(&a).await, users(&b).await);
    slack(
        &a,
        "conversations.create",
        "sandbox-bot-token",
        &[("name", "brand-new")],
    )
    .await;
    send(&a, json!({ "Messages": [message("z@example.com", "z-1")] })).await;
    client()
        .post(format!("{}/_sandbox/reset", a.base_url()))
        .send()
        .await
        .expect("reset");
    assert!(a.sends().is_empty());
    let (_, _, info) = slack(
        &a,
        "conversations.info",
        "sandbox-bot-token",
        &[("channel", "brand-new")],
    )
    .await;
    assert_eq!(info["error"], "channel_not_found");
}

#[tokio::test]
async fn seeded_data_scales_to_the_largest_sizes() {
    let sandbox = start(|c| {
        c.seed = SeedSpec {
            seed: 1,
            campaigns: 10_000,
            templates: 50,
            users: 50_000,
            channels: 2_000,
        };
    })
    .await;
    let (_, count) = mj_get(&sandbox, "/v3/REST/campaign?countOnly=1").await;
    assert_eq!(count["Total"], 10_000);
    let (_, _, channels) = slack(
        &sandbox,
        "conversations.list",
        "sandbox-bot-token",
        &[
            ("limit", "999"),
            ("types", "public_channel,private_channel"),
        ],
    )
    .await;
    assert_eq!(channels["channels"].as_array().map(Vec::len), Some(999));
}
