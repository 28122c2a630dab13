//! `process_email_queue` (every 5 min, and kicked when a request is accepted): sends every due
//! recipient, at most 50 per Send call, several calls in flight within the shared rate.
//!
//! Never twice, never lost:
//! - A batch is claimed (`FOR UPDATE SKIP LOCKED`) and committed as `sending` *before* the
//!   call, with `CustomID` = the send's id. Whatever happens after, the rows say a message
//!   may be out.
//! - Only answers that prove nothing was sent put a row back to `pending`: a 429, a 503, our
//!   own rate limit, a per-message error. A timeout, a dropped connection or another 5xx is
//!   ambiguous: the rows stay `sending`.
//! - The outcome of a call is written even across a Postgres outage: the write is retried
//!   (up to `SETTLE_RETRY_FOR`) rather than leaving the rows ambiguous.
//! - `sending` rows older than `EMAIL_RECONCILE_AFTER_SECS` are reconciled from evidence
//!   before anything is resent (`reconcile`); any Mailjet event with their CustomID
//!   settles them as well (webhook job).
//! - Several runs may overlap (a kick during a run): claims skip each other's rows.

pub mod reconcile;
mod send;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::clients::mailjet::MailjetClient;
use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};
use crate::queue::{EnqueueOptions, Queue};
use crate::store::audit::{self, Actor};
use crate::store::email_requests;
use crate::store::email_sends::{self, Claimed, Outcome};
use send::send;

/// Stable name.
pub const NAME: &str = "process_email_queue";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition =
    JobDefinition::new(NAME, "send due recipients in batches of at most 50")
        .schedule("0 */5 * * * *")
        // Retries of single recipients live in email_sends; a failed run is retried soon.
        .retries(10, Duration::from_secs(2), Duration::from_secs(60))
        .timeout(Duration::from_secs(60 * 60))
        .runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));
/// Mailjet Send v3.1 takes at most 50 messages per call.
pub const BATCH: i64 = 50;
/// Send calls made from one claim (fewer, larger claims: less work for Postgres).
const CALLS_PER_CLAIM: i64 = 4;

/// Asks the queue to run `process_email_queue` now (coalescing kicks within a second), and
/// again at `at` when that is in the future.
pub async fn kick(
    redis: redis::aio::ConnectionManager,
    prefix: &str,
    at: Option<chrono::DateTime<chrono::Utc>>,
    trigger: &str,
) -> Result<(), crate::queue::QueueError> {
    let queue = Queue::new(redis, prefix, crate::queue::job::DEFAULT_QUEUE);
    let delay = at
        .map(|at| at - chrono::Utc::now())
        .and_then(|d| d.to_std().ok())
        .filter(|d| !d.is_zero());
    let key = match delay {
        Some(_) => format!(
            "{NAME}:at:{}",
            at.map(|a| a.timestamp()).unwrap_or_default()
        ),
        None => format!("{NAME}:kick"),
    };
    queue
        .enqueue(
            NAME,
            Value::Null,
            EnqueueOptions {
                delay,
                unique_key: Some(key),
                unique_ttl: Some(delay.unwrap_or_default() + Duration::from_secs(1)),
                trigger: Some(trigger.to_owned()),
            },
        )
        .await
        .map(|_| ())
}

/// Kicks the queue for a request just stored: now, and again at its `scheduledAt` (both are
/// tried; the first failure is returned).
pub async fn kick_request(
    redis: redis::aio::ConnectionManager,
    prefix: &str,
    scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
    trigger: &str,
) -> Result<(), crate::queue::QueueError> {
    let now = kick(redis.clone(), prefix, None, trigger).await;
    let later = match scheduled_at {
        Some(at) => kick(redis, prefix, Some(at), trigger).await,
        None => Ok(()),
    };
    now.and(later)
}

/// Counts of one run.
#[derive(Debug, Default, Clone)]
struct Tally {
    sent: u64,
    failed: u64,
    retry: u64,
    dead: u64,
    suppressed: u64,
    ambiguous: u64,
    batches: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.sent += o.sent;
        self.failed += o.failed;
        self.retry += o.retry;
        self.dead += o.dead;
        self.suppressed += o.suppressed;
        self.ambiguous += o.ambiguous;
        self.batches += o.batches;
    }
}

/// Exponential backoff with jitter: 5 s, 10 s, 20 s, … at most 10 min.
pub(super) fn backoff(attempts: i32) -> f64 {
    let base = (5.0 * 2f64.powi(attempts.clamp(1, 20) - 1)).min(600.0);
    base * (0.5 + fastrand::f64())
}

/// The advisory lock that lets one run at a time work the queue (per database).
const RUN_LOCK: i64 = 0x6373_656d_6169_6c71; // "csemailq"

