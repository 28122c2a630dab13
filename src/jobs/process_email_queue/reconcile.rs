//! Reconciliation of the email queue: a send left `sending` (a crash, a timeout, an outage
//! between the Send call and the status write) is resolved from evidence before anything is
//! sent again. In order:
//!
//! 1. A stored Mailjet event naming the send (CustomID), applied yet or not, of any type: a
//!    `sent`, but also `blocked`, `bounce`, `spam`, `open`, `click`, `unsub` prove Mailjet
//!    accepted the message → `sent`.
//! 2. The REST adapter asks Mailjet (`/v3/REST/message?CustomID=`): found → `sent`; not
//!    found → resent.
//! 3. The agent cannot ask. Its absence of events is evidence only once Mailjet's event
//!    stream has reached us past the attempt: a stored event whose Mailjet `time` is later
//!    than the attempt's start + the upstream timeout + half the grace window. Until then the
//!    send waits (another grace window) — or, with no events at all, until 24 h have passed
//!    (Mailjet stops retrying event deliveries after 24 h). Then it is resent once; a second
//!    ambiguous attempt without evidence leaves it `dead` for a person.

use std::time::Duration;

use futures_util::StreamExt;
use sqlx::PgPool;

use crate::clients::mailjet::{Lookup, MailjetClient};
use crate::queue::job::JobError;
use crate::store::email_sends::{self, Reconciled, StaleSend};
use crate::store::webhook_events::{self, Evidence};

/// Sending rows looked at per reconciliation round.
const ROUND: i64 = 32;
/// Rounds go on for at most this long per run: look-ups share Mailjet's rate with the sends,
/// and a backlog of them must not hold up sending (the rest waits for the next run).
const BUDGET: std::time::Duration = std::time::Duration::from_secs(5);
/// Mailjet retries a failed event delivery for 24 hours, then drops it.
const EVENT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// How long to wait, and how far the event stream must have come.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// `EMAIL_RECONCILE_AFTER_SECS`.
    pub grace: Duration,
    /// `UPSTREAM_TIMEOUT_SECS`: an attempt may have been accepted this long after it began.
    pub upstream_timeout: Duration,
    /// `EMAIL_MAX_ATTEMPTS`.
    pub max_attempts: i32,
}

impl Windows {
    /// Whether Mailjet's events have reached us past what an attempt begun at `attempted`
    /// could have produced.
    fn caught_up(
        &self,
        attempted: chrono::DateTime<chrono::Utc>,
        watermark: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        let margin = self.upstream_timeout + self.grace / 2;
        let margin = chrono::TimeDelta::from_std(margin).unwrap_or(chrono::TimeDelta::MAX);
        watermark.is_some_and(|w| w > attempted + margin) || now - attempted > EVENT_WINDOW
    }
}

/// What to do with one stale send.
#[derive(Debug)]
enum Verdict {
    Settle(Reconcile),
    /// Not enough evidence yet: look again after another grace window.
    Wait,
}

#[derive(Debug)]
struct Reconcile {
    status: &'static str,
    message_id: Option<i64>,
    uuid: Option<String>,
    resend: bool,
    note: String,
    outcome: &'static str,
}

