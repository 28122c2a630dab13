use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::*;

/// The jobs these tests configure (configuration knows jobs only as names and defaults).
const JOBS: &[Schedulable] = &[
    Schedulable {
        name: "sync_mailjet_stats",
        default: "0 */30 * * * *",
    },
    Schedulable {
        name: "purge_expired_data",
        default: "0 30 3 * * *",
    },
];

/// [`super::load_from`] with [`JOBS`].
pub(super) fn load_from(
    env: &HashMap<String, String>,
    process: Process,
) -> Result<Settings, ConfigError> {
    super::load_from(env, process, JOBS)
}

pub(super) const KEY_32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub(super) fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [("APP_ENV", "test")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in pairs {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

fn web_env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut all = vec![
        ("API_TOKEN", "api-token-0123456789"),
        ("METRICS_TOKEN", "metrics-token-0123456789"),
        ("MAILJET_WEBHOOK_USER", "mailjet"),
        ("MAILJET_WEBHOOK_PASSWORD", "webhook-password-0123"),
        ("SLACK_SIGNING_SECRET", "signing-secret-0123456789"),
    ];
    all.extend_from_slice(pairs);
    env(&all)
}

pub(super) fn problems(env: &HashMap<String, String>, process: Process) -> Vec<String> {
    match load_from(env, process) {
        Ok(_) => Vec::new(),
        Err(err) => err.problems.iter().map(|p| p.to_string()).collect(),
    }
}

fn assert_one_problem(
    env: &HashMap<String, String>,
    process: Process,
    setting: &str,
    words: &[&str],
) {
    let found = problems(env, process);
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    assert!(
        found[0].starts_with(setting),
        "{:?} does not name {setting}",
        found[0]
    );
    for word in words {
        assert!(
            found[0].contains(word),
            "{:?} does not say {word:?}",
            found[0]
        );
    }
}

#[test]
fn the_test_environment_loads_for_every_process_with_its_secrets() {
    let env = web_env(&[
        ("MAILJET_MCP_URL", "http://127.0.0.1:9/"),
        ("MAILJET_MCP_TOKEN", "mcp-token-0123456789abcdef"),
        ("SLACK_BOT_TOKEN", "bot-token"),
    ]);
    for process in [
        Process::Migrate,
        Process::Web,
        Process::Worker,
        Process::Tool,
    ] {
        let settings = load_from(&env, process).expect("valid configuration");
        assert_eq!(settings.app_env, AppEnv::Test);
        assert_eq!(settings.server.port, 0);
        assert_eq!(settings.schedules.len(), JOBS.len());
        assert_eq!(
            settings.schedules["sync_mailjet_stats"].expression,
            "0 */30 * * * *"
        );
    }
}

#[test]
fn environment_variables_override_the_files() {
    let env = web_env(&[
        ("PORT", "5005"),
        ("DATABASE_MAX_CONNECTIONS", "3"),
        ("LOG_FORMAT", "JSON"),
    ]);
    let settings = load_from(&env, Process::Web).expect("valid");
    assert_eq!(settings.server.port, 5005);
    assert_eq!(settings.database.max_connections, 3);
    assert_eq!(settings.log.format, LogFormat::Json);
}

#[test]
fn production_defaults_to_json_logs_and_required_tls_for_postgres() {
    let mut env = web_env(&[
        ("DATABASE_URL", "postgres://u:p@db.example.com:5432/d"),
        ("REDIS_URL", "rediss://:p@redis.example.com:6380"),
        ("REDIS_TLS_INSECURE", "true"),
    ]);
    env.insert("APP_ENV".into(), "production".into());
    let settings = load_from(&env, Process::Web).expect("valid");
    assert_eq!(settings.log.format, LogFormat::Json);
    assert_eq!(settings.database.ssl_mode, SslMode::Require);
    assert!(settings.redis.uses_tls() && settings.redis.tls_insecure);
}

#[test]
fn a_missing_secret_is_an_error_only_for_the_process_that_needs_it() {
    let env = env(&[]);
    let web = problems(&env, Process::Web);
    for name in [
        "API_TOKEN",
        "METRICS_TOKEN",
        "MAILJET_WEBHOOK_USER",
        "MAILJET_WEBHOOK_PASSWORD",
        "SLACK_SIGNING_SECRET",
    ] {
        assert!(
            web.iter()
                .any(|p| p.starts_with(name) && p.contains("is not set")),
            "{name} missing from {web:#?}"
        );
    }
    assert!(
        !web.iter().any(|p| p.contains("MAILJET_MCP_TOKEN")),
        "web does not call Mailjet: {web:#?}"
    );
    let worker = problems(&env, Process::Worker);
    for name in ["MAILJET_MCP_URL", "MAILJET_MCP_TOKEN", "SLACK_BOT_TOKEN"] {
        assert!(
            worker.iter().any(|p| p.starts_with(name)),
            "{name} missing from {worker:#?}"
        );
    }
    assert!(
        !worker.iter().any(|p| p.contains("API_TOKEN")),
        "{worker:#?}"
    );
    assert!(problems(&env, Process::Migrate).is_empty());
    assert!(problems(&env, Process::Tool).is_empty());
}

#[test]
fn the_rest_adapter_needs_an_api_key_and_secret_instead_of_the_agent_token() {
    let env = env(&[
        ("MAILJET_ADAPTER", "rest"),
        ("SLACK_BOT_TOKEN", "bot-token"),
    ]);
    let found = problems(&env, Process::Worker);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("MAILJET_API_KEY") && found[1].starts_with("MAILJET_API_SECRET"));
}

