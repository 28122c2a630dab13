//! How every setting is read and checked: each `read_*` takes its section from the layered
//! sources, every problem is collected in the `Reader` (so all are reported at once), and
//! `require` adds what a process needs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use super::reader::{MIN_TOKEN_LEN, Reader, need};
use super::settings::*;
use super::{AppEnv, Process};

/// Reads every setting; problems are collected in `r`.
pub(super) fn read(r: &mut Reader<'_>, app_env: AppEnv, jobs: &[Schedulable]) -> Settings {
    Settings {
        app_env,
        server: read_server(r),
        database: read_database(r),
        redis: read_redis(r),
        log: read_log(r),
        mailjet: read_mailjet(r),
        slack: read_slack(r),
        security: super::security::read(r),
        schedules: read_schedules(r, jobs),
        worker: read_worker(r),
        retention: read_retention(r),
        email: read_email(r),
        workflows: super::workflows::read(r),
        analytics: read_analytics(r),
        dashboard: super::dashboard::read(r),
        alerts: super::alerts::read(r),
        upstream_timeout: secs(r, "upstream.timeout_secs", 1, 300),
    }
}

fn read_analytics(r: &mut Reader<'_>) -> AnalyticsSettings {
    let min = r.number::<i64>("analytics.min_sample", 1, 1_000_000_000);
    let quiet = r.number::<u64>("analytics.quiet_hours", 1, 24 * 365);
    AnalyticsSettings {
        min_sample: need(r, "analytics.min_sample", min),
        quiet_after: Duration::from_secs(3600 * need(r, "analytics.quiet_hours", quiet)),
    }
}

fn read_email(r: &mut Reader<'_>) -> EmailSettings {
    let max = r.number::<usize>("email.max_recipients", 1, 1_000_000);
    let limit = r.number::<usize>("email.body_limit_bytes", 1024, 1 << 30);
    let attempts = r.number::<i32>("email.max_attempts", 1, 100);
    let reconcile_after = secs(r, "email.reconcile_after_secs", 1, 7 * 86_400);
    // A send still in flight must never be taken for a lost one.
    let timeout = r
        .raw("upstream.timeout_secs")
        .and_then(|v| v.raw.trim().parse::<u64>().ok());
    // A Send call holds its recipients at most two requests and two one-second waits.
    if let Some(timeout) = timeout
        && reconcile_after.as_secs() < 2 * timeout + 5
    {
        r.problem(
            "email.reconcile_after_secs",
            format!(
                "{}s is too short for UPSTREAM_TIMEOUT_SECS={timeout}; expected at least {} (2 × the timeout + 5), so a send still in flight is never taken for a lost one",
                reconcile_after.as_secs(),
                2 * timeout + 5
            ),
        );
    }
    EmailSettings {
        max_recipients: need(r, "email.max_recipients", max),
        body_limit_bytes: need(r, "email.body_limit_bytes", limit),
        max_attempts: need(r, "email.max_attempts", attempts),
        reconcile_after,
    }
}

fn read_worker(r: &mut Reader<'_>) -> WorkerSettings {
    let concurrency = r.number::<usize>("worker.concurrency", 1, 1000);
    let queues = r.parse("worker.queues", parse_queue_concurrency);
    WorkerSettings {
        concurrency: need(r, "worker.concurrency", concurrency),
        queues: queues.unwrap_or_default(),
        lease: secs(r, "worker.lease_secs", 1, 3600),
        shutdown_timeout: secs(r, "worker.shutdown_timeout_secs", 1, 29),
    }
}

fn parse_queue_concurrency(raw: &str) -> Result<BTreeMap<String, usize>, String> {
    let expected =
        "expected queue=number pairs separated by commas, e.g. default=10,email=4 (1 to 1000 each)";
    raw.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (queue, n) = part.split_once('=').ok_or_else(|| expected.to_owned())?;
            let n: usize = n.trim().parse().map_err(|_| expected.to_owned())?;
            let queue = queue.trim();
            let valid = !queue.is_empty()
                && queue
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid || !(1..=1000).contains(&n) {
                return Err(expected.to_owned());
            }
            Ok((queue.to_owned(), n))
        })
        .collect()
}

