//! `campaign-sync audit tail`: the newest audit entries, filtered, and with `--follow` the new
//! ones as they are written (polled each second; entries committed late, out of id order, are
//! caught by re-reading the last few hundred ids).

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use crate::config::Settings;
use crate::store;
use crate::store::audit::{self, Entry, Filter};

/// How far back a follow re-reads for entries committed out of id order.
const LATE_WINDOW: i64 = 500;

/// What `audit` does.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest entries, oldest of them first; `--follow` keeps printing new ones.
    Tail {
        /// How many to show first.
        #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        lines: i64,
        /// Keep printing entries as they are written (Ctrl-C stops).
        #[arg(short, long)]
        follow: bool,
        /// Only this action (e.g. slack.post).
        #[arg(long)]
        action: Option<String>,
        /// Only this actor (e.g. api, worker, dashboard:admin:Ops).
        #[arg(long)]
        actor: Option<String>,
        /// One JSON object per line instead of columns.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `audit` command.
pub async fn run(settings: Settings, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let db = store::pool(&settings.database, "cli")?;
    let AuditCommand::Tail {
        lines,
        follow,
        action,
        actor,
        json,
    } = command;
    let filter = Filter {
        action,
        actor,
        ..Filter::default()
    };
    let mut first = audit::page(&db, &filter, lines).await?;
    first.reverse();
    let mut seen: BTreeSet<i64> = BTreeSet::new();
    for entry in &first {
        print_entry(entry, json);
        seen.insert(entry.id);
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut last = audit::page(&db, &Filter::default(), 1)
        .await?
        .first()
        .map_or(0, |e| e.id);
    // What exists now was shown (or filtered out) already.
    seen.extend(
        audit::since_id(&db, last - LATE_WINDOW, 10_000)
            .await?
            .iter()
            .map(|e| e.id),
    );
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for entry in audit::since_id(&db, last - LATE_WINDOW, 10_000).await? {
            last = last.max(entry.id);
            if !seen.insert(entry.id) || !matches(&filter, &entry) {
                continue;
            }
            print_entry(&entry, json);
        }
        while seen.len() > (4 * LATE_WINDOW) as usize {
            seen.pop_first();
        }
    }
}

fn matches(f: &Filter, e: &Entry) -> bool {
    f.action.as_ref().is_none_or(|a| *a == e.action)
        && f.actor.as_ref().is_none_or(|a| *a == e.actor)
}

fn print_entry(e: &Entry, json: bool) {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
        return;
    }
    let subject = match &e.entity_id {
        Some(id) => format!("{}/{id}", e.entity_type),
        None => e.entity_type.clone(),
    };
    let request = e
        .request_id
        .as_deref()
        .map(|r| format!(" request={r}"))
        .unwrap_or_default();
    println!(
        "{} #{} {:<6} {:<24} {:<28} {subject}{request} {}",
        e.occurred_at.format("%Y-%m-%dT%H:%M:%SZ"),
        e.id,
        e.outcome,
        e.actor,
        e.action,
        e.details.0
    );
}
