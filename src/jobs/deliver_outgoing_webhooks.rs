//! `deliver_outgoing_webhooks` (every minute, and kicked when a decision is made): POSTs each
//! queued event to `CAMPAIGN_MANAGER_WEBHOOK_URL`, signed, until a 2xx answers — with
//! backoff (2 s doubling to 1 h) for at most three days, then the event is `failed` for an
//! operator. Events are written in the transaction of the change they announce, so a crash
//! loses none; a receiver deduplicates on the event id (a crash after its 2xx and before our
//! write sends the event again, with the same id).
//!
//! The request: JSON `{id, type, createdAt, data}`; headers `X-Campaign-Sync-Event-Id`,
//! `X-Campaign-Sync-Event-Type` and `X-Campaign-Sync-Signature: t=<unix>,v1=<hex>`, where v1 is
//! HMAC-SHA256 with `CAMPAIGN_MANAGER_WEBHOOK_SECRET` over `<t>.<body>`.

use std::time::Duration;

use aws_lc_rs::hmac;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};
use crate::queue::{EnqueueOptions, Queue};
use crate::store::outgoing_webhooks::{self, Due};

/// Stable name.
pub const NAME: &str = "deliver_outgoing_webhooks";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(
    NAME,
    "send approval decisions to the Campaign Manager, signed, until acknowledged",
)
.queue(super::deliver_slack_posts::QUEUE)
.schedule("30 * * * * *")
.timeout(Duration::from_secs(10 * 60))
.runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

/// Events taken at once; each is held this long while its POST is in flight.
const BATCH: i64 = 50;
const LEASE: Duration = Duration::from_secs(120);
/// Give up after this long.
const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::days(3);

/// `t=<unix>,v1=<hex HMAC-SHA256 over "<t>.<body>">`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={timestamp},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Asks the queue to deliver now (kicks within a second coalesce); a failure is logged.
pub async fn kick_or_log(redis: redis::aio::ConnectionManager, prefix: &str, trigger: &str) {
    let queue = Queue::new(redis, prefix, super::deliver_slack_posts::QUEUE);
    let options = EnqueueOptions {
        unique_key: Some(format!("{NAME}:kick")),
        unique_ttl: Some(Duration::from_secs(1)),
        trigger: Some(trigger.to_owned()),
        ..Default::default()
    };
    if let Err(e) = queue.enqueue(NAME, Value::Null, options).await {
        tracing::warn!(error = %e, "could not kick webhook delivery; its schedule will deliver");
    }
}

/// Delivers every due event.
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    let deps = &ctx.deps;
    let w = &deps.settings.workflows;
    let (Some(url), Some(secret)) = (&w.webhook_url, &w.webhook_secret) else {
        return Ok(());
    };
    let http = crate::clients::transport::http_client(deps.settings.upstream_timeout)
        .map_err(|e| JobError::Permanent(e.into()))?;
    let (mut delivered, mut failed) = (0u64, 0u64);
    loop {
        if *deps.stopping.borrow() {
            break;
        }
        let due = outgoing_webhooks::take_due(&deps.db, BATCH, LEASE).await?;
        if due.is_empty() {
            break;
        }
        for event in due {
            if deliver(
                &deps.db,
                &http,
                url,
                secret.expose_secret().as_bytes(),
                &event,
            )
            .await?
            {
                delivered += 1;
            } else {
                failed += 1;
            }
        }
    }
    if let Some(at) = outgoing_webhooks::next_due(&deps.db).await?
        && at < chrono::Utc::now() + chrono::Duration::minutes(5)
    {
        let queue = Queue::new(
            deps.redis.clone(),
            &deps.prefix,
            super::deliver_slack_posts::QUEUE,
        );
        let delay = (at - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        let options = EnqueueOptions {
            delay: Some(delay),
            unique_key: Some(format!("{NAME}:at:{}", at.timestamp())),
            unique_ttl: Some(delay + Duration::from_secs(1)),
            trigger: Some("schedule".to_owned()),
        };
        if let Err(e) = queue.enqueue(NAME, Value::Null, options).await {
            tracing::warn!(error = %e, "could not schedule the next webhook retry; the schedule will");
        }
    }
    if delivered + failed > 0 {
        tracing::info!(delivered, failed, "outgoing webhooks");
    }
    Ok(())
}

/// One POST; true when acknowledged.
async fn deliver(
    db: &sqlx::PgPool,
    http: &reqwest::Client,
    url: &url::Url,
    secret: &[u8],
    event: &Due,
) -> Result<bool, JobError> {
    let body = json!({ "id": event.id, "type": event.event_type, "createdAt": event.created_at, "data": event.payload });
    let body = serde_json::to_vec(&body).map_err(|e| JobError::Permanent(e.into()))?;
    let now = chrono::Utc::now();
    let sent = http
        .post(url.clone())
        .header("content-type", "application/json")
        .header("x-campaign-sync-event-id", event.id.to_string())
        .header("x-campaign-sync-event-type", &event.event_type)
        .header(
            "x-campaign-sync-signature",
            signature(secret, now.timestamp(), &body),
        )
        .body(body)
        .send()
        .await;
    let (status, error) = match sent {
        Ok(r) if r.status().is_success() => {
            outgoing_webhooks::delivered(db, event.id, r.status().as_u16()).await?;
            metrics::counter!("outgoing_webhooks_total", "outcome" => "delivered").increment(1);
            return Ok(true);
        }
        Ok(r) => (Some(r.status().as_u16()), format!("HTTP {}", r.status())),
        Err(e) => (
            None,
            crate::clients::transport::transport_error("campaign_manager", "webhook", &e).message,
        ),
    };
    let retry = (now - event.created_at < GIVE_UP_AFTER).then(|| backoff(event.attempts));
    let outcome = if retry.is_some() { "retry" } else { "failed" };
    metrics::counter!("outgoing_webhooks_total", "outcome" => outcome).increment(1);
    outgoing_webhooks::attempt_failed(db, event.id, status, &error, retry).await?;
    Ok(false)
}

/// 2 s, 4 s, 8 s, … at most an hour, with jitter.
fn backoff(attempts: i32) -> f64 {
    (2.0 * 2f64.powi(attempts.clamp(1, 20) - 1)).min(3600.0) * (0.75 + fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // From `printf '1700000000.{}' | openssl dgst -sha256 -hmac secret`.
        assert_eq!(
            signature(b"secret", 1_700_000_000, b"{}"),
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
