//! `campaign-sync demo`: the whole service on one machine in one process — migrations, the
//! sandbox upstreams with seeded data, the web server and the worker with schedules sped up —
//! seeded through the same batch path as the internal API. Ctrl-C stops it cleanly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::{self, Process, Schedule, Settings};
use crate::sandbox::{Sandbox, SandboxConfig, SeedSpec, data::World};
use crate::store::audit::Actor;
use crate::store::batch::{self, Item};
use crate::store::campaigns::CampaignInput;
use crate::store::team_members::TeamMemberInput;
use crate::{jobs, startup, store, worker};

/// Campaigns and team members the demo seeds through the internal API's batch path.
mod install;
mod workflows;

const DEMO_CAMPAIGNS: usize = 20;
const DEMO_TEAM_MEMBERS: usize = 30;

fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

/// 32 random bytes, base64 (an `ENCRYPTION_KEYS` key).
fn encryption_key() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The environment of the demo: the caller's, with throw-away secrets where none are set and
/// the upstream URLs pointed at the sandbox.
fn demo_env(sandbox_port: u16) -> (HashMap<String, String>, Vec<&'static str>) {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    let mut generated = Vec::new();
    for name in [
        "API_TOKEN",
        "METRICS_TOKEN",
        "MAILJET_WEBHOOK_PASSWORD",
        "SLACK_SIGNING_SECRET",
        "MAILJET_MCP_TOKEN",
        "MAILJET_API_SECRET",
        "DASHBOARD_ADMIN_TOKEN",
        "DASHBOARD_VIEWER_TOKEN",
    ] {
        if env.get(name).is_none_or(|v| v.is_empty()) {
            env.insert(name.to_owned(), random_token());
            generated.push(name);
        }
    }
    env.entry("MAILJET_WEBHOOK_USER".into())
        .or_insert_with(|| "mailjet".into());
    env.entry("MAILJET_API_KEY".into())
        .or_insert_with(|| "demo-key".into());
    // Without a bot token of the caller's, Slack is an OAuth app the demo installs.
    if env.get("SLACK_BOT_TOKEN").is_none_or(|v| v.is_empty()) {
        env.remove("SLACK_BOT_TOKEN");
        env.entry("SLACK_CLIENT_ID".into())
            .or_insert_with(|| SandboxConfig::default().slack_client_id);
        for name in ["SLACK_CLIENT_SECRET", "ENCRYPTION_KEYS"] {
            if env.get(name).is_none_or(|v| v.is_empty()) {
                let value = match name {
                    "ENCRYPTION_KEYS" => format!("demo1:{}", encryption_key()),
                    _ => random_token(),
                };
                env.insert(name.to_owned(), value);
                generated.push(name);
            }
        }
    }
    let base = format!("http://127.0.0.1:{sandbox_port}");
    env.insert("MAILJET_MCP_URL".into(), base.clone());
    env.insert("MAILJET_API_URL".into(), base.clone());
    env.insert("SLACK_API_URL".into(), format!("{base}/api"));
    (env, generated)
}

/// The settings besides the secrets that a second process needs to join the demo (`doctor`,
/// `jobs list`, another worker): where the upstreams are, who Mailjet's webhook is, and the
/// demo's schedules.
const JOINING: &[&str] = &[
    "MAILJET_WEBHOOK_USER",
    "MAILJET_API_KEY",
    "MAILJET_MCP_URL",
    "MAILJET_API_URL",
    "SLACK_API_URL",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
];

