//! `campaign-sync doctor`: checks configuration, Postgres, Redis and credentials, and prints
//! a report a person can act on. Usable (exit 0) when nothing failed; warnings do not fail.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::config::{self, Keyring, MailjetAdapter, Process, Settings};
use crate::{redis_conn, store};

mod upstreams;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One finding under a heading.
#[derive(Debug, Clone)]
pub struct Finding {
    pub section: &'static str,
    pub level: Level,
    pub message: String,
}

/// Everything doctor found.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, section: &'static str, level: Level, message: impl Into<String>) {
        self.findings.push(Finding {
            section,
            level,
            message: message.into(),
        });
    }

    /// Usable when nothing failed.
    pub fn usable(&self) -> bool {
        self.findings.iter().all(|f| f.level != Level::Fail)
    }

    fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    /// The report as JSON, for scripts: `usable`, the counts and every finding.
    pub fn to_json(&self) -> serde_json::Value {
        let findings: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                let level = match f.level {
                    Level::Ok => "ok",
                    Level::Warn => "warn",
                    Level::Fail => "fail",
                };
                serde_json::json!({ "section": f.section, "level": level, "message": f.message })
            })
            .collect();
        serde_json::json!({
            "usable": self.usable(),
            "failed": self.count(Level::Fail),
            "warnings": self.count(Level::Warn),
            "findings": findings,
        })
    }

    /// The report as text, grouped by section.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut section = "";
        for f in &self.findings {
            if f.section != section {
                section = f.section;
                let _ = writeln!(out, "\n{section}");
            }
            let tag = match f.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            let _ = writeln!(out, "  {tag}  {}", f.message);
        }
        let verdict = if self.usable() {
            "usable"
        } else {
            "NOT usable"
        };
        let _ = writeln!(
            out,
            "\nResult: {verdict} ({} failed, {} warnings)",
            self.count(Level::Fail),
            self.count(Level::Warn)
        );
        out
    }
}

/// Runs every check with `settings` (loaded for no particular process) and the environment
/// they came from (to tell which process lacks which secret).
pub async fn run(settings: &Settings, env: &HashMap<String, String>) -> Report {
    let mut report = Report::default();
    check_config(&mut report, settings, env);
    check_postgres(&mut report, settings).await;
    check_redis(&mut report, settings).await;
    check_credentials(&mut report, settings);
    upstreams::check(&mut report, settings).await;
    report_retention(&mut report, &settings.retention);
    report
}

/// How long each kind of data is kept (`purge_expired_data` enforces it daily).
fn report_retention(report: &mut Report, r: &config::RetentionSettings) {
    let kinds = [
        (
            "raw webhook payloads erased",
            r.webhook_payload_days,
            "RETENTION_WEBHOOK_PAYLOAD_DAYS",
        ),
        (
            "recipients of settled sends pseudonymised",
            r.recipient_days,
            "RETENTION_RECIPIENT_DAYS",
        ),
        (
            "rejected webhook deliveries deleted",
            r.webhook_rejection_days,
            "RETENTION_WEBHOOK_REJECTION_DAYS",
        ),
        (
            "team activity (Slack messages) deleted",
            r.slack_message_days,
            "RETENTION_SLACK_MESSAGE_DAYS",
        ),
        (
            "settled outgoing webhooks deleted",
            r.outgoing_webhook_days,
            "RETENTION_OUTGOING_WEBHOOK_DAYS",
        ),
        (
            "statistics snapshots deleted",
            r.statistics_days,
            "RETENTION_STATISTICS_DAYS",
        ),
        (
            "finished sync runs deleted",
            r.sync_runs_days,
            "RETENTION_SYNC_RUNS_DAYS",
        ),
    ];
    for (what, days, var) in kinds {
        report.add(
            "Retention",
            Level::Ok,
            format!("{what} after {days} days ({var})"),
        );
    }
}

fn check_config(report: &mut Report, settings: &Settings, env: &HashMap<String, String>) {
    const S: &str = "Configuration";
    report.add(
        S,
        Level::Ok,
        format!("settings are valid (APP_ENV={})", settings.app_env.as_str()),
    );
    for (process, name) in [(Process::Web, "web"), (Process::Worker, "worker")] {
        match config::load_from(env, process, &crate::jobs::schedulable()) {
            Ok(_) => report.add(
                S,
                Level::Ok,
                format!("the {name} process has everything it needs"),
            ),
            Err(err) => {
                for p in err.problems {
                    report.add(S, Level::Fail, format!("{name}: {p}"));
                }
            }
        }
    }
    let enabled = settings
        .schedules
        .values()
        .filter(|s| s.cron.is_some())
        .count();
    report.add(
        S,
        Level::Ok,
        format!(
            "{enabled} of {} schedules enabled",
            settings.schedules.len()
        ),
    );
}