fn read_retention(r: &mut Reader<'_>) -> RetentionSettings {
    let mut days = |key: &str| {
        let n = r.number::<u32>(key, 1, 36_500);
        need(r, key, n)
    };
    RetentionSettings {
        webhook_payload_days: days("retention.webhook_payload_days"),
        statistics_days: days("retention.statistics_days"),
        sync_runs_days: days("retention.sync_runs_days"),
        recipient_days: days("retention.recipient_days"),
        webhook_rejection_days: days("retention.webhook_rejection_days"),
        slack_message_days: days("retention.slack_message_days"),
        outgoing_webhook_days: days("retention.outgoing_webhook_days"),
    }
}

fn secs(r: &mut Reader<'_>, key: &str, min: i128, max: i128) -> Duration {
    let n = r.number::<u64>(key, min, max);
    Duration::from_secs(need(r, key, n))
}

fn read_server(r: &mut Reader<'_>) -> ServerSettings {
    let host = r.parse("server.host", |raw| {
        IpAddr::from_str(raw).map_err(|_| "expected an IP address such as 0.0.0.0".to_owned())
    });
    let host = host.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let port = r.number::<u16>("server.port", 0, 65535);
    let body = r.number::<usize>("server.body_limit_bytes", 1024, 1 << 30);
    let readiness = r.number::<u64>("server.readiness_timeout_ms", 50, 60_000);
    ServerSettings {
        host,
        port: need(r, "server.port", port),
        body_limit_bytes: need(r, "server.body_limit_bytes", body),
        request_timeout: secs(r, "server.request_timeout_secs", 1, 600),
        readiness_timeout: Duration::from_millis(need(r, "server.readiness_timeout_ms", readiness)),
        shutdown_timeout: secs(r, "server.shutdown_timeout_secs", 1, 29),
        public_url: r.http_url("server.public_url"),
    }
}

fn read_database(r: &mut Reader<'_>) -> DatabaseSettings {
    let url = r.parse("database.url", |raw| match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => Ok(u),
        Ok(_) => Err("expected a postgres:// URL".to_owned()),
        Err(e) => Err(format!(
            "is not a URL ({e}); expected postgres://user:password@host:port/database"
        )),
    });
    let mode = r.choice("database.ssl_mode", &SslMode::CHOICES);
    let mode = need(r, "database.ssl_mode", mode.map(Some)).unwrap_or(SslMode::Prefer);
    if let Some(url_mode) = url.as_ref().and_then(url_ssl_mode)
        && !url_mode.eq_ignore_ascii_case(mode.as_str())
    {
        r.problem(
            "database.ssl_mode",
            format!(
                "conflicts with sslmode={url_mode} in DATABASE_URL; expected the two to agree (or drop sslmode from the URL)"
            ),
        );
    }
    let max = r.number::<u32>("database.max_connections", 1, 1000);
    let min = r.number::<u32>("database.min_connections", 0, 1000);
    if let (Some(max), Some(min)) = (max, min)
        && min > max
    {
        r.problem(
            "database.min_connections",
            format!("{min} conflicts with DATABASE_MAX_CONNECTIONS={max}; expected at most {max}"),
        );
    }
    DatabaseSettings {
        url: url.and(r.secret("database.url")),
        ssl_mode: mode,
        max_connections: need(r, "database.max_connections", max),
        min_connections: need(r, "database.min_connections", min),
        connect_timeout: secs(r, "database.connect_timeout_secs", 1, 120),
    }
}

fn url_ssl_mode(url: &url::Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.into_owned())
}

fn read_redis(r: &mut Reader<'_>) -> RedisSettings {
    let url = r.parse("redis.url", |raw| match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.has_host() => Ok(u),
        Ok(_) => Err("expected a redis:// or rediss:// URL with a host".to_owned()),
        Err(e) => Err(format!(
            "is not a URL ({e}); expected redis://host:port or rediss://…"
        )),
    });
    let insecure = r.boolean("redis.tls_insecure");
    let insecure = need(r, "redis.tls_insecure", insecure);
    if let Some(u) = &url {
        if insecure && u.scheme() != "rediss" {
            r.problem(
                "redis.tls_insecure",
                "is true but REDIS_URL is not rediss://; expected a rediss:// URL, or REDIS_TLS_INSECURE=false",
            );
        }
        if u.fragment() == Some("insecure") && !insecure {
            r.problem(
                "redis.url",
                "ends in #insecure but REDIS_TLS_INSECURE is false; expected REDIS_TLS_INSECURE=true to accept self-signed certificates",
            );
        }
    }
    let prefix = r.parse("redis.key_prefix", |raw| {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c));
        if ok {
            Ok(raw.to_owned())
        } else {
            Err("expected 1 to 64 characters of letters, digits, '-', '_', ':' or '.'".to_owned())
        }
    });
    RedisSettings {
        url: url.and(r.secret("redis.url")),
        tls_insecure: insecure,
        key_prefix: need(r, "redis.key_prefix", prefix),
        connect_timeout: secs(r, "redis.connect_timeout_secs", 1, 120),
        response_timeout: secs(r, "redis.response_timeout_secs", 1, 120),
    }
}