/// Writes what this run generated and set to `demo.env` (owner-only) — the secrets, the
/// upstream URLs and the demo's schedules — so the person running the demo can call the API,
/// run `doctor` or `jobs list`, or start a second worker next to it; secrets are never printed.
fn save_generated(
    env: &HashMap<String, String>,
    generated: &[&str],
    schedules: &[(String, String)],
) -> anyhow::Result<Option<String>> {
    if generated.is_empty() && schedules.is_empty() {
        return Ok(None);
    }
    let path = std::env::var("DEMO_ENV_FILE").unwrap_or_else(|_| "demo.env".to_owned());
    let path = path.as_str();
    let quoted = |v: &str| format!("'{}'", v.replace('\'', "'\\''"));
    let mut text: String = generated
        .iter()
        .chain(JOINING)
        .filter_map(|name| env.get(*name).map(|v| format!("{name}={}\n", quoted(v))))
        .collect();
    for (name, expression) in schedules {
        text.push_str(&format!("{name}={}\n", quoted(expression)));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {path}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(Some(path.to_owned()))
}

/// Every schedule at a demo pace (10–60 s) unless the environment set it; returns them as
/// `SCHEDULE_<JOB>` variables.
fn speed_up(settings: &mut Settings, env: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut set = Vec::new();
    let fast = [
        ("process_email_queue", "*/10 * * * * *"),
        ("sync_mailjet_stats", "*/30 * * * * *"),
        ("sync_slack_users", "*/45 * * * * *"),
        ("update_slack_channels", "*/30 * * * * *"),
        ("sync_mailjet_templates", "*/40 * * * * *"),
        ("send_approval_reminders", "*/20 * * * * *"),
        ("rollup_metrics", "*/60 * * * * *"),
        ("purge_expired_data", "*/30 * * * * *"),
    ];
    for (job, expression) in fast {
        let variable = format!("SCHEDULE_{}", job.to_uppercase());
        if env.contains_key(&variable) {
            continue;
        }
        set.push((variable, expression.to_owned()));
        if let Ok(cron) = cron::Schedule::from_str(expression) {
            settings.schedules.insert(
                job.to_owned(),
                Schedule {
                    expression: expression.to_owned(),
                    cron: Some(cron),
                },
            );
        }
    }
    set
}

fn sandbox_config(env: &HashMap<String, String>, seed: SeedSpec) -> SandboxConfig {
    let get = |name: &str| env.get(name).cloned().unwrap_or_default();
    let defaults = SandboxConfig::default();
    SandboxConfig {
        seed,
        slack_client_id: env
            .get("SLACK_CLIENT_ID")
            .cloned()
            .unwrap_or(defaults.slack_client_id.clone()),
        slack_client_secret: env
            .get("SLACK_CLIENT_SECRET")
            .cloned()
            .unwrap_or(defaults.slack_client_secret.clone()),
        mailjet_api_key: get("MAILJET_API_KEY"),
        mailjet_api_secret: get("MAILJET_API_SECRET"),
        mcp_token: get("MAILJET_MCP_TOKEN"),
        agent_id: env
            .get("MAILJET_AGENT_ID")
            .cloned()
            .unwrap_or_else(|| "campaign-manager-client".into()),
        slack_bot_token: get("SLACK_BOT_TOKEN"),
        slack_signing_secret: get("SLACK_SIGNING_SECRET"),
        // Slack's real limits, ten times over, so the demo's fast schedules are not starved.
        slack_tiers_per_minute: [10, 200, 500, 1000],
        ..defaults
    }
}

/// The demo's seed: campaigns and team members, checked.
type SeedItems = (Vec<Item<CampaignInput>>, Vec<Item<TeamMemberInput>>);

/// Campaigns (subjects of the sandbox's Mailjet campaigns, so the stats sync can match them)
/// and team members (emails of the sandbox's Slack users) as batch items.
fn seed_items(world: &World) -> anyhow::Result<SeedItems> {
    // The sandbox names every other Slack channel `campaign-<n>`: the first campaigns get the
    // slugs "1", "2", … so the channel sync can map them by its naming rule.
    let campaigns: Vec<Value> = world
        .campaigns
        .iter()
        .take(DEMO_CAMPAIGNS)
        .enumerate()
        .map(|(i, c)| json!({ "id": format!("demo-campaign-{}", i + 1), "name": format!("Demo: {}", c.subject), "subject": c.subject, "status": "active", "slug": (i + 1).to_string() }))
        .collect();
    let members: Vec<Value> = world
        .workspace
        .users
        .iter()
        .filter(|u| !u.is_bot && !u.deleted && !u.email.is_empty())
        .take(DEMO_TEAM_MEMBERS)
        .enumerate()
        .map(|(i, u)| json!({ "id": format!("demo-member-{}", i + 1), "email": u.email.to_lowercase(), "name": u.real_name }))
        .collect();
    let describe = |problems: Vec<batch::ItemErrors>| {
        anyhow::anyhow!(
            "demo seed data is invalid: {:?}",
            problems.first().map(|p| &p.errors)
        )
    };
    Ok((
        batch::check(campaigns).map_err(describe)?,
        batch::check(members).map_err(describe)?,
    ))
}

/// The sandbox's Mailjet events and Slack events and clicks go to this demo's receiver.
fn wire_callbacks(sandbox: &Sandbox, env: &HashMap<String, String>, port: u16) {
    let get = |name: &str| env.get(name).cloned().unwrap_or_default();
    let (user, password) = (get("MAILJET_WEBHOOK_USER"), get("MAILJET_WEBHOOK_PASSWORD"));
    let base = format!("http://127.0.0.1:{port}");
    sandbox.configure(|c| {
        c.mailjet_webhook_url = Some(format!(
            "http://{user}:{password}@127.0.0.1:{port}/webhooks/mailjet"
        ));
        c.slack_events_url = Some(format!("{base}/webhooks/slack/events"));
        c.slack_interactions_url = Some(format!("{base}/webhooks/slack/interactions"));
        c.slack_commands_url = Some(format!("{base}/webhooks/slack/commands"));
    });
}

/// Saves `demo.env` and says where the tokens are and how another shell joins the run.
fn announce_tokens(
    env: &HashMap<String, String>,
    generated: &[&str],
    schedules: &[(String, String)],
) -> anyhow::Result<()> {
    let saved = save_generated(env, generated, schedules)?;
    if !generated.contains(&"API_TOKEN") && !generated.contains(&"METRICS_TOKEN") {
        println!("  tokens     API_TOKEN and METRICS_TOKEN from your environment");
    }
    if let (false, Some(file)) = (generated.is_empty(), &saved) {
        println!(
            "  tokens     generated for this run in {file} ({})",
            generated.join(", ")
        );
    }
    if let Some(file) = &saved {
        println!(
            "  join it    `set -a; . {file}; set +a` gives another shell this run's settings (tokens, sandbox URLs, demo schedules) for doctor, jobs list or a second worker"
        );
    }
    Ok(())
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run() -> anyhow::Result<()> {
    let sandbox_port: u16 = std::env::var("SANDBOX_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(4010);
    // Installed first, so a Ctrl-C during start-up still stops cleanly.
    let stop_signal = startup::shutdown_signal();
    let (env, generated) = demo_env(sandbox_port);
    let mut settings = config::load_from(&env, Process::Web, &crate::jobs::schedulable())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    config::load_from(&env, Process::Worker, &crate::jobs::schedulable())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let schedules = speed_up(&mut settings, &env);
    crate::telemetry::init_logging(&settings.log);

    println!("campaign-sync demo");
    let pool = migrated(&settings).await?;
    let sandbox = start_sandbox(&env, &pool, sandbox_port).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let app = startup::Application::build(settings.clone()).await?;
    let port = app.port();
    let web = tokio::spawn(app.run_until_stopped(stopped(stop_rx.clone())));
    install::when_oauth(&settings, &env, port).await?;
    let worker = tokio::spawn(worker::run(
        settings.clone(),
        jobs::builtin(),
        stopped(stop_rx.clone()),
    ));

    let demo_loop = start_slack_loop(&pool, &settings, &sandbox, stop_rx.clone())?;
    println!();
    wire_callbacks(&sandbox, &env, port);
    announce_tokens(&env, &generated, &schedules)?;
    print_where_to_look(port, &sandbox);
    print_dashboard(port, &env, &generated);

    stop_signal.await;
    println!("stopping …");
    let _ = stop_tx.send(true);
    let _ = demo_loop.await;
    let grace = Duration::from_secs(30);
    let (web, worker) = tokio::join!(
        tokio::time::timeout(grace, web),
        tokio::time::timeout(grace, worker)
    );
    sandbox.stop();
    web.context("the web server did not stop in time")?
        .context("web task")??;
    worker
        .context("the worker did not stop in time")?
        .context("worker task")??;
    pool.close().await;
    println!("stopped");
    Ok(())
}

/// The demo's sandbox world.
fn demo_seed() -> SeedSpec {
    SeedSpec {
        seed: 42,
        campaigns: 200,
        templates: 12,
        users: 300,
        channels: 30,
    }
}

/// The Slack user of the second demo team member: nobody's approver, so their click is
/// refused.
fn stranger() -> String {
    World::seeded(&demo_seed())
        .workspace
        .users
        .into_iter()
        .filter(|u| !u.is_bot && !u.deleted && !u.email.is_empty())
        .nth(1)
        .map(|u| u.id)
        .unwrap_or_default()
}

/// The sandbox on `port`, seeded, and the database seeded from the same world.
async fn start_sandbox(
    env: &HashMap<String, String>,
    pool: &sqlx::PgPool,
    port: u16,
) -> anyhow::Result<Sandbox> {
    let seed = demo_seed();
    let sandbox = Sandbox::start(
        sandbox_config(env, seed.clone()),
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
    .await
    .with_context(|| format!("cannot start the sandbox on port {port} (set SANDBOX_PORT)"))?;
    println!(
        "  sandbox (Mailjet and Slack, offline) on {}",
        sandbox.base_url()
    );
    seed_database(pool, &seed).await?;
    Ok(sandbox)
}

/// The demo's database, created if missing and migrated.
async fn migrated(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    create_database_if_missing(settings).await?;
    let pool = store::pool(&settings.database, "demo")?;
    println!("  migrating the database …");
    store::MIGRATOR
        .run(&pool)
        .await
        .context("migrating the database failed (is PostgreSQL running and DATABASE_URL right?)")?;
    Ok(pool)
}

/// The demo's Slack loop (notifications and approvals the sandbox clicks), until `stop`.
fn start_slack_loop(
    pool: &sqlx::PgPool,
    settings: &Settings,
    sandbox: &Sandbox,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let slack_loop = workflows::Loop {
        db: pool.clone(),
        redis: crate::redis_conn::connection(&settings.redis)?,
        prefix: settings.redis.key_prefix.clone(),
        sandbox: sandbox.base_url(),
        stranger: stranger(),
    };
    Ok(tokio::spawn(workflows::run(slack_loop, stop)))
}

/// The sandbox's campaigns and team members, stored through the internal API's batch path.
async fn seed_database(pool: &sqlx::PgPool, seed: &SeedSpec) -> anyhow::Result<()> {
    let (campaigns, members) = seed_items(&World::seeded(seed))?;
    let actor = Actor::new("demo");
    let c = batch::apply(pool, &actor, &campaigns)
        .await
        .map_err(|e| anyhow::anyhow!("seeding campaigns failed: {e}"))?;
    let m = batch::apply(pool, &actor, &members)
        .await
        .map_err(|e| anyhow::anyhow!("seeding team members failed: {e}"))?;
    println!(
        "  seeded through the internal API's batch path: campaigns {} new / {} unchanged, team members {} new / {} unchanged",
        c.created,
        c.unchanged + c.updated,
        m.created,
        m.unchanged + m.updated
    );
    Ok(())
}

/// The dashboard's address and, when this run made them up, its throw-away tokens (a token
/// from the caller's environment is never printed).
fn print_dashboard(port: u16, env: &HashMap<String, String>, generated: &[&str]) {
    println!("  dashboard  http://127.0.0.1:{port}/dashboard   (sign in with a name and a token)");
    for (name, role) in [
        ("DASHBOARD_ADMIN_TOKEN", "admin, may act"),
        ("DASHBOARD_VIEWER_TOKEN", "viewer, may only look"),
    ] {
        // The token itself is never printed: it is in the owner-only demo.env.
        let file = std::env::var("DEMO_ENV_FILE").unwrap_or_else(|_| "demo.env".to_owned());
        match env.get(name) {
            Some(_) if generated.contains(&name) => {
                println!("             {role}: `grep {name} {file}` (generated for this run)");
            }
            _ => println!("             {role}: ${name} from your environment"),
        }
    }
}

/// Where a newcomer looks: health, docs, the API, metrics, a request to try.
fn print_where_to_look(port: u16, sandbox: &Sandbox) {
    let base = format!("http://127.0.0.1:{port}");
    println!("  health     {base}/healthz   readiness {base}/readyz");
    println!("  API docs   {base}/api/docs");
    println!("  API        curl -H \"Authorization: Bearer $API_TOKEN\" {base}/api/campaigns");
    println!("  metrics    curl -H \"Authorization: Bearer $METRICS_TOKEN\" {base}/metrics");
    println!(
        "  analytics  curl -H \"Authorization: Bearer $API_TOKEN\" '{base}/api/analytics/email?period=daily'   (also /api/analytics/team, /api/analytics/top-content?minDelivered=1; rolled up every minute here)"
    );
    println!(
        "  send email curl -H \"Authorization: Bearer $API_TOKEN\" -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \\\n             -d '{{\"campaignId\":\"demo-campaign-1\",\"templateId\":4000000,\"recipients\":[{{\"email\":\"ada@example.com\",\"name\":\"Ada\",\"variables\":{{\"first_name\":\"Ada\"}}}}]}}' {base}/api/email-requests"
    );
    println!(
        "             (templates are imported within a minute; then GET {base}/api/email-requests/<id>; the sandbox's {}/_sandbox/sends lists what Mailjet accepted)",
        sandbox.base_url()
    );
    println!(
        "  Slack      every 30 s a notification and an approval; the sandbox clicks it (see lines marked demo); what Slack shows: {}/_sandbox/slack/messages",
        sandbox.base_url()
    );
    println!(
        "  approvals  curl -H \"Authorization: Bearer $API_TOKEN\" {base}/api/approvals   notifications: {base}/api/notifications"
    );
    println!(
        "  schedules  every 10–60 s; `campaign-sync jobs list` shows them (same DATABASE_URL and REDIS_URL)"
    );
    println!("  Ctrl-C stops everything.");
    println!();
}

async fn create_database_if_missing(settings: &Settings) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    use sqlx::migrate::MigrateDatabase;
    let Some(url) = settings.database.url.as_ref() else {
        return Ok(());
    };
    let url = url.expose_secret();
    if !sqlx::Postgres::database_exists(url)
        .await
        .context("cannot reach PostgreSQL (is it running, and DATABASE_URL right?)")?
    {
        sqlx::Postgres::create_database(url)
            .await
            .context("cannot create the demo database")?;
        println!("  created the database");
    }
    Ok(())
}
