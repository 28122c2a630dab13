//! The Slack install flow end to end, as a browser walks it, against the release binary's web
//! and worker processes and the sandbox's authorize step: install, a replayed callback, a
//! denial, a forged, an expired and a foreign-browser state, the wrong workspace, a reinstall
//! replacing the tokens, `app_uninstalled` stopping Slack jobs with a clear error (shown by
//! `doctor` and the dashboard); and key rotation with `tokens reseal`.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use campaign_sync::sandbox::{Sandbox, SeedSpec, slack_signature};
use reqwest::redirect::Policy;
use sqlx::PgPool;

use crate::chaos::WorkerProcess;
use crate::dashboard::WebProcess;
use crate::helpers::{eventually, migrated_database, spawn_sandbox, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-sync");
const ADMIN: &str = "admin-token-0123456789abcdef";
const SECRET: &str = "sandbox-client-secret";

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn oauth_env(db_url: &str, sandbox: &Sandbox) -> HashMap<String, String> {
    let mut env = test_env(db_url);
    env.remove("SLACK_BOT_TOKEN");
    for (k, v) in [
        ("SLACK_API_URL", format!("{}/api/", sandbox.base_url())),
        ("SLACK_CLIENT_ID", "1111.2222".to_owned()),
        ("SLACK_CLIENT_SECRET", SECRET.to_owned()),
        ("SLACK_WORKSPACE_ID", "T0SANDBOX1".to_owned()),
        ("ENCRYPTION_KEYS", format!("k1:{}", key(1))),
        ("DASHBOARD_ADMIN_TOKEN", ADMIN.to_owned()),
    ] {
        env.insert(k.to_owned(), v);
    }
    env
}

/// A browser: no automatic redirects, cookies kept by hand.
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("client");
        Browser {
            http,
            cookies: HashMap::new(),
        }
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let pair = value
                .to_str()
                .expect("cookie")
                .split(';')
                .next()
                .expect("pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            self.cookies.insert(name.to_owned(), value.to_owned());
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let response = self
            .http
            .get(url)
            .header("cookie", cookie.join("; "))
            .send()
            .await
            .expect("get");
        self.keep(&response);
        response
    }

    async fn sign_in(&mut self, web: &WebProcess) {
        let response = self
            .http
            .post(format!("{}/dashboard/login", web.base))
            .form(&[("name", "Ops"), ("token", ADMIN)])
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), 303);
        self.keep(&response);
    }
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

/// `/slack/install` up to Slack's authorize page: its URL.
async fn start(browser: &mut Browser, web: &WebProcess) -> url::Url {
    let first = browser.get(&format!("{}/slack/install", web.base)).await;
    assert_eq!(first.status(), 303);
    let second = browser
        .get(&format!("{}{}", web.base, location(&first)))
        .await;
    assert_eq!(second.status(), 303, "an admin is sent on to Slack");
    url::Url::parse(&location(&second)).expect("authorize url")
}

/// The authorize step's decision (`allow`, `deny`), optionally for another workspace: the
/// callback URL Slack sends the browser back to.
async fn decide(
    browser: &mut Browser,
    authorize: &url::Url,
    decision: &str,
    team: Option<&str>,
) -> String {
    let page = browser.get(authorize.as_str()).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("page").contains("Allow"));
    let mut url = authorize.join("authorize/decide").expect("decide");
    url.query_pairs_mut()
        .extend_pairs(authorize.query_pairs())
        .append_pair("decision", decision);
    if let Some(team) = team {
        url.query_pairs_mut().append_pair("team", team);
    }
    let back = browser.get(url.as_str()).await;
    assert_eq!(back.status(), 303);
    location(&back)
}

/// The whole walk from `/slack/install` to the callback URL.
async fn walk(
    browser: &mut Browser,
    web: &WebProcess,
    decision: &str,
    team: Option<&str>,
) -> String {
    let authorize = start(browser, web).await;
    decide(browser, &authorize, decision, team).await
}