fn read_log(r: &mut Reader<'_>) -> LogSettings {
    let format = r.choice(
        "log.format",
        &[("json", LogFormat::Json), ("pretty", LogFormat::Pretty)],
    );
    let level = r.parse("log.level", |raw| {
        tracing_subscriber::EnvFilter::try_new(raw)
            .map(|_| raw.to_owned())
            .map_err(|e| {
                format!("is not a log filter ({e}); expected e.g. info or campaign_sync=debug,info")
            })
    });
    LogSettings {
        format: format.unwrap_or(LogFormat::Pretty),
        level: need(r, "log.level", level),
    }
}

fn read_mailjet(r: &mut Reader<'_>) -> MailjetSettings {
    let adapter = r.choice(
        "mailjet.adapter",
        &[
            ("agent", MailjetAdapter::Agent),
            ("rest", MailjetAdapter::Rest),
        ],
    );
    let api_url = r.http_url("mailjet.api_url");
    let rate = r.number::<u32>("mailjet.rate_per_sec", 1, 10_000);
    let rate_per_sec = need(r, "mailjet.rate_per_sec", rate);
    MailjetSettings {
        rate_per_sec,
        adapter: adapter.unwrap_or(MailjetAdapter::Agent),
        mcp_url: r.http_url("mailjet.mcp_url"),
        mcp_token: r.token("mailjet.mcp_token", MIN_TOKEN_LEN),
        agent_id: need(r, "mailjet.agent_id", r.string("mailjet.agent_id")),
        api_url: need_url(r, "mailjet.api_url", api_url),
        api_key: r.secret("mailjet.api_key"),
        api_secret: r.secret("mailjet.api_secret"),
        webhook_user: r.secret("mailjet.webhook_user"),
        webhook_password: r.token("mailjet.webhook_password", MIN_TOKEN_LEN),
    }
}

fn need_url(r: &mut Reader<'_>, key: &str, value: Option<url::Url>) -> url::Url {
    if value.is_none() && r.raw(key).is_none() {
        r.problem(key, "is not set");
    }
    value.unwrap_or_else(|| url::Url::parse("http://invalid.invalid/").expect("static URL"))
}

fn read_slack(r: &mut Reader<'_>) -> SlackSettings {
    let api_url = r.http_url("slack.api_url");
    let cache_ttl = secs(r, "slack.cache_ttl_secs", 1, 7 * 86_400);
    let mut tier = |key: &str| {
        let n = r.number::<u32>(key, 1, 100_000);
        need(r, key, n)
    };
    let tier_per_min = [
        tier("slack.tier2_per_min"),
        tier("slack.tier3_per_min"),
        tier("slack.tier4_per_min"),
    ];
    let page_size = r.number::<u32>("slack.page_size", 1, 999);
    let page_size = need(r, "slack.page_size", page_size);
    let pattern = r.parse("slack.channel_pattern", ChannelPattern::parse);
    let channel_pattern = need(r, "slack.channel_pattern", pattern);
    let presence = r.boolean("slack.sync_presence");
    let sync_presence = need(r, "slack.sync_presence", presence);
    SlackSettings {
        cache_ttl,
        tier_per_min,
        page_size,
        channel_pattern,
        sync_presence,
        api_url: need_url(r, "slack.api_url", api_url),
        bot_token: r.secret("slack.bot_token"),
        signing_secret: r.token("slack.signing_secret", MIN_TOKEN_LEN),
        client_id: r.string("slack.client_id"),
        client_secret: r.secret("slack.client_secret"),
        app_token: r.secret("slack.app_token"),
        workspace_id: r.string("slack.workspace_id"),
    }
}

