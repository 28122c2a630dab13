//! `evaluate_alerts` (every minute): the alerts the service raises about itself. Each rule
//! ([`rules`]) says which conditions hold now; a condition that starts holding opens an alert
//! episode and is posted to the ops channel (`SLACK_ALERTS_CHANNEL`) once, is posted again
//! every `ALERT_REPEAT_AFTER` while it lasts, and is posted as resolved once when it clears.
//! However many dynos run this, one evaluation runs at a time (the run is recorded, and the
//! episodes change under a transaction-scoped advisory lock), and every post goes through the
//! Slack outbox under a key of its own, so none is posted twice. `GET /api/alerts` lists them.

mod rules;

pub use rules::human;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;

use super::support::render;
use super::support::runs::{self, RunSummary};
use crate::config::Settings;
use crate::queue::Queue;
use crate::queue::job::{self, JobContext, JobDefinition, JobDeps, JobError, NoArgs};
use crate::store::alerts::{self, Condition};
use crate::store::audit::{self, Actor};
use crate::store::slack_posts::{self, NewPost};
use crate::store::{alert_inputs, describe_sqlx};
use crate::telemetry::timeline;
use rules::Group;

/// Stable name.
pub const NAME: &str = "evaluate_alerts";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(
    NAME,
    "raise, repeat and resolve the service's alerts; post them to the ops channel",
)
.schedule("0 * * * * *")
.timeout(Duration::from_secs(2 * 60))
.runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

/// One evaluation, recorded.
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    runs::recorded(ctx, NAME, |ctx, _run_id| async move {
        let deps = &ctx.deps;
        let verdicts = gather(deps).await;
        let unread: Vec<String> = verdicts
            .iter()
            .filter_map(|(group, v)| v.as_ref().err().map(|e| format!("{group:?}: {e}")))
            .collect();
        for problem in &unread {
            tracing::warn!(problem, "an alert source could not be read; its alerts are left as they are");
        }
        let mut conn = deps.db.acquire().await?;
        let counts = apply(&mut conn, &deps.settings, &verdicts).await?;
        if counts.posts > 0 {
            super::deliver_slack_posts::kick_or_log(deps.redis.clone(), &deps.prefix, NAME).await;
        }
        Ok(RunSummary {
            items_synced: counts.firing as i32,
            items_failed: unread.len() as i32,
            counts: json!({ "firing": counts.firing, "fired": counts.fired, "repeated": counts.repeated,
                "resolved": counts.resolved, "unread": unread }),
        })
    })
    .await
}

type Verdict = Result<Vec<Condition>, String>;

/// What every group of rules says now.
async fn gather(deps: &JobDeps) -> Vec<(Group, Verdict)> {
    let mut out = Vec::new();
    for group in Group::ALL {
        let verdict = match group {
            Group::Sync => sync(deps).await,
            Group::Dead => dead(deps).await,
            Group::Upstream => upstream(deps).await,
            Group::Installs => installs(deps).await,
            Group::Email => email(deps).await,
        };
        out.push((group, verdict));
    }
    out
}

async fn sync(deps: &JobDeps) -> Verdict {
    let a = &deps.settings.alerts;
    let streaks = alert_inputs::run_streaks(&deps.db, a.sync_failures)
        .await
        .map_err(|e| describe_sqlx(&e))?;
    Ok(rules::sync(
        &streaks,
        &deps.settings.schedules,
        a,
        Utc::now(),
    ))
}

async fn dead(deps: &JobDeps) -> Verdict {
    let window = i64::try_from(deps.settings.alerts.window.as_millis()).unwrap_or(i64::MAX);
    let since = crate::queue::now_ms().saturating_sub(window);
    let names: BTreeSet<&str> = super::ALL.iter().map(|j| j.queue).collect();
    let mut died = Vec::new();
    for name in names {
        let queue = Queue::new(deps.redis.clone(), &deps.prefix, name);
        let n = crate::queue::dead::died_since(&queue, since)
            .await
            .map_err(|e| e.to_string())?;
        died.push((name.to_owned(), n));
    }
    Ok(rules::dead(&died, &deps.settings.alerts))
}

async fn upstream(deps: &JobDeps) -> Verdict {
    let minutes = deps.settings.alerts.window.as_secs().div_ceil(60).max(1) as i64;
    let mut conn = deps.redis.clone();
    let read = timeline::read(&mut conn, &deps.prefix, minutes)
        .await
        .map_err(|e| e.to_string())?;
    Ok(rules::upstream(
        &timeline::tally(&read),
        &deps.settings.alerts,
    ))
}

async fn installs(deps: &JobDeps) -> Verdict {
    let installs = alert_inputs::installs(&deps.db)
        .await
        .map_err(|e| describe_sqlx(&e))?;
    Ok(rules::installs(
        &installs,
        &deps.settings.alerts,
        Utc::now(),
    ))
}

async fn email(deps: &JobDeps) -> Verdict {
    let a = &deps.settings.alerts;
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let stuck = alert_inputs::stuck_requests(&deps.db, secs(a.email_stuck))
        .await
        .map_err(|e| describe_sqlx(&e))?;
    let evidence =
        alert_inputs::webhook_evidence(&deps.db, secs(a.webhook_silence), a.webhook_min_sends)
            .await
            .map_err(|e| describe_sqlx(&e))?;
    Ok(rules::email(&stuck, evidence, a))
}

/// What one evaluation changed.
#[derive(Debug, Default)]
struct Counts {
    firing: usize,
    fired: usize,
    repeated: usize,
    resolved: usize,
    posts: usize,
}

