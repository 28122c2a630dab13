//! `campaign-sync jobs …`: schedules, queues, running a job now, and dead letters.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use crate::config::Settings;
use crate::jobs;
use crate::queue::job::Registry;
use crate::queue::{EnqueueOptions, Queue, dead};
use crate::{redis_conn, scheduler, store, worker};

/// What `jobs` does.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Every schedule (cron, next run, last outcome) and every queue's sizes and counters.
    List,
    /// Enqueue a job now.
    Run {
        /// The job's name (see `jobs list`).
        name: String,
        /// Arguments as JSON.
        #[arg(long, default_value = "null")]
        args: String,
    },
    /// Dead letters: tasks that failed for good.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
}

/// What `jobs dead` does.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// The newest dead tasks of every queue.
    List {
        /// How many per queue.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One dead task in full.
    Show { id: String },
    /// Send one dead task (or all) back to its queue with its attempts reset.
    Retry {
        /// The task's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every dead task of every queue.
        #[arg(long)]
        all: bool,
    },
    /// Delete every dead task.
    Purge,
}

/// Runs a `jobs` command.
pub async fn run(settings: Settings, command: JobsCommand) -> anyhow::Result<ExitCode> {
    let registry = jobs::builtin();
    let conn = redis_conn::connection(&settings.redis)?;
    let queues = worker::queues(&settings, &conn, &registry);
    match command {
        JobsCommand::List => list(&settings, &registry, &queues).await,
        JobsCommand::Run { name, args } => run_now(&registry, &queues, &name, &args).await,
        JobsCommand::Dead { command } => dead_command(&queues, command).await,
    }
}

async fn list(
    settings: &Settings,
    registry: &Registry,
    queues: &BTreeMap<String, Queue>,
) -> anyhow::Result<ExitCode> {
    let last = last_runs(settings).await;
    println!(
        "{:<26} {:<18} {:<22} LAST RUN",
        "SCHEDULE", "CRON (UTC)", "NEXT RUN"
    );
    for (job, schedule) in &settings.schedules {
        let next = match (registry.get(job), scheduler::next_run(schedule)) {
            (None, _) => "not in this build".to_owned(),
            (Some(_), Some(next)) => next.format("%Y-%m-%d %H:%M:%S").to_string(),
            (Some(_), None) => "off".to_owned(),
        };
        let last = last.get(job).cloned().unwrap_or_else(|| "never".to_owned());
        println!("{job:<26} {:<18} {next:<22} {last}", schedule.expression);
    }
    println!();
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>9}",
        "QUEUE", "WAITING", "IN FLIGHT", "DELAYED", "DEAD"
    );
    let mut per_job = Vec::new();
    for (name, queue) in queues {
        let counts = queue
            .counts()
            .await
            .context("cannot read the queue from Redis")?;
        println!(
            "{name:<12} {:>9} {:>9} {:>9} {:>9}",
            counts.waiting, counts.in_flight, counts.delayed, counts.dead
        );
        per_job.push(counts);
    }
    print_job_totals(registry, &per_job);
    Ok(ExitCode::SUCCESS)
}

/// Each job's totals across queues and workers, from the queues' counters.
fn print_job_totals(registry: &Registry, per_job: &[crate::queue::QueueCounts]) {
    println!();
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10}",
        "JOB", "ENQUEUED", "SUCCEEDED", "RETRIED", "DEAD"
    );
    for spec in registry.jobs() {
        let counter = |name: &str| {
            per_job
                .iter()
                .map(|c| {
                    c.counters
                        .get(&format!("{name}:{}", spec.name))
                        .copied()
                        .unwrap_or(0)
                })
                .sum::<u64>()
        };
        println!(
            "{:<26} {:>10} {:>10} {:>10} {:>10}",
            spec.name,
            counter("enqueued"),
            counter("succeeded"),
            counter("retried"),
            counter("dead")
        );
    }
}

/// The last run of each job from `sync_runs`, as text; empty when Postgres is unreachable.
async fn last_runs(settings: &Settings) -> BTreeMap<String, String> {
    let Ok(pool) = store::pool(&settings.database, "cli") else {
        return BTreeMap::new();
    };
    let rows = crate::store::sync_runs::latest_per_job(&pool)
        .await
        .unwrap_or_default();
    rows.into_iter()
        .map(|(job, status, at, error)| {
            let mut text = format!("{status} at {}", at.format("%Y-%m-%d %H:%M:%S"));
            if let Some(error) = error {
                text.push_str(&format!(" ({error})"));
            }
            (job, text)
        })
        .collect()
}

