//! The Slack client against the sandbox: pagination, the look-up cache, and OAuth rotation
//! with single-flight refreshes across processes.

use std::sync::Arc;
use std::time::Duration;

use campaign_sync::clients::error::FailureKind;
use campaign_sync::clients::retry::RetryPolicy;
use campaign_sync::clients::slack::SlackClient;
use campaign_sync::clients::slack::tokens::{SlackCredential, TokenStore};
use campaign_sync::config::{EncryptionKey, Keyring};
use campaign_sync::sandbox::Sandbox;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{migrated_database, redis_conn};

async fn sandbox() -> Sandbox {
    crate::helpers::spawn_sandbox(
        campaign_sync::sandbox::SeedSpec {
            seed: 9,
            campaigns: 1,
            templates: 1,
            users: 120,
            channels: 10,
        },
        |c| c.slack_tiers_per_minute = [100, 100, 100, 100],
    )
    .await
}

fn api(sandbox: &Sandbox) -> url::Url {
    url::Url::parse(&format!("{}/", sandbox.slack_api_url())).expect("url")
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        ..RetryPolicy::default()
    }
}

async fn requests(sandbox: &Sandbox, endpoint: &str) -> u64 {
    let stats: Value = reqwest::Client::new()
        .get(format!("{}/_sandbox/requests", sandbox.base_url()))
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    stats["endpoints"][endpoint]["count"].as_u64().unwrap_or(0)
}

async fn store(sandbox: &Sandbox, db: &PgPool, prefix: &str) -> Arc<TokenStore> {
    Arc::new(TokenStore {
        db: db.clone(),
        redis: redis_conn().await,
        prefix: prefix.to_owned(),
        keys: Keyring::new(vec![EncryptionKey {
            id: "k1".to_owned(),
            bytes: [7; 32],
        }])
        .expect("one key"),
        workspace: "T0SANDBOX1".to_owned(),
        http: reqwest::Client::new(),
        api_url: api(sandbox),
        client_id: "1111.2222".to_owned(),
        client_secret: secrecy::SecretString::from("sandbox-client-secret"),
        refresh_ahead: Duration::from_secs(600),
    })
}

#[tokio::test]
async fn a_static_token_pages_through_every_user_and_look_ups_are_cached() {
    let sandbox = sandbox().await;
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let credential = SlackCredential::Static(secrecy::SecretString::from("sandbox-bot-token"));
    let client = SlackClient::new(
        api(&sandbox),
        credential,
        "T0SANDBOX1",
        Duration::from_secs(5),
        policy(),
    )
    .expect("client")
    .with_cache(redis_conn().await, &prefix, Duration::from_secs(60));
    let mut users = 0;
    client
        .paginate("users.list", &[], 50, |page: Vec<Value>| {
            users += page.len()
        })
        .await
        .expect("pages");
    assert_eq!(users, 120);
    let id = client
        .channel_id_by_name("#campaign-2")
        .await
        .expect("lookup")
        .expect("found");
    let listed = requests(&sandbox, "slack.conversations.list").await;
    assert_eq!(
        client
            .channel_id_by_name("campaign-2")
            .await
            .expect("lookup"),
        Some(id),
        "from the cache"
    );
    assert_eq!(
        requests(&sandbox, "slack.conversations.list").await,
        listed,
        "no second listing"
    );
    let email = {
        let page = client
            .call("users.list", &[("limit", "5".to_owned())])
            .await
            .expect("users");
        page["members"][1]["profile"]["email"]
            .as_str()
            .expect("email")
            .to_uppercase()
    };
    assert!(
        client
            .user_id_by_email(&email)
            .await
            .expect("lookup")
            .is_some(),
        "email match ignores case"
    );
    let error = client
        .call("conversations.info", &[("channel", "C_NOPE".to_owned())])
        .await
        .expect_err("permanent");
    assert_eq!(
        (error.kind, error.code.as_deref()),
        (FailureKind::Permanent, Some("channel_not_found"))
    );
}

#[tokio::test]
async fn an_installed_workspace_refreshes_its_expired_token_once_and_stores_it_encrypted() {
    let sandbox = sandbox().await;
    let (_, db) = migrated_database().await;
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let store = store(&sandbox, &db, &prefix).await;
    store.install("sandbox-code-1").await.expect("install");
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT access_token_enc FROM oauth_tokens")
        .fetch_one(&db)
        .await
        .expect("row");
    assert!(
        !sealed.windows(4).any(|w| w == b"xoxe"),
        "no token in clear at rest"
    );
    let client = SlackClient::new(
        api(&sandbox),
        SlackCredential::Rotating(store.clone()),
        "T0SANDBOX1",
        Duration::from_secs(5),
        policy(),
    )
    .expect("client");
    assert_eq!(
        client.call("auth.test", &[]).await.expect("works")["ok"],
        true
    );
    reqwest::Client::new()
        .post(format!("{}/_sandbox/faults", sandbox.base_url()))
        .json(&json!({ "expire_tokens": true }))
        .send()
        .await
        .expect("expire");
    assert_eq!(
        client
            .call("auth.test", &[])
            .await
            .expect("refreshed, then works")["ok"],
        true
    );
    assert_eq!(
        requests(&sandbox, "slack.oauth.v2.access").await,
        2,
        "install + exactly one refresh"
    );
    let version: i32 = sqlx::query_scalar("SELECT version FROM oauth_tokens")
        .fetch_one(&db)
        .await
        .expect("version");
    assert_eq!(version, 2);
}

