//! `process_webhook_events`: applies stored webhook events. Mailjet events update the sends
//! (`email_sends`, `email_events`) and the suppression list; Slack events update Slack users
//! and channels and invalidate the look-up cache; `block_actions` decide approvals. Each event
//! is applied once (row lock + status), so a redelivered task or a swept row changes nothing.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{PgConnection, Row};

use crate::clients::slack_cache;
use crate::queue::job::{self, JobContext, JobDefinition, JobDeps, JobError};
use crate::queue::{EnqueueOptions, Queue};

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
enum Applied {
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
        return Err(JobError::Permanent("expected {\"ids\": [..]}".to_owned()));
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
    let row = sqlx::query("SELECT source, event_type, payload, received_at FROM webhook_events WHERE id = $1 AND status = 'received' FOR UPDATE SKIP LOCKED")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let source: String = row.try_get("source")?;
    let event_type: String = row.try_get("event_type")?;
    let payload: Value = row
        .try_get::<Option<Value>, _>("payload")?
        .unwrap_or(Value::Null);
    let received_at: chrono::DateTime<chrono::Utc> = row.try_get("received_at")?;
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
        "slack_interactions" => interaction(&mut tx, &event_type, &payload).await,
        _ => Ok(Applied::Ignored),
    };
    match applied {
        Ok(result) => {
            let status = if result == Applied::Done {
                "processed"
            } else {
                "ignored"
            };
            sqlx::query("UPDATE webhook_events SET status = $2, processed_at = now(), attempts = attempts + 1 WHERE id = $1")
                .bind(id).bind(status).execute(&mut *tx).await?;
            tx.commit().await?;
            let lag = (chrono::Utc::now() - received_at)
                .to_std()
                .unwrap_or(Duration::ZERO);
            metrics::histogram!("webhook_processing_lag_seconds", "source" => source.clone())
                .record(lag.as_secs_f64());
            metrics::counter!("webhook_events_processed_total", "source" => source, "type" => event_type, "outcome" => status).increment(1);
            if !stale_keys.is_empty() {
                let mut conn = deps.redis.clone();
                if let Err(e) = slack_cache::invalidate(&mut conn, &stale_keys).await {
                    tracing::warn!(error = %e, "could not invalidate Slack look-ups; they expire with their TTL");
                }
            }
            Ok(Some(result))
        }
        Err(e) => {
            drop(tx);
            let message = e.to_string();
            sqlx::query("UPDATE webhook_events SET attempts = attempts + 1, last_error = $2, status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE status END WHERE id = $1")
                .bind(id).bind(&message).bind(MAX_ATTEMPTS).execute(&deps.db).await?;
            Err(e)
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
    let send: Option<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM email_sends WHERE id = $1 OR (mailjet_message_id = $2 AND $2 <> 0) ORDER BY (id = $1) DESC LIMIT 1")
        .bind(custom).bind(message_id).fetch_optional(&mut *tx).await?;
    let details = json!({ "email": email, "url": p.get("url"), "error": p.get("error"), "error_related_to": p.get("error_related_to"), "hard_bounce": p.get("hard_bounce"), "source": p.get("source"), "smtp_reply": p.get("smtp_reply") });
    sqlx::query("INSERT INTO email_events (send_id, webhook_event_id, event_type, mailjet_message_id, occurred_at, details) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(send).bind(webhook_id).bind(event).bind(message_id).bind(time).bind(details).execute(&mut *tx).await?;
    if let Some(send) = send {
        settle_accepted(tx, send, event, time, message_id).await?;
        let update = match event {
            "sent" => {
                "UPDATE email_sends SET delivered_at = coalesce(delivered_at, $2), updated_at = now() WHERE id = $1 AND $3 = $3"
            }
            "open" => {
                "UPDATE email_sends SET first_opened_at = coalesce(first_opened_at, $2), last_opened_at = greatest(last_opened_at, $2), open_count = open_count + 1, updated_at = now() WHERE id = $1 AND $3 = $3"
            }
            "click" => {
                "UPDATE email_sends SET first_clicked_at = coalesce(first_clicked_at, $2), last_clicked_at = greatest(last_clicked_at, $2), click_count = click_count + 1, updated_at = now() WHERE id = $1 AND $3 = $3"
            }
            "bounce" => {
                "UPDATE email_sends SET bounced_at = $2, hard_bounce = $4, updated_at = now() WHERE id = $1 AND $3 = $3"
            }
            "spam" => {
                "UPDATE email_sends SET spam_at = $2, updated_at = now() WHERE id = $1 AND $3 = $3"
            }
            "blocked" => {
                "UPDATE email_sends SET blocked_at = $2, updated_at = now() WHERE id = $1 AND $3 = $3"
            }
            _ => {
                "UPDATE email_sends SET unsubscribed_at = coalesce(unsubscribed_at, $2), updated_at = now() WHERE id = $1 AND $3 = $3"
            }
        };
        let mut query = sqlx::query(update).bind(send).bind(time).bind(message_id);
        if event == "bounce" {
            query = query.bind(p["hard_bounce"].as_bool().unwrap_or(false));
        }
        query.execute(&mut *tx).await?;
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
        sqlx::query("INSERT INTO email_suppressions (email, reason, source) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING")
            .bind(&email).bind(reason).bind(format!("mailjet {event} of message {message_id}")).execute(&mut *tx).await?;
        metrics::counter!("email_suppressions_total", "reason" => reason).increment(1);
    }
    Ok(Applied::Done)
}

/// Every Mailjet event of a message proves that Mailjet accepted it (a blocked message gets
/// `blocked` and never `sent`), so any event settles its send as `sent` whatever a crash or a
/// reconciliation left it as (`sending`, `pending` for a resend, `dead`, `failed`,
/// `suppressed` by its own first copy's bounce): the status says what happened upstream, and
/// a send settled so is never sent again. The history notes the change.
async fn settle_accepted(
    tx: &mut PgConnection,
    send: uuid::Uuid,
    event: &str,
    time: chrono::DateTime<chrono::Utc>,
    message_id: i64,
) -> Result<(), JobError> {
    sqlx::query(
        "UPDATE email_sends SET
             history = history || jsonb_build_object('at', now(), 'event', 'reconciled by a ' || $4 || ' event (was ' || status || ')'),
             status = 'sent', last_error = NULL,
             mailjet_message_id = coalesce(mailjet_message_id, nullif($3, 0)),
             sent_at = coalesce(sent_at, $2), updated_at = now()
         WHERE id = $1 AND status <> 'sent'",
    )
    .bind(send)
    .bind(time)
    .bind(message_id)
    .bind(event)
    .execute(&mut *tx)
    .await?;
    Ok(())
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
    match event {
        "user_change" | "team_join" => {
            let user = &inner["user"];
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
            let member: Option<String> = if email.is_empty() {
                None
            } else {
                sqlx::query_scalar("SELECT id FROM team_members WHERE lower(email) = lower($1)")
                    .bind(email)
                    .fetch_optional(&mut *tx)
                    .await?
            };
            sqlx::query(
                "INSERT INTO slack_integrations (team_member_id, workspace_id, slack_user_id, slack_username, real_name, display_name, is_active, last_synced)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                 ON CONFLICT (workspace_id, slack_user_id) DO UPDATE SET team_member_id = coalesce(EXCLUDED.team_member_id, slack_integrations.team_member_id),
                   slack_username = EXCLUDED.slack_username, real_name = EXCLUDED.real_name, display_name = EXCLUDED.display_name,
                   is_active = EXCLUDED.is_active, last_synced = now(), updated_at = now()",
            )
            .bind(member).bind(workspace).bind(user_id).bind(name).bind(user["real_name"].as_str()).bind(user.pointer("/profile/display_name").and_then(Value::as_str))
            .bind(user["deleted"].as_bool() != Some(true))
            .execute(&mut *tx).await?;
            if !email.is_empty() {
                stale.push(slack_cache::user_by_email(prefix, workspace, email));
            }
            stale.push(slack_cache::user_by_name(prefix, workspace, name));
            Ok(Applied::Done)
        }
        "channel_created" | "channel_rename" => {
            let channel = &inner["channel"];
            let (Some(id), Some(name)) = (channel["id"].as_str(), channel["name"].as_str()) else {
                return Ok(Applied::Ignored);
            };
            let old: Option<String> =
                sqlx::query_scalar("SELECT name FROM slack_channels WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            // Keyed by id: a renamed channel keeps its campaign mapping.
            sqlx::query("INSERT INTO slack_channels (id, workspace_id, name, is_private) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()")
                .bind(id).bind(workspace).bind(name).bind(channel["is_private"].as_bool().unwrap_or(false))
                .execute(&mut *tx).await?;
            if let Some(old) = old {
                stale.push(slack_cache::channel_by_name(prefix, workspace, &old));
            }
            stale.push(slack_cache::channel_by_name(prefix, workspace, name));
            Ok(Applied::Done)
        }
        "member_joined_channel" => {
            let Some(channel) = inner["channel"].as_str() else {
                return Ok(Applied::Ignored);
            };
            // Approximate until the next channel sync recounts.
            let updated = sqlx::query("UPDATE slack_channels SET member_count = member_count + 1, updated_at = now() WHERE id = $1").bind(channel).execute(&mut *tx).await?;
            Ok(if updated.rows_affected() == 1 {
                Applied::Done
            } else {
                Applied::Ignored
            })
        }
        _ => Ok(Applied::Ignored),
    }
}

async fn interaction(
    tx: &mut PgConnection,
    kind: &str,
    payload: &Value,
) -> Result<Applied, JobError> {
    if kind != "block_actions" {
        return Ok(Applied::Ignored);
    }
    let user = payload
        .pointer("/user/id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut applied = Applied::Ignored;
    for action in payload["actions"].as_array().into_iter().flatten() {
        let status = match action["action_id"].as_str() {
            Some("approve") => "approved",
            Some("reject") => "rejected",
            Some("request_changes") => "changes_requested",
            _ => continue,
        };
        let Some(approval) = action["value"].as_str() else {
            continue;
        };
        let decided = sqlx::query("UPDATE approvals SET status = $2, decided_at = now(), decided_by = $3, updated_at = now() WHERE id = $1 AND status = 'pending'")
            .bind(approval).bind(status).bind(user).execute(&mut *tx).await?;
        if decided.rows_affected() == 1 {
            let actor = crate::store::audit::Actor::new(&format!("slack:{user}"));
            crate::store::audit::record(
                tx,
                &actor,
                "approval.decided",
                "approval",
                approval,
                json!({ "status": status }),
            )
            .await?;
            applied = Applied::Done;
        }
    }
    Ok(applied)
}

/// Enqueues processing of rows still `received` after `older_than` (their enqueue was lost,
/// e.g. while Redis was down). Returns how many rows it enqueued.
pub async fn sweep(
    db: &sqlx::PgPool,
    queue: &Queue,
    older_than: Duration,
) -> Result<usize, JobError> {
    let age = format!("{} milliseconds", older_than.as_millis());
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM webhook_events WHERE status = 'received' AND received_at < now() - $1::interval ORDER BY id LIMIT 1000")
        .bind(age).fetch_all(db).await.map_err(db_err)?;
    for chunk in ids.chunks(100) {
        let options = EnqueueOptions {
            trigger: Some("sweeper".to_owned()),
            ..Default::default()
        };
        queue
            .enqueue(NAME, json!({ "ids": chunk }), options)
            .await
            .map_err(|e| JobError::Retry(e.to_string()))?;
    }
    if !ids.is_empty() {
        metrics::counter!("webhook_events_swept_total").increment(ids.len() as u64);
    }
    Ok(ids.len())
}

fn db_err(e: sqlx::Error) -> JobError {
    JobError::from(e)
}
