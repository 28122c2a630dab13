//! `/campaign-sync` commands, answered to the one who typed them through the command's
//! `response_url` (ephemeral): `status` (schedules and their last runs, queues, alerts firing),
//! `campaign SLUG` (its latest statistics and approvals) and `retry-dead` (admins only, every
//! dead letter back to its queue, audited).

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sqlx::PgConnection;

use super::Applied;
use crate::jobs::support::render::{escape, when};
use crate::jobs::support::workflow::{self, AnswerTo};
use crate::queue::Queue;
use crate::queue::job::{JobDeps, JobError};
use crate::store::approvals::{self, ListFilter};
use crate::store::audit::{self, Actor};
use crate::store::{alerts, campaigns, sync_runs};

/// Answers one stored command (`webhook_events.id` `event`).
pub(super) async fn apply(
    tx: &mut PgConnection,
    deps: &JobDeps,
    event: i64,
    kind: &str,
    payload: &Value,
) -> Result<Applied, JobError> {
    let get = |key: &str| payload[key].as_str().unwrap_or("");
    let (user, channel, response_url) = (get("user_id"), get("channel_id"), get("response_url"));
    if user.is_empty() || channel.is_empty() || response_url.is_empty() {
        return Ok(Applied::Ignored);
    }
    let text = match kind {
        "status" => status(deps).await?,
        "campaign" => {
            let slug = get("text").split_whitespace().nth(1).unwrap_or("");
            campaign(deps, slug).await?
        }
        "retry-dead" => retry_dead(tx, deps, user).await?,
        _ => return Ok(Applied::Ignored),
    };
    let to = AnswerTo {
        channel,
        user,
        response_url: Some(response_url),
    };
    workflow::ephemeral(tx, &format!("command:{event}"), to, &text).await?;
    Ok(Applied::Done)
}

/// The queues the jobs use.
fn queues(deps: &JobDeps) -> Vec<Queue> {
    let names: BTreeSet<&str> = crate::jobs::ALL.iter().map(|j| j.queue).collect();
    names
        .into_iter()
        .map(|name| Queue::new(deps.redis.clone(), &deps.prefix, name))
        .collect()
}

async fn status(deps: &JobDeps) -> Result<String, JobError> {
    let mut out = String::from("*Schedules*\n");
    let last = sync_runs::latest_per_job(&deps.db).await?;
    for (job, schedule) in &deps.settings.schedules {
        let run = last.iter().find(|(j, ..)| j == job);
        let ran = match run {
            Some((_, status, started, _)) => format!("last run {status} {}", when(*started)),
            None => "never ran".to_owned(),
        };
        out.push_str(&format!("• `{job}` `{}` — {ran}\n", schedule.expression));
    }
    out.push_str("*Queues*\n");
    for queue in queues(deps) {
        let line = match queue.counts().await {
            Ok(c) => format!(
                "{} waiting, {} running, {} delayed, {} dead",
                c.waiting, c.in_flight, c.delayed, c.dead
            ),
            Err(e) => format!("could not be read ({e})"),
        };
        out.push_str(&format!("• `{}`: {line}\n", queue.keys().name()));
    }
    let (firing, _) = alerts::list(&deps.db, 1, 1).await?;
    if firing.is_empty() {
        out.push_str("*Alerts firing*: none");
    } else {
        out.push_str(&format!("*Alerts firing* ({})\n", firing.len()));
        for a in firing.iter().take(20) {
            out.push_str(&format!(
                "• {} `{}` — {} (since {})\n",
                a.severity.to_uppercase(),
                a.rule,
                escape(&a.summary),
                when(a.fired_at)
            ));
        }
    }
    Ok(out)
}

async fn campaign(deps: &JobDeps, slug: &str) -> Result<String, JobError> {
    let found = match campaigns::id_by_slug_or_id(&deps.db, slug).await? {
        Some(id) => campaigns::get(&deps.db, &id).await?,
        None => None,
    };
    let Some(c) = found else {
        return Ok(format!(
            "No campaign has the slug or id `{}`.",
            escape(slug)
        ));
    };
    let mut out = format!(
        "*{}* (`{}`, {})\n",
        escape(&c.name),
        escape(&c.id),
        c.status
    );
    match &c.latest_statistics {
        Some(s) => out.push_str(&format!(
            "Sent {}, delivered {}, opened {} ({:.1}%), clicked {} ({:.1}%), bounced {}, spam {}, unsubscribed {} — as of {}\n",
            s.sent, s.delivered, s.opened, s.open_rate, s.clicked, s.click_rate, s.bounced,
            s.spam, s.unsubscribed, when(s.recorded_at)
        )),
        None => out.push_str("No statistics synced from Mailjet yet.\n"),
    }
    let filter = ListFilter {
        campaign_id: Some(&c.id),
        status: None,
        before: None,
        limit: 10,
    };
    let (approvals, _) = approvals::list(&deps.db, &filter).await?;
    if approvals.is_empty() {
        out.push_str("No approvals.");
    } else {
        out.push_str("*Approvals*\n");
        for a in &approvals {
            out.push_str(&format!(
                "• {} — {} (approver {}, deadline {})\n",
                escape(&a.stage),
                a.status,
                escape(&a.approver_id),
                when(a.deadline)
            ));
        }
    }
    Ok(out)
}

async fn retry_dead(tx: &mut PgConnection, deps: &JobDeps, user: &str) -> Result<String, JobError> {
    let actor = Actor::new(&format!("slack:{user}"));
    if let Err(refusal) = deps.settings.alerts.may_retry_dead(user) {
        audit::record_outcome(
            tx,
            &actor,
            "dead.retry_all",
            "queue",
            "*",
            "refused",
            json!({ "why": "not in SLACK_COMMAND_ADMINS" }),
        )
        .await?;
        return Ok(refusal.to_owned());
    }
    let mut lines = Vec::new();
    let mut total = 0;
    for queue in queues(deps) {
        let name = queue.keys().name().to_owned();
        let n = crate::queue::dead::retry_all(&queue).await.map_err(|e| {
            JobError::retry(format!("retrying the dead letters of {name} failed: {e}"))
        })?;
        if n > 0 {
            audit::record(
                tx,
                &actor,
                "dead.retry_all",
                "queue",
                &name,
                json!({ "retried": n }),
            )
            .await?;
            lines.push(format!("• `{name}`: {n}"));
        }
        total += n;
    }
    if total == 0 {
        return Ok("There were no dead letters to retry.".to_owned());
    }
    Ok(format!(
        "Sent {total} dead-lettered task(s) back to their queues:\n{}",
        lines.join("\n")
    ))
}