/// Opens, repeats and resolves episodes as `verdicts` say, with their posts, in one
/// transaction under the evaluators' lock.
async fn apply(
    conn: &mut PgConnection,
    settings: &Settings,
    verdicts: &[(Group, Verdict)],
) -> Result<Counts, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    alerts::lock(&mut tx).await?;
    let open = alerts::open(&mut tx).await?;
    let decided: Vec<&str> = verdicts
        .iter()
        .filter(|(_, v)| v.is_ok())
        .flat_map(|(g, _)| g.rules().iter().copied())
        .collect();
    let holding: Vec<&Condition> = verdicts
        .iter()
        .filter_map(|(_, v)| v.as_ref().ok())
        .flatten()
        .collect();
    let mut counts = Counts {
        firing: holding.len(),
        ..Counts::default()
    };
    raise(&mut tx, settings, &open, &holding, &mut counts).await?;
    resolve_cleared(&mut tx, settings, &open, &decided, &holding, &mut counts).await?;
    tx.commit().await?;
    for (kind, n) in [
        ("fired", counts.fired),
        ("repeated", counts.repeated),
        ("resolved", counts.resolved),
    ] {
        metrics::counter!("alert_notices_total", "kind" => kind).increment(n as u64);
    }
    Ok(counts)
}

/// Opens an episode for each condition that has none, and repeats those due.
async fn raise(
    tx: &mut PgConnection,
    settings: &Settings,
    open: &[alerts::Open],
    holding: &[&Condition],
    counts: &mut Counts,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    for c in holding {
        match open
            .iter()
            .find(|o| o.rule == c.rule && o.subject == c.subject)
        {
            None => {
                let Some(id) = alerts::fire(tx, c).await? else {
                    continue;
                };
                counts.fired += 1;
                let text = fired_text(settings, c);
                counts.posts += post(tx, settings, format!("alert:{id}:fired"), text).await?;
                record(tx, "alert.fired", id, c.rule, &c.subject).await?;
            }
            Some(o) => {
                let due = (now - o.last_notified_at).to_std().unwrap_or_default()
                    >= settings.alerts.repeat_after;
                let n = alerts::still(tx, o.id, c, due).await?;
                if due {
                    counts.repeated += 1;
                    let text = repeat_text(settings, c, o.fired_at, n);
                    counts.posts +=
                        post(tx, settings, format!("alert:{}:repeat:{n}", o.id), text).await?;
                }
            }
        }
    }
    Ok(())
}

/// Resolves the open episodes of the rules decided whose condition no longer holds.
async fn resolve_cleared(
    tx: &mut PgConnection,
    settings: &Settings,
    open: &[alerts::Open],
    decided: &[&str],
    holding: &[&Condition],
    counts: &mut Counts,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    for o in open {
        let clears = decided.contains(&o.rule.as_str())
            && !holding
                .iter()
                .any(|c| c.rule == o.rule && c.subject == o.subject);
        if !clears {
            continue;
        }
        let (summary, link) = alerts::resolve(tx, o.id).await?;
        counts.resolved += 1;
        let text = resolved_text(settings, &o.rule, &summary, &link, o.fired_at, now);
        counts.posts += post(tx, settings, format!("alert:{}:resolved", o.id), text).await?;
        record(tx, "alert.resolved", o.id, &o.rule, &o.subject).await?;
    }
    Ok(())
}

async fn record(
    tx: &mut PgConnection,
    action: &str,
    id: i64,
    rule: &str,
    subject: &str,
) -> Result<(), sqlx::Error> {
    audit::record(
        tx,
        &Actor::new("worker"),
        action,
        "alert",
        &id.to_string(),
        json!({ "rule": rule, "subject": subject }),
    )
    .await
}

/// Queues `text` to the ops channel under `key`; how many posts that queued (none when no
/// channel is set: the alert is listed only).
async fn post(
    tx: &mut PgConnection,
    settings: &Settings,
    key: String,
    text: String,
) -> Result<usize, sqlx::Error> {
    let Some(channel) = &settings.alerts.slack_channel else {
        return Ok(0);
    };
    let post = NewPost {
        dedupe_key: key,
        kind: "alert",
        channel_id: Some(channel.clone()),
        text,
        ..Default::default()
    };
    Ok(usize::from(slack_posts::enqueue(tx, &post).await?.1))
}

fn fired_text(settings: &Settings, c: &Condition) -> String {
    let icon = if c.severity == "critical" {
        ":rotating_light:"
    } else {
        ":warning:"
    };
    format!(
        "{icon} *{}* `{}` — {}\n{}",
        c.severity.to_uppercase(),
        c.rule,
        render::escape(&c.summary),
        link(settings, &c.link)
    )
}

fn repeat_text(settings: &Settings, c: &Condition, since: DateTime<Utc>, n: i32) -> String {
    format!(
        ":repeat: Still firing since {} (notice {n}): *{}* `{}` — {}\n{}",
        render::when(since),
        c.severity.to_uppercase(),
        c.rule,
        render::escape(&c.summary),
        link(settings, &c.link)
    )
}

fn resolved_text(
    settings: &Settings,
    rule: &str,
    summary: &str,
    path: &str,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    format!(
        ":white_check_mark: Resolved after {}: `{rule}` — {}\n{}",
        human((now - since).to_std().unwrap_or_default()),
        render::escape(summary),
        link(settings, path)
    )
}

/// The dashboard page as a link when the public URL is known, else as its path.
fn link(settings: &Settings, path: &str) -> String {
    match settings
        .server
        .public_url
        .as_ref()
        .and_then(|u| u.join(path).ok())
    {
        Some(url) => format!("<{url}|Open in the dashboard>"),
        None => format!("Dashboard: `{path}`"),
    }
}
