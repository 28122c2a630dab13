//! One lane: the claimed rows of one destination, in order. Each row is resolved to a
//! channel (an explicit one, the campaign's mapped channel, a DM, the thread of an earlier
//! post), recorded there, posted (or updated, or shown ephemerally) and settled.

use std::time::Duration;

use serde_json::json;

use super::{Client, Tally};
use crate::clients::error::{FailureKind, UpstreamError};
use crate::clients::slack::messages::Message;
use crate::queue::job::JobError;
use crate::store::slack_posts::{self, Claimed, Outcome};

/// What every lane shares.
#[derive(Clone, Copy)]
pub(super) struct Env<'a> {
    /// The run's claim token.
    pub claim: uuid::Uuid,
    pub db: &'a sqlx::PgPool,
    pub client: &'a Client,
    pub workspace: &'a str,
    pub max_attempts: i32,
}

/// Delivers `rows` in order. After a rate limit longer than the client waits in place, the
/// rest of the lane is put back untouched (it would meet the same limit).
pub(super) async fn lane(env: Env<'_>, rows: Vec<Claimed>) -> Result<Tally, JobError> {
    let mut tally = Tally::default();
    let mut held_back: Option<Outcome> = None;
    for row in rows {
        let outcome = match &held_back {
            Some(o) => o.clone(),
            None => deliver(env, &row).await,
        };
        settle_surely(env, &row, &outcome).await?;
        tally.count(&outcome);
        if let Outcome::Sent { channel, ts } = &outcome
            && row.pin
            && let Err(e) = env.client.pin(channel, ts).await
        {
            tracing::warn!(error = %e, post = %row.id, "could not pin the status card");
        }
        if let Outcome::Retry { count: false, .. } = outcome {
            held_back = Some(outcome);
        }
    }
    Ok(tally)
}

/// How long the outcome of a call that was made is retried while Postgres is unreachable.
const SETTLE_RETRY_FOR: Duration = Duration::from_secs(120);

