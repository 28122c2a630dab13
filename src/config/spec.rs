//! The declaration of every setting: its dotted key in the TOML files, the environment
//! variable that overrides it, and what it means. README.md's settings table mirrors this
//! list (a unit test checks that every variable named here is documented there).

/// One declared setting.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    /// Dotted key in `config/*.toml`.
    pub key: &'static str,
    /// Environment variable that overrides the files.
    pub env: &'static str,
    /// Whether the value is a secret (never printed).
    pub secret: bool,
    /// What the setting means.
    pub doc: &'static str,
}

const fn plain(key: &'static str, env: &'static str, doc: &'static str) -> SettingSpec {
    SettingSpec {
        key,
        env,
        secret: false,
        doc,
    }
}

const fn secret(key: &'static str, env: &'static str, doc: &'static str) -> SettingSpec {
    SettingSpec {
        key,
        env,
        secret: true,
        doc,
    }
}

/// Environment variables named `SCHEDULE_<JOB>` override `schedules.<job>`.
pub const SCHEDULE_ENV_PREFIX: &str = "SCHEDULE_";

/// Every setting the service reads.
pub const SETTINGS: &[SettingSpec] = &[
    plain(
        "server.public_url",
        "PUBLIC_URL",
        "Base URL people reach the service at (https://app.example.com): Slack's OAuth redirect, links in alerts.",
    ),
    plain("server.host", "HOST", "Address the web server binds to."),
    plain(
        "server.port",
        "PORT",
        "Port the web server listens on (Heroku sets it).",
    ),
    plain(
        "server.body_limit_bytes",
        "BODY_LIMIT_BYTES",
        "Largest request body accepted, in bytes; larger bodies get 413.",
    ),
    plain(
        "server.request_timeout_secs",
        "REQUEST_TIMEOUT_SECS",
        "Longest time a web request may take before it is answered 408.",
    ),
    plain(
        "server.readiness_timeout_ms",
        "READINESS_TIMEOUT_MS",
        "How long /readyz waits for Postgres and for Redis to answer.",
    ),
    plain(
        "server.shutdown_timeout_secs",
        "SHUTDOWN_TIMEOUT_SECS",
        "Grace period after SIGTERM for in-flight work; keep it under Heroku's 30 s.",
    ),
    plain(
        "worker.concurrency",
        "WORKER_CONCURRENCY",
        "Tasks one worker process runs at once per queue, unless WORKER_QUEUES says otherwise.",
    ),
    plain(
        "worker.queues",
        "WORKER_QUEUES",
        "Per-queue concurrency, e.g. default=10,email=4.",
    ),
    plain(
        "worker.lease_secs",
        "WORKER_LEASE_SECS",
        "A task whose worker stops renewing it for this long is run by another worker.",
    ),
    plain(
        "worker.shutdown_timeout_secs",
        "WORKER_SHUTDOWN_TIMEOUT_SECS",
        "After SIGTERM, how long running tasks may finish before they are handed back (under Heroku's 30 s).",
    ),
    plain(
        "retention.webhook_payload_days",
        "RETENTION_WEBHOOK_PAYLOAD_DAYS",
        "Raw payloads of processed webhooks are erased after this many days.",
    ),
    plain(
        "retention.statistics_days",
        "RETENTION_STATISTICS_DAYS",
        "Statistics snapshots older than this many days are deleted.",
    ),
    plain(
        "retention.sync_runs_days",
        "RETENTION_SYNC_RUNS_DAYS",
        "Finished sync runs older than this many days are deleted.",
    ),
    plain(
        "retention.recipient_days",
        "RETENTION_RECIPIENT_DAYS",
        "Recipients' addresses, names and variables on sends settled this many days ago are pseudonymised.",
    ),
    plain(
        "retention.webhook_rejection_days",
        "RETENTION_WEBHOOK_REJECTION_DAYS",
        "Rejected webhook deliveries (kept with their bytes for replay) are deleted after this many days.",
    ),
    plain(
        "retention.slack_message_days",
        "RETENTION_SLACK_MESSAGE_DAYS",
        "Team activity (who posted which message) older than this many days is deleted.",
    ),
    plain(
        "retention.outgoing_webhook_days",
        "RETENTION_OUTGOING_WEBHOOK_DAYS",
        "Settled outgoing webhooks (approval decisions sent) are deleted after this many days.",
    ),
    secret(
        "database.url",
        "DATABASE_URL",
        "PostgreSQL connection URL (Heroku Postgres sets it).",
    ),
    plain(
        "database.ssl_mode",
        "DATABASE_SSL_MODE",
        "TLS to Postgres: disable, prefer, require, verify-ca or verify-full. An sslmode in DATABASE_URL must agree.",
    ),
    plain(
        "database.max_connections",
        "DATABASE_MAX_CONNECTIONS",
        "Largest number of pooled Postgres connections per process.",
    ),
    plain(
        "database.min_connections",
        "DATABASE_MIN_CONNECTIONS",
        "Postgres connections kept open while idle.",
    ),
    plain(
        "database.connect_timeout_secs",
        "DATABASE_CONNECT_TIMEOUT_SECS",
        "How long to wait for a Postgres connection from the pool.",
    ),
    secret(
        "redis.url",
        "REDIS_URL",
        "Redis connection URL, redis:// or rediss:// (Heroku Redis sets it).",
    ),
    plain(
        "redis.tls_insecure",
        "REDIS_TLS_INSECURE",
        "Accept Redis's self-signed TLS certificate (needed on Heroku Redis); only with rediss://.",
    ),
    plain(
        "redis.key_prefix",
        "REDIS_KEY_PREFIX",
        "Prefix of every Redis key this service writes, so several deployments can share one Redis.",
    ),
    plain(
        "redis.connect_timeout_secs",
        "REDIS_CONNECT_TIMEOUT_SECS",
        "How long to wait for a Redis connection.",
    ),
    plain(
        "redis.response_timeout_secs",
        "REDIS_RESPONSE_TIMEOUT_SECS",
        "How long to wait for a Redis reply.",
    ),
    plain(
        "log.format",
        "LOG_FORMAT",
        "json (one JSON object a line) or pretty (readable lines).",
    ),
    plain(
        "log.level",
        "LOG_LEVEL",
        "Log filter, in tracing's EnvFilter syntax; RUST_LOG overrides it.",
    ),
    plain(
        "mailjet.adapter",
        "MAILJET_ADAPTER",
        "How Mailjet is reached: agent (the Mailjet MCP agent, JWT) or rest (Mailjet's API, Basic auth).",
    ),
    plain(
        "mailjet.mcp_url",
        "MAILJET_MCP_URL",
        "Base URL of the Mailjet MCP agent.",
    ),
    secret(
        "mailjet.mcp_token",
        "MAILJET_MCP_TOKEN",
        "Shared secret the agent JWTs are signed with (HS256).",
    ),
    plain(
        "mailjet.rate_per_sec",
        "MAILJET_RATE_PER_SEC",
        "Mailjet requests per second per API key, shared by every process through Redis.",
    ),
    plain(
        "slack.cache_ttl_secs",
        "SLACK_CACHE_TTL_SECS",
        "How long Slack look-ups (channel id by name, user id by email) are cached in Redis.",
    ),
    plain(
        "slack.tier2_per_min",
        "SLACK_TIER2_PER_MIN",
        "Requests per minute allowed for Slack's Tier 2 methods (users.list, conversations.list), shared by every process.",
    ),
    plain(
        "slack.tier3_per_min",
        "SLACK_TIER3_PER_MIN",
        "Requests per minute for Slack's Tier 3 methods (users.getPresence, conversations.info, chat.update).",
    ),
    plain(
        "slack.tier4_per_min",
        "SLACK_TIER4_PER_MIN",
        "Requests per minute for Slack's Tier 4 methods (conversations.members, auth.test).",
    ),
    plain(
        "slack.page_size",
        "SLACK_PAGE_SIZE",
        "Items per page when listing Slack users and channels (1–999).",
    ),
    plain(
        "slack.channel_pattern",
        "SLACK_CHANNEL_PATTERN",
        "How a campaign's channel is named; {slug} stands for the campaign's slug (e.g. campaign-{slug}).",
    ),
    plain(
        "slack.sync_presence",
        "SLACK_SYNC_PRESENCE",
        "Whether sync_slack_users records the availability (presence) of users matched to team members.",
    ),
    plain(
        "workflows.approver_group",
        "SLACK_APPROVER_GROUP",
        "Slack user group (its id, S…) whose members may decide any approval besides its approver; unset: only the approver.",
    ),
    plain(
        "workflows.reminder_offsets",
        "APPROVAL_REMINDER_OFFSETS",
        "When approvers are reminded before an approval's deadline: durations such as 24h,1h,30m.",
    ),
    plain(
        "workflows.webhook_url",
        "CAMPAIGN_MANAGER_WEBHOOK_URL",
        "Where approval decisions are POSTed, signed (HMAC-SHA256), as they happen; unset: none are sent.",
    ),
    secret(
        "workflows.webhook_secret",
        "CAMPAIGN_MANAGER_WEBHOOK_SECRET",
        "Key of the HMAC-SHA256 signature of webhooks to the Campaign Manager (needed with CAMPAIGN_MANAGER_WEBHOOK_URL).",
    ),
    plain(
        "analytics.min_sample",
        "ANALYTICS_MIN_SAMPLE",
        "Fewest messages delivered in a period for a campaign or template to be ranked among the top content.",
    ),
    plain(
        "analytics.quiet_hours",
        "ANALYTICS_QUIET_HOURS",
        "Hours without a message after which a live campaign's Slack channel is listed as gone quiet.",
    ),
    plain(
        "alerts.slack_channel",
        "SLACK_ALERTS_CHANNEL",
        "Slack channel id (C…) the service's alerts are posted to (fired, repeated, resolved); unset: alerts are only listed at GET /api/alerts and on the dashboard.",
    ),
    plain(
        "alerts.repeat_after",
        "ALERT_REPEAT_AFTER",
        "How often an alert that lasts is posted again (a duration: 1h, 30m).",
    ),
    plain(
        "alerts.window",
        "ALERT_WINDOW",
        "Window over which upstream error rates, latency, rate-limit waits and new dead letters are judged.",
    ),
    plain(
        "alerts.sync_failures",
        "ALERT_SYNC_FAILURES",
        "Failed runs in a row of a scheduled job that raise an alert.",
    ),
    plain(
        "alerts.upstream_error_percent",
        "ALERT_UPSTREAM_ERROR_PERCENT",
        "Percent of an upstream's calls failing in the window (of at least 10) that raises an alert.",
    ),
    plain(
        "alerts.upstream_latency",
        "ALERT_UPSTREAM_LATENCY",
        "Mean latency of an upstream's calls in the window that raises an alert (a duration: 5s).",
    ),
    plain(
        "alerts.rate_limit_percent",
        "ALERT_RATE_LIMIT_PERCENT",
        "Percent of the window spent waiting out an upstream's rate limits that raises an alert.",
    ),
    plain(
        "alerts.token_expiry",
        "ALERT_TOKEN_EXPIRY",
        "A Slack token this close to expiry raises an alert (tokens are refreshed two hours ahead).",
    ),
    plain(
        "alerts.email_stuck",
        "ALERT_EMAIL_STUCK",
        "A recipient due this long without being sent raises an alert.",
    ),
    plain(
        "alerts.webhook_silence",
        "ALERT_WEBHOOK_SILENCE",
        "No Mailjet webhook event for this long, while ALERT_WEBHOOK_MIN_SENDS emails were sent, raises an alert.",
    ),
    plain(
        "alerts.webhook_min_sends",
        "ALERT_WEBHOOK_MIN_SENDS",
        "Fewest emails sent in ALERT_WEBHOOK_SILENCE for webhook silence to raise an alert.",
    ),
    plain(
        "alerts.command_admins",
        "SLACK_COMMAND_ADMINS",
        "Slack user ids (U…, comma-separated) who may run /campaign-sync retry-dead; unset: nobody.",
    ),
    secret(
        "dashboard.admin_token",
        "DASHBOARD_ADMIN_TOKEN",
        "Signs in to /dashboard as an admin, who may act (retry, purge, pause, cancel, run now); at least 16 characters.",
    ),
    secret(
        "dashboard.viewer_token",
        "DASHBOARD_VIEWER_TOKEN",
        "Signs in to /dashboard as a viewer, who may only look; at least 16 characters.",
    ),
    plain(
        "dashboard.session_hours",
        "DASHBOARD_SESSION_HOURS",
        "Hours a dashboard sign-in lasts.",
    ),
    plain(
        "email.max_recipients",
        "EMAIL_MAX_RECIPIENTS",
        "Most recipients in one email request.",
    ),
    plain(
        "email.body_limit_bytes",
        "EMAIL_BODY_LIMIT_BYTES",
        "Largest POST /api/email-requests body (other routes use BODY_LIMIT_BYTES).",
    ),
    plain(
        "email.max_attempts",
        "EMAIL_MAX_ATTEMPTS",
        "Send attempts of one recipient before it is dead.",
    ),
    plain(
        "email.reconcile_after_secs",
        "EMAIL_RECONCILE_AFTER_SECS",
        "How long a send may stay `sending` (a crash or an ambiguous upstream error) before it is reconciled, and only then resent.",
    ),
    plain(
        "upstream.timeout_secs",
        "UPSTREAM_TIMEOUT_SECS",
        "Timeout of every Mailjet and Slack request.",
    ),
    plain(
        "mailjet.agent_id",
        "MAILJET_AGENT_ID",
        "Subject (sub) of the agent JWTs.",
    ),
    plain(
        "mailjet.api_url",
        "MAILJET_API_URL",
        "Base URL of Mailjet's REST and Send API (the rest adapter).",
    ),
    secret(
        "mailjet.api_key",
        "MAILJET_API_KEY",
        "Mailjet API key (the rest adapter).",
    ),
    secret(
        "mailjet.api_secret",
        "MAILJET_API_SECRET",
        "Mailjet API secret (the rest adapter).",
    ),
    secret(
        "mailjet.webhook_user",
        "MAILJET_WEBHOOK_USER",
        "User name Mailjet's event webhook must send (Basic auth).",
    ),
    secret(
        "mailjet.webhook_password",
        "MAILJET_WEBHOOK_PASSWORD",
        "Password Mailjet's event webhook must send (Basic auth).",
    ),
    plain(
        "slack.api_url",
        "SLACK_API_URL",
        "Base URL of Slack's Web API.",
    ),
    secret(
        "slack.bot_token",
        "SLACK_BOT_TOKEN",
        "Static Slack bot token (xoxb-…); not needed when OAuth rotation is set up.",
    ),
    secret(
        "slack.signing_secret",
        "SLACK_SIGNING_SECRET",
        "Secret Slack signs event and interaction requests with.",
    ),
    plain(
        "slack.client_id",
        "SLACK_CLIENT_ID",
        "Slack app client id, for OAuth installs and token rotation.",
    ),
    secret(
        "slack.client_secret",
        "SLACK_CLIENT_SECRET",
        "Slack app client secret, for OAuth installs and token rotation.",
    ),
    secret(
        "slack.app_token",
        "SLACK_APP_TOKEN",
        "Slack app-level token (xapp-…), kept for Socket Mode.",
    ),
    plain(
        "slack.workspace_id",
        "SLACK_WORKSPACE_ID",
        "Slack workspace (team) id this deployment serves.",
    ),
    secret(
        "security.api_token",
        "API_TOKEN",
        "Bearer token the Campaign Manager uses for /api (at least 16 characters).",
    ),
    secret(
        "security.metrics_token",
        "METRICS_TOKEN",
        "Bearer token for /metrics (at least 16 characters).",
    ),
    secret(
        "security.encryption_key",
        "ENCRYPTION_KEY",
        "Base64 of 32 random bytes: the AES-256-GCM key for OAuth tokens at rest.",
    ),
    secret(
        "security.encryption_keys",
        "ENCRYPTION_KEYS",
        "Keys for secrets at rest, id:base64,id:base64: the first seals, all open (for rotation).",
    ),
    plain(
        "security.encryption_key_id",
        "ENCRYPTION_KEY_ID",
        "Id stored with every encrypted value, so keys can be rotated.",
    ),
];

/// The declaration of `key`, if it is a known setting.
pub fn find(key: &str) -> Option<&'static SettingSpec> {
    SETTINGS.iter().find(|s| s.key == key)
}
