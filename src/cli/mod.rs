//! The command line: one subcommand per process (the Procfile's lines) and the operator tools.
//!
//! Exit codes: 0 success, 1 failure at run time (or `doctor` found the deployment unusable),
//! 2 bad configuration or usage.

mod analytics;
mod audit;
mod import;
mod jobs;
mod people;
mod requests;
mod sandbox;
mod send;
mod tokens;
mod webhooks;

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Process, Settings};
use crate::{doctor, startup, store, telemetry};

/// Keeps a Campaign Manager in sync with Mailjet and Slack.
#[derive(Debug, Parser)]
#[command(name = "campaign-sync", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations (the Procfile's release phase). Safe to run twice at once.
    Migrate {
        /// Only print which migrations are applied; change nothing.
        #[arg(long, conflicts_with = "revert_to")]
        status: bool,
        /// Revert applied migrations newer than VERSION (0 reverts all). Destroys data.
        #[arg(long, value_name = "VERSION")]
        revert_to: Option<i64>,
        /// After migrating, also check that the configuration suits these processes, so that a
        /// release with bad config vars fails before it is deployed.
        #[arg(long, value_enum, value_name = "PROCESS")]
        check: Vec<CheckedProcess>,
    },
    /// Serve webhooks, the internal API, health checks and metrics on $PORT.
    Web,
    /// Run jobs and schedules.
    Worker,
    /// Check configuration, Postgres, Redis, credentials and each upstream (one real call
    /// each), and print a report.
    Doctor {
        /// The report as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Campaigns from the Campaign Manager: `campaigns import FILE.csv|json`.
    Campaigns {
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// Team members from the Campaign Manager: `team import FILE.csv|json`.
    Team {
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// Everything in one process on this machine: migrations, the sandbox with seeded data, web
    /// and worker with schedules sped up. Ctrl-C stops it.
    Demo,
    /// Run the service as separate processes (web, N workers, sandbox, its own Redis and
    /// PostgreSQL) under a seeded schedule of faults, then check that nothing was lost or
    /// duplicated. Exit 1 when an invariant fails.
    Chaos(crate::chaos::ChaosArgs),
    /// Run the upstream simulator (Mailjet agent and REST, Slack Web API) on a local port.
    Sandbox(sandbox::SandboxArgs),
    /// Send an email to the recipients of a file (like POST /api/email-requests).
    Send(send::SendArgs),
    /// Email requests: `requests list`, `requests show ID`.
    Requests {
        #[command(subcommand)]
        command: requests::RequestsCommand,
    },
    /// Webhook events that could not be used: list, show and replay them.
    Webhooks {
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Recompute the analytics (daily, weekly, monthly rollups) of a window of days.
    Rollup(analytics::RollupArgs),
    /// The engagement report of one period: every campaign's figures, as CSV or JSON.
    Report(analytics::ReportArgs),
    /// Schedules, queues, running a job now, dead letters.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// The audit trail: `audit tail [-n N] [--follow] [--action A] [--actor A] [--json]`.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Data-subject requests: `people show EMAIL`, `people erase EMAIL --yes`.
    People {
        #[command(subcommand)]
        command: people::PeopleCommand,
    },
    /// Secrets stored at rest (Slack's OAuth tokens): `tokens list`, `tokens reseal`.
    Tokens {
        #[command(subcommand)]
        command: tokens::TokensCommand,
    },
}

/// A process whose configuration `migrate --check` validates.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CheckedProcess {
    Web,
    Worker,
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Sandbox(args) = cli.command {
        return sandbox::main(args);
    }
    if let Command::Chaos(args) = cli.command {
        return crate::chaos::main(args);
    }
    if let Command::Demo = cli.command {
        return run_demo();
    }
    let process = match &cli.command {
        Command::Migrate { .. } => Process::Migrate,
        Command::Web => Process::Web,
        Command::Worker => Process::Worker,
        Command::Doctor { .. }
        | Command::Jobs { .. }
        | Command::Tokens { .. }
        | Command::People { .. }
        | Command::Audit { .. }
        | Command::Webhooks { .. }
        | Command::Requests { .. }
        | Command::Rollup(_)
        | Command::Report(_)
        | Command::Sandbox(_)
        | Command::Chaos(_)
        | Command::Demo => Process::Tool,
        Command::Campaigns { .. } | Command::Team { .. } | Command::Send(_) => Process::Migrate,
    };
    let settings = match config::load(process, &crate::jobs::schedulable()) {
        Ok(settings) => settings,
        Err(err) => {
            eprint!("{err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(&settings.log);
    let Some(runtime) = crate::startup::runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "command failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate {
            status,
            revert_to,
            check,
        } => migrate(settings, status, revert_to, &check).await,
        Command::Web => {
            let stop = startup::shutdown_signal();
            let app = startup::Application::build(settings).await?;
            tracing::info!(port = app.port(), "web server listening");
            app.run_until_stopped(stop).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker => {
            startup::run_worker(settings, startup::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { command } => jobs::run(settings, command).await,
        Command::Tokens { command } => tokens::run(settings, command).await,
        Command::People { command } => people::run(settings, command).await,
        Command::Audit { command } => audit::run(settings, command).await,
        Command::Webhooks { command } => webhooks::run(settings, command).await,
        Command::Requests { command } => requests::run(settings, command).await,
        Command::Send(args) => send::run(settings, args).await,
        Command::Rollup(args) => analytics::rollup(settings, args).await,
        Command::Report(args) => analytics::report(settings, args).await,
        Command::Sandbox(_) | Command::Chaos(_) | Command::Demo => Ok(ExitCode::SUCCESS),
        Command::Campaigns { command } => {
            import::run(settings, import::Kind::Campaigns, command).await
        }
        Command::Team { command } => {
            import::run(settings, import::Kind::TeamMembers, command).await
        }
        Command::Doctor { json } => {
            let env: HashMap<String, String> = std::env::vars().collect();
            let report = doctor::run(&settings, &env).await;
            if json {
                println!("{}", report.to_json());
            } else {
                print!("campaign-sync doctor\n{}", report.render());
            }
            Ok(if report.usable() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `migrate --status`: every migration and whether it is applied.
async fn print_migrations(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let (states, unknown) = store::migration_status(pool)
        .await
        .context("cannot read the migration table")?;
    for m in &states {
        let state = match (&m.problem, m.applied) {
            (Some(p), _) => p.as_str(),
            (None, true) => "applied",
            (None, false) => "pending",
        };
        println!("{} {:<40} {state}", m.version, m.description);
    }
    for v in unknown {
        println!("{v} (not in this binary)                   applied");
    }
    Ok(())
}

async fn migrate(
    settings: Settings,
    status: bool,
    revert_to: Option<i64>,
    check: &[CheckedProcess],
) -> anyhow::Result<ExitCode> {
    let pool = store::pool(&settings.database, "migrate")?;
    if status {
        print_migrations(&pool).await?;
        return Ok(ExitCode::SUCCESS);
    }
    // sqlx takes a Postgres advisory lock around the run, so two releases migrating at
    // once apply each migration exactly once.
    match revert_to {
        Some(target) => {
            store::MIGRATOR
                .undo(&pool, target)
                .await
                .context("reverting migrations failed")?;
            println!("reverted migrations newer than {target}");
        }
        None => {
            store::MIGRATOR
                .run(&pool)
                .await
                .context("applying migrations failed")?;
            let (states, _) = store::migration_status(&pool).await?;
            println!(
                "migrations up to date ({} applied)",
                states.iter().filter(|m| m.applied).count()
            );
        }
    }
    pool.close().await;
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut bad = false;
    for process in check {
        let (p, name) = match process {
            CheckedProcess::Web => (Process::Web, "web"),
            CheckedProcess::Worker => (Process::Worker, "worker"),
        };
        if let Err(err) = config::load_from(&env, p, &crate::jobs::schedulable()) {
            eprint!("configuration for {name}: {err}");
            bad = true;
        }
    }
    Ok(if bad {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_demo() -> ExitCode {
    let Some(runtime) = crate::startup::runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(crate::demo::run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.to_string().starts_with("invalid configuration") {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
