//! Callbacks to the receiver, as the real services send them: Mailjet's event webhook
//! (grouped arrays or single events, Basic auth from the URL, retried on any non-200), and
//! Slack's signed `event_callback`s (retried with `X-Slack-Retry-Num`) and `block_actions`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::data::SentMessage;
use super::{SandboxConfig, Shared, lock};

/// One Mailjet event waiting to be delivered.
#[derive(Debug, Clone)]
pub struct MailjetEvent {
    due: Instant,
    body: Value,
}

/// What became of the Mailjet events the sandbox emitted.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct EventCounts {
    /// Events queued for delivery.
    pub emitted: u64,
    /// Events in deliveries the receiver acknowledged (a redelivery counts again).
    pub delivered: u64,
    /// Events whose retries were given up.
    pub dropped: u64,
}

fn common(message: &SentMessage, event: &str) -> Value {
    json!({
        "event": event, "time": super::data::now(), "MessageID": message.id, "Message_GUID": message.uuid,
        "email": message.email, "mj_campaign_id": message.campaign_id, "mj_contact_id": message.contact_id,
        "customcampaign": "", "CustomID": message.custom_id, "Payload": message.payload,
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

/// Queues the events of an accepted message: `sent` (or `blocked`), then, at the configured
/// rates, bounce, spam, open, click, unsub.
pub fn schedule_events(shared: &Shared, message: &SentMessage) {
    let config = shared.config();
    if config.mailjet_webhook_url.is_none() {
        return;
    }
    let rates = config.event_rates;
    let start = Instant::now() + config.event_delay;
    let step = config.event_delay.max(Duration::from_millis(10));
    let mut events = Vec::new();
    let roll = |p: f64| fastrand::f64() < p;
    if roll(rates.blocked) {
        events.push(with(
            common(message, "blocked"),
            json!({ "error_related_to": "recipient", "error": "blacklisted" }),
        ));
    } else {
        let sent = json!({ "mj_message_id": message.id.to_string(), "smtp_reply": "sent (250 2.0.0 OK sandbox)" });
        events.push(with(common(message, "sent"), sent));
        if roll(rates.bounce) {
            let hard = roll(0.5);
            events.push(with(common(message, "bounce"), json!({ "blocked": false, "hard_bounce": hard, "error_related_to": "recipient", "error": if hard { "user unknown" } else { "quota exceeded" }, "comment": "sandbox bounce" })));
        } else {
            let client =
                json!({ "ip": "127.0.0.1", "geo": "FR", "agent": "Mozilla/5.0 (sandbox)" });
            if roll(rates.spam) {
                events.push(with(common(message, "spam"), json!({ "source": "JMRPP" })));
            }
            if roll(rates.open) {
                events.push(with(common(message, "open"), client.clone()));
                if roll(rates.click / rates.open.max(f64::EPSILON)) {
                    events.push(with(
                        common(message, "click"),
                        with(
                            client.clone(),
                            json!({ "url": "https://example.com/offer" }),
                        ),
                    ));
                }
                if roll(rates.unsub / rates.open.max(f64::EPSILON)) {
                    events.push(with(
                        common(message, "unsub"),
                        with(client, json!({ "mj_list_id": 1 })),
                    ));
                }
            }
        }
    }
    lock(&shared.event_counts).emitted += events.len() as u64;
    for (i, body) in events.into_iter().enumerate() {
        let _ = shared.events.send(MailjetEvent {
            due: start + step * i as u32,
            body,
        });
    }
}

struct Pending {
    events: Vec<Value>,
    next_attempt: Instant,
    first_failure: Option<Instant>,
}

/// The due events as deliveries: one group, or one delivery each.
fn batches_of(due: Vec<MailjetEvent>, grouped: bool, now: Instant) -> Vec<Pending> {
    let bodies: Vec<Value> = due.into_iter().map(|e| e.body).collect();
    let pending = |events| Pending {
        events,
        next_attempt: now,
        first_failure: None,
    };
    if !grouped {
        return bodies.into_iter().map(|b| pending(vec![b])).collect();
    }
    if bodies.is_empty() {
        Vec::new()
    } else {
        vec![pending(bodies)]
    }
}

/// The URL events go to: the configured one, or (when it keeps failing) its backup.
fn target_url(config: &SandboxConfig, consecutive_failures: u32) -> Option<String> {
    let primary = config.mailjet_webhook_url.clone()?;
    // A primary that keeps failing is suspended; the backup URL (if any) takes over.
    Some(
        match (
            &config.mailjet_webhook_backup_url,
            consecutive_failures >= config.mailjet_suspend_after,
        ) {
            (Some(backup), true) => backup.clone(),
            _ => primary,
        },
    )
}

/// Delivers queued Mailjet events every grouping window, retrying failed deliveries at the
/// configured interval until the configured time after their first failure.
pub async fn run_mailjet_emitter(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<MailjetEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut waiting: Vec<MailjetEvent> = Vec::new();
    let mut retries: Vec<Pending> = Vec::new();
    let mut consecutive_failures = 0u32;
    loop {
        let window = shared
            .config()
            .mailjet_group_window
            .max(Duration::from_millis(10));
        let stopped = tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            () = tokio::time::sleep(window) => false,
        };
        if stopped {
            return;
        }
        while let Ok(event) = rx.try_recv() {
            waiting.push(event);
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|e| e.due <= now);
        waiting = later;
        let config = shared.config();
        let Some(url) = target_url(&config, consecutive_failures) else {
            continue;
        };
        let mut batches = batches_of(due, config.mailjet_webhook_grouped, now);
        let (ready, not_yet): (Vec<_>, Vec<_>) =
            retries.into_iter().partition(|p| p.next_attempt <= now);
        retries = not_yet;
        batches.extend(ready);
        for mut batch in batches {
            if deliver_mailjet(
                &shared,
                &url,
                &batch.events,
                config.mailjet_webhook_grouped,
                config.mailjet_webhook_timeout,
            )
            .await
            {
                consecutive_failures = 0;
                lock(&shared.event_counts).delivered += batch.events.len() as u64;
                continue;
            }
            consecutive_failures = consecutive_failures.saturating_add(1);
            let first = *batch.first_failure.get_or_insert(now);
            if now.duration_since(first) < config.mailjet_retry_for {
                batch.next_attempt = now + config.mailjet_retry_interval;
                retries.push(batch);
            } else {
                lock(&shared.event_counts).dropped += batch.events.len() as u64;
            }
        }
    }
}

async fn deliver_mailjet(
    shared: &Shared,
    url: &str,
    events: &[Value],
    grouped: bool,
    timeout: Duration,
) -> bool {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return false;
    };
    let user = parsed.username().to_owned();
    let password = parsed.password().map(str::to_owned);
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let body = if grouped {
        Value::Array(events.to_vec())
    } else {
        events.first().cloned().unwrap_or(Value::Null)
    };
    let mut request = shared.http.post(parsed).timeout(timeout).json(&body);
    if !user.is_empty() {
        request = request.basic_auth(
            percent_decode(&user),
            password.as_deref().map(percent_decode),
        );
    }
    matches!(request.send().await, Ok(r) if r.status() == reqwest::StatusCode::OK)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `v0=` + hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}")): Slack's request signature.
pub fn slack_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(format!("v0:{timestamp}:").as_bytes());
    ctx.update(body);
    format!("v0={}", hex::encode(ctx.sign()))
}