async fn run_now(
    registry: &Registry,
    queues: &BTreeMap<String, Queue>,
    name: &str,
    args: &str,
) -> anyhow::Result<ExitCode> {
    let Some(spec) = registry.get(name) else {
        let names: Vec<&str> = registry.jobs().map(|j| j.name.as_str()).collect();
        if jobs::find(name).is_some() {
            eprintln!(
                "{name} is a job of the product that is not in this build yet (jobs list shows it as such); jobs that can run: {}",
                names.join(", ")
            );
            return Ok(ExitCode::from(2));
        }
        eprintln!("unknown job {name:?}; valid names: {}", names.join(", "));
        return Ok(ExitCode::from(2));
    };
    let args: Value = match serde_json::from_str(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("--args is not valid JSON: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let queue = queues
        .get(&spec.queue)
        .context("the job's queue is missing")?;
    let options = EnqueueOptions {
        trigger: Some("manual".to_owned()),
        ..EnqueueOptions::default()
    };
    let enqueued = queue
        .enqueue(name, args, options)
        .await
        .context("cannot enqueue")?;
    println!("enqueued {name} on queue {} as {}", spec.queue, enqueued.id);
    Ok(ExitCode::SUCCESS)
}

/// Milliseconds since the epoch as an RFC 3339 time in UTC.
fn utc(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
}

/// `jobs dead list`: every queue's dead tasks, newest first.
async fn list_dead(queues: &BTreeMap<String, Queue>, limit: usize) -> anyhow::Result<ExitCode> {
    println!(
        "{:<38} {:<10} {:<26} {:<20} REASON",
        "ID", "QUEUE", "JOB", "DIED (UTC)"
    );
    for (name, queue) in queues {
        for task in dead::list(queue, 0, limit).await? {
            let died = chrono::DateTime::from_timestamp_millis(task.died_at)
                .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            println!(
                "{:<38} {name:<10} {:<26} {died:<20} {}",
                task.id,
                task.job.as_deref().unwrap_or("?"),
                task.reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `jobs dead show ID`: the dead task with its times in UTC.
async fn show_dead(queues: &BTreeMap<String, Queue>, id: &str) -> anyhow::Result<ExitCode> {
    for (name, queue) in queues {
        if let Some(task) = dead::get(queue, id).await? {
            let mut shown = serde_json::to_value(&task)?;
            shown["queue"] = Value::String(name.clone());
            shown["died"] = utc(task.died_at);
            if let Some(decoded) = task.task() {
                shown["task"] = serde_json::to_value(decoded)?;
                for field in ["enqueued_at", "scheduled_for"] {
                    if let Some(ms) = shown["task"][field].as_i64() {
                        shown["task"][field.replace("_at", "").replace("_for", "_tick")] = utc(ms);
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
            return Ok(ExitCode::SUCCESS);
        }
    }
    eprintln!("no dead task {id:?}");
    Ok(ExitCode::FAILURE)
}

async fn dead_command(
    queues: &BTreeMap<String, Queue>,
    command: DeadCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        DeadCommand::List { limit } => list_dead(queues, limit).await,
        DeadCommand::Show { id } => show_dead(queues, &id).await,
        DeadCommand::Retry { id: Some(id), .. } => {
            for queue in queues.values() {
                if dead::retry(queue, &id).await? {
                    println!("sent {id} back to queue {}", queue.keys().name());
                    return Ok(ExitCode::SUCCESS);
                }
            }
            eprintln!("no dead task {id:?}");
            Ok(ExitCode::FAILURE)
        }
        DeadCommand::Retry { id: None, .. } => {
            let mut total = 0;
            for queue in queues.values() {
                total += dead::retry_all(queue).await?;
            }
            println!("sent {total} dead tasks back to their queues");
            Ok(ExitCode::SUCCESS)
        }
        DeadCommand::Purge => {
            let mut total = 0;
            for queue in queues.values() {
                total += dead::purge(queue).await?;
            }
            println!("deleted {total} dead tasks");
            Ok(ExitCode::SUCCESS)
        }
    }
}
