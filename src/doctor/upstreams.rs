//! `doctor`'s upstream checks: one real call to each configured upstream — Mailjet an
//! authenticated read (the REST key and secret, or a JWT minted for the agent), Slack
//! `auth.test` and, for an installed OAuth app, the granted scopes against those the service
//! needs — told in words a person can act on.

use std::time::Instant;

use super::{Level, Report};
use crate::clients::error::{FailureKind, UpstreamError};
use crate::clients::mailjet::MailjetClient;
use crate::config::{MailjetAdapter, Settings};

const MAILJET: &str = "Upstreams: Mailjet";
const SLACK: &str = "Upstreams: Slack";

/// Calls each upstream whose credentials are set.
pub async fn check(report: &mut Report, settings: &Settings) {
    let Ok(redis) = crate::redis_conn::connection(&settings.redis) else {
        report.add(
            MAILJET,
            Level::Warn,
            "not checked: Redis (the shared rate limit) is not configured",
        );
        return;
    };
    check_mailjet(report, settings, redis.clone()).await;
    check_slack(report, settings, redis).await;
}

async fn check_mailjet(
    report: &mut Report,
    settings: &Settings,
    redis: redis::aio::ConnectionManager,
) {
    let configured = match settings.mailjet.adapter {
        MailjetAdapter::Rest => {
            settings.mailjet.api_key.is_some() && settings.mailjet.api_secret.is_some()
        }
        MailjetAdapter::Agent => settings.mailjet.mcp_token.is_some(),
    };
    if !configured {
        report.add(
            MAILJET,
            Level::Warn,
            "not checked: its credentials are not set (see Credentials)",
        );
        return;
    }
    let client = match crate::clients::mailjet_from_settings(settings, redis) {
        Ok(c) => c,
        Err(e) => {
            return report.add(
                MAILJET,
                Level::Fail,
                format!("cannot build the client: {e}"),
            );
        }
    };
    let started = Instant::now();
    match client.templates(0, 1).await {
        Ok(_) => report.add(
            MAILJET,
            Level::Ok,
            format!(
                "an authenticated read answered in {} ms ({} adapter)",
                started.elapsed().as_millis(),
                adapter(settings)
            ),
        ),
        Err(e) => report.add(MAILJET, Level::Fail, mailjet_words(settings, &e)),
    }
}

fn adapter(settings: &Settings) -> &'static str {
    match settings.mailjet.adapter {
        MailjetAdapter::Rest => "rest",
        MailjetAdapter::Agent => "agent",
    }
}

/// What a Mailjet failure means for the person reading the report.
fn mailjet_words(settings: &Settings, e: &UpstreamError) -> String {
    let refused = matches!(e.status, Some(401 | 403)) || e.kind == FailureKind::AuthExpired;
    match (refused, settings.mailjet.adapter) {
        (true, MailjetAdapter::Rest) => format!("Mailjet refused the credentials ({}): check MAILJET_API_KEY and MAILJET_API_SECRET (Account settings → API keys)", e.status.map_or("refused".to_owned(), |s| s.to_string())),
        (true, MailjetAdapter::Agent) => "the Mailjet agent refused the JWT minted with MAILJET_MCP_TOKEN: check MAILJET_MCP_TOKEN and MAILJET_AGENT_ID".to_owned(),
        (false, _) => match e.kind {
            FailureKind::RateLimited { .. } => "Mailjet is rate-limiting this key right now (429): the key works; try again in a minute".to_owned(),
            FailureKind::Transient => format!("Mailjet did not answer ({}): check MAILJET_API_URL / MAILJET_MCP_URL and Mailjet's status", e.message),
            _ => format!("Mailjet refused the read: {}", e.message),
        },
    }
}

async fn check_slack(
    report: &mut Report,
    settings: &Settings,
    redis: redis::aio::ConnectionManager,
) {
    let s = &settings.slack;
    if s.bot_token.is_none() && s.client_id.is_none() {
        report.add(
            SLACK,
            Level::Warn,
            "not checked: neither SLACK_BOT_TOKEN nor OAuth is set (see Credentials)",
        );
        return;
    }
    let Ok(db) = crate::store::pool(&settings.database, "doctor") else {
        return report.add(
            SLACK,
            Level::Warn,
            "not checked: no database to read the stored credential from",
        );
    };
    let client = match crate::clients::slack_from_settings(settings, db.clone(), redis) {
        Ok(c) => c,
        Err(e) => return report.add(SLACK, Level::Fail, format!("cannot build the client: {e}")),
    };
    match client.call("auth.test", &[]).await {
        Ok(who) => report.add(
            SLACK,
            Level::Ok,
            format!(
                "auth.test: the token works as {} in workspace {} ({})",
                who["user"].as_str().unwrap_or("?"),
                who["team"].as_str().unwrap_or("?"),
                who["team_id"].as_str().unwrap_or("?")
            ),
        ),
        Err(e) => return report.add(SLACK, Level::Fail, slack_words(&e)),
    }
    if s.client_id.is_some() {
        check_scopes(report, &db, s.workspace()).await;
    }
}

/// What a Slack failure means for the person reading the report.
fn slack_words(e: &UpstreamError) -> String {
    match e.code.as_deref() {
        Some("invalid_auth" | "not_authed") => "Slack refused the token (invalid_auth): check SLACK_BOT_TOKEN, or install the app again at /slack/install".to_owned(),
        Some("token_revoked" | "account_inactive") => format!("the Slack token was revoked ({}): install the app again at /slack/install", e.code.as_deref().unwrap_or("")),
        Some(code) => format!("Slack answered auth.test with {code}: {}", e.message),
        None if e.kind == FailureKind::Transient => format!("Slack did not answer ({}): check SLACK_API_URL and Slack's status", e.message),
        None => e.message.clone(),
    }
}

/// The installed app's granted scopes against those the service needs.
async fn check_scopes(report: &mut Report, db: &sqlx::PgPool, workspace: &str) {
    let Ok(rows) = crate::store::oauth_tokens::slack_credentials(db).await else {
        return;
    };
    let Some(row) = rows.iter().find(|r| r.workspace_id == workspace) else {
        return;
    };
    let granted: Vec<&str> = row.scopes.split(',').map(str::trim).collect();
    let missing: Vec<&str> = crate::clients::slack::scopes::SCOPES
        .iter()
        .copied()
        .filter(|s| !granted.contains(s))
        .collect();
    if missing.is_empty() {
        report.add(
            SLACK,
            Level::Ok,
            format!(
                "every scope the service needs is granted ({})",
                granted.len()
            ),
        );
    } else {
        report.add(SLACK, Level::Fail, format!("missing scope {}: add it to the app's bot scopes and install it again at /slack/install", missing.join(", ")));
    }
}