/// The result of one signed delivery.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    /// HTTP status, or None when the receiver did not answer in time or at all.
    pub status: Option<u16>,
    /// How long the receiver took.
    pub elapsed_ms: u64,
    /// Whether Slack would count this as acknowledged (2xx within the ack timeout).
    pub acknowledged: bool,
    /// The receiver asked for no retries (`X-Slack-No-Retry: 1`).
    pub no_retry: bool,
    /// The receiver's JSON answer (a slash command's immediate reply), Null when none.
    #[serde(skip)]
    pub answer: Value,
}

/// POSTs a signed body to `url` as Slack does.
pub async fn deliver_signed(
    shared: &Shared,
    url: &str,
    body: Vec<u8>,
    content_type: &str,
    retry: Option<(u32, &str)>,
) -> Delivery {
    let config = shared.config();
    let timestamp = super::data::now();
    let signature = slack_signature(&config.slack_signing_secret, timestamp, &body);
    let mut request = shared
        .http
        .post(url)
        .timeout(config.slack_ack_timeout)
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header("x-slack-signature", signature)
        .header("user-agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
        .body(body);
    if let Some((num, reason)) = retry {
        request = request
            .header("x-slack-retry-num", num.to_string())
            .header("x-slack-retry-reason", reason);
    }
    let started = Instant::now();
    let result = request.send().await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(response) => {
            let status = response.status();
            let no_retry = response
                .headers()
                .get("x-slack-no-retry")
                .is_some_and(|v| v == "1");
            Delivery {
                status: Some(status.as_u16()),
                elapsed_ms,
                acknowledged: status.is_success(),
                no_retry,
                answer: response.json().await.unwrap_or(Value::Null),
            }
        }
        Err(_) => Delivery {
            status: None,
            elapsed_ms,
            acknowledged: false,
            no_retry: false,
            answer: Value::Null,
        },
    }
}

/// Delivers an `event_callback` with Slack's retries (same `event_id` every time); returns
/// the first attempt's result. Later attempts run in the background.
pub async fn deliver_event(shared: Arc<Shared>, url: String, envelope: Value) -> Delivery {
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    let first = deliver_signed(&shared, &url, body.clone(), "application/json", None).await;
    if !first.acknowledged && !first.no_retry {
        let delays = shared.config().slack_retry_delays.clone();
        let reason = if first.status.is_none() {
            "http_timeout"
        } else {
            "http_error"
        };
        tokio::spawn(async move {
            let mut reason = reason.to_owned();
            for (i, delay) in delays.iter().enumerate() {
                tokio::time::sleep(*delay).await;
                let attempt = deliver_signed(
                    &shared,
                    &url,
                    body.clone(),
                    "application/json",
                    Some((i as u32 + 1, &reason)),
                )
                .await;
                if attempt.acknowledged || attempt.no_retry {
                    return;
                }
                reason = if attempt.status.is_none() {
                    "http_timeout".to_owned()
                } else {
                    "http_error".to_owned()
                };
            }
        });
    }
    first
}

/// The `event_callback` envelope around `event`.
pub fn envelope(shared: &Shared, event: Value) -> Value {
    let world = lock(&shared.world);
    let ws = &world.workspace;
    let id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    json!({
        "token": "sandbox-verification-token", "team_id": ws.team_id, "enterprise_id": null, "api_app_id": "A0SANDBOX1",
        "event": event, "type": "event_callback", "event_id": format!("Ev{}", &id[..10]), "event_time": super::data::now(),
        "authorizations": [{ "enterprise_id": null, "team_id": ws.team_id, "user_id": ws.bot_user_id, "is_bot": true, "is_enterprise_install": false }],
        "is_ext_shared_channel": false, "event_context": format!("4-{}", &id[..16]),
    })
}