#[test]
fn slack_oauth_needs_both_client_credentials_and_an_encryption_key() {
    let env = env(&[
        ("MAILJET_MCP_URL", "http://127.0.0.1:9/"),
        ("MAILJET_MCP_TOKEN", "mcp-token-0123456789abcdef"),
        ("SLACK_CLIENT_ID", "123.456"),
    ]);
    let found = problems(&env, Process::Worker);
    assert!(
        found.iter().any(|p| p.starts_with("SLACK_CLIENT_SECRET")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with("ENCRYPTION_KEY")),
        "{found:#?}"
    );
}

#[test]
fn a_malformed_port_names_port_and_what_is_expected() {
    assert_one_problem(
        &web_env(&[("PORT", "abc")]),
        Process::Web,
        "PORT",
        &["\"abc\"", "not a whole number", "0 to 65535"],
    );
}

#[test]
fn an_out_of_range_port_is_told_apart_from_a_malformed_one() {
    assert_one_problem(
        &web_env(&[("PORT", "70000")]),
        Process::Web,
        "PORT",
        &["70000", "out of range"],
    );
}

#[test]
fn out_of_range_numbers_are_rejected() {
    assert_one_problem(
        &env(&[("DATABASE_MAX_CONNECTIONS", "0")]),
        Process::Migrate,
        "DATABASE_MAX_CONNECTIONS",
        &["out of range", "1 to 1000"],
    );
    assert_one_problem(
        &env(&[("SHUTDOWN_TIMEOUT_SECS", "30")]),
        Process::Migrate,
        "SHUTDOWN_TIMEOUT_SECS",
        &["out of range", "1 to 29"],
    );
    assert_one_problem(
        &web_env(&[("API_TOKEN", "short")]),
        Process::Web,
        "API_TOKEN",
        &["too short", "at least 16"],
    );
}

#[test]
fn a_secret_value_is_never_echoed_in_a_problem() {
    let found = problems(&web_env(&[("API_TOKEN", "s3cr3t")]), Process::Web);
    assert!(found.iter().all(|p| !p.contains("s3cr3t")), "{found:#?}");
    let found = problems(
        &env(&[("DATABASE_URL", "mysql://user:hunter2@host/db")]),
        Process::Migrate,
    );
    assert!(
        found.iter().any(|p| p.starts_with("DATABASE_URL")),
        "{found:#?}"
    );
}

