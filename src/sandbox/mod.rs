//! The sandbox: a faithful local Mailjet (MCP agent, REST v3, Send v3.1, event webhooks) and
//! Slack Web API (with signed events and interactions), shipped in the binary. Tests, the demo
//! and the benchmarks run against it; nothing here talks to the real services.
//!
//! Surfaces (one HTTP server):
//! - Mailjet REST: `/v3/REST/*`, `POST /v3.1/send` (Basic auth) — `MAILJET_API_URL` = base URL.
//! - Mailjet MCP agent: `POST /mailjet/*` (HS256 JWT) — `MAILJET_MCP_URL` = base URL.
//!   Contract: `docs/mailjet-agent.md`.
//! - Slack Web API: `/api/<method>` — `SLACK_API_URL` = base URL + `/api`.
//! - Control: `/_sandbox/*` (reset, faults, sends, requests, Slack callbacks).

// Handlers answer errors in each upstream's own shape, so their helpers return a Response as
// the error: it is not worth boxing in a simulator.
#![allow(clippy::result_large_err)]

mod callbacks;
mod clicks;
mod commands;
mod control;
pub mod data;
mod faults;
mod mailjet;
mod slack;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use callbacks::slack_signature;
pub use data::SeedSpec;
use data::World;

/// Everything configurable about the sandbox. Behaviours the reference marks as unverified
/// are settings here.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Generated data.
    pub seed: SeedSpec,
    /// Mailjet API key (Basic auth user).
    pub mailjet_api_key: String,
    /// Mailjet API secret (Basic auth password).
    pub mailjet_api_secret: String,
    /// Secret the agent's JWTs must be signed with (`MAILJET_MCP_TOKEN`).
    pub mcp_token: String,
    /// Expected `sub` of agent JWTs (`MAILJET_AGENT_ID`).
    pub agent_id: String,
    /// Mailjet's per-key requests per second (unpublished upstream); None = unlimited.
    pub mailjet_rate_per_sec: Option<u32>,
    /// Whether Mailjet's 429 carries `Retry-After` (undocumented upstream).
    pub mailjet_retry_after: bool,
    /// Receiver of Mailjet events, with Basic-auth credentials in the URL's userinfo.
    pub mailjet_webhook_url: Option<String>,
    /// Mailjet's `IsBackup` URL, used while the primary is suspended.
    pub mailjet_webhook_backup_url: Option<String>,
    /// Consecutive failed deliveries after which the primary URL is suspended.
    pub mailjet_suspend_after: u32,
    /// How long Mailjet waits for the receiver (unpublished upstream).
    pub mailjet_webhook_timeout: Duration,
    /// Grouped (v2: arrays of the events of the last window) or one event per POST (v1).
    pub mailjet_webhook_grouped: bool,
    /// Grouping window of v2 deliveries.
    pub mailjet_group_window: Duration,
    /// Interval between retries of a failed delivery (Mailjet: 30 s).
    pub mailjet_retry_interval: Duration,
    /// Retries stop this long after the first failure (Mailjet: 24 h).
    pub mailjet_retry_for: Duration,
    /// Delay between acceptance and the `sent` event.
    pub event_delay: Duration,
    /// Probabilities of each follow-up event for a delivered message.
    pub event_rates: EventRates,
    /// Static Slack bot token accepted without rotation.
    pub slack_bot_token: String,
    /// Slack signing secret used for events and interactions.
    pub slack_signing_secret: String,
    /// Slack OAuth app credentials.
    pub slack_client_id: String,
    pub slack_client_secret: String,
    /// Lifetime of rotated access tokens (Slack: 12 h).
    pub slack_token_ttl: Duration,
    /// Requests per minute of Slack tiers 1–4 (Slack: 1+, 20+, 50+, 100+).
    pub slack_tiers_per_minute: [u32; 4],
    /// Messages per second per channel for chat.postMessage (Slack: about 1).
    pub slack_post_per_channel_per_sec: u32,
    /// Receiver of Slack events (`/webhooks/slack/events`).
    pub slack_events_url: Option<String>,
    /// Receiver of Slack interactions (`/webhooks/slack/interactions`).
    pub slack_interactions_url: Option<String>,
    /// Receiver of slash commands (`/webhooks/slack/commands`).
    pub slack_commands_url: Option<String>,
    /// Delays of Slack's event retries (Slack: at once, +1 min, +5 min).
    pub slack_retry_delays: Vec<Duration>,
    /// Slack waits this long for an acknowledgement (3 s).
    pub slack_ack_timeout: Duration,
    /// Longest channel name (unverified upstream; 80 is commonly cited).
    pub slack_channel_name_max: usize,
    /// Sometimes return fewer items than `limit` while more pages exist (Slack may).
    pub slack_short_pages: bool,
    /// Uses allowed per `response_url` and for how long (Slack: 5 within 30 min).
    pub slack_response_url_uses: u32,
    pub slack_response_url_ttl: Duration,
}

/// Probabilities of follow-up events per delivered message.
#[derive(Debug, Clone, Copy)]
pub struct EventRates {
    pub open: f64,
    pub click: f64,
    pub bounce: f64,
    pub spam: f64,
    pub blocked: f64,
    pub unsub: f64,
}

