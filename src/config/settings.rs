//! The typed settings (`super::load` reads and checks them).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::AppEnv;

/// All settings of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The environment the files were chosen for (`APP_ENV`).
    pub app_env: AppEnv,
    /// The web server.
    pub server: ServerSettings,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// Redis.
    pub redis: RedisSettings,
    /// Logging.
    pub log: LogSettings,
    /// Mailjet (agent or REST) and its webhook credentials.
    pub mailjet: MailjetSettings,
    /// Slack Web API, signing secret and OAuth app.
    pub slack: SlackSettings,
    /// Tokens for our own endpoints and the key for data at rest.
    pub security: SecuritySettings,
    /// Cron schedule of every scheduled job, by job name.
    pub schedules: BTreeMap<String, Schedule>,
    /// The worker process.
    pub worker: WorkerSettings,
    /// How long data is kept.
    pub retention: RetentionSettings,
    /// Email requests and the email queue.
    pub email: EmailSettings,
    /// Slack workflows: approvals, reminders, the Campaign Manager's webhook.
    pub workflows: WorkflowSettings,
    /// Analytics: rankings and bottlenecks.
    pub analytics: AnalyticsSettings,
    /// The dashboard's sign-in.
    pub dashboard: DashboardSettings,
    /// Alerts about the service itself, and who may act from Slack.
    pub alerts: AlertSettings,
    /// Timeout of every upstream request, Mailjet's and Slack's (`UPSTREAM_TIMEOUT_SECS`).
    pub upstream_timeout: Duration,
}

/// Alerts (`jobs::evaluate_alerts`) and the `/campaign-sync` command's admins.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// The Slack channel alerts are posted to (`SLACK_ALERTS_CHANNEL`); unset: listed only.
    pub slack_channel: Option<String>,
    /// A lasting alert is posted again after this long.
    pub repeat_after: Duration,
    /// The window upstream error rates, latency, rate-limit waits and dead letters are read over.
    pub window: Duration,
    /// Failed runs in a row of a scheduled job that raise an alert.
    pub sync_failures: u32,
    /// Share of an upstream's calls failing in the window (percent) that raises an alert.
    pub upstream_error_percent: u32,
    /// Mean latency of an upstream's calls in the window that raises an alert.
    pub upstream_latency: Duration,
    /// Share of the window spent waiting out rate limits (percent) that raises an alert.
    pub rate_limit_percent: u32,
    /// A token expiring sooner than this (it is refreshed two hours ahead) raises an alert.
    pub token_expiry: Duration,
    /// A recipient due this long without being sent raises an alert.
    pub email_stuck: Duration,
    /// No Mailjet webhook event for this long while emails were sent raises an alert.
    pub webhook_silence: Duration,
    /// Fewest emails sent in that time for the silence to count.
    pub webhook_min_sends: u32,
    /// Slack users who may run `/campaign-sync retry-dead`.
    pub command_admins: Vec<String>,
}

impl AlertSettings {
    /// Whether the Slack user `user` may run `/campaign-sync retry-dead`; when not, the
    /// refusal to show them.
    pub fn may_retry_dead(&self, user: &str) -> Result<(), &'static str> {
        if self.command_admins.iter().any(|a| a == user) {
            Ok(())
        } else {
            Err("Only the admins listed in SLACK_COMMAND_ADMINS may retry dead letters.")
        }
    }
}

/// The dashboard (`/dashboard`).
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// Signs in an operator who may act (`DASHBOARD_ADMIN_TOKEN`).
    pub admin_token: Option<SecretString>,
    /// Signs in an operator who may only look (`DASHBOARD_VIEWER_TOKEN`).
    pub viewer_token: Option<SecretString>,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
}

/// Slack workflows.
#[derive(Debug, Clone)]
pub struct WorkflowSettings {
    /// A Slack user group whose members may decide any approval (`SLACK_APPROVER_GROUP`).
    pub approver_group: Option<String>,
    /// How long before a deadline approvers are reminded, longest first.
    pub reminder_offsets: Vec<Duration>,
    /// Where decisions are sent (`CAMPAIGN_MANAGER_WEBHOOK_URL`).
    pub webhook_url: Option<url::Url>,
    /// The key they are signed with.
    pub webhook_secret: Option<SecretString>,
}

