//! `campaign-sync chaos`: the service as it runs in production — a `web`, N `worker`s, the
//! sandbox for Mailjet and Slack, a Redis and a PostgreSQL of its own, each its own process
//! of this binary — driven through a seeded, reproducible schedule of faults, then checked:
//! every recipient accepted by Mailjet exactly once with a true status, every webhook event
//! stored once and applied once, every schedule tick run once, every process alive and
//! consuming. Exits 1 when an invariant fails.

pub mod cluster;
mod deployment;
mod invariants;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

pub use deployment::Deployment;
use invariants::{Phase, Report};
use scenarios::Scenario;

/// Options of `campaign-sync chaos`.
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Seed of the fault schedule (same seed, same schedule).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long to inject faults, per adapter (e.g. 90s, 10m), and at least one pass over the
    /// scenarios; then the run drains and checks.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Comma-separated scenarios, or `all`: kill-workers, redis-restart, redis-wipe,
    /// postgres-restart, rate-limit-storm, upstream-5xx, dropped-connections, lost-answers,
    /// latency, webhook-replay, poison.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub scenarios: Vec<String>,
    /// Which Mailjet adapter the service uses.
    #[arg(long, value_enum, default_value_t = AdapterChoice::Both)]
    pub adapter: AdapterChoice,
    /// Worker processes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub workers: u32,
    /// Recipients of each request (one request per scenario phase).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(10..=100_000))]
    pub recipients: u32,
    /// MAILJET_RATE_PER_SEC of the service (50 recipients per call).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rate: u32,
    /// Where the run keeps its databases and logs (a fresh temporary directory by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the directory (logs, data) after a run that passed.
    #[arg(long)]
    pub keep: bool,
}

/// `--adapter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdapterChoice {
    Rest,
    Agent,
    Both,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration such as 90s or 10m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{raw:?}: the unit is s, m or h")),
    }
}

/// Runs the harness; the exit code says whether every invariant held.
pub fn main(args: ChaosArgs) -> ExitCode {
    let scenarios = match Scenario::parse_list(&args.scenarios) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            eprintln!("no scenario given");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = crate::startup::runtime() else {
        return ExitCode::FAILURE;
    };
    // Ctrl-C or SIGTERM drops the run, and with it every process it started.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(args, scenarios) => outcome,
            () = crate::startup::shutdown_signal() => Err(anyhow::anyhow!("stopped by a signal; every process of the run was stopped")),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ChaosArgs, scenarios: Vec<Scenario>) -> anyhow::Result<bool> {
    let adapters: &[&str] = match args.adapter {
        AdapterChoice::Rest => &["rest"],
        AdapterChoice::Agent => &["agent"],
        AdapterChoice::Both => &["rest", "agent"],
    };
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!(
            "campaign-sync-chaos-{}",
            uuid::Uuid::new_v4().simple()
        )),
    };
    println!(
        "campaign-sync chaos: seed {}, {} s of faults per adapter, {} workers, {} recipients per phase, logs in {}",
        args.seed,
        args.duration.as_secs(),
        args.workers,
        args.recipients,
        root.display()
    );
    let mut reports = Vec::new();
    for adapter in adapters {
        let dir = root.join(adapter);
        std::fs::create_dir_all(&dir)?;
        let report = run_adapter(&args, &scenarios, adapter, &dir).await?;
        reports.push(report);
    }
    let passed = reports.iter().all(Report::passed);
    let text = report::render(&reports);
    println!("{text}");
    std::fs::write(root.join("report.md"), &text)?;
    if passed && !args.keep && args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        println!("logs and data kept in {}", root.display());
    }
    println!(
        "{}",
        if passed {
            "every invariant held"
        } else {
            "INVARIANTS FAILED"
        }
    );
    Ok(passed)
}

async fn run_adapter(
    args: &ChaosArgs,
    scenarios: &[Scenario],
    adapter: &str,
    dir: &std::path::Path,
) -> anyhow::Result<Report> {
    println!(
        "\n[{adapter}] starting postgres, redis, sandbox, web, {} workers",
        args.workers
    );
    let mut d = Deployment::start(args, adapter, dir).await?;
    let started = Instant::now();
    let mut phases = Vec::new();
    let mut order = scenarios.to_vec();
    d.rng.shuffle(&mut order);
    let mut next = 0;
    // At least one pass over every scenario, however short the duration.
    while started.elapsed() < args.duration || next < order.len() {
        let scenario = order[next % order.len()];
        next += 1;
        let phase = run_phase(&mut d, args, scenario, phases.len()).await?;
        println!(
            "[{adapter}] {:<20} {:>6} recipients  completed in {}  reconciled {}  event first {}  resent {}",
            scenario.name(),
            phase.recipients,
            phase.took.map_or("(later)".to_owned(), |t| format!(
                "{:.1} s",
                t.as_secs_f64()
            )),
            phase.reconciled,
            phase.event_first,
            phase.resent
        );
        phases.push(phase);
    }
    println!(
        "[{adapter}] faults over after {} s; draining",
        started.elapsed().as_secs()
    );
    let report = invariants::drain_and_check(&mut d, adapter, phases).await?;
    d.stop();
    Ok(report)
}

/// One phase: a new request, a fault once part of it has gone out, then its completion (or a
/// time limit: a request still open then is finished during the drain).
async fn run_phase(
    d: &mut Deployment,
    args: &ChaosArgs,
    scenario: Scenario,
    index: usize,
) -> anyhow::Result<Phase> {
    let before = d.sandbox_accepted().await.unwrap_or(0);
    let request = d.post_request(index, args.recipients).await?;
    let share = 0.15 + d.rng.f64() * 0.2;
    let target = before + (f64::from(args.recipients) * share) as u64;
    let wait_start = Instant::now();
    while d.sandbox_accepted().await.unwrap_or(0) < target
        && wait_start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scenarios::inject(d, scenario).await?;
    let limit = Instant::now() + Duration::from_secs(120);
    while Instant::now() < limit && !d.request_completed(request).await {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    invariants::phase_of(d, scenario, request, args.recipients).await
}
