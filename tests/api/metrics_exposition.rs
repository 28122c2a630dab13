//! `/metrics` as Prometheus's own tool reads it: the web process's metrics merged with a
//! worker in the same process (the demo) and a worker process of its own, checked by
//! `promtool check metrics`; every family once with its help, nothing counted twice, the
//! alerting counters present from 0, and a dead worker's series gone after their TTL.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::chaos::WorkerProcess;
use crate::helpers::{TestApp, TestWorker, eventually, spawn_app, worker_settings};

async fn scrape(app: &TestApp) -> String {
    app.metrics().await
}

fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/services.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success() && said.trim().is_empty(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_metrics_pass_promtool_count_once_and_drop_dead_workers() {
    let app = spawn_app().await;
    // A worker in this very process, as the demo runs it, and one of its own.
    let in_process = TestWorker::start(worker_settings(&app.env), campaign_sync::jobs::builtin());
    let mut env = app.env.clone();
    env.insert("DYNO".into(), "worker.7".into());
    let mut separate = WorkerProcess::spawn(&env);
    let _ = app.get("/healthz").await;
    eventually(
        Duration::from_secs(20),
        "the worker process's metrics",
        || async { scrape(&app).await.contains("process=\"worker.7-") },
    )
    .await;
    let text = scrape(&app).await;
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool check metrics:\n{said}\n---\n{text}");
    let mut seen = HashSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
        assert!(seen.insert(series.to_owned()), "{series} appears twice");
    }
    let own_published = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{process="))
        .count();
    assert_eq!(
        own_published, 0,
        "this process's metrics are not served again as a worker's"
    );
    for family in text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap_or(""))
    {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no help"
        );
    }
    for zero in [
        "upstream_rate_limited_seconds_total{service=\"mailjet\"} 0",
        "email_sends_total{status=\"dead\"} 0",
        "queue_jobs_total{queue=\"default\",job=\"process_email_queue\",outcome=\"dead\"} 0",
        "sync_runs_total{job=\"sync_mailjet_stats\",outcome=\"failed\"} 0",
    ] {
        assert!(text.contains(zero), "{zero} is there from the start");
    }
    separate.kill_9();
    eventually(
        Duration::from_secs(45),
        "the dead worker's series to expire",
        || async { !scrape(&app).await.contains("process=\"worker.7-") },
    )
    .await;
    in_process.stop().await;
}
