//! The retry layer and the Mailjet agent client against the sandbox's faults.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use campaign_sync::clients::error::FailureKind;
use campaign_sync::clients::limiter::{Limiter, Rate};
use campaign_sync::clients::mailjet::agent::MailjetAgentClient;
use campaign_sync::clients::mailjet::agent_auth::AgentTokens;
use campaign_sync::clients::mailjet::{
    Address, MailjetClient, MailjetRestClient, Message, SendAnswer, SendBody, StatCounters,
    subject_key,
};
use campaign_sync::clients::retry::RetryPolicy;
use campaign_sync::queue::job::JobError;
use campaign_sync::sandbox::{Sandbox, SandboxConfig, SeedSpec};
use serde_json::{Value, json};

async fn sandbox() -> Sandbox {
    crate::helpers::spawn_sandbox(
        campaign_sync::sandbox::SeedSpec {
            seed: 5,
            campaigns: 5,
            templates: 1,
            users: 1,
            channels: 1,
        },
        |_| {},
    )
    .await
}

fn client(sandbox: &Sandbox, timeout: Duration, policy: RetryPolicy) -> MailjetAgentClient {
    let tokens = AgentTokens::new(
        secrecy::SecretString::from("sandbox-mcp-signing-secret"),
        "campaign-manager-client",
    );
    let base = url::Url::parse(&format!("{}/", sandbox.base_url())).expect("url");
    MailjetAgentClient::new(base, tokens, timeout, policy).expect("client")
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        ..RetryPolicy::default()
    }
}

pub(crate) async fn control(
    sandbox: &Sandbox,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request =
        reqwest::Client::new().request(method, format!("{}{path}", sandbox.base_url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request
        .send()
        .await
        .expect("control")
        .json()
        .await
        .unwrap_or(Value::Null)
}

pub(crate) async fn count(sandbox: &Sandbox, endpoint: &str) -> u64 {
    control(sandbox, reqwest::Method::GET, "/_sandbox/requests", None).await["endpoints"][endpoint]
        ["count"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn an_expired_agent_token_is_minted_again_once_and_the_call_succeeds() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, Duration::from_secs(5), fast_policy());
    client
        .campaign_statistics(7_000_001)
        .await
        .expect("first call");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(json!({ "expire_tokens": true })),
    )
    .await;
    let stats = client
        .campaign_statistics(7_000_001)
        .await
        .expect("after a 401, a new token");
    assert_eq!(stats["Data"][0]["SourceID"], 7_000_001);
    assert_eq!(
        count(&sandbox, "mailjet.agent.campaigns.statistics").await,
        3,
        "first call, the 401, the retry"
    );
}

/// Runs `storm` on the agent, then one look-up through it; returns how long the look-up took
/// and the sandbox's counts of its endpoint.
async fn through_a_storm(storm: Value) -> (Duration, Value) {
    let sandbox = sandbox().await;
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(storm),
    )
    .await;
    let client = client(&sandbox, Duration::from_secs(5), fast_policy());
    let started = Instant::now();
    let found = client
        .find_by_subject("nothing like it")
        .await
        .expect("completes after the storm");
    assert_eq!(found["Count"], 0);
    let took = started.elapsed();
    let requests = control(&sandbox, reqwest::Method::GET, "/_sandbox/requests", None).await;
    (
        took,
        requests["endpoints"]["mailjet.agent.campaigns.find_by_subject"].clone(),
    )
}

#[tokio::test]
async fn a_429_storm_is_waited_out_without_calling_inside_retry_after() {
    let storm =
        json!({ "endpoint": "mailjet.agent", "rate_limit_for_secs": 2, "retry_after_secs": 1 });
    let (took, stats) = through_a_storm(storm).await;
    assert!(took >= Duration::from_secs(2), "it waited out the storm");
    assert!(
        stats["count"]
            .as_u64()
            .is_some_and(|n| (2..=4).contains(&n)),
        "one request per Retry-After window: {stats}"
    );
    assert!(
        stats["peak_per_second"].as_u64().is_some_and(|n| n <= 2),
        "{stats}"
    );
}