async fn page(browser: &mut Browser, url: &str) -> (u16, String) {
    let response = browser.get(url).await;
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn credential(db: &PgPool) -> Option<(String, i32, String, Vec<u8>)> {
    sqlx::query_as("SELECT status, version, key_id, access_token_enc FROM oauth_tokens WHERE workspace_id = 'T0SANDBOX1'")
        .fetch_optional(db)
        .await
        .expect("credential")
}

fn signed_state(nonce: &str, expires: i64) -> String {
    let payload = format!("{nonce}.{expires}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = hmac::sign(&key, format!("slack-install|{payload}").as_bytes());
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref());
    format!("{payload}.{tag}")
}

#[tokio::test]
async fn an_admin_installs_slack_and_every_bad_callback_is_refused_with_its_reason() {
    let sandbox = spawn_sandbox(SeedSpec::default(), |_| {}).await;
    let (db_url, db) = migrated_database().await;
    let env = oauth_env(&db_url, &sandbox);
    let web = WebProcess::spawn(&env).await;
    let mut anonymous = Browser::new();
    let unsigned = anonymous
        .get(&format!("{}/dashboard/slack/install", web.base))
        .await;
    assert_eq!(
        location(&unsigned),
        "/dashboard/login",
        "only a signed-in admin installs"
    );

    let mut browser = Browser::new();
    browser.sign_in(&web).await;
    let authorize = start(&mut browser, &web).await;
    let scopes = authorize
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .expect("scope")
        .1
        .into_owned();
    assert!(
        scopes.contains("chat:write") && scopes.contains("channels:history"),
        "{scopes}"
    );
    let redirect = authorize
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .expect("redirect")
        .1
        .into_owned();
    assert_eq!(redirect, format!("{}/slack/oauth/callback", web.base));
    let callback = decide(&mut browser, &authorize, "allow", None).await;
    let (status, body) = page(&mut browser, &callback).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Slack installed") && body.contains("T0SANDBOX1"),
        "{body}"
    );
    let (state, version, key_id, sealed) = credential(&db).await.expect("stored");
    assert_eq!((state.as_str(), key_id.as_str()), ("active", "k1"));
    assert!(
        !sealed.windows(5).any(|w| w == b"xoxe."),
        "sealed, not in the clear"
    );
    let installed_by: String = sqlx::query_scalar("SELECT installed_by FROM oauth_tokens")
        .fetch_one(&db)
        .await
        .expect("by");
    assert_eq!(installed_by, "dashboard:admin:Ops");

    let (status, body) = page(&mut browser, &callback).await;
    assert_eq!(status, 400, "a replayed callback: {body}");
    assert!(
        body.contains("already used") || body.contains("another browser"),
        "{body}"
    );

    let denied = walk(&mut browser, &web, "deny", None).await;
    let (status, body) = page(&mut browser, &denied).await;
    assert_eq!(status, 403);
    assert!(body.contains("denied in Slack"), "{body}");

    let foreign = walk(&mut browser, &web, "allow", Some("T0ELSEWHERE")).await;
    let (status, body) = page(&mut browser, &foreign).await;
    assert_eq!(status, 403);
    assert!(
        body.contains("wrong workspace") && body.contains("T0ELSEWHERE"),
        "{body}"
    );
    assert_eq!(
        credential(&db).await.expect("kept").1,
        version,
        "nothing stored"
    );

    let good = walk(&mut browser, &web, "allow", None).await;
    let mut tampered = url::Url::parse(&good).expect("url");
    let pairs: Vec<(String, String)> = tampered.query_pairs().into_owned().collect();
    tampered.query_pairs_mut().clear();
    for (k, v) in &pairs {
        let v = if k == "state" {
            format!("x{v}")
        } else {
            v.clone()
        };
        tampered.query_pairs_mut().append_pair(k, &v);
    }
    let (status, body) = page(&mut browser, tampered.as_str()).await;
    assert_eq!(status, 400);
    assert!(body.contains("not issued by this service"), "{body}");
    let (status, body) = page(&mut Browser::new(), &good).await;
    assert_eq!(status, 400);
    assert!(body.contains("another browser"), "{body}");
    let (status, body) = page(&mut browser, &good).await;
    assert_eq!(status, 200, "the real one still works once: {body}");
    assert_eq!(
        credential(&db).await.expect("replaced").1,
        version + 1,
        "a reinstall replaces the tokens"
    );

    let expired = format!(
        "{}/slack/oauth/callback?code=sandbox-code-x&state={}",
        web.base,
        signed_state("n0nce", chrono::Utc::now().timestamp() - 1)
    );
    browser
        .cookies
        .insert("cs_slack_install".into(), "n0nce".into());
    let (status, body) = page(&mut browser, &expired).await;
    assert_eq!(status, 400);
    assert!(body.contains("expired"), "{body}");

    let audited: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, outcome FROM audit_log WHERE action = 'slack.install' ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .expect("audit");
    assert_eq!(
        audited.iter().filter(|(_, o)| o == "ok").count(),
        2,
        "{audited:?}"
    );
    assert_eq!(
        audited.iter().filter(|(_, o)| o == "failed").count(),
        2,
        "denied and wrong workspace: {audited:?}"
    );
    uninstalling_stops_slack_jobs_with_a_clear_error(&env, &db, &web, &mut browser).await;
}

async fn run_job(
    env: &HashMap<String, String>,
    db: &PgPool,
    job: &str,
) -> (String, Option<String>) {
    let before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE job = $1 AND status <> 'running'")
            .bind(job)
            .fetch_one(db)
            .await
            .expect("count");
    let out = Command::new(BIN)
        .env_clear()
        .envs(env)
        .args(["jobs", "run", job])
        .output()
        .expect("jobs run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(60), "the job to finish", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sync_runs WHERE job = $1 AND status <> 'running'",
        )
        .bind(job)
        .fetch_one(db)
        .await
        .expect("count");
        n > before
    })
    .await;
    sqlx::query_as("SELECT status, error FROM sync_runs WHERE job = $1 AND status <> 'running' ORDER BY started_at DESC LIMIT 1")
        .bind(job).fetch_one(db).await.expect("run")
}

