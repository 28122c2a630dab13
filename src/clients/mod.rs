//! Upstream clients and the one retry layer they all use. So far: the retry layer and error
//! classification, the Mailjet agent's credentials and client, and the Redis cache of Slack
//! look-ups (whose keys the webhook processing invalidates). Issue 5 continues here.

pub mod auth;
pub mod crypto;
pub mod error;
pub mod limiter;
pub mod mailjet;
pub mod mailjet_agent;
pub mod retry;
pub mod slack;
pub mod slack_cache;
pub mod slack_tokens;

use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionManager;

use crate::config::{MailjetAdapter, Settings};
use error::UpstreamError;
use mailjet::{MailjetCampaign, MailjetClient, MailjetRestClient, StatCounters};
use mailjet_agent::MailjetAgentClient;

/// The Mailjet adapter chosen by `MAILJET_ADAPTER`.
#[derive(Debug)]
pub enum AnyMailjet {
    /// The MCP agent.
    Agent(MailjetAgentClient),
    /// Mailjet's REST API.
    Rest(MailjetRestClient),
}

impl MailjetClient for AnyMailjet {
    async fn campaign_statistics(&self, id: i64) -> Result<Option<StatCounters>, UpstreamError> {
        match self {
            AnyMailjet::Agent(c) => MailjetClient::campaign_statistics(c, id).await,
            AnyMailjet::Rest(c) => c.campaign_statistics(id).await,
        }
    }

    async fn find_campaign_by_subject(
        &self,
        subject: &str,
    ) -> Result<Option<MailjetCampaign>, UpstreamError> {
        match self {
            AnyMailjet::Agent(c) => c.find_campaign_by_subject(subject).await,
            AnyMailjet::Rest(c) => c.find_campaign_by_subject(subject).await,
        }
    }

    async fn find_campaigns_by_subjects(
        &self,
        subjects: &[String],
        parallel: usize,
    ) -> Result<std::collections::HashMap<String, MailjetCampaign>, UpstreamError> {
        match self {
            AnyMailjet::Agent(c) => c.find_campaigns_by_subjects(subjects, parallel).await,
            AnyMailjet::Rest(c) => c.find_campaigns_by_subjects(subjects, parallel).await,
        }
    }

    async fn send(
        &self,
        body: &mailjet::SendBody<'_>,
    ) -> Result<mailjet::SendAnswer, UpstreamError> {
        match self {
            AnyMailjet::Agent(c) => MailjetClient::send(c, body).await,
            AnyMailjet::Rest(c) => c.send(body).await,
        }
    }

    async fn find_message(&self, custom_id: &str) -> Result<mailjet::Lookup, UpstreamError> {
        match self {
            AnyMailjet::Agent(c) => c.find_message(custom_id).await,
            AnyMailjet::Rest(c) => c.find_message(custom_id).await,
        }
    }

    async fn templates(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<mailjet::MailjetTemplate>, UpstreamError> {
        match self {
            AnyMailjet::Agent(c) => c.templates(offset, limit).await,
            AnyMailjet::Rest(c) => c.templates(offset, limit).await,
        }
    }

    async fn template_content(
        &self,
        id: i64,
    ) -> Result<Option<mailjet::TemplateContent>, UpstreamError> {
        match self {
            AnyMailjet::Agent(c) => c.template_content(id).await,
            AnyMailjet::Rest(c) => c.template_content(id).await,
        }
    }
}

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
    let timeout = settings.slack.upstream_timeout;
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
            let tokens = auth::AgentTokens::new(token, &m.agent_id);
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

/// The Slack client the settings describe: OAuth with rotation when the app's client id,
/// secret and an encryption key are set, else the static bot token.
pub fn slack_from_settings(
    settings: &Settings,
    db: sqlx::PgPool,
    redis: ConnectionManager,
) -> anyhow::Result<slack::SlackClient> {
    let s = &settings.slack;
    let workspace = s.workspace().to_owned();
    let credential = match (&s.client_id, &s.client_secret, &settings.security.encryption_key) {
        (Some(client_id), Some(client_secret), Some(key)) => slack_tokens::SlackCredential::Rotating(std::sync::Arc::new(slack_tokens::TokenStore {
            db,
            redis: redis.clone(),
            prefix: settings.redis.key_prefix.clone(),
            key: key.clone(),
            workspace: workspace.clone(),
            http: retry::http_client(s.upstream_timeout)?,
            api_url: with_slash(&s.api_url),
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            // Rotated tokens live 12 h: refresh in the last two.
            refresh_ahead: Duration::from_secs(2 * 3600),
        })),
        _ => slack_tokens::SlackCredential::Static(s.bot_token.clone().context("SLACK_BOT_TOKEN is not set (nor SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and ENCRYPTION_KEY for OAuth)")?),
    };
    let limiter = limiter::Limiter::new(redis.clone(), &settings.redis.key_prefix);
    Ok(slack::SlackClient::new(
        with_slash(&s.api_url),
        credential,
        &workspace,
        s.upstream_timeout,
        retry::RetryPolicy::default(),
    )?
    .with_limiter(limiter)
    .with_tiers(s.tier_per_min)
    .with_cache(redis, &settings.redis.key_prefix, s.cache_ttl))
}