/// Writes an outcome, retrying across a Postgres outage: a lost `sent` would leave the row
/// `posting`, to be looked up in Slack later (not lost, but slower).
async fn settle_surely(env: Env<'_>, row: &Claimed, outcome: &Outcome) -> Result<(), JobError> {
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        match slack_posts::settle(env.db, row.id, env.claim, outcome).await {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() < SETTLE_RETRY_FOR => {
                tracing::warn!(error = %e, post = %row.id, "could not write a Slack post's outcome; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Backoff of transient failures: 5 s, 10 s, 20 s, … at most 5 min.
fn backoff(attempts: i32) -> f64 {
    (5.0 * 2f64.powi(attempts.clamp(1, 16) - 1)).min(300.0) * (0.5 + fastrand::f64())
}

/// A failure before anything was posted (a look-up, `conversations.open`, an update, an
/// ephemeral): retried, or failed for good.
fn not_posted(e: &UpstreamError, attempts: i32, max: i32) -> Outcome {
    match &e.kind {
        FailureKind::RateLimited { retry_after } => Outcome::Retry {
            after: retry_after.unwrap_or(Duration::from_secs(1)).as_secs_f64(),
            error: e.to_string(),
            count: false,
        },
        FailureKind::Permanent => {
            Outcome::Failed(e.code.clone().unwrap_or_else(|| e.message.clone()))
        }
        FailureKind::Transient | FailureKind::AuthExpired if attempts >= max => {
            Outcome::Failed(format!("gave up after {attempts} attempts: {e}"))
        }
        FailureKind::Transient | FailureKind::AuthExpired => Outcome::Retry {
            after: backoff(attempts),
            error: e.to_string(),
            count: true,
        },
    }
}

/// A failure of `chat.postMessage` itself: a refusal proves nothing was posted; a timeout,
/// a dropped connection or a 5xx may have posted it (the row stays `posting`).
fn post_failed(e: &UpstreamError, attempts: i32, max: i32) -> Outcome {
    match &e.kind {
        FailureKind::Transient => Outcome::Ambiguous(e.to_string()),
        _ => not_posted(e, attempts, max),
    }
}

async fn deliver(env: Env<'_>, row: &Claimed) -> Outcome {
    let started = std::time::Instant::now();
    let outcome = match row.op.as_str() {
        "update" => update(env, row).await,
        "ephemeral" => ephemeral(env, row).await,
        _ => post(env, row).await,
    };
    metrics::histogram!("slack_post_seconds", "op" => row.op.clone())
        .record(started.elapsed().as_secs_f64());
    outcome
}

async fn update(env: Env<'_>, row: &Claimed) -> Outcome {
    let (Some("sent"), Some(channel), Some(ts)) = (
        row.target_status.as_deref(),
        row.target_channel.as_deref(),
        row.target_ts.as_deref(),
    ) else {
        return Outcome::Skipped(format!(
            "the message to update was not posted ({})",
            row.target_status.as_deref().unwrap_or("unknown")
        ));
    };
    match env
        .client
        .update(channel, ts, &row.text, &row.blocks, &row.attachments)
        .await
    {
        Ok(()) => Outcome::Sent {
            channel: channel.to_owned(),
            ts: ts.to_owned(),
        },
        Err(e) if e.code.as_deref() == Some("message_not_found") => {
            Outcome::Skipped("the message to update was deleted in Slack".to_owned())
        }
        Err(e) => not_posted(&e, row.attempts, env.max_attempts),
    }
}

async fn ephemeral(env: Env<'_>, row: &Claimed) -> Outcome {
    if let Some(url) = &row.response_url {
        return match env.client.respond(url, &row.text).await {
            Ok(()) => Outcome::Sent {
                channel: row.channel_id.clone().unwrap_or_default(),
                ts: String::new(),
            },
            // Used up or expired (30 min, 5 uses): fall back to chat.postEphemeral below.
            Err(e) if e.status == Some(404) && row.channel_id.is_some() => {
                ephemeral_in_channel(env, row).await
            }
            Err(e) => not_posted(&e, row.attempts, env.max_attempts),
        };
    }
    ephemeral_in_channel(env, row).await
}

async fn ephemeral_in_channel(env: Env<'_>, row: &Claimed) -> Outcome {
    let (Some(channel), Some(user)) = (row.channel_id.as_deref(), row.ephemeral_user.as_deref())
    else {
        return Outcome::Failed("an ephemeral message needs a channel and a user".to_owned());
    };
    match env.client.ephemeral(channel, user, &row.text, None).await {
        Ok(()) => Outcome::Sent {
            channel: channel.to_owned(),
            ts: String::new(),
        },
        Err(e) => not_posted(&e, row.attempts, env.max_attempts),
    }
}

/// Where a post goes: channel, Slack user (for a DM), thread.
struct Destination {
    channel: String,
    user: Option<String>,
    thread_ts: Option<String>,
}

async fn post(env: Env<'_>, row: &Claimed) -> Outcome {
    let destination = match destination(env, row).await {
        Ok(d) => d,
        Err(outcome) => return outcome,
    };
    let marked = slack_posts::mark_destination(
        env.db,
        row.id,
        env.claim,
        &destination.channel,
        destination.user.as_deref(),
    )
    .await;
    match marked {
        Ok(true) => {}
        // Handed to another run while this one waited: it is that run's now.
        Ok(false) => return Outcome::Ambiguous("taken over by another run".to_owned()),
        Err(e) => {
            return Outcome::Retry {
                after: 1.0,
                error: format!("could not record the destination: {e}"),
                count: false,
            };
        }
    }
    if let (Some(approval), Some(user), "approval_request") =
        (&row.approval_id, &destination.user, row.kind.as_str())
        && let Err(e) = slack_posts::remember_approver(env.db, approval, user).await
    {
        tracing::warn!(error = %e, "could not record the approver's Slack id");
    }
    let message = Message {
        channel: &destination.channel,
        text: &row.text,
        blocks: Some(&row.blocks),
        attachments: Some(&row.attachments),
        thread_ts: destination.thread_ts.as_deref(),
        metadata: Some(
            json!({ "post_id": row.id, "kind": row.kind, "campaign_id": row.campaign_id }),
        ),
    };
    match env.client.post(&message).await {
        Ok(posted) => Outcome::Sent {
            channel: posted.channel,
            ts: posted.ts,
        },
        Err(e) => post_failed(&e, row.attempts, env.max_attempts),
    }
}

/// Resolves the row's destination; `Err` is the outcome when there is none (or a look-up
/// failed).
/// The Slack user a DM to team member `member` goes to (`known` when the row names one):
/// `Err` when they muted DMs, are deactivated or have no Slack account, or a look-up failed.
async fn dm_user(
    env: Env<'_>,
    row: &Claimed,
    member: &str,
    known: Option<String>,
) -> Result<String, Outcome> {
    let found = slack_posts::dm_member(env.db, env.workspace, member)
        .await
        .map_err(|e| Outcome::Retry {
            after: 1.0,
            error: e.to_string(),
            count: false,
        })?;
    let Some(m) = found else {
        return Err(Outcome::Skipped(format!(
            "team member {member:?} does not exist"
        )));
    };
    if m.muted {
        return Err(Outcome::Skipped(format!(
            "team member {member:?} muted DMs"
        )));
    }
    if !m.active {
        return Err(Outcome::Skipped(format!(
            "team member {member:?} is deactivated"
        )));
    }
    let user = match known.or(m.slack_user_id) {
        Some(id) => Some(id),
        None => env
            .client
            .user_by_email(&m.email)
            .await
            .map_err(|e| not_posted(&e, row.attempts, env.max_attempts))?,
    };
    user.ok_or_else(|| {
        Outcome::Skipped(format!(
            "team member {member:?} has no Slack account (no Slack user has their email)"
        ))
    })
}

async fn destination(env: Env<'_>, row: &Claimed) -> Result<Destination, Outcome> {
    let user = match &row.dm_member {
        Some(member) => Some(dm_user(env, row, member, row.dm_user.clone()).await?),
        None => row.dm_user.clone(),
    };
    match row.parent_status.as_deref() {
        Some("sent") => {
            if let (Some(channel), Some(ts)) = (&row.parent_channel, &row.parent_ts) {
                return Ok(Destination {
                    channel: channel.clone(),
                    user,
                    thread_ts: Some(ts.clone()),
                });
            }
        }
        Some("skipped") => {
            return Err(Outcome::Skipped(
                "the first message of its thread was skipped".to_owned(),
            ));
        }
        _ => {}
    }
    if let Some(channel) = &row.channel_id {
        return Ok(Destination {
            channel: channel.clone(),
            user,
            thread_ts: None,
        });
    }
    if let Some(u) = &user {
        let channel = env
            .client
            .dm_channel(u)
            .await
            .map_err(|e| not_posted(&e, row.attempts, env.max_attempts))?;
        return Ok(Destination {
            channel,
            user,
            thread_ts: None,
        });
    }
    let campaign = row.campaign_id.as_deref().unwrap_or("");
    match slack_posts::campaign_channel(env.db, campaign).await {
        Ok(Some(channel)) => Ok(Destination {
            channel,
            user: None,
            thread_ts: None,
        }),
        Ok(None) => Err(Outcome::Skipped(format!(
            "campaign {campaign:?} has no Slack channel (name one per SLACK_CHANNEL_PATTERN, or give channelId)"
        ))),
        Err(e) => Err(Outcome::Retry {
            after: 1.0,
            error: e.to_string(),
            count: false,
        }),
    }
}
