//! `deliver_slack_posts` (every minute, and kicked whenever a post is queued): delivers the
//! Slack outbox (`slack_posts`) — notifications, approval messages, reminders, decisions,
//! status cards, ephemeral answers.
//!
//! Each message exactly once, though `chat.postMessage` has no idempotency key:
//! - a row is claimed `posting` by one run, and records the channel it goes to and the time
//!   its call begins *before* the call; every message carries metadata
//!   `{event_type: campaign_sync_post, event_payload: {post_id}}`;
//! - a post is never retried blindly: a timeout, a dropped connection or a 5xx leaves the
//!   row `posting`; only a 429 (or our own limiter) puts it back as pending;
//! - a claimed row whose call never began is handed on at once (the run that claimed it finds
//!   its claim gone and leaves it); a row whose call began longer than the grace window ago (a
//!   crash, a kill -9, an unanswered call) is looked for in its channel's history (`conversations.history`, or
//!   `conversations.replies` in a thread, with `include_all_metadata`): found, it is settled
//!   with that `ts`; not found, it is posted again.
//!
//! One run at a time (an advisory lock), so messages to one channel go in order. Within a
//! run, channels are worked concurrently and each channel in order; the shared limiter keeps
//! to one message per second per channel and the methods' tiers, so a burst earns no 429.

mod deliver;
mod reconcile;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::clients::slack::SlackClient;
use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};
use crate::queue::{EnqueueOptions, Queue};
use crate::store::slack_posts::{self, Claimed, Outcome};

/// Stable name.
pub const NAME: &str = "deliver_slack_posts";
/// Its queue: Slack messages do not wait behind long syncs.
pub const QUEUE: &str = "slack";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(
    NAME,
    "post queued Slack messages exactly once: notifications, approvals, reminders",
)
.queue(QUEUE)
.schedule("0 * * * * *")
.retries(10, Duration::from_secs(2), Duration::from_secs(60))
.timeout(Duration::from_secs(30 * 60))
.runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

/// Rows claimed at once.
const CLAIM: i64 = 500;
/// Channels worked at once.
const CHANNELS_IN_FLIGHT: usize = 64;
/// Attempts of a post that keeps failing transiently before it is failed.
const MAX_ATTEMPTS: i32 = 8;
/// The advisory lock of a run.
const RUN_LOCK: i64 = 0x6373_736c_6163_6b70; // "csslackp"

/// How long a `posting` row is left alone before its history is read: long enough that a
/// call still in flight (the client's timeout) has answered.
pub fn grace(upstream_timeout: Duration) -> Duration {
    upstream_timeout * 2 + Duration::from_secs(5)
}

/// Asks the queue to run the delivery now (kicks within a second coalesce), or at `at`.
pub async fn kick(
    redis: redis::aio::ConnectionManager,
    prefix: &str,
    at: Option<chrono::DateTime<chrono::Utc>>,
    trigger: &str,
) -> Result<(), crate::queue::QueueError> {
    let queue = Queue::new(redis, prefix, QUEUE);
    let delay = at
        .map(|at| at - chrono::Utc::now())
        .and_then(|d| d.to_std().ok())
        .filter(|d| !d.is_zero());
    let key = match (delay, at) {
        (Some(_), Some(at)) => format!("{NAME}:at:{}", at.timestamp()),
        _ => format!("{NAME}:kick"),
    };
    let options = EnqueueOptions {
        delay,
        unique_key: Some(key),
        unique_ttl: Some(delay.unwrap_or_default() + Duration::from_secs(1)),
        trigger: Some(trigger.to_owned()),
    };
    queue.enqueue(NAME, Value::Null, options).await.map(|_| ())
}

/// Kicks delivery, logging a failure: the rows are stored and the schedule will deliver them.
pub async fn kick_or_log(redis: redis::aio::ConnectionManager, prefix: &str, trigger: &str) {
    if let Err(e) = kick(redis, prefix, None, trigger).await {
        tracing::warn!(error = %e, "could not kick Slack delivery; its schedule will deliver");
    }
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub sent: u64,
    pub skipped: u64,
    pub failed: u64,
    pub retry: u64,
    pub ambiguous: u64,
    /// Abandoned posts found in Slack (not posted again).
    pub found: u64,
    /// Abandoned posts not found, posted again.
    pub reposted: u64,
    /// Claimed by a run that ended before their call began: handed on untouched.
    pub handed_on: u64,
}

impl Tally {
    fn count(&mut self, outcome: &Outcome) {
        let (field, label) = match outcome {
            Outcome::Sent { .. } => (&mut self.sent, "sent"),
            Outcome::Skipped(_) => (&mut self.skipped, "skipped"),
            Outcome::Failed(_) => (&mut self.failed, "failed"),
            Outcome::Retry { .. } => (&mut self.retry, "retry"),
            Outcome::Ambiguous(_) => (&mut self.ambiguous, "ambiguous"),
        };
        *field += 1;
        metrics::counter!("slack_posts_total", "outcome" => label).increment(1);
    }

    fn add(&mut self, o: Tally) {
        self.sent += o.sent;
        self.skipped += o.skipped;
        self.failed += o.failed;
        self.retry += o.retry;
        self.ambiguous += o.ambiguous;
        self.found += o.found;
        self.reposted += o.reposted;
        self.handed_on += o.handed_on;
    }
}