async fn check_postgres(report: &mut Report, settings: &Settings) {
    const S: &str = "Postgres";
    let pool = match store::pool(&settings.database, "doctor") {
        Ok(pool) => pool,
        Err(e) => return report.add(S, Level::Fail, e.to_string()),
    };
    let started = Instant::now();
    let probe = store::server_version_and_ssl(&pool);
    let (version, ssl) = match tokio::time::timeout(Duration::from_secs(10), probe).await {
        Ok(Ok(row)) => row,
        Ok(Err(e)) => {
            return report.add(
                S,
                Level::Fail,
                format!("cannot connect: {}", crate::store::describe_sqlx(&e)),
            );
        }
        Err(_) => return report.add(S, Level::Fail, "cannot connect: no answer within 10 s"),
    };
    let tls = if ssl.unwrap_or(false) {
        "TLS in use"
    } else {
        "no TLS"
    };
    report.add(
        S,
        Level::Ok,
        format!(
            "connected in {} ms (server {version}, {tls})",
            started.elapsed().as_millis()
        ),
    );
    if !ssl.unwrap_or(false) && settings.app_env == config::AppEnv::Production {
        report.add(
            S,
            Level::Warn,
            "production without TLS: Heroku Postgres needs DATABASE_SSL_MODE=require",
        );
    }
    check_oauth_tokens(report, &pool, settings.security.encryption_keys.as_ref()).await;
    match store::migration_status(&pool).await {
        Ok((states, unknown)) => report_migrations(report, &states, &unknown),
        Err(e) => report.add(
            S,
            Level::Fail,
            format!(
                "cannot read migrations: {}",
                crate::store::describe_sqlx(&e)
            ),
        ),
    }
    pool.close().await;
}

fn report_migrations(report: &mut Report, states: &[store::MigrationState], unknown: &[i64]) {
    const S: &str = "Postgres";
    let applied = states.iter().filter(|m| m.applied).count();
    let level = if applied == states.len() {
        Level::Ok
    } else {
        Level::Fail
    };
    let mut message = format!("migrations: {applied} of {} applied", states.len());
    if level == Level::Fail {
        message.push_str("; run `campaign-sync migrate`");
    }
    report.add(S, level, message);
    for m in states {
        if let Some(problem) = &m.problem {
            report.add(
                S,
                Level::Fail,
                format!("migration {} ({}) {problem}", m.version, m.description),
            );
        }
    }
    if !unknown.is_empty() {
        report.add(S, Level::Warn, format!("the database has migrations this binary does not know: {unknown:?} (a newer release ran?)"));
    }
}

async fn check_redis(report: &mut Report, settings: &Settings) {
    const S: &str = "Redis";
    let client = match redis_conn::client(&settings.redis) {
        Ok(client) => client,
        Err(e) => return report.add(S, Level::Fail, e.to_string()),
    };
    let started = Instant::now();
    let connect = client.get_multiplexed_async_connection();
    let mut conn = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return report.add(
                S,
                Level::Fail,
                format!("cannot connect: {}", redis_conn::describe(&e)),
            );
        }
        Err(_) => return report.add(S, Level::Fail, "cannot connect: no answer within 10 s"),
    };
    let info: String = match redis::cmd("INFO")
        .arg("server")
        .arg("memory")
        .query_async(&mut conn)
        .await
    {
        Ok(info) => info,
        Err(e) => {
            return report.add(
                S,
                Level::Fail,
                format!("INFO failed: {}", redis_conn::describe(&e)),
            );
        }
    };
    report_redis(report, settings, &info, started);
}

/// What `INFO` says: version, TLS, the eviction policy, the key prefix.
fn report_redis(report: &mut Report, settings: &Settings, info: &str, started: Instant) {
    const S: &str = "Redis";
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let tls = if settings.redis.uses_tls() {
        if settings.redis.tls_insecure {
            "TLS in use, self-signed certificate accepted"
        } else {
            "TLS in use"
        }
    } else {
        "no TLS"
    };
    report.add(
        S,
        Level::Ok,
        format!(
            "connected in {} ms (server {}, {tls})",
            started.elapsed().as_millis(),
            field("redis_version")
        ),
    );
    let policy = field("maxmemory_policy");
    if policy == "noeviction" {
        report.add(S, Level::Ok, "maxmemory-policy is noeviction");
    } else {
        report.add(S, Level::Warn, format!("maxmemory-policy is {policy}: under memory pressure Redis may evict queued jobs silently; set it to noeviction (heroku redis:maxmemory --policy noeviction)"));
    }
    report.add(
        S,
        Level::Ok,
        format!("key prefix {:?}", settings.redis.key_prefix),
    );
}