impl Default for EventRates {
    fn default() -> Self {
        EventRates {
            open: 0.4,
            click: 0.1,
            bounce: 0.02,
            spam: 0.005,
            blocked: 0.01,
            unsub: 0.01,
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            seed: SeedSpec::default(),
            mailjet_api_key: "sandbox-key".to_owned(),
            mailjet_api_secret: "sandbox-secret".to_owned(),
            mcp_token: "sandbox-mcp-signing-secret".to_owned(),
            agent_id: "campaign-manager-client".to_owned(),
            mailjet_rate_per_sec: None,
            mailjet_retry_after: true,
            mailjet_webhook_url: None,
            mailjet_webhook_backup_url: None,
            mailjet_suspend_after: 100,
            mailjet_webhook_timeout: Duration::from_secs(10),
            mailjet_webhook_grouped: true,
            mailjet_group_window: Duration::from_secs(1),
            mailjet_retry_interval: Duration::from_secs(30),
            mailjet_retry_for: Duration::from_secs(24 * 3600),
            event_delay: Duration::from_millis(200),
            event_rates: EventRates::default(),
            slack_bot_token: "sandbox-bot-token".to_owned(),
            slack_signing_secret: "sandbox-signing-secret".to_owned(),
            slack_client_id: "1111.2222".to_owned(),
            slack_client_secret: "sandbox-client-secret".to_owned(),
            slack_token_ttl: Duration::from_secs(43_200),
            slack_tiers_per_minute: [1, 20, 50, 100],
            slack_post_per_channel_per_sec: 1,
            slack_events_url: None,
            slack_interactions_url: None,
            slack_commands_url: None,
            slack_retry_delays: vec![
                Duration::ZERO,
                Duration::from_secs(60),
                Duration::from_secs(300),
            ],
            slack_ack_timeout: Duration::from_secs(3),
            slack_channel_name_max: 80,
            slack_short_pages: false,
            slack_response_url_uses: 5,
            slack_response_url_ttl: Duration::from_secs(1800),
        }
    }
}

/// What the sandbox recorded of one accepted message (for loss/duplicate checks).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SendRecord {
    /// The message's CustomID.
    pub custom_id: String,
    /// The recipient.
    pub email: String,
    /// How many times Send accepted it (1 is right; more is a duplicate).
    pub accepted: u32,
    /// Whether it was sent in SandboxMode.
    pub sandbox_mode: bool,
}

/// Shared state of a running sandbox.
pub(crate) struct Shared {
    config: Mutex<Arc<SandboxConfig>>,
    world: Mutex<World>,
    sends: Mutex<BTreeMap<(String, String), SendRecord>>,
    requests: Mutex<HashMap<String, faults::EndpointStats>>,
    faults: Mutex<Vec<faults::Fault>>,
    limits: Mutex<faults::LimitState>,
    tokens: Mutex<slack::Tokens>,
    response_urls: Mutex<HashMap<String, ResponseUrl>>,
    own_addr: Mutex<Option<SocketAddr>>,
    events: mpsc::UnboundedSender<callbacks::MailjetEvent>,
    /// Mailjet events emitted, delivered (acknowledged 200) and dropped (retries given up).
    event_counts: Mutex<callbacks::EventCounts>,
    http: reqwest::Client,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a sandbox lock leaves plain data behind: keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// The current configuration (cheap: shared, replaced on change).
    pub(crate) fn config(&self) -> Arc<SandboxConfig> {
        lock(&self.config).clone()
    }
}

/// A running sandbox.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Sandbox {
    /// Starts the sandbox on `addr` (port 0 picks a free port) in the current runtime.
    pub async fn start(config: SandboxConfig, addr: SocketAddr) -> anyhow::Result<Sandbox> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent("campaign-sync-sandbox")
            .build()?;
        let shared = Arc::new(Shared {
            world: Mutex::new(World::seeded(&config.seed)),
            config: Mutex::new(Arc::new(config)),
            sends: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            limits: Mutex::new(faults::LimitState::default()),
            tokens: Mutex::new(slack::Tokens::default()),
            response_urls: Mutex::new(HashMap::new()),
            own_addr: Mutex::new(Some(addr)),
            events: events_tx,
            event_counts: Mutex::new(callbacks::EventCounts::default()),
            http,
        });
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(callbacks::run_mailjet_emitter(
            shared.clone(),
            events_rx,
            stop_rx.clone(),
        ));
        let app = router(shared.clone());
        let mut serve_stop = stop_rx;
        tokio::spawn(async move {
            let server = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = serve_stop.wait_for(|s| *s).await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "sandbox server failed");
            }
        });
        Ok(Sandbox { addr, shared, stop })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: `MAILJET_API_URL` and `MAILJET_MCP_URL`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// `SLACK_API_URL`.
    pub fn slack_api_url(&self) -> String {
        format!("{}/api", self.base_url())
    }

    /// Changes the configuration of the running sandbox (e.g. where callbacks go).
    pub fn configure(&self, change: impl FnOnce(&mut SandboxConfig)) {
        let mut config = lock(&self.shared.config);
        change(Arc::make_mut(&mut config));
    }

    /// Every message Send accepted.
    pub fn sends(&self) -> Vec<SendRecord> {
        lock(&self.shared.sends).values().cloned().collect()
    }

    /// Stops serving.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .merge(mailjet::routes())
        .merge(slack::routes())
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            faults::apply,
        ))
        .merge(control::routes())
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": "no such sandbox route"})),
            )
        })
        .with_state(shared)
}

/// A `response_url` handed out with an interaction.
#[derive(Debug, Clone)]
pub struct ResponseUrl {
    channel: String,
    user: String,
    message_ts: String,
    uses: u32,
    expires: std::time::Instant,
}

/// A 400 of the control API, `{error}`.
fn bad_request(message: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