/// One run, unless another holds the lock (a kick then waits for it).
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    let mut lock = ctx.deps.db.acquire().await?.detach();
    if !crate::store::try_advisory_lock(&mut lock, RUN_LOCK).await? {
        return match ctx.task.trigger.as_deref() {
            Some("schedule" | "catch_up") => Ok(()),
            _ => Err(JobError::RetryAfter(Duration::from_secs(1))),
        };
    }
    let result = work(&ctx).await;
    let _ = crate::store::advisory_unlock(&mut lock, RUN_LOCK).await;
    let _ = sqlx::Connection::close(lock).await;
    result
}

async fn work(ctx: &JobContext) -> Result<(), JobError> {
    let deps = &ctx.deps;
    let client =
        crate::clients::slack_from_settings(&deps.settings, deps.db.clone(), deps.redis.clone())
            .map_err(JobError::Permanent)?;
    let grace = grace(deps.settings.upstream_timeout);
    // Recorded at once: what a run settled of a dead run's rows is kept even if it dies too.
    record_run(
        ctx,
        &reconcile::abandoned(&deps.db, &client, grace).await?,
        None,
    )
    .await;
    let mut tally = Tally::default();
    let workspace = deps.settings.slack.workspace();
    // This run's claims: a row it claimed and another run took over is not settled by it.
    let claim = uuid::Uuid::new_v4();
    let mut first_error = None;
    loop {
        if *deps.stopping.borrow() {
            break;
        }
        // A status changed while this run worked (its kick found the run lock taken) is
        // announced by this run, not left for the next tick.
        crate::jobs::support::workflow::announce_status_changes(&deps.db).await?;
        let claimed = slack_posts::claim_due(&deps.db, CLAIM, claim).await?;
        if claimed.is_empty() {
            break;
        }
        let lanes = lanes_of(claimed);
        let env = deliver::Env {
            claim,
            db: &deps.db,
            client: &client,
            workspace,
            max_attempts: MAX_ATTEMPTS,
        };
        let mut results = futures_util::stream::iter(lanes.into_values())
            .map(|lane| deliver::lane(env, lane))
            .buffer_unordered(CHANNELS_IN_FLIGHT);
        while let Some(result) = results.next().await {
            match result {
                Ok(t) => tally.add(t),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if first_error.is_some() {
            break;
        }
    }
    come_back(ctx, grace).await;
    record_run(ctx, &tally, first_error.as_ref()).await;
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Rows by where they go (a channel, a team member's DM, a Slack user's DM, the campaign's
/// channel), each in the order claimed.
fn lanes_of(claimed: Vec<Claimed>) -> BTreeMap<String, Vec<Claimed>> {
    let mut lanes: BTreeMap<String, Vec<Claimed>> = BTreeMap::new();
    for row in claimed {
        let key = if let Some(c) = row.target_channel.as_ref().filter(|_| row.op == "update") {
            format!("channel:{c}")
        } else if let Some(c) = &row.channel_id {
            format!("channel:{c}")
        } else if let Some(u) = &row.dm_user {
            format!("user:{u}")
        } else if let Some(m) = &row.dm_member {
            format!("member:{m}")
        } else {
            format!("campaign:{}", row.campaign_id.as_deref().unwrap_or(""))
        };
        lanes.entry(key).or_default().push(row);
    }
    lanes
}

/// Schedules the next run when a row becomes due soon (a retry, a `posting` row's grace).
async fn come_back(ctx: &JobContext, grace: Duration) {
    let deps = &ctx.deps;
    let next = match slack_posts::next_due(&deps.db, grace).await {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(error = %e, "could not read when Slack posts are next due");
            return;
        }
    };
    let now = chrono::Utc::now();
    if let Some(at) = next.filter(|at| *at < now + chrono::Duration::minutes(10)) {
        let at = if at <= now {
            now + chrono::Duration::seconds(1)
        } else {
            at
        };
        if let Err(e) = kick(deps.redis.clone(), &deps.prefix, Some(at), "schedule").await {
            tracing::warn!(error = %e, "could not schedule the next Slack delivery; the schedule will");
        }
    }
}

async fn record_run(ctx: &JobContext, t: &Tally, error: Option<&JobError>) {
    use crate::store::sync_runs::{self, RunCounts};
    let run = RunCounts {
        trigger: sync_runs::recorded_trigger(ctx.task.trigger.as_deref()),
        items_synced: t.sent as i64,
        items_failed: t.failed as i64,
        counts: json!({ "sent": t.sent, "skipped": t.skipped, "failed": t.failed, "retry": t.retry,
            "ambiguous": t.ambiguous, "found_in_history": t.found, "reposted": t.reposted, "handed_on": t.handed_on }),
        error: error.map(|e| e.to_string()),
    };
    if t.sent + t.skipped + t.failed + t.retry + t.ambiguous + t.found + t.reposted == 0
        && error.is_none()
    {
        return;
    }
    if let Err(e) = sync_runs::record_aggregated(&ctx.deps.db, NAME, &run).await {
        tracing::warn!(error = %e, "could not record the Slack delivery run");
    }
}

/// The client a lane posts with.
pub(crate) type Client = SlackClient;
