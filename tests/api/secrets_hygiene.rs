//! Secrets hygiene across a whole demo run: `campaign-sync demo` as its own process (Slack
//! installed through OAuth, every scheduled job run, the Slack loop clicking approvals) while
//! this test calls every kind of route — good requests, bad ones, wrong credentials — then
//! greps everything a person or a log drain would see (the demo's stdout and stderr, every
//! error body, the metrics) for every configured secret value and every address the run holds.

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{closed_port, eventually, migrated_database, redis_url};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-sync");

/// The variables of the demo's env file.
fn read_env(path: &std::path::Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_owned(),
                v.trim().trim_matches('\'').trim_matches('"').to_owned(),
            )
        })
        .collect()
}

/// What the run exposes to callers that is not a success body: error bodies and metrics.
async fn exercise(base: &str, env: &HashMap<String, String>, email: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    let api = &env["API_TOKEN"];
    let mut seen = Vec::new();
    let keep = |r: reqwest::Response| async move { r.text().await.unwrap_or_default() };
    let good = [
        ("GET", "/api/campaigns", None),
        ("GET", "/api/audit?limit=50", None),
        ("GET", "/api/email-requests", None),
        (
            "POST",
            "/api/email-requests",
            Some(
                json!({"campaignId": "demo-campaign-1", "templateId": 4000000, "recipients": [{"email": email, "name": "Someone"}]}),
            ),
        ),
        (
            "POST",
            "/api/email-requests",
            Some(
                json!({"campaignId": "demo-campaign-1", "templateId": 4000000, "recipients": [{"email": email}, {"email": email}]}),
            ),
        ),
        (
            "POST",
            "/api/email-requests",
            Some(
                json!({"campaignId": "demo-campaign-1", "templateId": 4000000, "recipients": [{"email": format!("{email}\u{200b}")}]}),
            ),
        ),
        (
            "PUT",
            "/api/team-members/clash",
            Some(json!({"email": email})),
        ),
        (
            "POST",
            "/api/notifications",
            Some(json!({"campaignId": "nope", "type": "status_change", "message": "x"})),
        ),
        ("DELETE", "/api/people/not-an-address", None),
        ("GET", "/api/nowhere", None),
    ];
    for (i, (method, path, body)) in good.into_iter().enumerate() {
        let mut request = http
            .request(method.parse().expect("method"), format!("{base}{path}"))
            .bearer_auth(api)
            .header("Idempotency-Key", format!("hygiene-{i}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        if !response.status().is_success() {
            seen.push(keep(response).await);
        }
    }
    for (path, auth) in [
        ("/api/campaigns", "Bearer wrong-token-0123456789"),
        ("/metrics", "Bearer wrong-token-0123456789"),
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .header("authorization", auth)
            .send()
            .await
            .expect("get");
        seen.push(keep(r).await);
    }
    let r = http
        .post(format!("{base}/webhooks/mailjet"))
        .basic_auth("mailjet", Some("wrong"))
        .body("[]")
        .send()
        .await
        .expect("post");
    seen.push(keep(r).await);
    let r = http
        .post(format!("{base}/webhooks/slack/events"))
        .body("{}")
        .send()
        .await
        .expect("post");
    seen.push(keep(r).await);
    let r = http
        .post(format!("{base}/dashboard/login"))
        .form(&[("name", "Eve"), ("token", "not-the-token-0123")])
        .send()
        .await
        .expect("post");
    seen.push(keep(r).await);
    let r = http
        .get(format!(
            "{base}/slack/oauth/callback?code=sandbox-code-x&state=forged"
        ))
        .send()
        .await
        .expect("get");
    seen.push(keep(r).await);
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(&env["METRICS_TOKEN"])
        .send()
        .await
        .expect("metrics");
    seen.push(keep(metrics).await);
    seen
}

#[tokio::test]
async fn a_full_demo_run_never_shows_a_secret_or_an_address() {
    let (db_url, db) = migrated_database().await;
    let env_file =
        std::env::temp_dir().join(format!("cs-hygiene-{}.env", uuid::Uuid::new_v4().simple()));
    let log =
        std::env::temp_dir().join(format!("cs-hygiene-{}.log", uuid::Uuid::new_v4().simple()));
    let port = closed_port();
    let mut demo = Command::new(BIN)
        .env_clear()
        .envs([
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("DATABASE_URL", db_url.clone()),
            ("REDIS_URL", redis_url()),
            (
                "REDIS_KEY_PREFIX",
                format!("test:{}", uuid::Uuid::new_v4().simple()),
            ),
            ("PORT", port.to_string()),
            ("SANDBOX_PORT", closed_port().to_string()),
            ("DEMO_ENV_FILE", env_file.to_string_lossy().into_owned()),
        ])
        .arg("demo")
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::from(
            std::fs::File::options()
                .append(true)
                .open(&log)
                .expect("log"),
        ))
        .spawn()
        .expect("demo");
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(120), "the demo to serve", || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
            && env_file.exists()
    })
    .await;
    let env = read_env(&env_file);
    let member: String = sqlx::query_scalar("SELECT email FROM team_members ORDER BY id LIMIT 1")
        .fetch_one(&db)
        .await
        .expect("a seeded member");
    let mut exposed = exercise(&base, &env, &member).await;
    eventually(
        Duration::from_secs(150),
        "every scheduled job to have run",
        || async {
            let jobs: i64 = sqlx::query_scalar(
                "SELECT count(DISTINCT job) FROM sync_runs WHERE status = 'succeeded'",
            )
            .fetch_one(&db)
            .await
            .unwrap_or(0);
            let posted: i64 =
                sqlx::query_scalar("SELECT count(*) FROM slack_posts WHERE status = 'sent'")
                    .fetch_one(&db)
                    .await
                    .unwrap_or(0);
            jobs >= 9 && posted > 0
        },
    )
    .await;
    exposed.extend(exercise(&base, &env, &member).await);
    let _ = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status();
    let _ = demo.wait();
    let output = std::fs::read_to_string(&log).unwrap_or_default();

    // Every value the run was given for a setting the service declares secret.
    let secrets: BTreeSet<&str> = campaign_sync::config::spec::SETTINGS
        .iter()
        .filter(|s| s.secret && s.env != "ENCRYPTION_KEYS")
        .filter_map(|s| env.get(s.env).map(String::as_str))
        .chain(env.get("ENCRYPTION_KEYS").into_iter().flat_map(|r| {
            r.split(',')
                .filter_map(|k| k.split_once(':').map(|(_, v)| v))
        }))
        .filter(|v| v.len() >= 8)
        .collect();
    assert!(
        secrets.len() >= 9,
        "the demo generated its secrets: {:?}",
        env.keys().collect::<Vec<_>>()
    );
    let addresses: BTreeSet<String> = sqlx::query_scalar(
        "SELECT email FROM team_members UNION SELECT email FROM email_sends WHERE email NOT LIKE 'sha256:%'",
    )
    .fetch_all(&db)
    .await
    .expect("addresses")
    .into_iter()
    .map(|e: String| e.to_lowercase())
    .collect();
    assert!(
        addresses.len() >= 30,
        "the run holds the seeded addresses: {}",
        addresses.len()
    );
    let everything = format!("{output}\n{}", exposed.join("\n")).to_lowercase();
    let leaked_secrets: Vec<&&str> = secrets
        .iter()
        .filter(|s| everything.contains(&s.to_lowercase()))
        .collect();
    assert!(
        leaked_secrets.is_empty(),
        "{} configured secret(s) appear in the output",
        leaked_secrets.len()
    );
    for prefix in ["xoxe.xoxb-", "xoxe-1-", "sandbox-code-"] {
        assert!(
            !everything.contains(prefix),
            "a Slack token or code ({prefix}…) appears in the output"
        );
    }
    let leaked: Vec<&String> = addresses
        .iter()
        .filter(|a| everything.contains(a.as_str()))
        .collect();
    let context: Vec<String> = leaked
        .iter()
        .filter_map(|a| {
            let i = everything.find(a.as_str())?;
            let start = everything.floor_char_boundary(i.saturating_sub(300));
            let end = everything.ceil_char_boundary((i + 100).min(everything.len()));
            Some(everything[start..end].to_owned())
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "addresses appear in the output: {leaked:?}, around:\n{}",
        context.join("\n---\n")
    );
    assert!(
        output.contains("Slack app installed through /slack/install"),
        "the run installed Slack"
    );
    let _ = std::fs::remove_file(&env_file);
    let _ = std::fs::remove_file(&log);
}