#[tokio::test]
async fn a_retry_after_given_as_an_http_date_is_waited_out() {
    let storm = json!({ "endpoint": "mailjet.agent", "rate_limit_for_secs": 2, "retry_after_secs": 2, "retry_after_as_date": true });
    let (took, stats) = through_a_storm(storm).await;
    assert!(took >= Duration::from_secs(2), "it waited out the storm");
    // Read as a date 2-3 s ahead: one refused call, perhaps a second at the edge, then the
    // one that succeeds; without the date the default 1 s wait would make three or more 429s.
    assert!(
        stats["rate_limited"]
            .as_u64()
            .is_some_and(|n| (1..=2).contains(&n)),
        "waited for the date, not the default: {stats}"
    );
}

#[tokio::test]
async fn a_long_rate_limit_is_handed_to_the_queue_instead_of_holding_a_worker() {
    let sandbox = sandbox().await;
    control(&sandbox, reqwest::Method::POST, "/_sandbox/faults", Some(json!({ "endpoint": "mailjet.agent", "rate_limit_for_secs": 60, "retry_after_secs": 30 }))).await;
    let client = client(&sandbox, Duration::from_secs(5), fast_policy());
    let error = client.find_by_subject("x").await.expect_err("rate limited");
    assert_eq!(
        error.kind,
        FailureKind::RateLimited {
            retry_after: Some(Duration::from_secs(30))
        }
    );
    assert!(
        matches!(error.into_job_error(), JobError::RetryAfter(d) if d == Duration::from_secs(30))
    );
    assert_eq!(
        count(&sandbox, "mailjet.agent.campaigns.find_by_subject").await,
        1
    );
}

#[tokio::test]
async fn a_burst_of_5xx_is_retried_with_backoff_until_it_passes() {
    let sandbox = sandbox().await;
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(json!({ "endpoint": "mailjet.agent", "error_rate": 1.0, "error_status": 502 })),
    )
    .await;
    let base = sandbox.base_url();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let _ = reqwest::Client::new()
            .delete(format!("{base}/_sandbox/faults"))
            .send()
            .await;
    });
    let client = client(&sandbox, Duration::from_secs(5), fast_policy());
    let stats = client
        .campaign_statistics(7_000_002)
        .await
        .expect("succeeds once the burst ends");
    assert_eq!(stats["Data"][0]["SourceID"], 7_000_002);
    assert!(count(&sandbox, "mailjet.agent.campaigns.statistics").await >= 2);
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_fails_as_transient_within_the_bounds() {
    let sandbox = sandbox().await;
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(json!({ "endpoint": "mailjet.agent", "latency_ms": 2000 })),
    )
    .await;
    let policy = RetryPolicy {
        max_retries: 1,
        ..fast_policy()
    };
    let client = client(&sandbox, Duration::from_millis(300), policy);
    let started = Instant::now();
    let error = client
        .campaign_statistics(7_000_001)
        .await
        .expect_err("times out");
    assert_eq!(
        (error.kind.clone(), error.message.as_str()),
        (FailureKind::Transient, "timed out")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "two attempts of 300 ms, not the 2 s answer"
    );
    assert!(matches!(error.into_job_error(), JobError::Retry(_)));
}

#[tokio::test]
async fn a_permanent_error_fails_at_once_with_the_upstreams_message() {
    let sandbox = sandbox().await;
    let client = client(&sandbox, Duration::from_secs(5), fast_policy());
    let error = client
        .call("campaigns/statistics", &json!({}))
        .await
        .expect_err("bad request");
    assert_eq!(error.kind, FailureKind::Permanent);
    assert_eq!(error.status, Some(400));
    assert_eq!(error.code.as_deref(), Some("bad_request"));
    assert_eq!(
        error.message,
        "\"campaign_id\" or \"campaign_ids\" is required"
    );
    assert_eq!(
        count(&sandbox, "mailjet.agent.campaigns.statistics").await,
        1,
        "no retry"
    );
    assert!(
        matches!(error.into_job_error(), JobError::Permanent(m) if m.to_string().contains("campaign_id"))
    );
}

