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

/// The metric names an expression file mentions (families of this service).
fn mentioned(text: &str) -> HashSet<String> {
    const FAMILIES: [&str; 9] = [
        "sync_",
        "jobs_",
        "upstream_",
        "slack_",
        "email_",
        "webhook_",
        "queue_",
        "http_",
        "people_",
    ];
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| FAMILIES.iter().any(|f| w.starts_with(f)) && w.len() > 8)
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_shipped_alert_rules_and_grafana_dashboard_pass_promtool_and_name_only_exported_metrics()
 {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("docs/prometheus-alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tested = Command::new("promtool")
        .args(["test", "rules", "prometheus-alerts.test.yml"])
        .current_dir(root.join("docs"))
        .output()
        .expect("promtool");
    assert!(
        tested.status.success(),
        "promtool test rules (each rule fires when it should, and only then):\n{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    let app = spawn_app().await;
    let worker = TestWorker::start(worker_settings(&app.env), campaign_sync::jobs::builtin());
    let mut exported: HashSet<String> = HashSet::new();
    for _ in 0..200 {
        exported = scrape(&app)
            .await
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        if exported.contains("queue_tasks") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Labelled families appear once recorded: the catalog declares every one.
    let catalog = std::fs::read_to_string(root.join("src/telemetry/catalog.rs")).expect("catalog");
    exported.extend(
        catalog
            .split('"')
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_') && w.contains('_'))
            .map(str::to_owned),
    );
    let dashboard =
        std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).expect("dashboard");
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 12));
    for (file, text) in [
        ("alerts", std::fs::read_to_string(&rules).expect("rules")),
        ("dashboard", dashboard),
    ] {
        let names = mentioned(&text);
        assert!(names.len() >= 8, "{file}: {names:?}");
        let unknown: Vec<&String> = names.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the service does not export: {unknown:?}"
        );
    }
    worker.stop().await;
}
