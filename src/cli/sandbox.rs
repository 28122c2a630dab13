//! `campaign-sync sandbox`: the upstream simulator as a process of its own.
//!
//! Credentials come from the same environment variables the service reads (so one `.env`
//! serves both): MAILJET_API_KEY, MAILJET_API_SECRET, MAILJET_MCP_TOKEN, MAILJET_AGENT_ID,
//! SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_CLIENT_ID, SLACK_CLIENT_SECRET; unset ones
//! get sandbox defaults.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::sandbox::{Sandbox, SandboxConfig, SeedSpec};

/// Options of `campaign-sync sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 4010)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Seed of the generated data (same seed, same data).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Mailjet campaigns to generate.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub campaigns: u32,
    /// Slack users to generate.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=200_000))]
    pub users: u32,
    /// Slack channels to generate.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=20_000))]
    pub channels: u32,
    /// Mailjet templates to generate.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub templates: u32,
    /// Where Mailjet events go, with Basic auth in the URL
    /// (e.g. http://mailjet:PASSWORD@127.0.0.1:8080/webhooks/mailjet).
    #[arg(long)]
    pub mailjet_webhook_url: Option<String>,
    /// Where Slack events go (e.g. http://127.0.0.1:8080/webhooks/slack/events).
    #[arg(long)]
    pub slack_events_url: Option<String>,
    /// Where Slack interactions go.
    #[arg(long)]
    pub slack_interactions_url: Option<String>,
    /// Where slash commands go (e.g. http://127.0.0.1:8080/webhooks/slack/commands).
    #[arg(long)]
    pub slack_commands_url: Option<String>,
    /// Mailjet requests per second per API key before 429 (unlimited when absent).
    #[arg(long)]
    pub mailjet_rate: Option<u32>,
    /// Multiply Slack's tier limits (e.g. 100 for load tests).
    #[arg(long, default_value_t = 1)]
    pub slack_tier_scale: u32,
    /// Seconds between retries of failed Mailjet event deliveries (Mailjet: 30).
    #[arg(long, default_value_t = 30)]
    pub webhook_retry_secs: u64,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The configuration for `args`.
pub fn config(args: &SandboxArgs) -> SandboxConfig {
    let defaults = SandboxConfig::default();
    let scale = args.slack_tier_scale.max(1);
    SandboxConfig {
        seed: SeedSpec {
            seed: args.seed,
            campaigns: args.campaigns as usize,
            templates: args.templates as usize,
            users: args.users as usize,
            channels: args.channels as usize,
        },
        mailjet_api_key: env_or("MAILJET_API_KEY", &defaults.mailjet_api_key),
        mailjet_api_secret: env_or("MAILJET_API_SECRET", &defaults.mailjet_api_secret),
        mcp_token: env_or("MAILJET_MCP_TOKEN", &defaults.mcp_token),
        agent_id: env_or("MAILJET_AGENT_ID", &defaults.agent_id),
        slack_bot_token: env_or("SLACK_BOT_TOKEN", &defaults.slack_bot_token),
        slack_signing_secret: env_or("SLACK_SIGNING_SECRET", &defaults.slack_signing_secret),
        slack_client_id: env_or("SLACK_CLIENT_ID", &defaults.slack_client_id),
        slack_client_secret: env_or("SLACK_CLIENT_SECRET", &defaults.slack_client_secret),
        mailjet_webhook_url: args.mailjet_webhook_url.clone(),
        slack_events_url: args.slack_events_url.clone(),
        slack_interactions_url: args.slack_interactions_url.clone(),
        slack_commands_url: args.slack_commands_url.clone(),
        mailjet_rate_per_sec: args.mailjet_rate,
        slack_tiers_per_minute: defaults.slack_tiers_per_minute.map(|t| t * scale),
        mailjet_retry_interval: Duration::from_secs(args.webhook_retry_secs.max(1)),
        ..defaults
    }
}

/// Runs the sandbox until SIGTERM or Ctrl-C.
pub fn main(args: SandboxArgs) -> ExitCode {
    crate::telemetry::init_logging(&crate::config::LogSettings {
        format: crate::config::LogFormat::Pretty,
        level: "info".to_owned(),
    });
    let Some(runtime) = crate::startup::runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let addr = SocketAddr::new(args.host, args.port);
        let stop = crate::startup::shutdown_signal();
        match Sandbox::start(config(&args), addr).await {
            Ok(sandbox) => {
                println!("sandbox listening on {}", sandbox.base_url());
                println!(
                    "  MAILJET_API_URL={}  MAILJET_MCP_URL={}  SLACK_API_URL={}",
                    sandbox.base_url(),
                    sandbox.base_url(),
                    sandbox.slack_api_url()
                );
                stop.await;
                sandbox.stop();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot start the sandbox on {addr}: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