async fn uninstalling_stops_slack_jobs_with_a_clear_error(
    env: &HashMap<String, String>,
    db: &PgPool,
    web: &WebProcess,
    browser: &mut Browser,
) {
    let worker = WorkerProcess::spawn(env);
    let (status, error) = run_job(env, db, "sync_slack_users").await;
    assert_eq!(status, "succeeded", "{error:?}");

    let body = br#"{"type":"event_callback","event_id":"EvUNINSTALL","team_id":"T0SANDBOX1","event":{"type":"app_uninstalled"}}"#;
    let now = chrono::Utc::now().timestamp();
    let answer = reqwest::Client::new()
        .post(format!("{}/webhooks/slack/events", web.base))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", now.to_string())
        .header(
            "x-slack-signature",
            slack_signature(&env["SLACK_SIGNING_SECRET"], now, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("event");
    assert_eq!(answer.status(), 200);
    eventually(
        Duration::from_secs(30),
        "the credential to be marked revoked",
        || async { credential(db).await.is_some_and(|c| c.0 == "revoked") },
    )
    .await;
    let (status, error) = run_job(env, db, "sync_slack_users").await;
    assert_eq!(status, "failed");
    let error = error.unwrap_or_default();
    assert!(
        error.contains("uninstalled") && error.contains("/slack/install"),
        "{error}"
    );
    let retried: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_runs WHERE job = 'sync_slack_users' AND status = 'failed'",
    )
    .fetch_one(db)
    .await
    .expect("n");
    assert_eq!(retried, 1, "a revoked credential is not retried");

    let doctor = Command::new(BIN)
        .env_clear()
        .envs(env)
        .arg("doctor")
        .output()
        .expect("doctor");
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(report.contains("was revoked (app_uninstalled)"), "{report}");
    let (status, overview) = page(browser, &format!("{}/dashboard", web.base)).await;
    assert_eq!(status, 200);
    assert!(
        overview.contains("revoked") && overview.contains("installed again"),
        "{overview}"
    );
    drop(worker);
}

async fn run_with_worker(env: &HashMap<String, String>, db: &PgPool) -> (String, Option<String>) {
    let _worker = WorkerProcess::spawn(env);
    run_job(env, db, "sync_slack_users").await
}

#[tokio::test]
async fn tokens_reseal_moves_every_secret_to_the_new_key_and_a_missing_key_is_named() {
    let sandbox = spawn_sandbox(SeedSpec::default(), |_| {}).await;
    let (db_url, db) = migrated_database().await;
    let mut env = oauth_env(&db_url, &sandbox);
    let web = WebProcess::spawn(&env).await;
    let mut browser = Browser::new();
    browser.sign_in(&web).await;
    let callback = walk(&mut browser, &web, "allow", None).await;
    assert_eq!(page(&mut browser, &callback).await.0, 200);
    drop(web);

    let tokens = |env: &HashMap<String, String>, args: &[&str]| {
        let out = Command::new(BIN)
            .env_clear()
            .envs(env)
            .arg("tokens")
            .args(args)
            .output()
            .expect("tokens");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    env.insert("ENCRYPTION_KEYS".into(), format!("k2:{}", key(2)));
    let (code, out) = tokens(&env, &["reseal"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("sealed with key \"k1\", which is not in ENCRYPTION_KEYS"),
        "{out}"
    );
    assert!(
        !out.contains(&key(1)) && !out.contains(&key(2)),
        "no key in the output"
    );
    let (status, error) = run_with_worker(&env, &db).await;
    assert_eq!(status, "failed");
    assert!(
        error.unwrap_or_default().contains("\"k1\""),
        "a job names the missing key"
    );

    env.insert(
        "ENCRYPTION_KEYS".into(),
        format!("k2:{},k1:{}", key(2), key(1)),
    );
    let (code, out) = tokens(&env, &["reseal"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("re-sealed 1 credential(s) with key k2; 0 still"),
        "{out}"
    );
    assert_eq!(credential(&db).await.expect("row").2, "k2");
    let (code, out) = tokens(&env, &["reseal"]);
    assert_eq!(code, Some(0), "running it again is harmless: {out}");
    assert!(out.contains("re-sealed 0"), "{out}");

    env.insert("ENCRYPTION_KEYS".into(), format!("k2:{}", key(2)));
    let (status, error) = run_with_worker(&env, &db).await;
    assert_eq!(
        status, "succeeded",
        "the old key is no longer needed: {error:?}"
    );
    let (_, listed) = tokens(&env, &["list"]);
    assert!(
        listed.contains("T0SANDBOX1") && listed.contains("k2"),
        "{listed}"
    );
}