/// Runs the queue until nothing is due. One run at a time works the queue: a scheduled tick
/// that finds a run in progress has nothing to add, while a kick (a new request) waits for
/// that run to end and then runs, so a request accepted as a run finishes is not left for
/// the next tick.
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    // A detached connection: if this run is cancelled mid-way, closing it frees the lock.
    let mut lock = ctx.deps.db.acquire().await?.detach();
    let locked = crate::store::try_advisory_lock(&mut lock, RUN_LOCK).await?;
    if !locked {
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
    let settings = &deps.settings.email;
    let client = crate::clients::mailjet_from_settings(&deps.settings, deps.redis.clone())
        .map_err(JobError::Permanent)?;
    let windows = reconcile::Windows {
        grace: settings.reconcile_after,
        upstream_timeout: deps.settings.upstream_timeout,
        max_attempts: settings.max_attempts,
    };
    let reconciled = reconcile::reconcile(&deps.db, &client, windows).await?;
    // The calls in flight the rate allows, CALLS_PER_CLAIM per lane.
    let calls = deps.settings.mailjet.calls_in_flight();
    let lanes = (calls / CALLS_PER_CLAIM as usize).max(2);
    let results = futures_util::future::join_all((0..lanes).map(|_| {
        lane(
            &deps.db,
            &client,
            settings.max_attempts,
            &deps.stopping,
            &ctx.task.id,
        )
    }))
    .await;
    let mut tally = Tally::default();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(t) => tally.add(&t),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    complete(&deps.db).await?;
    if tally.batches > 0 || reconciled > 0 {
        tracing::info!(
            sent = tally.sent,
            failed = tally.failed,
            retry = tally.retry,
            dead = tally.dead,
            suppressed = tally.suppressed,
            ambiguous = tally.ambiguous,
            batches = tally.batches,
            reconciled,
            "email queue run"
        );
    }
    // Come back when the next recipient is due, if that is soon (else the schedule will).
    if let Some(at) = email_sends::next_due_within(&deps.db, Duration::from_secs(600)).await?
        && let Err(e) = kick(deps.redis.clone(), &deps.prefix, Some(at), "schedule").await
    {
        tracing::warn!(error = %e, "could not schedule the next email queue run; the schedule will pick it up");
    }
    record_run(ctx, &tally, reconciled, first_error.as_ref()).await;
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Adds this run to the job's `sync_runs` row of the minute (a failure to record is logged).
async fn record_run(ctx: &JobContext, tally: &Tally, reconciled: u64, error: Option<&JobError>) {
    use crate::store::sync_runs::{self, RunCounts};
    let run = RunCounts {
        trigger: sync_runs::recorded_trigger(ctx.task.trigger.as_deref()),
        items_synced: tally.sent as i64,
        items_failed: (tally.failed + tally.dead) as i64,
        counts: json!({ "sent": tally.sent, "failed": tally.failed, "retry": tally.retry, "dead": tally.dead,
            "suppressed": tally.suppressed, "ambiguous": tally.ambiguous, "batches": tally.batches, "reconciled": reconciled }),
        error: error.map(|e| e.to_string()),
    };
    if let Err(e) = sync_runs::record_aggregated(&ctx.deps.db, NAME, &run).await {
        tracing::warn!(error = %e, "could not record the email queue run");
    }
}

/// Claims, sends and settles batches until none is due.
async fn lane(
    db: &PgPool,
    client: &impl MailjetClient,
    max_attempts: i32,
    stopping: &tokio::sync::watch::Receiver<bool>,
    task: &str,
) -> Result<Tally, JobError> {
    let mut tally = Tally::default();
    let mut seen_requests: HashSet<Uuid> = HashSet::new();
    let result = async {
        loop {
            // A stopping worker sends what it has claimed and claims no more: the rest is
            // left pending for the next run, not cut off mid-call.
            if *stopping.borrow() {
                return Ok(());
            }
            let (claimed, touched) = claim(db, BATCH * CALLS_PER_CLAIM, &mut tally).await?;
            if touched == 0 {
                return Ok(());
            }
            let new_requests: Vec<Uuid> = claimed
                .iter()
                .map(|c| c.request_id)
                .filter(|r| seen_requests.insert(*r))
                .collect();
            if !new_requests.is_empty() {
                email_requests::mark_sending(db, &new_requests).await?;
            }
            // Up to CALLS_PER_CLAIM Send calls at once, one SandboxMode per call.
            let calls = calls_of(&claimed);
            let answers = futures_util::future::join_all(
                calls
                    .iter()
                    .map(|(test_mode, batch)| send(client, batch, *test_mode, max_attempts)),
            )
            .await;
            let mut outcomes = Vec::with_capacity(claimed.len());
            let mut stop = None;
            for (o, fatal) in answers {
                outcomes.extend(o);
                if let Some(e) = fatal {
                    stop = Some(e);
                }
            }
            settle_surely(db, &outcomes, &mut tally, task).await?;
            tally.batches += calls.len() as u64;
            if let Some(e) = stop {
                return Err(e);
            }
        }
    }
    .await;
    result.map(|()| tally)
}

/// The claimed recipients as Send calls of at most `BATCH`, one `SandboxMode` per call.
fn calls_of(claimed: &[Claimed]) -> Vec<(bool, Vec<&Claimed>)> {
    let mut calls = Vec::new();
    for test_mode in [false, true] {
        let part: Vec<&Claimed> = claimed
            .iter()
            .filter(|c| c.test_mode == test_mode)
            .collect();
        for chunk in part.chunks(BATCH as usize) {
            calls.push((test_mode, chunk.to_vec()));
        }
    }
    calls
}

/// Claims up to one batch of due recipients: suppressed addresses are settled at once, the
/// rest committed as `sending` with one more attempt.
/// Returns the recipients to send and how many rows the claim settled or took.
async fn claim(
    db: &PgPool,
    limit: i64,
    tally: &mut Tally,
) -> Result<(Vec<Claimed>, usize), JobError> {
    let rows = email_sends::claim_due(db, limit).await?;
    let touched = rows.len();
    let mut claimed = Vec::with_capacity(rows.len());
    for (row, status) in rows {
        if status == "suppressed" {
            tally.suppressed += 1;
            metrics::counter!("email_sends_total", "status" => "suppressed").increment(1);
            continue;
        }
        claimed.push(row);
    }
    Ok((claimed, touched))
}

/// How long the outcome of a call that was made is retried while Postgres is unreachable.
const SETTLE_RETRY_FOR: Duration = Duration::from_secs(120);

/// Writes the outcomes of a call that was made, retrying while Postgres is unreachable (a
/// restart, a failover): an outcome lost here would leave the rows ambiguous, to be
/// reconciled later.
async fn settle_surely(
    db: &PgPool,
    outcomes: &[Outcome],
    tally: &mut Tally,
    task: &str,
) -> Result<(), JobError> {
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        let mut counted = Tally::default();
        match settle(db, outcomes, &mut counted, task).await {
            Ok(()) => {
                tally.add(&counted);
                return Ok(());
            }
            Err(e) if started.elapsed() < SETTLE_RETRY_FOR => {
                tracing::warn!(error = %e, rows = outcomes.len(), "could not write send outcomes; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes the outcomes of one batch (only rows still `sending`: a `sent` event may have been
/// faster).
async fn settle(
    db: &PgPool,
    outcomes: &[Outcome],
    tally: &mut Tally,
    task: &str,
) -> Result<(), JobError> {
    for o in outcomes {
        match o.status {
            "sent" => tally.sent += 1,
            "failed" => tally.failed += 1,
            "dead" => tally.dead += 1,
            "pending" => tally.retry += 1,
            _ => tally.ambiguous += 1,
        }
        metrics::counter!("email_sends_total", "status" => o.status).increment(1);
    }
    email_sends::write_outcomes(db, outcomes).await?;
    audit_batch(db, outcomes, task).await?;
    Ok(())
}

/// One audit entry per claimed batch sent to Mailjet: how many recipients ended how (never an
/// address), by send id range.
async fn audit_batch(db: &PgPool, outcomes: &[Outcome], task: &str) -> Result<(), JobError> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let mut by_status: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for o in outcomes {
        *by_status.entry(o.status).or_default() += 1;
    }
    let sent = by_status.get("sent").copied().unwrap_or(0);
    let result = match sent {
        0 => "failed",
        n if n == outcomes.len() as u64 => "ok",
        _ => "partial",
    };
    let details = json!({ "recipients": outcomes.len(), "outcomes": by_status });
    let first = outcomes[0].id.to_string();
    let mut conn = db.acquire().await?;
    let actor = Actor {
        name: "worker".to_owned(),
        request_id: Some(format!("task:{task}")),
    };
    audit::record_outcome(
        &mut conn,
        &actor,
        "mailjet.send",
        "email_batch",
        &first,
        result,
        details,
    )
    .await?;
    Ok(())
}

/// Marks requests with nothing left to do as completed, with an audit entry.
/// (Whoever settled the last recipient — a batch, a reconciliation, a `sent` event, a
/// suppression — the next run's end completes the request.)
async fn complete(db: &PgPool) -> Result<(), JobError> {
    let done = email_requests::complete_finished(db).await?;
    for id in done {
        let counts = crate::store::email_requests::status_counts(db, id).await?;
        let counts: serde_json::Map<String, Value> =
            counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
        let mut conn = db.acquire().await?;
        audit::record(
            &mut conn,
            &Actor::new("worker"),
            "email_request.completed",
            "email_request",
            &id.to_string(),
            Value::Object(counts),
        )
        .await?;
        metrics::counter!("email_requests_completed_total").increment(1);
    }
    Ok(())
}
