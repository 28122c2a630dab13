//! A running deployment of the service for a chaos run, and the calls the harness makes to it
//! as its users do: the internal API, Mailjet's and Slack's webhooks, the sandbox's records.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::ChaosArgs;
use super::cluster::{Postgres, Proc, Redis, free_port, wait_port};
use crate::store::invariants;

/// Every answer the harness got to its own (replayed or poison) deliveries, by what it sent.
#[derive(Debug, Default)]
pub struct Answers {
    pub by_kind: BTreeMap<String, BTreeMap<u16, u64>>,
}

impl Answers {
    /// Records one answer.
    pub fn record(&mut self, what: &str, status: u16) {
        *self
            .by_kind
            .entry(what.to_owned())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    /// Answers of 500 or more (none is allowed).
    pub fn server_errors(&self) -> u64 {
        self.by_kind
            .values()
            .flat_map(|m| m.iter())
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The processes of one run and how to reach them.
pub struct Deployment {
    pub pg: Postgres,
    pub redis: Redis,
    pub sandbox: Proc,
    pub web: Proc,
    pub workers: Vec<Proc>,
    pub sandbox_url: String,
    pub web_url: String,
    pub env: HashMap<String, String>,
    pub http: reqwest::Client,
    pub db: PgPool,
    pub rng: fastrand::Rng,
    pub template_id: i64,
    pub started: Instant,
    /// When Redis or PostgreSQL was down (schedule ticks may be skipped then, by design).
    pub outages: Vec<(Instant, Instant)>,
    pub answers: Answers,
    pub kills: u64,
    pub replayed: u64,
    /// The sandbox endpoint (or prefix) of this adapter's Send calls, for upstream faults.
    pub send_endpoint: &'static str,
}

fn secret() -> String {
    Uuid::new_v4().simple().to_string()
}

impl Deployment {
    /// Starts every process and seeds a campaign and a template.
    pub async fn start(args: &ChaosArgs, adapter: &str, dir: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this binary")?;
        let pg = Postgres::start(dir)?;
        create_database(&pg).await?;
        let redis = Redis::start(dir)?;
        let (web_port, sandbox_port) = (free_port()?, free_port()?);
        let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
        let env = service_env(args, adapter, &pg, &redis, &sandbox_url);
        let sandbox = start_sandbox(&exe, dir, &env, sandbox_port, web_port)?;
        let mut migrate = Proc::new("migrate", &exe, &["migrate"], dir).env(env.clone());
        migrate.start()?;
        wait_exit(&mut migrate, Duration::from_secs(60))?;
        let (web, workers) = start_service(&exe, dir, &env, web_port, args.workers)?;
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(&env["DATABASE_URL"])?;
        let mut d = Deployment {
            pg,
            redis,
            sandbox,
            web,
            workers,
            sandbox_url,
            web_url: format!("http://127.0.0.1:{web_port}"),
            env,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            db,
            rng: fastrand::Rng::with_seed(args.seed),
            template_id: 0,
            started: Instant::now(),
            outages: Vec::new(),
            answers: Answers::default(),
            kills: 0,
            replayed: 0,
            send_endpoint: if adapter == "agent" {
                "mailjet.agent.send"
            } else {
                "mailjet.send"
            },
        };
        d.seed().await?;
        Ok(d)
    }

    /// A campaign through the API, and a template imported by the scheduled template sync.
    async fn seed(&mut self) -> anyhow::Result<()> {
        let status = self
            .api_put(
                "/api/campaigns/chaos",
                &json!({ "name": "Chaos", "subject": "Chaos run", "status": "active" }),
            )
            .await?;
        if !(200..300).contains(&status) {
            bail!("creating the campaign answered {status}");
        }
        let limit = Instant::now() + Duration::from_secs(60);
        loop {
            let id = invariants::first_template(&self.db).await?;
            if let Some(id) = id {
                self.template_id = id;
                return Ok(());
            }
            if Instant::now() > limit {
                bail!(
                    "no template was imported within 60 s (see {}'s log)",
                    self.workers[0].name
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Notes an outage that began at `started` and has just ended.
    pub fn outage(&mut self, started: Instant) {
        self.outages.push((started, Instant::now()));
    }

    /// Posts a request of `n` recipients whose addresses are unique to the run; its id.
    pub async fn post_request(&mut self, phase: usize, n: u32) -> anyhow::Result<Uuid> {
        let recipients: Vec<Value> = (0..n)
            .map(|i| json!({ "email": format!("p{phase}r{i}@example.com"), "name": format!("R {i}"), "variables": { "first_name": format!("R{i}") } }))
            .collect();
        let body = json!({ "campaignId": "chaos", "templateId": self.template_id, "recipients": recipients });
        let key = format!("chaos-phase-{phase}");
        let limit = Instant::now() + Duration::from_secs(60);
        loop {
            // The same key again after a failed attempt: stored once whatever happened.
            let answer = self
                .http
                .post(format!("{}/api/email-requests", self.web_url))
                .bearer_auth(&self.env["API_TOKEN"])
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await;
            if let Ok(answer) = answer
                && answer.status().as_u16() == 202
            {
                let body: Value = answer.json().await?;
                let id = body["id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
                return id.context("the 202 carried no request id");
            }
            if Instant::now() > limit {
                bail!("the request of phase {phase} was not accepted within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Whether request `id` is completed (false while Postgres is unreachable).
    pub async fn request_completed(&self, id: Uuid) -> bool {
        invariants::request_completed(&self.db, id)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    /// The sandbox's record of what Mailjet accepted.
    pub async fn sandbox_sends(&self, list: bool) -> anyhow::Result<Value> {
        let url = format!("{}/_sandbox/sends?list={list}", self.sandbox_url);
        Ok(self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Messages Mailjet accepted so far.
    pub async fn sandbox_accepted(&self) -> anyhow::Result<u64> {
        Ok(self.sandbox_sends(false).await?["accepted"]
            .as_u64()
            .unwrap_or(0))
    }

    pub async fn post_mailjet(&self, body: &Value) -> anyhow::Result<u16> {
        self.post_mailjet_bytes(serde_json::to_vec(body)?).await
    }

    pub async fn post_mailjet_bytes(&self, body: Vec<u8>) -> anyhow::Result<u16> {
        let answer = self
            .http
            .post(format!("{}/webhooks/mailjet", self.web_url))
            .basic_auth("mailjet", Some(&self.env["MAILJET_WEBHOOK_PASSWORD"]))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        Ok(answer.status().as_u16())
    }

    pub async fn post_slack_event(&self, envelope: &Value) -> anyhow::Result<u16> {
        let body = serde_json::to_vec(envelope)?;
        let timestamp = chrono::Utc::now().timestamp();
        let signature =
            crate::sandbox::slack_signature(&self.env["SLACK_SIGNING_SECRET"], timestamp, &body);
        let answer = self
            .http
            .post(format!("{}/webhooks/slack/events", self.web_url))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", signature)
            .body(body)
            .send()
            .await?;
        Ok(answer.status().as_u16())
    }

    pub async fn api_post(
        &self,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> anyhow::Result<u16> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.web_url))
            .bearer_auth(&self.env["API_TOKEN"])
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        Ok(request.send().await?.status().as_u16())
    }

    pub async fn api_put(&self, path: &str, body: &Value) -> anyhow::Result<u16> {
        let request = self
            .http
            .put(format!("{}{path}", self.web_url))
            .bearer_auth(&self.env["API_TOKEN"])
            .json(body);
        Ok(request.send().await?.status().as_u16())
    }

    pub async fn api_get(&self, path: &str) -> anyhow::Result<u16> {
        let request = self
            .http
            .get(format!("{}{path}", self.web_url))
            .bearer_auth(&self.env["API_TOKEN"]);
        Ok(request.send().await?.status().as_u16())
    }

    /// Stops every process: workers and web with SIGTERM (as Heroku does), then the rest.
    pub fn stop(&mut self) {
        for w in &mut self.workers {
            w.stop("TERM", Duration::from_secs(30));
        }
        self.web.stop("TERM", Duration::from_secs(30));
        self.sandbox.stop("TERM", Duration::from_secs(10));
        self.redis.terminate();
        self.pg.stop_fast();
    }
}

/// The sandbox, posting Mailjet events to the web process's receiver.
fn start_sandbox(
    exe: &Path,
    dir: &Path,
    env: &HashMap<String, String>,
    port: u16,
    web_port: u16,
) -> anyhow::Result<Proc> {
    let hook = format!(
        "http://mailjet:{}@127.0.0.1:{web_port}/webhooks/mailjet",
        env["MAILJET_WEBHOOK_PASSWORD"]
    );
    let port_text = port.to_string();
    let args = [
        "sandbox",
        "--port",
        &port_text,
        "--campaigns",
        "5",
        "--templates",
        "3",
        "--users",
        "10",
        "--channels",
        "3",
        "--webhook-retry-secs",
        "2",
        "--mailjet-webhook-url",
        &hook,
    ];
    let mut sandbox = Proc::new("sandbox", exe, &args, dir).env(env.clone());
    sandbox.start()?;
    wait_port(port, Duration::from_secs(30))?;
    Ok(sandbox)
}

/// The web process on `web_port` and `workers` worker processes (`DYNO=worker.N`).
fn start_service(
    exe: &Path,
    dir: &Path,
    env: &HashMap<String, String>,
    web_port: u16,
    workers: u32,
) -> anyhow::Result<(Proc, Vec<Proc>)> {
    let mut web_env = env.clone();
    web_env.insert("PORT".into(), web_port.to_string());
    let mut web = Proc::new("web", exe, &["web"], dir).env(web_env);
    web.start()?;
    wait_port(web_port, Duration::from_secs(30))?;
    let mut started = Vec::new();
    for i in 0..workers {
        let mut worker_env = env.clone();
        worker_env.insert("DYNO".into(), format!("worker.{}", i + 1));
        let mut worker =
            Proc::new(&format!("worker.{}", i + 1), exe, &["worker"], dir).env(worker_env);
        worker.start()?;
        started.push(worker);
    }
    Ok((web, started))
}

async fn create_database(pg: &Postgres) -> anyhow::Result<()> {
    let admin = PgPool::connect(&pg.url("postgres"))
        .await
        .context("cannot reach the run's postgres")?;
    invariants::create_database(&admin, "chaos").await?;
    admin.close().await;
    Ok(())
}

fn wait_exit(proc: &mut Proc, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while proc.alive() {
        if started.elapsed() > limit {
            bail!("{} did not finish within {limit:?}", proc.name);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !proc.log().contains("migrations up to date") {
        bail!("{} failed:\n{}", proc.name, proc.log());
    }
    Ok(())
}

/// The environment of web and worker (and the sandbox, which reads the same credentials).
fn service_env(
    args: &ChaosArgs,
    adapter: &str,
    pg: &Postgres,
    redis: &Redis,
    sandbox: &str,
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("APP_ENV", "development".to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("DATABASE_URL", pg.url("chaos")),
        ("DATABASE_SSL_MODE", "disable".to_owned()),
        ("REDIS_URL", redis.url()),
        ("REDIS_KEY_PREFIX", "chaos".to_owned()),
        ("API_TOKEN", secret()),
        ("METRICS_TOKEN", secret()),
        ("MAILJET_WEBHOOK_USER", "mailjet".to_owned()),
        ("MAILJET_WEBHOOK_PASSWORD", secret()),
        ("SLACK_SIGNING_SECRET", secret()),
        ("SLACK_BOT_TOKEN", format!("xoxb-{}", secret())),
        ("SLACK_API_URL", format!("{sandbox}/api")),
        ("MAILJET_ADAPTER", adapter.to_owned()),
        ("MAILJET_API_URL", sandbox.to_owned()),
        ("MAILJET_API_KEY", secret()),
        ("MAILJET_API_SECRET", secret()),
        ("MAILJET_MCP_URL", sandbox.to_owned()),
        ("MAILJET_MCP_TOKEN", secret()),
        ("MAILJET_RATE_PER_SEC", args.rate.to_string()),
        ("UPSTREAM_TIMEOUT_SECS", "5".to_owned()),
        ("EMAIL_RECONCILE_AFTER_SECS", "20".to_owned()),
        ("EMAIL_MAX_ATTEMPTS", "25".to_owned()),
        ("WORKER_LEASE_SECS", "10".to_owned()),
        ("WORKER_SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
        ("WORKER_QUEUES", "default=2,webhooks=10".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for job in crate::jobs::ALL.iter().filter(|j| j.schedule.is_some()) {
        env.insert(
            format!("SCHEDULE_{}", job.name.to_uppercase()),
            "off".to_owned(),
        );
    }
    env.insert(
        "SCHEDULE_PROCESS_EMAIL_QUEUE".into(),
        "*/5 * * * * *".into(),
    );
    env.insert(
        "SCHEDULE_SYNC_MAILJET_TEMPLATES".into(),
        format!("*/{TICK_SECS} * * * * *"),
    );
    env
}

/// Period of the schedule whose ticks are counted.
pub const TICK_SECS: u64 = 10;
