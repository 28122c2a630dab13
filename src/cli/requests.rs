//! `campaign-sync requests …`: email requests as the API shows them, from the command line.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Settings;
use crate::store::{self, email_requests};

/// What `requests` does.
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// Requests, newest first.
    List {
        /// Only this campaign's.
        #[arg(long)]
        campaign: Option<String>,
        /// Only those in this status (accepted, sending, completed).
        #[arg(long, value_parser = email_requests::REQUEST_STATUSES)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=200))]
        limit: i64,
    },
    /// One request: its counts per status and its recipients that are not sent.
    Show {
        /// The request id (`send` and the API print it).
        id: uuid::Uuid,
        /// Recipients to show (failed, dead, pending and sending first).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(0..=1000))]
        recipients: i64,
    },
}

/// Runs a `requests` command.
pub async fn run(settings: Settings, command: RequestsCommand) -> anyhow::Result<ExitCode> {
    let db = store::pool(&settings.database, "cli")?;
    match command {
        RequestsCommand::List {
            campaign,
            status,
            limit,
        } => {
            let (items, more) =
                email_requests::list(&db, campaign.as_deref(), status.as_deref(), None, limit)
                    .await
                    .context("cannot read the requests")?;
            println!(
                "{:<38} {:<20} {:>10} {:<10} {:<20} COMPLETED",
                "ID", "CAMPAIGN", "RECIPIENTS", "STATUS", "CREATED (UTC)"
            );
            for r in &items {
                let done = r.completed_at.map_or("-".to_owned(), |t| {
                    t.format("%Y-%m-%d %H:%M:%S").to_string()
                });
                let created = r.request.created_at.format("%Y-%m-%d %H:%M:%S");
                println!(
                    "{:<38} {:<20} {:>10} {:<10} {created:<20} {done}",
                    r.request.id, r.request.campaign_id, r.request.recipients, r.status
                );
            }
            if more.is_some() {
                println!("(more: --limit or GET /api/email-requests?before=…)");
            }
            Ok(ExitCode::SUCCESS)
        }
        RequestsCommand::Show { id, recipients } => show(&db, id, recipients).await,
    }
}

async fn show(db: &sqlx::PgPool, id: uuid::Uuid, recipients: i64) -> anyhow::Result<ExitCode> {
    let Some(view) = email_requests::view(db, id, None, 1, None).await? else {
        eprintln!("no email request {id}");
        return Ok(ExitCode::FAILURE);
    };
    let r = &view.request;
    println!("request   {}", r.id);
    println!(
        "campaign  {}   template {}   test mode {}",
        r.campaign_id, r.template_id, r.test_mode
    );
    println!(
        "created   {}   scheduled {}",
        r.created_at.to_rfc3339(),
        r.scheduled_at.map_or("-".to_owned(), |t| t.to_rfc3339())
    );
    println!(
        "status    {}   completed {}",
        view.status,
        view.completed_at.map_or("-".to_owned(), |t| t.to_rfc3339())
    );
    let counts: Vec<String> = view
        .counts
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    println!("recipients {}: {}", r.recipients, counts.join(", "));
    let mut shown = 0;
    for status in ["failed", "dead", "pending", "sending", "suppressed"] {
        if shown >= recipients {
            break;
        }
        let page = email_requests::view(db, id, None, recipients - shown, Some(status)).await?;
        for item in page.into_iter().flat_map(|v| v.items) {
            println!(
                "  {:<10} attempts {:<3} {}  {}",
                item.status,
                item.attempts,
                item.id,
                item.last_error.as_deref().unwrap_or("")
            );
            shown += 1;
        }
    }
    Ok(ExitCode::SUCCESS)
}
