//! Upstream clients — Mailjet (`mailjet/`: the trait, the REST and agent adapters) and Slack
//! (`slack/`: the client, rotating tokens, the look-up cache) — all on one transport
//! (`transport`: send, time out, classify, retry, limit, count, trace), with failures
//! classified as `error::FailureKind`.

pub mod error;
pub mod limiter;
pub mod mailjet;
pub mod retry;
pub mod slack;
pub mod transport;

use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionManager;

use crate::config::{MailjetAdapter, Settings};
pub use mailjet::AnyMailjet;
use mailjet::{MailjetAgentClient, MailjetRestClient};

fn with_slash(url: &url::Url) -> url::Url {
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    url
}

/// The Mailjet client the settings describe, sharing its rate through Redis.
pub fn mailjet_from_settings(
    settings: &Settings,
    redis: ConnectionManager,
) -> anyhow::Result<AnyMailjet> {
    let m = &settings.mailjet;
    let timeout = settings.upstream_timeout;
    let limiter = limiter::Limiter::new(redis, &settings.redis.key_prefix);
    let rate = limiter::Rate::per_second(m.rate_per_sec);
    let policy = retry::RetryPolicy::default();
    Ok(match m.adapter {
        MailjetAdapter::Agent => {
            let url = m.mcp_url.as_ref().context("MAILJET_MCP_URL is not set")?;
            let token = m
                .mcp_token
                .clone()
                .context("MAILJET_MCP_TOKEN is not set")?;
            let tokens = mailjet::agent_auth::AgentTokens::new(token, &m.agent_id);
            AnyMailjet::Agent(
                MailjetAgentClient::new(with_slash(url), tokens, timeout, policy)?
                    .with_limiter(limiter, rate),
            )
        }
        MailjetAdapter::Rest => {
            use secrecy::ExposeSecret;
            let key = m.api_key.as_ref().context("MAILJET_API_KEY is not set")?;
            let secret = m
                .api_secret
                .clone()
                .context("MAILJET_API_SECRET is not set")?;
            AnyMailjet::Rest(
                MailjetRestClient::new(
                    with_slash(&m.api_url),
                    key.expose_secret(),
                    secret,
                    timeout,
                    policy,
                )?
                .with_limiter(limiter, rate),
            )
        }
    })
}

/// The OAuth token store, when the app's client id, secret and encryption keys are set.
pub fn slack_token_store(
    settings: &Settings,
    db: sqlx::PgPool,
    redis: ConnectionManager,
) -> anyhow::Result<Option<slack::tokens::TokenStore>> {
    let s = &settings.slack;
    let (Some(client_id), Some(client_secret), Some(keys)) = (
        &s.client_id,
        &s.client_secret,
        &settings.security.encryption_keys,
    ) else {
        return Ok(None);
    };
    Ok(Some(slack::tokens::TokenStore {
        db,
        redis,
        prefix: settings.redis.key_prefix.clone(),
        keys: keys.clone(),
        workspace: s.workspace().to_owned(),
        http: transport::http_client(settings.upstream_timeout)?,
        api_url: with_slash(&s.api_url),
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
        // Rotated tokens live 12 h: refresh in the last two.
        refresh_ahead: Duration::from_secs(2 * 3600),
    }))
}

/// The Slack client the settings describe: OAuth with rotation when the app's client id,
/// secret and an encryption key are set, else the static bot token.
pub fn slack_from_settings(
    settings: &Settings,
    db: sqlx::PgPool,
    redis: ConnectionManager,
) -> anyhow::Result<slack::SlackClient> {
    let s = &settings.slack;
    let workspace = s.workspace().to_owned();
    let credential = match slack_token_store(settings, db, redis.clone())? {
        Some(store) => slack::tokens::SlackCredential::Rotating(std::sync::Arc::new(store)),
        None => slack::tokens::SlackCredential::Static(s.bot_token.clone().context("SLACK_BOT_TOKEN is not set (nor SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and ENCRYPTION_KEYS for OAuth)")?),
    };
    let limiter = limiter::Limiter::new(redis.clone(), &settings.redis.key_prefix);
    Ok(slack::SlackClient::new(
        with_slash(&s.api_url),
        credential,
        &workspace,
        settings.upstream_timeout,
        retry::RetryPolicy::default(),
    )?
    .with_limiter(limiter)
    .with_tiers(s.tier_per_min)
    .with_cache(redis, &settings.redis.key_prefix, s.cache_ttl))
}
