//! `campaign-sync webhooks …`: the events a delivery carried that could not be used, kept
//! with their bytes and reason, to list, inspect and replay.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use crate::config::Settings;
use crate::jobs::process_webhook_events::{NAME as PROCESS_JOB, QUEUE};
use crate::queue::{EnqueueOptions, Queue};
use crate::store::webhook_events;
use crate::webhooks::replay::{self, Replayed};
use crate::{redis_conn, store};

/// What `webhooks` does.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Rejected events, newest first (not replayed yet, unless --all).
    Rejected {
        /// How many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        /// Also those already replayed.
        #[arg(long)]
        all: bool,
    },
    /// One rejected event in full, with its bytes as received.
    Show { id: i64 },
    /// Check a rejected event again and store it if it is now an event (or every one).
    Replay {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every rejected event not replayed yet.
        #[arg(long)]
        all: bool,
    },
}

/// Runs a `webhooks` command.
pub async fn run(settings: Settings, command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    let db = store::pool(&settings.database, "cli")?;
    match command {
        WebhooksCommand::Rejected { limit, all } => list(&db, limit, all).await,
        WebhooksCommand::Show { id } => show(&db, id).await,
        WebhooksCommand::Replay { id, all } => {
            let ids = match id {
                Some(id) => vec![id],
                None if all => open_ids(&db).await?,
                None => Vec::new(),
            };
            replay_all(&settings, &db, &ids).await
        }
    }
}

async fn list(db: &sqlx::PgPool, limit: i64, all: bool) -> anyhow::Result<ExitCode> {
    let rows = webhook_events::list_rejections(db, limit, None, all)
        .await
        .context("cannot read the rejected events")?;
    println!(
        "{:<8} {:<10} {:<20} {:<16} REASON",
        "ID", "SOURCE", "RECEIVED (UTC)", "REPLAYED"
    );
    for r in &rows {
        let replayed = r.replay_outcome.as_deref().unwrap_or("-");
        let received = r.received_at.format("%Y-%m-%d %H:%M:%S");
        println!(
            "{:<8} {:<10} {received:<20} {replayed:<16} {}",
            r.id, r.source, r.reason
        );
    }
    println!("{} rejected events shown", rows.len());
    Ok(ExitCode::SUCCESS)
}

async fn show(db: &sqlx::PgPool, id: i64) -> anyhow::Result<ExitCode> {
    match webhook_events::rejection(db, id).await? {
        Some(r) => {
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("no rejected event {id}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn open_ids(db: &sqlx::PgPool) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut before = None;
    loop {
        let page = webhook_events::list_rejections(db, 1000, before, false).await?;
        let Some(last) = page.last() else {
            return Ok(ids);
        };
        before = Some(last.id);
        ids.extend(page.iter().map(|r| r.id));
    }
}

async fn replay_all(
    settings: &Settings,
    db: &sqlx::PgPool,
    ids: &[i64],
) -> anyhow::Result<ExitCode> {
    let mut stored = Vec::new();
    let mut failed = false;
    for &id in ids {
        let outcome = replay::replay(db, id).await?;
        match &outcome {
            Replayed::Stored(event) => {
                println!("{id}: stored as event {event}");
                stored.push(*event);
            }
            Replayed::Duplicate => println!("{id}: already stored; nothing new"),
            Replayed::AlreadyReplayed => println!("{id}: replayed before"),
            Replayed::StillRejected(why) => println!("{id}: still rejected: {why}"),
            Replayed::NotFound => {
                println!("{id}: no such rejected event");
                failed = true;
            }
        }
    }
    if !stored.is_empty() {
        kick(settings, &stored).await;
    }
    println!("{} replayed, {} stored", ids.len(), stored.len());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Processing is kicked now; if Redis is unreachable the worker's sweeper picks the rows up.
async fn kick(settings: &Settings, ids: &[i64]) {
    let enqueued = async {
        let conn = redis_conn::connection(&settings.redis)?;
        let queue = Queue::new(conn, &settings.redis.key_prefix, QUEUE);
        let options = EnqueueOptions {
            trigger: Some("replay".to_owned()),
            ..Default::default()
        };
        queue
            .enqueue(PROCESS_JOB, json!({ "ids": ids }), options)
            .await?;
        anyhow::Ok(())
    };
    if let Err(e) = enqueued.await {
        eprintln!("stored; processing will be picked up by the worker's sweeper ({e:#})");
    }
}
