//! One Send call of a batch and what became of each of its recipients: Mailjet's answer per
//! message, or the call's failure for all of them (retried, refunded after a rate limit, or
//! dead after the last attempt).

use std::time::Duration;

use crate::clients::error::{FailureKind, UpstreamError};
use crate::clients::mailjet::{Address, MailjetClient, Message, SendAnswer, SendBody, SendResult};
use crate::queue::job::JobError;
use crate::store::email_sends::{Claimed, Outcome};

use super::backoff;

/// A recipient that may be tried again, or dead after its last attempt.
fn again(c: &Claimed, max_attempts: i32, error: String, refund: bool, delay: f64) -> Outcome {
    let attempts = if refund { c.attempts - 1 } else { c.attempts };
    if attempts >= max_attempts {
        let mut o = Outcome::new(c.id, "dead");
        o.error = Some(format!("{error} (after {attempts} attempts)"));
        o.note = Some(format!("dead: {error}"));
        return o;
    }
    let mut o = Outcome::new(c.id, "pending");
    o.error = Some(error);
    o.refund = refund;
    o.delay = delay;
    o
}

/// One Send call for `batch`: what became of each recipient, and an error that should stop
/// this run (Mailjet refusing our credentials).
pub(super) async fn send(
    client: &impl MailjetClient,
    batch: &[&Claimed],
    test_mode: bool,
    max_attempts: i32,
) -> (Vec<Outcome>, Option<JobError>) {
    let body = SendBody {
        sandbox_mode: test_mode,
        messages: batch
            .iter()
            .map(|c| Message {
                to: [Address {
                    email: &c.email,
                    name: &c.name,
                }],
                template_id: c.template_id,
                template_language: true,
                variables: &c.variables,
                custom_id: c.id,
                event_payload: c.request_id,
            })
            .collect(),
    };
    metrics::histogram!("email_batch_size").record(batch.len() as f64);
    let started = std::time::Instant::now();
    let result = client.send(&body).await;
    metrics::histogram!("email_send_latency_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(answer) => (per_message(batch, &answer, max_attempts), None),
        Err(e) => failed_call(batch, e, max_attempts),
    }
}

/// Outcomes from a Send answer (HTTP 200, or 400 with per-message results).
fn per_message(batch: &[&Claimed], answer: &SendAnswer, max_attempts: i32) -> Vec<Outcome> {
    let results = &answer.messages;
    batch
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let custom = c.id.to_string();
            let result: Option<&SendResult> = results
                .iter()
                .find(|m| m.custom_id.as_deref() == Some(custom.as_str()))
                .or_else(|| results.get(i));
            let Some(result) = result else {
                // No word on this message: it may have gone out.
                let mut o = Outcome::new(c.id, "sending");
                o.error = Some("Mailjet's answer did not mention this message".to_owned());
                o.note = Some("ambiguous: no result for this message".to_owned());
                return o;
            };
            if result.status == "success" {
                let to = result.to.first();
                let mut o = Outcome::new(c.id, "sent");
                o.message_id = to.and_then(|t| t.message_id).filter(|id| *id != 0);
                o.uuid = to
                    .and_then(|t| t.message_uuid.clone())
                    .filter(|u| !u.is_empty());
                return o;
            }
            let error = result.errors.first();
            let code = error
                .and_then(|e| e.error_code.as_deref())
                .unwrap_or("unknown");
            let status = error.and_then(|e| e.status_code).unwrap_or(400);
            let message = format!(
                "{code} ({status}): {}",
                error
                    .and_then(|e| e.error_message.as_deref())
                    .unwrap_or("no message")
            );
            if status >= 500 {
                again(c, max_attempts, message, false, backoff(c.attempts))
            } else {
                let mut o = Outcome::new(c.id, "failed");
                o.error = Some(message);
                o
            }
        })
        .collect()
}

/// Outcomes when the call itself failed.
fn failed_call(
    batch: &[&Claimed],
    e: UpstreamError,
    max_attempts: i32,
) -> (Vec<Outcome>, Option<JobError>) {
    let message = e.to_string();
    // Refused before anything was sent: back to pending, and stop this run loudly.
    let refused = matches!(
        (&e.kind, e.status),
        (FailureKind::AuthExpired, _) | (FailureKind::Permanent, Some(401 | 403))
    );
    let outcome = |c: &Claimed| match (&e.kind, e.status) {
        _ if refused => again(c, i32::MAX, message.clone(), true, 60.0),
        (FailureKind::RateLimited { retry_after }, _) => {
            let wait = retry_after.unwrap_or(Duration::from_secs(1)).as_secs_f64();
            again(c, max_attempts, message.clone(), true, wait)
        }
        // 503: the service refused the call; nothing was sent.
        (FailureKind::Transient, Some(503)) => {
            again(c, max_attempts, message.clone(), false, backoff(c.attempts))
        }
        // A timeout, a dropped connection, another 5xx: it may have been sent.
        (FailureKind::Transient, _) => {
            let mut o = Outcome::new(c.id, "sending");
            o.error = Some(format!("ambiguous: {message}"));
            o.note = Some(format!("ambiguous: {message}; to be reconciled"));
            o
        }
        // Mailjet refused these messages for good.
        _ => {
            let mut o = Outcome::new(c.id, "failed");
            o.error = Some(message.clone());
            o
        }
    };
    let outcomes = batch.iter().map(|c| outcome(c)).collect();
    let stop = refused.then(|| {
        JobError::retry(format!(
            "Mailjet refused the credentials; recipients stay pending: {message}"
        ))
    });
    (outcomes, stop)
}
