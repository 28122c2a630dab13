//! Build the processes from settings, then run them until stopped (SIGTERM or Ctrl-C).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Settings;
use crate::redis_conn::{self, Keys};
use crate::state::AppState;
use crate::{store, telemetry};

/// The web process, bound to its port and ready to serve.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
}

impl Application {
    /// Binds `server.host:server.port` (port 0 picks a free port) and builds the router.
    /// Postgres and Redis are connected lazily: the server starts while they are down and
    /// `/readyz` says so.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let state = app_state(settings, "web")?;
        let server = &state.settings.server;
        let listener = TcpListener::bind((server.host, server.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", server.host, server.port))?;
        let router = crate::router::router(state.clone());
        Ok(Application {
            listener,
            router,
            state,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The shared state (tests use its pool and Redis connection).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish for at most
    /// `server.shutdown_timeout` before returning.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grace = self.state.settings.server.shutdown_timeout;
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut serve_rx = stop_rx.clone();
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            let _ = serve_rx.wait_for(|stop| *stop).await;
            tracing::info!("shutdown requested; finishing in-flight requests");
        });
        let mut deadline_rx = stop_rx;
        let deadline = async move {
            let _ = deadline_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result.context("web server failed")?,
            () = deadline => tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after the grace period; closing"),
        }
        tracing::info!("web server stopped");
        Ok(())
    }
}

/// Pool, Redis connection, key builder and metrics handle for a process.
pub fn app_state(settings: Settings, process: &str) -> anyhow::Result<AppState> {
    let db = store::pool(&settings.database, process)?;
    let redis = redis_conn::connection(&settings.redis)?;
    let keys = Keys::new(settings.redis.key_prefix.clone());
    let prometheus = telemetry::prometheus().clone();
    telemetry::spawn_upkeep();
    Ok(AppState {
        settings: Arc::new(settings),
        db,
        redis,
        keys,
        prometheus,
    })
}

/// The worker process: every built-in job type and schedule (see `crate::worker`).
pub async fn run_worker(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::worker::run(settings, crate::jobs::builtin(), shutdown).await
}

/// Completes on SIGTERM (Heroku's stop signal) or SIGINT (Ctrl-C).
///
/// The handlers are installed when this is called (not when the future is first polled), so a
/// signal that arrives while the process is still starting up is not lost to the default
/// action. Call it inside the runtime, before starting work.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    async move {
        let term = async {
            match terminate.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let int = async {
            match interrupt.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = int => tracing::info!("SIGINT received"),
            () = term => tracing::info!("SIGTERM received"),
        }
    }
}

/// Completes on Ctrl-C (platforms without Unix signals).
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The multi-threaded runtime every command runs on (None, with the reason printed, if it
/// cannot start).
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            None
        }
    }
}
