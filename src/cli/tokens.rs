//! `campaign-sync tokens …`: the secrets stored at rest (Slack's OAuth tokens), by key.
//! `tokens reseal` re-seals every one still sealed with an older key of `ENCRYPTION_KEYS`
//! with the first (sealing) key: row by row, each in its own statement that loses to a
//! concurrent refresh (read again on the next pass), so it can be stopped and run again.

use std::process::ExitCode;

use clap::Subcommand;

use crate::clients::slack::reseal::reseal_row;
use crate::config::Settings;
use crate::store::{self, oauth_tokens};

/// What `tokens` does.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Every stored credential: workspace, status and the id of the key that sealed it.
    List,
    /// Re-seal every stored secret with the current (first) key of ENCRYPTION_KEYS.
    Reseal {
        /// Credentials read per batch.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
    },
}

/// Runs a `tokens` command.
pub async fn run(settings: Settings, command: TokensCommand) -> anyhow::Result<ExitCode> {
    let db = store::pool(&settings.database, "cli")?;
    match command {
        TokensCommand::List => list(&db, &settings).await,
        TokensCommand::Reseal { batch } => reseal(&db, &settings, batch).await,
    }
}

async fn list(db: &sqlx::PgPool, settings: &Settings) -> anyhow::Result<ExitCode> {
    let ring = settings.security.encryption_keys.as_ref();
    let sealing = ring.map(|r| r.sealing().id.clone());
    println!(
        "{:<14} {:<16} {:<10} {:<8}",
        "WORKSPACE", "STATUS", "KEY", ""
    );
    for row in oauth_tokens::slack_credentials(db).await? {
        let note = match ring {
            Some(r) if r.get(&row.key_id).is_none() => "key not in ENCRYPTION_KEYS",
            _ if sealing.as_deref() != Some(row.key_id.as_str()) => "older key: run reseal",
            _ => "",
        };
        println!(
            "{:<14} {:<16} {:<10} {note}",
            row.workspace_id, row.status, row.key_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn reseal(db: &sqlx::PgPool, settings: &Settings, batch: i64) -> anyhow::Result<ExitCode> {
    let Some(ring) = settings.security.encryption_keys.as_ref() else {
        eprintln!("ENCRYPTION_KEYS (or ENCRYPTION_KEY) is not set: there is no key to seal with");
        return Ok(ExitCode::from(2));
    };
    let target = ring.sealing().id.clone();
    let total = oauth_tokens::count_sealed_with_other(db, &target).await?;
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total.max(0) as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} re-sealing with key {msg} {bar:40} {pos}/{len} ({elapsed}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(target.clone());
    let (mut resealed, mut failed, mut after) = (0u64, 0u64, None);
    loop {
        let rows = oauth_tokens::sealed_with_other(db, &target, after, batch).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id);
        for row in &rows {
            match reseal_row(ring, row) {
                Ok((access, refresh)) => {
                    if oauth_tokens::reseal(db, row, &target, &access, refresh.as_deref()).await? {
                        resealed += 1;
                    }
                }
                Err(e) => {
                    bar.suspend(|| eprintln!("error: {e}"));
                    failed += 1;
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let left = oauth_tokens::count_sealed_with_other(db, &target).await?;
    println!(
        "re-sealed {resealed} credential(s) with key {target}; {left} still sealed with another key"
    );
    Ok(if failed > 0 || left > 0 {
        if left > failed as i64 {
            println!("some changed while re-sealing (a refresh): run reseal again");
        }
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