fn read_schedules(r: &mut Reader<'_>, jobs: &[Schedulable]) -> BTreeMap<String, Schedule> {
    let mut schedules = BTreeMap::new();
    for (job, value) in r.table("schedules") {
        let key = format!("schedules.{job}");
        if !jobs.iter().any(|j| j.name == job) {
            let names: Vec<&str> = jobs.iter().map(|j| j.name).collect();
            r.problem(
                &key,
                format!(
                    "{job:?} {} is not a scheduled job; expected one of: {}",
                    value.origin,
                    names.join(", ")
                ),
            );
            continue;
        }
        if let Some(schedule) = r.parse(&key, parse_schedule) {
            schedules.insert(job, schedule);
        }
    }
    for job in jobs {
        let key = format!("schedules.{}", job.name);
        if schedules.contains_key(job.name) || r.raw(&key).is_some() {
            continue;
        }
        match parse_schedule(job.default) {
            Ok(schedule) => {
                schedules.insert(job.name.to_owned(), schedule);
            }
            Err(e) => r.problem(&key, format!("the job's default schedule {e}")),
        }
    }
    schedules
}

fn parse_schedule(raw: &str) -> Result<Schedule, String> {
    if raw.eq_ignore_ascii_case("off") {
        return Ok(Schedule {
            expression: "off".to_owned(),
            cron: None,
        });
    }
    let fields = raw.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "has {fields} fields; expected 6 (sec min hour day-of-month month day-of-week, UTC), e.g. \"0 */30 * * * *\", or off"
        ));
    }
    cron::Schedule::from_str(raw)
        .map(|cron| Schedule {
            expression: raw.to_owned(),
            cron: Some(cron),
        })
        .map_err(|e| {
            format!("is not a valid cron expression ({e}); expected e.g. \"0 */30 * * * *\"")
        })
}

/// Records a problem for each secret `process` needs and does not have.
pub(super) fn require(r: &mut Reader<'_>, s: &Settings, process: Process) {
    let mut missing = |key: &str, present: bool, why: &str| {
        if !present && !r.has_problem(key) {
            r.problem(key, format!("is not set; the {why}"));
        }
    };
    if process != Process::Tool {
        missing(
            "database.url",
            s.database.url.is_some(),
            "service needs Postgres",
        );
    }
    if matches!(process, Process::Web | Process::Worker) {
        missing("redis.url", s.redis.url.is_some(), "service needs Redis");
    }
    if process == Process::Web {
        let why = "web process needs it";
        missing("security.api_token", s.security.api_token.is_some(), why);
        missing(
            "security.metrics_token",
            s.security.metrics_token.is_some(),
            why,
        );
        missing(
            "mailjet.webhook_user",
            s.mailjet.webhook_user.is_some(),
            "web process needs it to check Mailjet webhooks",
        );
        missing(
            "mailjet.webhook_password",
            s.mailjet.webhook_password.is_some(),
            "web process needs it to check Mailjet webhooks",
        );
        missing(
            "slack.signing_secret",
            s.slack.signing_secret.is_some(),
            "web process needs it to check Slack requests",
        );
    }
    if process == Process::Worker {
        require_upstreams(&mut missing, s);
    }
}

fn require_upstreams(missing: &mut impl FnMut(&str, bool, &str), s: &Settings) {
    match s.mailjet.adapter {
        MailjetAdapter::Agent => {
            let why = "worker needs it with MAILJET_ADAPTER=agent";
            missing("mailjet.mcp_url", s.mailjet.mcp_url.is_some(), why);
            missing("mailjet.mcp_token", s.mailjet.mcp_token.is_some(), why);
        }
        MailjetAdapter::Rest => {
            let why = "worker needs it with MAILJET_ADAPTER=rest";
            missing("mailjet.api_key", s.mailjet.api_key.is_some(), why);
            missing("mailjet.api_secret", s.mailjet.api_secret.is_some(), why);
        }
    }
    let oauth = s.slack.client_id.is_some() || s.slack.client_secret.is_some();
    if oauth {
        let why = "worker needs it for Slack OAuth token rotation";
        missing("slack.client_id", s.slack.client_id.is_some(), why);
        missing("slack.client_secret", s.slack.client_secret.is_some(), why);
        missing(
            "security.encryption_keys",
            s.security.encryption_keys.is_some(),
            "worker needs ENCRYPTION_KEYS (or ENCRYPTION_KEY) to store Slack OAuth tokens encrypted",
        );
    } else {
        missing(
            "slack.bot_token",
            s.slack.bot_token.is_some(),
            "worker needs a Slack bot token (or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET for OAuth)",
        );
    }
}
