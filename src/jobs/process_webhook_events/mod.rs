//! `process_webhook_events`: applies stored webhook events. Mailjet events update the sends
//! (`email_sends`, `email_events`) and the suppression list; Slack events update Slack users
//! and channels and invalidate the look-up cache; clicks and modal submissions decide
//! approvals and mute DMs (`interactions`). Each event
//! is applied once (row lock + status), so a redelivered task or a swept row changes nothing.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::clients::slack::cache as slack_cache;
use crate::queue::job::{self, JobContext, JobDefinition, JobDeps, JobError};
use crate::queue::{EnqueueOptions, Queue};
use crate::store::{
    email_events, oauth_tokens, slack_channels, slack_identities, slack_messages, webhook_events,
};

mod commands;
mod interactions;

/// Stable name.
pub const NAME: &str = "process_webhook_events";
/// Its queue, so webhook bursts do not wait behind long syncs.
pub const QUEUE: &str = "webhooks";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(
    NAME,
    "apply stored webhook events: email statuses, suppressions, Slack clicks",
)
.queue(QUEUE)
.retries(8, Duration::from_secs(2), Duration::from_secs(120))
.runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));
/// Attempts before a row is marked failed (the task itself is retried by the queue).
const MAX_ATTEMPTS: i32 = 5;

/// What applying an event did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    Done,
    Ignored,
}

/// The stored events to apply.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// `webhook_events.id`s.
    #[serde(default)]
    pub ids: Vec<i64>,
}