fn check_credentials(report: &mut Report, s: &Settings) {
    const S: &str = "Credentials (presence only; values are never shown)";
    for (what, present, level_if_missing) in credentials(s) {
        let (level, state) = if present {
            (Level::Ok, "set")
        } else {
            (level_if_missing, "missing")
        };
        report.add(S, level, format!("{what}: {state}"));
    }
}

/// The credentials of the chosen Mailjet adapter.
fn mailjet_credentials(s: &Settings) -> [(&'static str, bool); 2] {
    match s.mailjet.adapter {
        MailjetAdapter::Agent => [
            (
                "Mailjet agent URL (MAILJET_MCP_URL)",
                s.mailjet.mcp_url.is_some(),
            ),
            (
                "Mailjet agent signing secret (MAILJET_MCP_TOKEN)",
                s.mailjet.mcp_token.is_some(),
            ),
        ],
        MailjetAdapter::Rest => [
            (
                "Mailjet API key (MAILJET_API_KEY)",
                s.mailjet.api_key.is_some(),
            ),
            (
                "Mailjet API secret (MAILJET_API_SECRET)",
                s.mailjet.api_secret.is_some(),
            ),
        ],
    }
}

/// Each credential the settings should have: what it is, whether it is set, how bad a gap is.
fn credentials(s: &Settings) -> Vec<(String, bool, Level)> {
    let mailjet = mailjet_credentials(s);
    let slack = match (
        s.slack.bot_token.is_some(),
        s.slack.client_id.is_some() && s.slack.client_secret.is_some(),
    ) {
        (_, true) => "OAuth app with token rotation (SLACK_CLIENT_ID/SECRET)",
        (true, false) => "static bot token (SLACK_BOT_TOKEN)",
        (false, false) => "",
    };
    let webhook = s.mailjet.webhook_user.is_some() && s.mailjet.webhook_password.is_some();
    let rest = [
        (
            "Mailjet webhook Basic auth (MAILJET_WEBHOOK_USER/PASSWORD)",
            webhook,
            Level::Warn,
        ),
        (
            "Slack signing secret (SLACK_SIGNING_SECRET)",
            s.slack.signing_secret.is_some(),
            Level::Warn,
        ),
        (
            "API token (API_TOKEN)",
            s.security.api_token.is_some(),
            Level::Warn,
        ),
        (
            "metrics token (METRICS_TOKEN)",
            s.security.metrics_token.is_some(),
            Level::Warn,
        ),
        (
            "encryption keys (ENCRYPTION_KEYS or ENCRYPTION_KEY)",
            s.security.encryption_keys.is_some(),
            Level::Ok,
        ),
    ];
    let mut all: Vec<(String, bool, Level)> = mailjet
        .into_iter()
        .map(|(what, present)| (what.to_owned(), present, Level::Warn))
        .collect();
    all.push((rest[0].0.to_owned(), rest[0].1, rest[0].2));
    all.push((
        format!("Slack credentials {slack}"),
        !slack.is_empty(),
        Level::Warn,
    ));
    all.extend(rest[1..].iter().map(|(w, p, l)| ((*w).to_owned(), *p, *l)));
    all
}

/// Stored OAuth credentials: one that Slack refused to refresh, or revoked, needs a
/// re-installation; one sealed with a key no longer configured cannot be opened.
async fn check_oauth_tokens(report: &mut Report, pool: &sqlx::PgPool, keys: Option<&Keyring>) {
    const S: &str = "Postgres";
    let rows = crate::store::oauth_tokens::slack_credentials(pool).await;
    // Before the first migration the table does not exist: the migration check reports that.
    let Ok(rows) = rows else { return };
    for row in rows {
        let ws = &row.workspace_id;
        let reinstall = "install the app again at /slack/install";
        match row.status.as_str() {
            "needs_reinstall" => report.add(S, Level::Fail, format!("Slack credential of workspace {ws} needs re-installation: Slack refused its refresh token; {reinstall}")),
            "revoked" => report.add(S, Level::Fail, format!("Slack credential of workspace {ws} was revoked ({}) at {}; Slack jobs fail until you {reinstall}", row.revoked_why.as_deref().unwrap_or("revoked"), row.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default())),
            _ if keys.is_some_and(|k| k.get(&row.key_id).is_none()) => report.add(S, Level::Fail, format!("Slack credential of workspace {ws} is sealed with key {:?}, which is not in ENCRYPTION_KEYS: put it back, then run `campaign-sync tokens reseal`", row.key_id)),
            _ => {
                let left = row.expires_at
                    .map(|at| format!("access token expires in {} min", (at - chrono::Utc::now()).num_minutes()))
                    .unwrap_or_else(|| "no expiry".to_owned());
                let by = row.installed_by.as_deref().map(|b| format!(", installed by {b}")).unwrap_or_default();
                report.add(S, Level::Ok, format!("Slack OAuth credential of workspace {ws} is active ({left}, key {}{by})", row.key_id));
            }
        }
    }
}
