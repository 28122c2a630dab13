//! Logging and metrics: one `init` for the process.
//!
//! Logs are JSON lines when `LOG_FORMAT=json` (production) and readable lines otherwise.
//! Metrics go to one Prometheus recorder, rendered by `GET /metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogSettings};

pub mod catalog;
mod exposition;
pub mod timeline;

pub use exposition::merge_expositions;

/// This process's identity in published metrics, so a scrape can leave out the copy of its
/// own metrics it published (the demo runs web and worker in one process).
pub static INSTANCE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global log subscriber. `RUST_LOG`, when set, overrides `log.level`.
/// Calling it again (tests build several apps in one process) does nothing.
pub fn init_logging(settings: &LogSettings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&settings.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // Already installed: keep the first one.
    drop(result);
}

/// The process's Prometheus recorder, installed on first use.
///
/// Histograms get buckets so that they render as Prometheus histograms; a background task
/// (started by [`spawn_upkeep`]) keeps the recorder's memory bounded.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is already global; ours still renders what it sees.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        } else {
            catalog::describe_and_zero();
        }
        handle
    })
}

/// Runs the recorder's periodic upkeep (drains histogram buffers) until the runtime stops.
pub fn spawn_upkeep() {
    let handle = prometheus().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Adds `label="value"` to every sample line of a Prometheus text exposition.
pub fn with_label(text: &str, label: &str, value: &str) -> String {
    let value = value.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            out.push_str(line);
        } else if let Some(brace) = line.find('{') {
            out.push_str(&line[..=brace]);
            out.push_str(&format!("{label}=\"{value}\","));
            out.push_str(&line[brace + 1..]);
        } else if let Some(space) = line.find(' ') {
            out.push_str(&line[..space]);
            out.push_str(&format!("{{{label}=\"{value}\"}}"));
            out.push_str(&line[space..]);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_added_to_every_sample() {
        let text = "# TYPE a counter\na 1\nb{x=\"y\"} 2\n";
        let labelled = with_label(text, "process", "worker.1");
        assert_eq!(
            labelled,
            "# TYPE a counter\na{process=\"worker.1\"} 1\nb{process=\"worker.1\",x=\"y\"} 2\n"
        );
    }
}