/// Analytics.
#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    /// Fewest messages delivered in a period for a campaign or template to be ranked (`ANALYTICS_MIN_SAMPLE`).
    pub min_sample: i64,
    /// How long a live campaign's channel may stay silent before it is a bottleneck (`ANALYTICS_QUIET_HOURS`).
    pub quiet_after: Duration,
}

/// Email requests and the email queue.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// Most recipients in one request.
    pub max_recipients: usize,
    /// Largest `POST /api/email-requests` body.
    pub body_limit_bytes: usize,
    /// Send attempts of a recipient before it is dead.
    pub max_attempts: i32,
    /// How long a send may stay `sending` before it is reconciled (and only then resent).
    pub reconcile_after: Duration,
}

/// The worker process.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Tasks run at once per queue, by default.
    pub concurrency: usize,
    /// Per-queue concurrency overrides.
    pub queues: BTreeMap<String, usize>,
    /// Lease of a task: how long a silent worker keeps it.
    pub lease: Duration,
    /// Grace period for running tasks after SIGTERM.
    pub shutdown_timeout: Duration,
}

impl WorkerSettings {
    /// Concurrency of `queue`.
    pub fn concurrency_of(&self, queue: &str) -> usize {
        self.queues.get(queue).copied().unwrap_or(self.concurrency)
    }
}

/// How long data is kept (days).
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Raw payloads of processed webhooks.
    pub webhook_payload_days: u32,
    /// Statistics snapshots.
    pub statistics_days: u32,
    /// Finished sync runs.
    pub sync_runs_days: u32,
    /// Recipients' addresses, names and variables on settled sends (pseudonymised after).
    pub recipient_days: u32,
    /// Deliveries that were rejected, kept with their bytes for replay.
    pub webhook_rejection_days: u32,
    /// Team activity: who posted which message in a campaign channel.
    pub slack_message_days: u32,
    /// Settled outgoing webhooks (approval decisions sent to the Campaign Manager).
    pub outgoing_webhook_days: u32,
}

/// The web server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind (0 picks a free port; tests use it).
    pub port: u16,
    /// Largest request body, in bytes.
    pub body_limit_bytes: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// How long `/readyz` waits for each dependency.
    pub readiness_timeout: Duration,
    /// Grace period after SIGTERM.
    pub shutdown_timeout: Duration,
    /// `PUBLIC_URL`: the base URL people reach the service at (Slack's OAuth redirect, links
    /// in Slack messages); unset, the request's own host is used.
    pub public_url: Option<url::Url>,
}

/// TLS mode towards Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub(super) const CHOICES: [(&'static str, SslMode); 5] = [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];

    /// The name libpq uses.
    pub fn as_str(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, m)| *m == self)
            .map(|(n, _)| *n)
            .unwrap_or("prefer")
    }
}

/// PostgreSQL.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Connection URL (a secret: it holds the password).
    pub url: Option<SecretString>,
    /// TLS mode; agrees with any `sslmode` in the URL.
    pub ssl_mode: SslMode,
    /// Pool size.
    pub max_connections: u32,
    /// Idle connections kept.
    pub min_connections: u32,
    /// Wait for a pooled connection.
    pub connect_timeout: Duration,
}

/// Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Connection URL (a secret: it holds the password).
    pub url: Option<SecretString>,
    /// Accept a self-signed certificate (Heroku Redis).
    pub tls_insecure: bool,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Wait for a connection.
    pub connect_timeout: Duration,
    /// Wait for a reply.
    pub response_timeout: Duration,
}

impl RedisSettings {
    /// Whether the connection uses TLS.
    pub fn uses_tls(&self) -> bool {
        self.url
            .as_ref()
            .is_some_and(|u| u.expose_secret().starts_with("rediss://"))
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Readable lines.
    Pretty,
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// EnvFilter directive.
    pub level: String,
}

/// How Mailjet is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailjetAdapter {
    /// The Mailjet MCP agent (JWT).
    Agent,
    /// Mailjet's REST and Send APIs (Basic auth).
    Rest,
}

/// Mailjet.
#[derive(Debug, Clone)]
pub struct MailjetSettings {
    pub adapter: MailjetAdapter,
    pub mcp_url: Option<url::Url>,
    pub mcp_token: Option<SecretString>,
    pub agent_id: String,
    pub api_url: url::Url,
    pub api_key: Option<SecretString>,
    pub api_secret: Option<SecretString>,
    pub webhook_user: Option<SecretString>,
    pub webhook_password: Option<SecretString>,
    /// Requests per second per API key, shared by every process.
    pub rate_per_sec: u32,
}

