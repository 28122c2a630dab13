//! After the faults: the run is drained (every request finished, every event delivered and
//! applied), then each invariant is measured from the outside — the sandbox's record of what
//! Mailjet accepted, the database, Redis, the processes — and printed as a table.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Deployment;
use super::deployment::TICK_SECS;
use super::scenarios::Scenario;
use crate::queue::{EnqueueOptions, Queue};
use crate::store::invariants as store;

/// One phase: a request and the fault injected while it was sent.
#[derive(Debug, Clone)]
pub struct Phase {
    pub scenario: Scenario,
    pub request: Uuid,
    pub recipients: u32,
    /// From acceptance to completion (None while it is not completed).
    pub took: Option<Duration>,
    /// Sends settled by reconciliation (a stored event, a look-up) after the grace window.
    pub reconciled: i64,
    /// Sends whose Mailjet event arrived before the answer of their call was written.
    pub event_first: i64,
    /// Sends resent after reconciliation found no evidence.
    pub resent: i64,
}

/// One measured invariant.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub value: String,
    pub ok: bool,
}

/// What one adapter's run found.
#[derive(Debug, Clone)]
pub struct Report {
    pub adapter: String,
    pub phases: Vec<Phase>,
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

fn check(checks: &mut Vec<Check>, name: &str, value: impl ToString, ok: bool) {
    checks.push(Check {
        name: name.to_owned(),
        value: value.to_string(),
        ok,
    });
}

/// The figures of a phase's request as they stand.
pub async fn phase_of(
    d: &Deployment,
    scenario: Scenario,
    request: Uuid,
    recipients: u32,
) -> anyhow::Result<Phase> {
    let (took, reconciled, event_first, resent) = store::request_figures(&d.db, request)
        .await
        .context("reading the phase's request")?;
    Ok(Phase {
        scenario,
        request,
        recipients,
        took: took.map(Duration::from_secs_f64),
        reconciled,
        event_first,
        resent,
    })
}

/// Drains the run, then measures every invariant.
pub async fn drain_and_check(
    d: &mut Deployment,
    adapter: &str,
    phases: Vec<Phase>,
) -> anyhow::Result<Report> {
    let faults_over = Instant::now();
    let (canaries, drained) = drain_sends(d).await?;
    drain_events(d).await;
    let mut checks = Vec::new();
    let took = faults_over.elapsed().as_secs();
    check(
        &mut checks,
        "every request completed after the faults (10 min at most)",
        format!("in {took} s, {canaries} small requests posted meanwhile"),
        drained,
    );
    recipients(d, &mut checks).await?;
    webhooks(d, &mut checks).await?;
    ticks(d, &mut checks).await?;
    processes(d, &mut checks).await?;
    let mut done = Vec::with_capacity(phases.len());
    for p in phases {
        done.push(phase_of(d, p.scenario, p.request, p.recipients).await?);
    }
    Ok(Report {
        adapter: adapter.to_owned(),
        phases: done,
        checks,
    })
}

/// Waits until no send is `pending` or `sending`. A small request is posted every 30 s
/// meanwhile, as live traffic would: its events carry Mailjet's stream past the last
/// ambiguous attempts (the agent's evidence). Returns how many were posted, and whether it
/// drained.
async fn drain_sends(d: &mut Deployment) -> anyhow::Result<(u32, bool)> {
    let limit = Instant::now() + Duration::from_secs(600);
    let mut canaries = 0;
    let mut last_canary = Instant::now() - Duration::from_secs(60);
    loop {
        if let Ok((0, 0)) = store::open_work(&d.db).await {
            return Ok((canaries, true));
        }
        if Instant::now() > limit {
            return Ok((canaries, false));
        }
        if last_canary.elapsed() > Duration::from_secs(30) {
            d.post_request(10_000 + canaries as usize, 5).await?;
            canaries += 1;
            last_canary = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the sandbox has delivered every event it emitted and every stored event is
/// applied (or 3 min).
async fn drain_events(d: &Deployment) {
    let limit = Instant::now() + Duration::from_secs(180);
    while Instant::now() < limit {
        let events = d
            .sandbox_sends(false)
            .await
            .map(|s| s["events"].clone())
            .unwrap_or(Value::Null);
        let outstanding = events["emitted"].as_u64().unwrap_or(1)
            - events["delivered"]
                .as_u64()
                .unwrap_or(0)
                .min(events["emitted"].as_u64().unwrap_or(0))
            - events["dropped"]
                .as_u64()
                .unwrap_or(0)
                .min(events["emitted"].as_u64().unwrap_or(0));
        let unapplied = store::unapplied_events(&d.db).await.unwrap_or(1);
        if outstanding == 0 && unapplied == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Each recipient against the sandbox's count of its acceptances.
async fn recipients(d: &Deployment, checks: &mut Vec<Check>) -> anyhow::Result<()> {
    let sends = d.sandbox_sends(true).await?;
    let accepted: HashMap<String, u64> = sends["sends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["custom_id"].as_str().unwrap_or("").to_owned(),
                s["accepted"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let rows = store::send_statuses(&d.db).await?;
    let (mut once, mut lost, mut twice, mut stuck, mut untrue) = (0, 0, 0, 0, 0);
    for (id, status) in &rows {
        let n = accepted.get(&id.to_string()).copied().unwrap_or(0);
        match n {
            1 => once += 1,
            0 if !matches!(status.as_str(), "pending" | "sending") => lost += 1,
            0 => {}
            _ => twice += 1,
        }
        if matches!(status.as_str(), "pending" | "sending") {
            stuck += 1;
        }
        if (n >= 1 && status != "sent") || (n == 0 && status == "sent") {
            untrue += 1;
        }
    }
    let total = rows.len();
    check(
        checks,
        "recipients accepted by Mailjet exactly once",
        format!("{once} of {total}"),
        once == total,
    );
    check(
        checks,
        "recipients lost (never accepted, given up)",
        lost,
        lost == 0,
    );
    check(
        checks,
        "recipients accepted twice or more",
        twice,
        twice == 0,
    );
    check(
        checks,
        "recipients stuck (pending or sending)",
        stuck,
        stuck == 0,
    );
    check(
        checks,
        "recipients whose status is untrue to Mailjet",
        untrue,
        untrue == 0,
    );
    let unknown = accepted.len().saturating_sub(once + twice);
    check(
        checks,
        "messages Mailjet accepted that no recipient sent",
        unknown,
        unknown == 0,
    );
    Ok(())
}

/// Every event the sandbox delivered is stored once and applied once.
async fn webhooks(d: &Deployment, checks: &mut Vec<Check>) -> anyhow::Result<()> {
    let events = d.sandbox_sends(false).await?["events"].clone();
    let (emitted, delivered, dropped) = (
        events["emitted"].as_u64().unwrap_or(0),
        events["delivered"].as_u64().unwrap_or(0),
        events["dropped"].as_u64().unwrap_or(0),
    );
    // The harness's own poison events are addressed to poison…@example.com.
    let (stored, unapplied, failed) = store::mailjet_event_counts(&d.db).await?;
    check(
        checks,
        "Mailjet events emitted / delivered / dropped",
        format!("{emitted} / {delivered} / {dropped}"),
        delivered + dropped == emitted && dropped == 0,
    );
    check(
        checks,
        "events delivered = events stored (each once)",
        format!("{delivered} = {stored}"),
        delivered == stored as u64,
    );
    check(
        checks,
        "stored events applied (none left, none failed)",
        format!("{unapplied} left, {failed} failed"),
        unapplied == 0 && failed == 0,
    );
    effects(d, checks).await?;
    answers(d, checks).await
}

/// Each applied event had one effect, and the counts on the sends agree with the events.
async fn effects(d: &Deployment, checks: &mut Vec<Check>) -> anyhow::Result<()> {
    let (extra, miscounted) = store::applied_twice_and_miscounted(&d.db).await?;
    check(
        checks,
        "events with more than one effect",
        extra,
        extra == 0,
    );
    check(
        checks,
        "sends whose open/click counts disagree with their events",
        miscounted,
        miscounted == 0,
    );
    Ok(())
}

/// The harness's own deliveries (replays, poison) were answered without a 5xx.
async fn answers(d: &Deployment, checks: &mut Vec<Check>) -> anyhow::Result<()> {
    check(
        checks,
        "stored events delivered again by the harness (replays)",
        d.replayed,
        true,
    );
    let errors = d.answers.server_errors();
    let answered: Vec<String> = d
        .answers
        .by_kind
        .iter()
        .map(|(what, codes)| {
            format!(
                "{what}: {}",
                codes
                    .iter()
                    .map(|(c, n)| format!("{c}×{n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect();
    let summary = if answered.is_empty() {
        "none sent".to_owned()
    } else {
        answered.join("; ")
    };
    check(
        checks,
        "poison and replays answered 5xx",
        format!("{errors} ({summary})"),
        errors == 0,
    );
    let rejections = store::rejections(&d.db).await?;
    check(checks, "rejected events kept for replay", rejections, true);
    Ok(())
}

/// Every tick of the counted schedule ran once; none is missing outside an outage.
async fn ticks(d: &Deployment, checks: &mut Vec<Check>) -> anyhow::Result<()> {
    let ticks = store::runs_per_tick(&d.db, "sync_mailjet_templates").await?;
    let twice = ticks.iter().filter(|(_, n)| *n > 1).count();
    let (Some(first), Some(last)) = (ticks.first().map(|t| t.0), ticks.last().map(|t| t.0)) else {
        check(checks, "schedule ticks run", 0, false);
        return Ok(());
    };
    let now_utc = chrono::Utc::now();
    let now = Instant::now();
    // Outage windows in wall time, widened by a period on each side plus the catch-up.
    let slack = chrono::TimeDelta::seconds(TICK_SECS as i64 + 15);
    let windows: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> = d
        .outages
        .iter()
        .map(|(a, b)| {
            let to_utc =
                |i: &Instant| now_utc - chrono::TimeDelta::from_std(now - *i).unwrap_or_default();
            (to_utc(a) - slack, to_utc(b) + slack)
        })
        .collect();
    let seen: std::collections::HashSet<i64> = ticks.iter().map(|t| t.0.timestamp()).collect();
    let mut missed = 0;
    let mut t = first;
    while t <= last {
        let excused = windows.iter().any(|(a, b)| *a <= t && t <= *b);
        if !seen.contains(&t.timestamp()) && !excused {
            missed += 1;
        }
        t += chrono::TimeDelta::seconds(TICK_SECS as i64);
    }
    check(
        checks,
        "schedule ticks recorded (every 10 s)",
        ticks.len(),
        !ticks.is_empty(),
    );
    check(checks, "schedule ticks run twice", twice, twice == 0);
    check(
        checks,
        "schedule ticks missed outside outages",
        missed,
        missed == 0,
    );
    Ok(())
}

/// Every process alive; every worker reading every queue; probes enqueued now all finish.
async fn processes(d: &mut Deployment, checks: &mut Vec<Check>) -> anyhow::Result<()> {
    let mut dead = Vec::new();
    for p in d.workers.iter_mut().chain([&mut d.web, &mut d.sandbox]) {
        if !p.alive() {
            dead.push(p.name.clone());
        }
    }
    let total = d.workers.len() + 2;
    check(
        checks,
        "processes alive (web, workers, sandbox)",
        format!(
            "{} of {total}{}",
            total - dead.len(),
            if dead.is_empty() {
                String::new()
            } else {
                format!(" (dead: {})", dead.join(", "))
            }
        ),
        dead.is_empty(),
    );
    let conn = redis::Client::open(d.redis.url())?
        .get_connection_manager()
        .await?;
    // Two probes per worker at once, each 3 s long, on a queue each worker takes two tasks of
    // at a time (WORKER_QUEUES): every worker that still consumes runs some.
    let probes = 2 * d.workers.len() as u64;
    let queue = Queue::new(conn.clone(), "chaos", crate::queue::job::DEFAULT_QUEUE);
    for _ in 0..probes {
        queue
            .enqueue(
                crate::jobs::diagnostics_probe::NAME,
                json!({ "tag": "final", "sleep_ms": 3000 }),
                EnqueueOptions::default(),
            )
            .await?;
    }
    let key = crate::jobs::diagnostics_probe::counter_key("chaos", "final");
    let limit = Instant::now() + Duration::from_secs(60);
    let mut counts: HashMap<String, u64> = HashMap::new();
    while Instant::now() < limit && counts.get("finished").copied().unwrap_or(0) < probes {
        tokio::time::sleep(Duration::from_millis(200)).await;
        counts = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn.clone())
            .await
            .unwrap_or_default();
    }
    let finished = counts.get("finished").copied().unwrap_or(0);
    check(
        checks,
        "jobs enqueued after the faults that ran",
        format!("{finished} of {probes}"),
        finished == probes,
    );
    let idle: Vec<&str> = d
        .workers
        .iter()
        .filter(|w| !counts.contains_key(&format!("by:{}", w.name)))
        .map(|w| w.name.as_str())
        .collect();
    let value = if idle.is_empty() {
        "all".to_owned()
    } else {
        format!("not: {}", idle.join(", "))
    };
    check(
        checks,
        "every worker took jobs after the faults",
        value,
        idle.is_empty(),
    );
    Ok(())
}