/// Resolves `sending` rows older than the grace window; returns how many were resolved.
pub async fn reconcile(
    db: &PgPool,
    client: &impl MailjetClient,
    windows: Windows,
) -> Result<u64, JobError> {
    let mut resolved = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < BUDGET {
        let stale = email_sends::take_stale(db, windows.grace, ROUND).await?;
        let round = stale.len() as i64;
        if round == 0 {
            return Ok(resolved);
        }
        let ids: Vec<uuid::Uuid> = stale.iter().map(|s| s.id).collect();
        let evidence = webhook_events::mailjet_evidence(db, &ids).await?;
        let watermark = webhook_events::mailjet_watermark(db).await?;
        let results: Vec<Result<bool, JobError>> = futures_util::stream::iter(stale)
            .map(|send| {
                let evidence = evidence.get(&send.id);
                async move {
                    let verdict = judge(client, &send, evidence, watermark, windows).await;
                    apply(db, &send, verdict).await
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for r in results {
            if r? {
                resolved += 1;
            }
        }
        if round < ROUND {
            return Ok(resolved);
        }
    }
    Ok(resolved)
}

async fn judge(
    client: &impl MailjetClient,
    send: &StaleSend,
    evidence: Option<&Evidence>,
    watermark: Option<chrono::DateTime<chrono::Utc>>,
    windows: Windows,
) -> Option<Verdict> {
    if let Some(e) = evidence {
        return Some(Verdict::Settle(Reconcile {
            status: "sent",
            message_id: e.message_id,
            uuid: None,
            resend: false,
            note: format!(
                "reconciled: Mailjet sent a {} event for this CustomID",
                e.event_type
            ),
            outcome: "event",
        }));
    }
    let lookup = match client.find_message(&send.id.to_string()).await {
        Ok(lookup) => lookup,
        Err(e) => {
            tracing::warn!(send = %send.id, error = %e, "reconciliation look-up failed; trying again next run");
            return None;
        }
    };
    Some(verdict_of(lookup, send, watermark, windows))
}

/// What Mailjet's answer to the look-up means for the send.
fn verdict_of(
    lookup: Lookup,
    send: &StaleSend,
    watermark: Option<chrono::DateTime<chrono::Utc>>,
    windows: Windows,
) -> Verdict {
    let settle = |status, resend, note: String, outcome| {
        Verdict::Settle(Reconcile {
            status,
            message_id: None,
            uuid: None,
            resend,
            note,
            outcome,
        })
    };
    match lookup {
        Lookup::Found { message_id, uuid } => Verdict::Settle(Reconcile {
            status: "sent",
            message_id: Some(message_id),
            uuid: Some(uuid),
            resend: false,
            note: "reconciled: Mailjet has a message with this CustomID".to_owned(),
            outcome: "found",
        }),
        Lookup::NotFound if send.attempts >= windows.max_attempts => settle(
            "dead",
            false,
            "dead: Mailjet has no message with this CustomID and the attempts are used up"
                .to_owned(),
            "dead",
        ),
        Lookup::NotFound => settle(
            "pending",
            true,
            "resent: Mailjet has no message with this CustomID".to_owned(),
            "resent",
        ),
        Lookup::Unsupported
            if !windows.caught_up(send.sending_started_at, watermark, chrono::Utc::now()) =>
        {
            Verdict::Wait
        }
        Lookup::Unsupported if send.resent => settle(
            "dead",
            false,
            "dead: still no evidence after one resend; check Mailjet for this CustomID before sending again".to_owned(),
            "dead",
        ),
        Lookup::Unsupported => settle(
            "pending",
            true,
            format!(
                "resent once: no event for this CustomID while Mailjet's events reached us past the attempt ({} s grace)",
                windows.grace.as_secs()
            ),
            "resent",
        ),
    }
}

async fn apply(db: &PgPool, send: &StaleSend, verdict: Option<Verdict>) -> Result<bool, JobError> {
    let r = match verdict {
        None => return Ok(false),
        Some(Verdict::Wait) => {
            metrics::counter!("email_reconciliations_total", "outcome" => "waiting").increment(1);
            return Ok(false);
        }
        Some(Verdict::Settle(r)) => r,
    };
    let written = email_sends::write_reconciled(
        db,
        &Reconciled {
            id: send.id,
            attempted: send.sending_started_at,
            status: r.status,
            message_id: r.message_id,
            uuid: r.uuid.as_deref(),
            resend: r.resend,
            note: &r.note,
        },
    )
    .await?;
    if written {
        metrics::counter!("email_reconciliations_total", "outcome" => r.outcome).increment(1);
        tracing::info!(send = %send.id, outcome = r.outcome, "send reconciled");
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_waits_until_events_have_come_past_the_attempt() {
        let w = Windows {
            grace: Duration::from_secs(600),
            upstream_timeout: Duration::from_secs(15),
            max_attempts: 5,
        };
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let now = at + chrono::TimeDelta::seconds(700);
        let secs = chrono::TimeDelta::seconds;
        assert!(!w.caught_up(at, None, now), "no events at all");
        assert!(
            !w.caught_up(at, Some(at + secs(300)), now),
            "not past timeout + grace/2"
        );
        assert!(w.caught_up(at, Some(at + secs(316)), now));
        assert!(
            w.caught_up(at, None, at + secs(86_401)),
            "Mailjet's 24 h are over"
        );
    }
}