#[tokio::test]
async fn two_processes_refreshing_at_once_call_slack_once() {
    let sandbox = sandbox().await;
    let (_, db) = migrated_database().await;
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let a = store(&sandbox, &db, &prefix).await;
    let b = store(&sandbox, &db, &prefix).await;
    a.install("sandbox-code-2").await.expect("install");
    let seen = a.access_token().await.expect("token").version;
    let (ra, rb) = tokio::join!(a.refresh(Some(seen)), b.refresh(Some(seen)));
    ra.expect("a");
    rb.expect("b");
    assert_eq!(
        requests(&sandbox, "slack.oauth.v2.access").await,
        2,
        "install + one refresh for both"
    );
    let (ta, tb) = (
        a.access_token().await.expect("a"),
        b.access_token().await.expect("b"),
    );
    assert_eq!(ta.version, tb.version);
}

#[tokio::test]
async fn a_refused_refresh_token_marks_the_credential_and_does_not_loop() {
    let sandbox = sandbox().await;
    let (url, db) = migrated_database().await;
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let store = store(&sandbox, &db, &prefix).await;
    store.install("sandbox-code-3").await.expect("install");
    // The sandbox forgets every token: our refresh token is now unknown to it (revoked).
    reqwest::Client::new()
        .post(format!("{}/_sandbox/reset", sandbox.base_url()))
        .send()
        .await
        .expect("reset");
    let seen = store.access_token().await.expect("token").version;
    let error = store.refresh(Some(seen)).await.expect_err("refused");
    assert_eq!(error.kind, FailureKind::Permanent);
    assert!(
        error.message.contains("re-installation"),
        "{}",
        error.message
    );
    let status: String = sqlx::query_scalar("SELECT status FROM oauth_tokens")
        .fetch_one(&db)
        .await
        .expect("status");
    assert_eq!(status, "needs_reinstall");
    let client = SlackClient::new(
        api(&sandbox),
        SlackCredential::Rotating(store.clone()),
        "T0SANDBOX1",
        Duration::from_secs(5),
        policy(),
    )
    .expect("client");
    let calls = requests(&sandbox, "slack.oauth.v2.access").await;
    let error = client
        .call("auth.test", &[])
        .await
        .expect_err("no usable credential");
    assert_eq!(error.kind, FailureKind::Permanent);
    assert_eq!(
        requests(&sandbox, "slack.oauth.v2.access").await,
        calls,
        "no refresh loop"
    );
    let doctor = std::process::Command::new(env!("CARGO_BIN_EXE_campaign-sync"))
        .env_clear()
        .envs(crate::helpers::test_env(&url))
        .arg("doctor")
        .output()
        .expect("doctor");
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(1), "{report}");
    assert!(
        report.contains("Slack credential of workspace T0SANDBOX1 needs re-installation"),
        "{report}"
    );
}

#[tokio::test]
async fn typed_calls_read_users_and_channels_and_post_paced_messages() {
    let sandbox = sandbox().await;
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let credential = SlackCredential::Static(secrecy::SecretString::from("sandbox-bot-token"));
    let limiter = campaign_sync::clients::limiter::Limiter::new(redis_conn().await, &prefix);
    let client = SlackClient::new(
        api(&sandbox),
        credential,
        "T0SANDBOX1",
        Duration::from_secs(5),
        policy(),
    )
    .expect("client")
    .with_limiter(limiter);
    let mut users = Vec::new();
    client
        .users(40, |page| users.extend(page))
        .await
        .expect("users");
    assert_eq!(users.len(), 120);
    assert!(users.iter().any(|u| u.is_bot) && users.iter().any(|u| u.deleted));
    assert!(
        users
            .iter()
            .filter(|u| !u.is_bot)
            .all(|u| u.profile.email.is_some())
    );
    let mut channels = Vec::new();
    client
        .channels(4, |page| channels.extend(page))
        .await
        .expect("channels");
    assert_eq!(channels.len(), 10);
    assert!(channels.iter().all(|c| c.num_members.is_some()));
    // Four messages to one channel: the shared limiter paces them at one per second, so the
    // sandbox's per-channel limit (a burst of three, then one per second) never answers 429.
    for i in 0..4 {
        let text = format!("update {i}");
        let message = campaign_sync::clients::slack::messages::Message {
            channel: "campaign-1",
            text: &text,
            ..Default::default()
        };
        let posted = client.post(&message).await.expect("posted");
        assert_eq!(posted.ts.len(), 17);
    }
    let stats: Value = reqwest::Client::new()
        .get(format!("{}/_sandbox/requests", sandbox.base_url()))
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("json");
    assert_eq!(
        stats["endpoints"]["slack.chat.postMessage"]["rate_limited"],
        0
    );
    assert!(
        ["active", "away"].contains(
            &client
                .presence("U10000001")
                .await
                .expect("presence")
                .as_str()
        )
    );
}