/// Applies the events whose ids are in `args.ids`.
pub async fn run(ctx: JobContext, args: Args) -> Result<(), JobError> {
    let Args { ids } = args;
    if ids.is_empty() {
        return Err(JobError::permanent("expected {\"ids\": [..]}"));
    }
    let mut tally = Tally::default();
    let mut result = Ok(());
    for id in ids {
        match process(&ctx.deps, id).await {
            Ok(Some(applied)) => tally.count(applied),
            Ok(None) => tally.skipped += 1,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    record_run(&ctx, &tally, result.as_ref().err()).await;
    result
}

/// What one task did to its events.
#[derive(Debug, Default)]
struct Tally {
    processed: u64,
    ignored: u64,
    /// Already applied (a redelivered task, a swept row) or taken by another worker.
    skipped: u64,
}

impl Tally {
    fn count(&mut self, applied: Applied) {
        match applied {
            Applied::Done => self.processed += 1,
            Applied::Ignored => self.ignored += 1,
        }
    }
}

/// Adds this task to the job's `sync_runs` row of the minute (a failure to record is logged).
async fn record_run(ctx: &JobContext, tally: &Tally, error: Option<&JobError>) {
    use crate::store::sync_runs::{self, RunCounts};
    let run = RunCounts {
        trigger: sync_runs::recorded_trigger(ctx.task.trigger.as_deref()),
        items_synced: (tally.processed + tally.ignored) as i64,
        items_failed: i64::from(error.is_some()),
        counts: json!({ "processed": tally.processed, "ignored": tally.ignored, "skipped": tally.skipped }),
        error: error.map(|e| e.to_string()),
    };
    if let Err(e) = sync_runs::record_aggregated(&ctx.deps.db, NAME, &run).await {
        tracing::warn!(error = %e, "could not record the webhook processing run");
    }
}

/// Applies one stored event; `None` when there was nothing to do (already applied).
async fn process(deps: &JobDeps, id: i64) -> Result<Option<Applied>, JobError> {
    let mut tx = deps.db.begin().await?;
    let Some(claimed) = webhook_events::claim_received(&mut tx, id).await? else {
        return Ok(None);
    };
    let webhook_events::Claimed {
        source,
        event_type,
        payload,
        received_at,
    } = claimed;
    let mut stale_keys = Vec::new();
    let applied = match source.as_str() {
        "mailjet" => mailjet(&mut tx, id, &event_type, &payload).await,
        "slack_events" => {
            slack_event(
                &mut tx,
                &deps.prefix,
                deps.settings.slack.workspace(),
                &event_type,
                &payload,
                &mut stale_keys,
            )
            .await
        }
        "slack_interactions" => interactions::apply(&mut tx, deps, id, &event_type, &payload).await,
        "slack_commands" => commands::apply(&mut tx, deps, id, &event_type, &payload).await,
        _ => Ok(Applied::Ignored),
    };
    match applied {
        Ok(result) => {
            let status = if result == Applied::Done {
                "processed"
            } else {
                "ignored"
            };
            webhook_events::finish(&mut tx, id, status).await?;
            tx.commit().await?;
            let lag = (chrono::Utc::now() - received_at)
                .to_std()
                .unwrap_or(Duration::ZERO);
            metrics::histogram!("webhook_processing_lag_seconds", "source" => source.clone())
                .record(lag.as_secs_f64());
            metrics::counter!("webhook_events_processed_total", "source" => source.clone(), "type" => event_type, "outcome" => status).increment(1);
            after_commit(deps, &source, &result, &stale_keys).await;
            Ok(Some(result))
        }
        Err(e) => {
            drop(tx);
            let message = e.to_string();
            webhook_events::fail_attempt(&deps.db, id, &message, MAX_ATTEMPTS).await?;
            Err(e)
        }
    }
}

/// What an applied event asks for once committed: delivery of what a click queued, and the
/// invalidation of stale Slack look-ups.
async fn after_commit(deps: &JobDeps, source: &str, result: &Applied, stale_keys: &[String]) {
    if matches!(source, "slack_interactions" | "slack_commands") && *result == Applied::Done {
        interactions::kick(deps).await;
    }
    if !stale_keys.is_empty() {
        let mut conn = deps.redis.clone();
        if let Err(e) = slack_cache::invalidate(&mut conn, stale_keys).await {
            tracing::warn!(error = %e, "could not invalidate Slack look-ups; they expire with their TTL");
        }
    }
}

const MAILJET_TYPES: &[&str] = &[
    "sent", "open", "click", "bounce", "spam", "blocked", "unsub",
];

async fn mailjet(
    tx: &mut PgConnection,
    webhook_id: i64,
    event: &str,
    p: &Value,
) -> Result<Applied, JobError> {
    if !MAILJET_TYPES.contains(&event) {
        return Ok(Applied::Ignored);
    }
    let message_id = p["MessageID"].as_i64().unwrap_or(0);
    let time = chrono::DateTime::from_timestamp(p["time"].as_i64().unwrap_or(0), 0)
        .unwrap_or_else(chrono::Utc::now);
    let email = p["email"].as_str().unwrap_or("").to_lowercase();
    let custom = p["CustomID"]
        .as_str()
        .and_then(|c| uuid::Uuid::parse_str(c).ok());
    let send = email_events::send_of(tx, custom, message_id).await?;
    let details = json!({ "email": email, "url": p.get("url"), "error": p.get("error"), "error_related_to": p.get("error_related_to"), "hard_bounce": p.get("hard_bounce"), "source": p.get("source"), "smtp_reply": p.get("smtp_reply") });
    let record = email_events::EmailEvent {
        send,
        webhook_event_id: webhook_id,
        event_type: event,
        message_id,
        occurred_at: time,
        details,
    };
    email_events::insert(tx, &record).await?;
    if let Some(send) = send {
        email_events::settle_accepted(tx, send, event, time, message_id).await?;
        let hard = p["hard_bounce"].as_bool().unwrap_or(false);
        email_events::mark_send(tx, send, event, time, hard).await?;
    }
    let suppress = match event {
        "bounce" if p["hard_bounce"].as_bool() == Some(true) => Some("hard_bounce"),
        "spam" => Some("spam"),
        "unsub" => Some("unsubscribe"),
        _ => None,
    };
    if let Some(reason) = suppress
        && !email.is_empty()
    {
        let source = format!("mailjet {event} of message {message_id}");
        email_events::suppress(tx, &email, reason, &source).await?;
        metrics::counter!("email_suppressions_total", "reason" => reason).increment(1);
    }
    Ok(Applied::Done)
}

/// Rows and cache keys are those of the deployment's workspace (`SLACK_WORKSPACE_ID`), as the
/// syncs and the Slack client key them, not the envelope's `team_id`.
async fn slack_event(
    tx: &mut PgConnection,
    prefix: &str,
    workspace: &str,
    event: &str,
    envelope: &Value,
    stale: &mut Vec<String>,
) -> Result<Applied, JobError> {
    let inner = &envelope["event"];
    let keys = CacheKeys { prefix, workspace };
    match event {
        "user_change" | "team_join" => user_changed(tx, keys, &inner["user"], stale).await,
        "channel_created" | "channel_rename" => {
            channel_named(tx, keys, &inner["channel"], stale).await
        }
        "member_joined_channel" => {
            let Some(channel) = inner["channel"].as_str() else {
                return Ok(Applied::Ignored);
            };
            // Approximate until the next channel sync recounts.
            Ok(if slack_channels::count_joiner(tx, channel).await? {
                Applied::Done
            } else {
                Applied::Ignored
            })
        }
        "message" => posted(tx, inner).await,
        "app_uninstalled" | "tokens_revoked" => revoked(tx, workspace, event, envelope).await,
        _ => Ok(Applied::Ignored),
    }
}

/// The app was uninstalled, or its bot token revoked: the stored credential is marked revoked
/// so Slack jobs stop with a clear error (not retries) until the app is installed again.
async fn revoked(
    tx: &mut PgConnection,
    workspace: &str,
    event: &str,
    envelope: &Value,
) -> Result<Applied, JobError> {
    let bots = envelope
        .pointer("/event/tokens/bot")
        .and_then(Value::as_array);
    if event == "tokens_revoked" && bots.is_none_or(|b| b.is_empty()) {
        // Only user tokens were revoked; the service holds none.
        return Ok(Applied::Ignored);
    }
    let team = envelope["team_id"].as_str().unwrap_or(workspace);
    if workspace != "default" && team != workspace {
        return Ok(Applied::Ignored);
    }
    if !oauth_tokens::mark_revoked(&mut *tx, workspace, event).await? {
        return Ok(Applied::Ignored);
    }
    let actor = crate::store::audit::Actor::new("slack");
    let details = json!({ "event": event, "team": team });
    crate::store::audit::record(
        tx,
        &actor,
        "slack.revoked",
        "slack_workspace",
        workspace,
        details,
    )
    .await?;
    metrics::gauge!("slack_credential_needs_reinstall", "workspace" => workspace.to_owned())
        .set(1.0);
    tracing::error!(
        workspace,
        event,
        "Slack revoked the app's tokens: Slack jobs stop until it is installed again at /slack/install"
    );
    Ok(Applied::Done)
}

/// A person's message in a channel, counted for team activity (bots' messages, edits and
/// deletions are not messages posted; a reply also sent to the channel and a file shared are).
async fn posted(tx: &mut PgConnection, event: &Value) -> Result<Applied, JobError> {
    let subtype = event["subtype"].as_str();
    if !matches!(subtype, None | Some("thread_broadcast" | "file_share"))
        || event.get("bot_id").is_some_and(|b| !b.is_null())
    {
        return Ok(Applied::Ignored);
    }
    let (Some(channel_id), Some(ts), Some(user_id)) = (
        event["channel"].as_str(),
        event["ts"].as_str(),
        event["user"].as_str(),
    ) else {
        return Ok(Applied::Ignored);
    };
    let Some(posted_at) = slack_time(ts) else {
        return Ok(Applied::Ignored);
    };
    let message = slack_messages::PostedMessage {
        channel_id,
        ts,
        user_id,
        thread_ts: event["thread_ts"].as_str(),
        posted_at,
    };
    Ok(if slack_messages::record(tx, &message).await? {
        Applied::Done
    } else {
        Applied::Ignored
    })
}

/// A Slack `ts` (`seconds.micros`) as a time.
fn slack_time(ts: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let (secs, micros) = ts.split_once('.')?;
    let micros: u32 = micros.get(..6.min(micros.len()))?.parse().ok()?;
    chrono::DateTime::from_timestamp(secs.parse().ok()?, micros.checked_mul(1000)?)
}

/// Where the deployment's Slack look-ups are cached.
#[derive(Clone, Copy)]
struct CacheKeys<'a> {
    prefix: &'a str,
    workspace: &'a str,
}

/// A user joined or changed: their identity, matched to a team member by email.
async fn user_changed(
    tx: &mut PgConnection,
    keys: CacheKeys<'_>,
    user: &Value,
    stale: &mut Vec<String>,
) -> Result<Applied, JobError> {
    let CacheKeys { prefix, workspace } = keys;
    let (Some(user_id), Some(name)) = (user["id"].as_str(), user["name"].as_str()) else {
        return Ok(Applied::Ignored);
    };
    if user["is_bot"].as_bool() == Some(true) {
        return Ok(Applied::Ignored);
    }
    let email = user
        .pointer("/profile/email")
        .and_then(Value::as_str)
        .unwrap_or("");
    let member = if email.is_empty() {
        None
    } else {
        slack_identities::member_by_email(tx, email).await?
    };
    let row = slack_identities::SlackUserRow {
        slack_user_id: user_id.to_owned(),
        username: name.to_owned(),
        real_name: user["real_name"].as_str().map(str::to_owned),
        display_name: user
            .pointer("/profile/display_name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        email: None,
        active: user["deleted"].as_bool() != Some(true),
    };
    slack_identities::upsert_one(tx, workspace, member.as_deref(), &row).await?;
    if !email.is_empty() {
        stale.push(slack_cache::user_by_email(prefix, workspace, email));
    }
    stale.push(slack_cache::user_by_name(prefix, workspace, name));
    Ok(Applied::Done)
}

/// A channel created or renamed: its name (and the cached look-ups of both names).
async fn channel_named(
    tx: &mut PgConnection,
    keys: CacheKeys<'_>,
    channel: &Value,
    stale: &mut Vec<String>,
) -> Result<Applied, JobError> {
    let CacheKeys { prefix, workspace } = keys;
    let (Some(id), Some(name)) = (channel["id"].as_str(), channel["name"].as_str()) else {
        return Ok(Applied::Ignored);
    };
    let private = channel["is_private"].as_bool().unwrap_or(false);
    let old = slack_channels::name_of(tx, id).await?;
    slack_channels::upsert_name(tx, workspace, id, name, private).await?;
    if let Some(old) = old {
        stale.push(slack_cache::channel_by_name(prefix, workspace, &old));
    }
    stale.push(slack_cache::channel_by_name(prefix, workspace, name));
    Ok(Applied::Done)
}

/// Enqueues processing of rows still `received` after `older_than` (their enqueue was lost,
/// e.g. while Redis was down). Returns how many rows it enqueued.
pub async fn sweep(
    db: &sqlx::PgPool,
    queue: &Queue,
    older_than: Duration,
) -> Result<usize, JobError> {
    let ids = webhook_events::received_before(db, older_than)
        .await
        .map_err(db_err)?;
    for chunk in ids.chunks(100) {
        let options = EnqueueOptions {
            trigger: Some("sweeper".to_owned()),
            ..Default::default()
        };
        queue
            .enqueue(NAME, json!({ "ids": chunk }), options)
            .await
            .map_err(|e| JobError::Retry(e.into()))?;
    }
    if !ids.is_empty() {
        metrics::counter!("webhook_events_swept_total").increment(ids.len() as u64);
    }
    Ok(ids.len())
}

fn db_err(e: sqlx::Error) -> JobError {
    JobError::from(e)
}