#[test]
fn malformed_values_of_every_kind_are_reported_together() {
    let env = env(&[
        ("HOST", "localhost:80"),
        ("LOG_FORMAT", "xml"),
        ("MAILJET_ADAPTER", "smtp"),
        ("SLACK_API_URL", "ftp://slack.com"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("REDIS_TLS_INSECURE", "maybe"),
        ("ENCRYPTION_KEY", "aGVsbG8="),
        ("SCHEDULE_SYNC_SLACK_USERS", "0 0 * * *"),
        ("SCHEDULE_PROCESS_EMAIL_QUEUE", "0 61 * * * *"),
        ("APP_ENV", "test"),
    ]);
    let found = problems(&env, Process::Tool);
    for setting in [
        "HOST",
        "LOG_FORMAT",
        "MAILJET_ADAPTER",
        "SLACK_API_URL",
        "REDIS_URL",
        "REDIS_TLS_INSECURE",
        "ENCRYPTION_KEY",
        "SCHEDULE_SYNC_SLACK_USERS",
        "SCHEDULE_PROCESS_EMAIL_QUEUE",
    ] {
        assert!(
            found
                .iter()
                .any(|p| p.starts_with(setting) && p.contains("expected")),
            "{setting} not reported in {found:#?}"
        );
    }
    assert!(
        found.iter().any(|p| p.contains("decodes to 5 bytes")),
        "{found:#?}"
    );
}

#[test]
fn conflicting_settings_are_reported() {
    assert_one_problem(
        &env(&[("REDIS_TLS_INSECURE", "true")]),
        Process::Tool,
        "REDIS_TLS_INSECURE",
        &["rediss://"],
    );
    assert_one_problem(
        &env(&[
            ("DATABASE_MIN_CONNECTIONS", "9"),
            ("DATABASE_MAX_CONNECTIONS", "4"),
        ]),
        Process::Tool,
        "DATABASE_MIN_CONNECTIONS",
        &["conflicts", "at most 4"],
    );
    let url = "postgres://postgres@127.0.0.1/test?sslmode=require";
    assert_one_problem(
        &env(&[("DATABASE_URL", url), ("DATABASE_SSL_MODE", "disable")]),
        Process::Tool,
        "DATABASE_SSL_MODE",
        &["conflicts", "sslmode=require"],
    );
    assert_one_problem(
        &env(&[("REDIS_URL", "rediss://127.0.0.1:6380/#insecure")]),
        Process::Tool,
        "REDIS_URL",
        &["#insecure", "REDIS_TLS_INSECURE=true"],
    );
}

#[test]
fn an_unknown_environment_is_rejected() {
    assert_one_problem(
        &env(&[("APP_ENV", "staging")]),
        Process::Tool,
        "APP_ENV",
        &["staging", "development, test or production"],
    );
}

#[test]
fn a_schedule_can_be_switched_off_or_sped_up() {
    let env = env(&[
        ("SCHEDULE_SYNC_MAILJET_STATS", "*/5 * * * * *"),
        ("SCHEDULE_PURGE_EXPIRED_DATA", "off"),
    ]);
    let settings = load_from(&env, Process::Tool).expect("valid");
    assert_eq!(
        settings.schedules["sync_mailjet_stats"].expression,
        "*/5 * * * * *"
    );
    assert!(settings.schedules["sync_mailjet_stats"].cron.is_some());
    assert!(settings.schedules["purge_expired_data"].cron.is_none());
    let unknown = load_from(
        &super::tests::env(&[("SCHEDULE_SEND_NEWSLETTERS", "off")]),
        Process::Tool,
    )
    .expect_err("not a scheduled job");
    assert!(
        unknown.mentions("SCHEDULE_SEND_NEWSLETTERS")
            || unknown.mentions("schedules.send_newsletters"),
        "{unknown}"
    );
}

#[test]
fn the_encryption_key_decodes_to_32_bytes_and_keeps_its_id() {
    let settings = load_from(
        &env(&[("ENCRYPTION_KEY", KEY_32), ("ENCRYPTION_KEY_ID", "k2")]),
        Process::Tool,
    )
    .expect("valid");
    let ring = settings.security.encryption_keys.expect("key");
    let key = ring.sealing();
    assert_eq!(key.id, "k2");
    assert_eq!(key.bytes[31], 31);
    assert!(
        !format!("{key:?}").contains("31"),
        "Debug must not show key bytes"
    );
}

#[test]
fn config_files_with_unknown_settings_or_bad_toml_are_rejected() {
    let dir = std::env::temp_dir().join(format!("cs-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("default.toml"),
        include_str!("../../config/default.toml").replace("[server]", "[server]\nprot = 1"),
    )
    .expect("write");
    std::fs::write(dir.join("test.toml"), "[redis\n").expect("write");
    let env = env(&[("CONFIG_DIR", dir.to_str().expect("utf-8 path"))]);
    let found = problems(&env, Process::Tool);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("server.prot") && p.contains("not a known setting")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("test.toml") && p.contains("not valid TOML")),
        "{found:#?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn debug_output_of_settings_shows_no_secret() {
    let settings = load_from(
        &web_env(&[("DATABASE_URL", "postgres://u:hunter2hunter2@h/d")]),
        Process::Web,
    )
    .expect("valid");
    let debug = format!("{settings:?}");
    for secret in [
        "hunter2hunter2",
        "api-token-0123456789",
        "signing-secret-0123456789",
    ] {
        assert!(!debug.contains(secret), "Debug shows {secret}");
    }
    assert_eq!(
        settings
            .security
            .api_token
            .as_ref()
            .map(|s| s.expose_secret().len()),
        Some(20)
    );
}

#[test]
fn every_setting_is_documented_in_the_readme() {
    let readme = include_str!("../../README.md");
    for setting in spec::SETTINGS {
        assert!(
            readme.contains(&format!("`{}`", setting.env)),
            "README.md does not document {}",
            setting.env
        );
    }
}

#[test]
fn per_queue_concurrency_is_parsed_and_checked() {
    let settings = load_from(
        &env(&[
            ("WORKER_QUEUES", "default=10, email=4"),
            ("WORKER_CONCURRENCY", "3"),
        ]),
        Process::Tool,
    )
    .expect("valid");
    assert_eq!(settings.worker.concurrency_of("email"), 4);
    assert_eq!(settings.worker.concurrency_of("default"), 10);
    assert_eq!(settings.worker.concurrency_of("webhooks"), 3);
    for bad in ["email", "email=0", "email=x", "=4", "e mail=2"] {
        assert_one_problem(
            &env(&[("WORKER_QUEUES", bad)]),
            Process::Tool,
            "WORKER_QUEUES",
            &["queue=number"],
        );
    }
}

#[test]
fn the_channel_pattern_needs_one_slug_and_slack_channel_characters() {
    for (raw, what) in [
        ("campaign", "exactly once"),
        ("{slug}-{slug}", "exactly once"),
        ("Campaign-{slug}", "lower-case"),
        ("camp aign-{slug}", "lower-case"),
    ] {
        let all = problems(&web_env(&[("SLACK_CHANNEL_PATTERN", raw)]), Process::Web);
        assert_eq!(all.len(), 1, "{raw}: {all:?}");
        assert!(
            all[0].contains("SLACK_CHANNEL_PATTERN") && all[0].contains(what),
            "{raw}: {all:?}"
        );
    }
    let pattern = ChannelPattern::parse("cmp_{slug}-team").expect("valid");
    assert_eq!(pattern.slug_of("cmp_spring-team"), Some("spring"));
    assert_eq!(pattern.slug_of("cmp_-team"), None);
    assert_eq!(pattern.slug_of("spring-team"), None);
    let all = problems(
        &web_env(&[("SLACK_PAGE_SIZE", "1000"), ("SLACK_TIER2_PER_MIN", "0")]),
        Process::Web,
    );
    assert_eq!(all.len(), 2, "{all:?}");
}