impl MailjetSettings {
    /// Calls a job keeps in flight: enough to use the whole rate at up to about 250 ms per
    /// request, and at least 8; the shared rate limit paces them.
    pub fn calls_in_flight(&self) -> usize {
        (self.rate_per_sec as usize / 4).clamp(8, 64)
    }
}

/// Slack.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    pub api_url: url::Url,
    pub bot_token: Option<SecretString>,
    pub signing_secret: Option<SecretString>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub app_token: Option<SecretString>,
    pub workspace_id: Option<String>,
    /// TTL of cached look-ups.
    pub cache_ttl: Duration,
    /// Requests per minute of Slack's tiers 2, 3 and 4.
    pub tier_per_min: [u32; 3],
    /// Items per page of users.list and conversations.list.
    pub page_size: u32,
    /// The name of a campaign's channel: `prefix` + slug + `suffix`.
    pub channel_pattern: ChannelPattern,
    /// Record availability of matched users.
    pub sync_presence: bool,
}

impl SlackSettings {
    /// The workspace this deployment serves, as every Slack row, cache key, rate-limit key and
    /// stored token is keyed: `SLACK_WORKSPACE_ID`, or `default` when it is not set.
    pub fn workspace(&self) -> &str {
        self.workspace_id.as_deref().unwrap_or("default")
    }
}

/// `SLACK_CHANNEL_PATTERN` split around its one `{slug}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelPattern {
    pub prefix: String,
    pub suffix: String,
}

impl ChannelPattern {
    /// Parses `campaign-{slug}`: exactly one `{slug}`, and otherwise what Slack allows in a
    /// channel name (lower-case letters, digits, `-` and `_`).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let mut parts = raw.split("{slug}");
        let (Some(prefix), Some(suffix), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("must contain {slug} exactly once, e.g. campaign-{slug}".to_owned());
        };
        let allowed = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        if !allowed(prefix) || !allowed(suffix) {
            return Err(
                "may only use lower-case letters, digits, - and _ around {slug} (Slack's channel-name rules)"
                    .to_owned(),
            );
        }
        Ok(ChannelPattern {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The slug a channel `name` stands for, if it follows the pattern.
    pub fn slug_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())
            .filter(|slug| !slug.is_empty())
    }
}

/// A 32-byte AES-256-GCM key with its id.
#[derive(Clone)]
pub struct EncryptionKey {
    /// Stored beside every ciphertext.
    pub id: String,
    /// The key bytes.
    pub bytes: [u8; 32],
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EncryptionKey {{ id: {:?}, bytes: [REDACTED] }}",
            self.id
        )
    }
}

/// The keys secrets at rest are sealed with: the first seals, every one opens (so a key can
/// be rotated without losing what the old one sealed).
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<EncryptionKey>,
}

impl Keyring {
    /// A ring of `keys`, the first sealing; `None` when there are none.
    pub fn new(keys: Vec<EncryptionKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Keyring { keys })
    }

    /// The key new values are sealed with.
    pub fn sealing(&self) -> &EncryptionKey {
        &self.keys[0]
    }

    /// The key with id `id`, if the ring holds it.
    pub fn get(&self, id: &str) -> Option<&EncryptionKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The ids of every key, sealing key first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }
}

/// Our own tokens and keys.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    pub api_token: Option<SecretString>,
    pub metrics_token: Option<SecretString>,
    /// `ENCRYPTION_KEYS` (and `ENCRYPTION_KEY` with its id, which opens only when both are set).
    pub encryption_keys: Option<Keyring>,
}

/// The schedule of one job.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The expression as configured (6 fields, UTC), or `off`.
    pub expression: String,
    /// The parsed schedule; `None` when the job is switched off.
    pub cron: Option<cron::Schedule>,
}

/// A job that has a schedule, as configuration sees it: the jobs layer hands these down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedulable {
    /// The job's stable name (`schedules.<name>`, `SCHEDULE_<NAME>`).
    pub name: &'static str,
    /// Its default schedule: six cron fields (UTC) or `off`.
    pub default: &'static str,
}
