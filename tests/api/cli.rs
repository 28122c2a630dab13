//! The binary itself: exit codes, signals, `migrate` and `doctor`.

use std::collections::HashMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use campaign_sync::sandbox::SeedSpec;

use crate::helpers::{closed_port, create_database, migrated_database, spawn_sandbox, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-sync");

fn command(env: &HashMap<String, String>, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().envs(env).args(args);
    cmd
}

fn run(env: &HashMap<String, String>, args: &[&str]) -> Output {
    command(env, args).output().expect("run campaign-sync")
}

fn migration_count() -> usize {
    campaign_sync::store::MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for the child to exit, up to `limit`; kills it and fails the test past that.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn wait_healthy(port: u16) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let url = format!("http://127.0.0.1:{port}/healthz");
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("web did not become healthy");
}

#[tokio::test]
async fn web_with_a_malformed_port_exits_2_naming_port() {
    let mut env = test_env("postgres://postgres@127.0.0.1/test");
    env.insert("PORT".into(), "abc".into());
    let output = run(&env, &["web"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.trim_start().starts_with("PORT (server.port): \"abc\"")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_configuration_lists_every_problem_and_never_a_secret() {
    let mut env = test_env("postgres://postgres@127.0.0.1/test");
    let api_token = "tiny";
    env.insert("API_TOKEN".into(), api_token.into());
    env.insert("LOG_FORMAT".into(), "yaml".into());
    env.remove("SLACK_SIGNING_SECRET");
    let output = run(&env, &["web"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    for name in ["API_TOKEN", "LOG_FORMAT", "SLACK_SIGNING_SECRET"] {
        assert!(
            stderr.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} not named: {stderr}"
        );
    }
    assert!(!stderr.contains("\"tiny\""), "{stderr}");
}

#[tokio::test]
async fn web_serves_and_exits_0_promptly_on_sigterm() {
    let (url, _pool) = migrated_database().await;
    let port = closed_port();
    let mut env = test_env(&url);
    env.insert("PORT".into(), port.to_string());
    let mut child = command(&env, &["web"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn web");
    wait_healthy(port).await;
    terminate(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn worker_starts_and_exits_0_on_sigterm() {
    let (url, _pool) = migrated_database().await;
    let mut env = test_env(&url);
    env.insert("LOG_LEVEL".into(), "info".into());
    let mut child = command(&env, &["worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    // The worker logs once it has reached Postgres and Redis.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("worker started") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!("the worker did not report that it started");
    }
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[tokio::test]
async fn worker_without_upstream_credentials_exits_2() {
    let mut env = test_env("postgres://postgres@127.0.0.1/test");
    env.remove("MAILJET_MCP_TOKEN");
    let output = run(&env, &["worker"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("MAILJET_MCP_TOKEN (mailjet.mcp_token): is not set"));
}

#[tokio::test]
async fn migrate_twice_at_once_succeeds_and_status_shows_everything_applied() {
    let (url, _) = create_database().await;
    let env = test_env(&url);
    let a = command(&env, &["migrate"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a");
    let b = command(&env, &["migrate"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn b");
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    assert!(a.status.success() && b.status.success(), "{a:?} {b:?}");
    let status = run(&env, &["migrate", "--status"]);
    assert!(status.status.success());
    let out = text(&status.stdout);
    assert!(
        out.contains("initial schema") && out.contains("applied") && !out.contains("pending"),
        "{out}"
    );
}

#[tokio::test]
async fn migrate_with_check_fails_the_release_when_a_process_lacks_its_config() {
    let (url, _) = create_database().await;
    let mut env = test_env(&url);
    env.remove("SLACK_BOT_TOKEN");
    let output = run(&env, &["migrate", "--check", "web", "--check", "worker"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("configuration for worker"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_a_usable_deployment_against_local_services() {
    let (url, _pool) = migrated_database().await;
    let sandbox = spawn_sandbox(SeedSpec::default(), |_| {}).await;
    let env = sandbox_env(&url, &sandbox);
    let output = run(&env, &["doctor"]);
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}");
    let n = migration_count();
    let applied = format!("migrations: {n} of {n} applied");
    for expected in [
        applied.as_str(),
        "maxmemory-policy is",
        "no TLS",
        "Upstreams: Mailjet\n  ok    an authenticated read answered",
        "auth.test: the token works as",
        "Result: usable",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from {out}");
    }
}

/// The test environment with the upstreams pointed at `sandbox` and its credentials.
fn sandbox_env(db_url: &str, sandbox: &campaign_sync::sandbox::Sandbox) -> HashMap<String, String> {
    let mut env = test_env(db_url);
    for (k, v) in [
        ("MAILJET_MCP_URL", format!("{}/", sandbox.base_url())),
        ("MAILJET_MCP_TOKEN", "sandbox-mcp-signing-secret".to_owned()),
        ("SLACK_API_URL", format!("{}/api/", sandbox.base_url())),
        ("SLACK_BOT_TOKEN", "sandbox-bot-token".to_owned()),
    ] {
        env.insert(k.to_owned(), v);
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_calls_each_upstream_and_says_what_to_fix_also_as_json() {
    let (url, _pool) = migrated_database().await;
    let sandbox = spawn_sandbox(SeedSpec::default(), |_| {}).await;
    let mut env = sandbox_env(&url, &sandbox);
    env.insert("SLACK_BOT_TOKEN".into(), "xoxb-not-the-right-token".into());
    env.insert(
        "MAILJET_MCP_TOKEN".into(),
        "not-the-agent-signing-secret".into(),
    );
    let output = run(&env, &["doctor", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["usable"], false);
    let failed: Vec<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["level"] == "fail")
        .map(|f| {
            format!(
                "{}: {}",
                f["section"].as_str().unwrap_or(""),
                f["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        failed.iter().any(|f| f.starts_with("Upstreams: Slack")
            && f.contains("invalid_auth")
            && f.contains("SLACK_BOT_TOKEN")),
        "{failed:#?}"
    );
    assert!(
        failed
            .iter()
            .any(|f| f.starts_with("Upstreams: Mailjet") && f.contains("MAILJET_MCP_TOKEN")),
        "{failed:#?}"
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        !said.contains("xoxb-not-the-right-token")
            && !said.contains("not-the-agent-signing-secret"),
        "no secret in the report"
    );
    env.insert(
        "MAILJET_MCP_URL".into(),
        format!("http://127.0.0.1:{}/", closed_port()),
    );
    let out = text(&run(&env, &["doctor"]).stdout);
    assert!(out.contains("Mailjet did not answer"), "{out}");
}

#[tokio::test]
async fn doctor_fails_when_migrations_are_pending_or_postgres_is_down() {
    let (url, _) = create_database().await;
    let output = run(&test_env(&url), &["doctor"]);
    assert_eq!(output.status.code(), Some(1));
    let pending = format!(
        "migrations: 0 of {} applied; run `campaign-sync migrate`",
        migration_count()
    );
    assert!(text(&output.stdout).contains(&pending));

    let down = format!("postgres://postgres@127.0.0.1:{}/none", closed_port());
    let output = run(&test_env(&down), &["doctor"]);
    assert_eq!(output.status.code(), Some(1));
    let out = text(&output.stdout);
    assert!(out.contains("Postgres\n  FAIL  cannot connect"), "{out}");
    assert!(out.contains("Result: NOT usable"), "{out}");
}

#[tokio::test]
async fn demo_migrates_seeds_through_the_api_path_serves_and_stops_on_sigterm() {
    let (url, _) = create_database().await;
    let mut env = test_env(&url);
    let port = closed_port();
    env.insert("PORT".into(), port.to_string());
    env.insert("SANDBOX_PORT".into(), closed_port().to_string());
    env.remove("MAILJET_MCP_URL");
    env.insert(
        "MAILJET_API_SECRET".into(),
        uuid::Uuid::new_v4().to_string(),
    );
    let sandbox_port = env["SANDBOX_PORT"].clone();
    let demo_env =
        std::env::temp_dir().join(format!("cs-demo-{}.env", uuid::Uuid::new_v4().simple()));
    env.insert(
        "DEMO_ENV_FILE".into(),
        demo_env.to_string_lossy().into_owned(),
    );
    let mut child = command(&env, &["demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    wait_healthy(port).await;
    let client = reqwest::Client::new();
    let campaigns: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/api/campaigns?perPage=1"))
        .bearer_auth(&env["API_TOKEN"])
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    assert_eq!(campaigns["total"], 20);
    let pool = sqlx::PgPool::connect(&url).await.expect("db");
    let seeded: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE actor = 'demo'")
        .fetch_one(&pool)
        .await
        .expect("audit");
    assert_eq!(seeded, 50, "20 campaigns and 30 team members, each audited");
    // The sandbox's callbacks go to the demo's own receiver.
    let emitted: serde_json::Value = client
        .post(format!(
            "http://127.0.0.1:{sandbox_port}/_sandbox/slack/events"
        ))
        .json(&serde_json::json!({ "type": "channel_created", "name": "demo-wired" }))
        .send()
        .await
        .expect("emit")
        .json()
        .await
        .expect("json");
    assert_eq!(emitted["first_delivery"]["acknowledged"], true, "{emitted}");
    let joined = std::fs::read_to_string(&demo_env).expect("demo.env written");
    for line in [
        "SLACK_API_URL='http://127.0.0.1:",
        "SCHEDULE_PROCESS_EMAIL_QUEUE='*/10 * * * * *'",
        "MAILJET_API_URL=",
    ] {
        assert!(joined.contains(line), "{line} in demo.env:\n{joined}");
    }
    let _ = std::fs::remove_file(&demo_env);
    terminate(&child);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(status.success(), "{status:?}\n{out}");
    assert!(
        out.contains("seeded through the internal API's batch path") && out.contains("stopped"),
        "{out}"
    );
    assert!(!out.contains(&env["API_TOKEN"]), "tokens are never printed");
    assert!(
        out.contains("API_TOKEN and METRICS_TOKEN from your environment"),
        "{out}"
    );
}