#[tokio::test]
async fn two_processes_share_mailjets_rate_and_never_exceed_it() {
    let sandbox = Sandbox::start(
        SandboxConfig {
            seed: SeedSpec {
                seed: 5,
                campaigns: 5,
                templates: 1,
                users: 1,
                channels: 1,
            },
            mailjet_rate_per_sec: Some(20),
            ..SandboxConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("sandbox");
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    // Two independent clients with their own Redis connections: they coordinate only through Redis.
    let mut handles = Vec::new();
    for _ in 0..2 {
        let limiter = Limiter::new(crate::helpers::redis_conn().await, &prefix);
        let client = std::sync::Arc::new(
            client(&sandbox, Duration::from_secs(5), fast_policy())
                .with_limiter(limiter, Rate::per_second(15)),
        );
        for i in 0..30 {
            let client = client.clone();
            handles.push(tokio::spawn(async move {
                client.campaign_statistics(7_000_000 + (i % 5)).await
            }));
        }
    }
    for handle in handles {
        handle.await.expect("task").expect("every call succeeds");
    }
    let requests = control(&sandbox, reqwest::Method::GET, "/_sandbox/requests", None).await;
    let stats = &requests["endpoints"]["mailjet.agent.campaigns.statistics"];
    assert_eq!(stats["count"], 60);
    assert_eq!(
        stats["rate_limited"], 0,
        "never over Mailjet's limit: {stats}"
    );
    assert!(
        stats["peak_per_second"].as_u64().is_some_and(|p| p <= 16),
        "{stats}"
    );
}

#[tokio::test]
async fn a_429_seen_by_one_process_pauses_the_others() {
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let a = Limiter::new(crate::helpers::redis_conn().await, &prefix);
    let b = Limiter::new(crate::helpers::redis_conn().await, &prefix);
    a.pause("slack:users.list:T1", Duration::from_millis(1500))
        .await;
    let started = Instant::now();
    b.acquire(
        "slack:users.list:T1",
        Rate::per_minute(20),
        Duration::from_secs(5),
    )
    .await
    .expect("allowed after the pause");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    let refused = b.clone();
    a.pause("slack:users.list:T1", Duration::from_secs(30))
        .await;
    assert!(
        refused
            .acquire(
                "slack:users.list:T1",
                Rate::per_minute(20),
                Duration::from_secs(5)
            )
            .await
            .is_err(),
        "a long pause is handed back to the caller"
    );
}

/// A GET on the sandbox's Mailjet REST API with its credentials.
async fn rest_get(sandbox: &Sandbox, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", sandbox.base_url()))
        .basic_auth("sandbox-key", Some("sandbox-secret"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

fn rest_client(sandbox: &Sandbox, secret: &str) -> MailjetRestClient {
    let base = url::Url::parse(&format!("{}/", sandbox.base_url())).expect("url");
    MailjetRestClient::new(
        base,
        "sandbox-key",
        secrecy::SecretString::from(secret.to_owned()),
        Duration::from_secs(5),
        fast_policy(),
    )
    .expect("client")
}

async fn exercise(
    client: &impl MailjetClient,
) -> (Option<StatCounters>, Option<StatCounters>, SendAnswer) {
    let stats = client
        .campaign_statistics(7_000_003)
        .await
        .expect("statistics");
    let missing = client
        .campaign_statistics(1)
        .await
        .expect("missing campaign is None");
    let template = client.templates(0, 1).await.expect("templates")[0].id;
    let variables = serde_json::value::to_raw_value(&json!({ "first_name": "Ann" })).expect("raw");
    let message = |email, custom_id| Message {
        to: [Address { email, name: "" }],
        template_id: template,
        template_language: true,
        variables: &variables,
        custom_id,
        event_payload: uuid::Uuid::nil(),
    };
    let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let answer = client
        .send(&SendBody {
            sandbox_mode: false,
            messages: vec![message("ok@example.com", first), message("broken", second)],
        })
        .await
        .expect("a mixed answer is an answer");
    assert_eq!(answer.messages[0].custom_id, Some(first.to_string()));
    // Like Mailjet, an error result does not repeat the CustomID: results follow the order.
    assert_eq!(answer.messages.len(), 2);
    (stats, missing, answer)
}

#[tokio::test]
async fn both_mailjet_adapters_answer_the_same_typed_results() {
    let sandbox = sandbox().await;
    let agent = client(&sandbox, Duration::from_secs(5), fast_policy());
    let rest = rest_client(&sandbox, "sandbox-secret");
    let (agent_stats, agent_missing, agent_send) = exercise(&agent).await;
    let (rest_stats, rest_missing, rest_send) = exercise(&rest).await;
    let stats = agent_stats.expect("stats");
    assert_eq!(Some(stats.clone()), rest_stats);
    assert_eq!(stats.source_id, 7_000_003);
    assert!(stats.message_sent_count > 0 && stats.total >= stats.message_sent_count);
    assert_eq!((agent_missing, rest_missing), (None, None));
    for answer in [agent_send, rest_send] {
        let (ok, broken) = (&answer.messages[0], &answer.messages[1]);
        assert_eq!(ok.status, "success");
        assert!(ok.to[0].message_id.unwrap_or(0) > 0);
        assert!(
            ok.to[0]
                .message_uuid
                .as_deref()
                .is_some_and(|u| !u.is_empty())
        );
        assert_eq!(broken.status, "error");
        assert_eq!(broken.errors[0].error_code.as_deref(), Some("mj-0013"));
        assert_eq!(broken.errors[0].status_code, Some(400));
    }
    let campaigns = rest_get(&sandbox, "/v3/REST/campaign?Limit=1&Offset=2").await;
    let subject = campaigns["Data"][0]["Subject"]
        .as_str()
        .expect("subject")
        .to_uppercase();
    let by_agent = agent
        .find_campaign_by_subject(&format!("  {subject} "))
        .await
        .expect("agent find");
    let by_rest = rest
        .find_campaign_by_subject(&subject)
        .await
        .expect("rest find");
    assert_eq!(by_agent.as_ref().map(|c| c.id), Some(7_000_002));
    assert_eq!(by_agent, by_rest);
    assert_eq!(
        rest.find_campaign_by_subject("no such subject")
            .await
            .expect("paged to the end"),
        None
    );

    // Many subjects at once: the agent asks per subject, REST lists the campaigns once.
    let all = rest_get(&sandbox, "/v3/REST/campaign?Limit=1000").await;
    let listed: Vec<(String, i64)> = all["Data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|c| {
            (
                c["Subject"].as_str().expect("subject").to_owned(),
                c["ID"].as_i64().expect("id"),
            )
        })
        .collect();
    let mut subjects: Vec<String> = listed
        .iter()
        .map(|(subject, _)| format!(" {} ", subject.to_uppercase()))
        .collect();
    subjects.push("no such subject".to_owned());
    let before = count(&sandbox, "mailjet.rest.campaign").await;
    let by_rest = rest
        .find_campaigns_by_subjects(&subjects, 4)
        .await
        .expect("rest subjects");
    let listing = count(&sandbox, "mailjet.rest.campaign").await - before;
    assert_eq!(
        listing, 2,
        "one page and the empty one after it, for every subject at once"
    );
    let by_agent = agent
        .find_campaigns_by_subjects(&subjects, 4)
        .await
        .expect("agent subjects");
    assert_eq!(by_agent, by_rest);
    assert_eq!(by_rest.len(), listed.len());
    for (subject, id) in &listed {
        assert_eq!(by_rest[&subject_key(subject)].id, *id, "{subject}");
    }
}

#[tokio::test]
async fn rest_credentials_mailjet_refuses_are_a_permanent_error_with_its_message() {
    let sandbox = sandbox().await;
    let error = rest_client(&sandbox, "wrong-secret")
        .campaign_statistics(7_000_001)
        .await
        .expect_err("refused");
    assert_eq!(
        (error.kind.clone(), error.status),
        (FailureKind::Permanent, Some(401))
    );
    assert!(
        error.message.contains("API key authentication"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn the_clients_are_built_from_settings_for_either_adapter() {
    let sandbox = sandbox().await;
    for adapter in ["agent", "rest"] {
        let mut env = crate::helpers::test_env("postgres://postgres@127.0.0.1:5432/unused");
        env.insert("MAILJET_ADAPTER".into(), adapter.into());
        env.insert("MAILJET_MCP_URL".into(), sandbox.base_url());
        env.insert(
            "MAILJET_MCP_TOKEN".into(),
            "sandbox-mcp-signing-secret".into(),
        );
        env.insert("MAILJET_API_URL".into(), sandbox.base_url());
        env.insert("MAILJET_API_KEY".into(), "sandbox-key".into());
        env.insert("MAILJET_API_SECRET".into(), "sandbox-secret".into());
        env.insert("SLACK_API_URL".into(), sandbox.slack_api_url());
        env.insert("SLACK_BOT_TOKEN".into(), "sandbox-bot-token".into());
        let settings = crate::helpers::worker_settings(&env);
        let mailjet = campaign_sync::clients::mailjet_from_settings(
            &settings,
            crate::helpers::redis_conn().await,
        )
        .expect("mailjet");
        let stats = mailjet
            .campaign_statistics(7_000_004)
            .await
            .expect("stats")
            .expect("found");
        assert_eq!(stats.source_id, 7_000_004, "{adapter}");
        let db = sqlx::PgPool::connect_lazy("postgres://postgres@127.0.0.1:5432/unused")
            .expect("lazy pool");
        let slack = campaign_sync::clients::slack_from_settings(
            &settings,
            db,
            crate::helpers::redis_conn().await,
        )
        .expect("slack");
        assert_eq!(
            slack.call("auth.test", &[]).await.expect("auth.test")["ok"],
            true
        );
    }
}

/// A proxy in front of Mailjet answers with HTML: such an answer is judged by its status
/// (a 503 refused the call, a 401 is a configuration problem), and a 200 that is not JSON is
/// a transient failure that is retried, never an empty success.
#[tokio::test]
async fn an_answer_that_is_not_json_is_judged_by_its_status() {
    use axum::http::StatusCode;
    use axum::response::Html;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let garbled = Arc::new(AtomicUsize::new(0));
    let counter = garbled.clone();
    let app = axum::Router::new()
        .route(
            "/v3.1/send",
            axum::routing::post(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Html("<h1>Service Unavailable</h1>"),
                )
            }),
        )
        .route(
            "/v3/REST/statcounters",
            axum::routing::get(|| async { (StatusCode::UNAUTHORIZED, Html("<h1>401</h1>")) }),
        )
        .route(
            "/v3/REST/template",
            axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::OK, "{\"Data\": [") }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base =
        url::Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = MailjetRestClient::new(
        base,
        "key",
        secrecy::SecretString::from("secret".to_owned()),
        Duration::from_secs(5),
        fast_policy(),
    )
    .expect("client");

    let variables = serde_json::value::to_raw_value(&json!({})).expect("raw");
    let refused = client
        .send(&SendBody {
            sandbox_mode: false,
            messages: vec![Message {
                to: [Address {
                    email: "a@example.com",
                    name: "",
                }],
                template_id: 1,
                template_language: true,
                variables: &variables,
                custom_id: uuid::Uuid::new_v4(),
                event_payload: uuid::Uuid::nil(),
            }],
        })
        .await
        .expect_err("a 503 page");
    assert_eq!(
        (refused.kind, refused.status),
        (FailureKind::Transient, Some(503))
    );

    let unauthorised = client.campaign_statistics(1).await.expect_err("a 401 page");
    assert_eq!(
        (unauthorised.kind, unauthorised.status),
        (FailureKind::Permanent, Some(401))
    );

    let cut = client.templates(0, 10).await.expect_err("a cut body");
    assert_eq!(cut.kind, FailureKind::Transient);
    assert!(cut.message.contains("could not be read"), "{}", cut.message);
    assert_eq!(
        garbled.load(Ordering::SeqCst),
        RetryPolicy::default().max_retries + 1,
        "retried as a transient failure"
    );
}
