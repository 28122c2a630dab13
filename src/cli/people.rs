//! `campaign-sync people …`: data-subject requests from the command line — `people show EMAIL`
//! prints what is held about an address (as `GET /api/people/{email}`), `people erase EMAIL
//! --yes` erases it everywhere (as `DELETE`), audited by the address's hash.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Settings;
use crate::store::audit::Actor;
use crate::store::{self, people};

/// What `people` does.
#[derive(Debug, Subcommand)]
pub enum PeopleCommand {
    /// Everything held about one address, as JSON.
    Show { email: String },
    /// Erase one address everywhere, irreversibly (sends are pseudonymised, the suppression
    /// kept as a hash).
    Erase {
        email: String,
        /// Really erase (without it, nothing changes and what would be erased is shown).
        #[arg(long)]
        yes: bool,
    },
}

/// Runs a `people` command.
pub async fn run(settings: Settings, command: PeopleCommand) -> anyhow::Result<ExitCode> {
    let db = store::pool(&settings.database, "cli")?;
    match command {
        PeopleCommand::Show { email } => {
            let held = people::export(&db, &email).await?;
            println!("{}", serde_json::to_string_pretty(&held)?);
            Ok(ExitCode::SUCCESS)
        }
        PeopleCommand::Erase { email, yes: false } => {
            let held = people::export(&db, &email).await?;
            let sends = held["sends"].as_array().map_or(0, Vec::len);
            let member = !held["teamMember"].is_null();
            eprintln!(
                "this would irreversibly erase {sends} send(s){} of {}; run again with --yes",
                if member { " and a team member" } else { "" },
                held["pseudonym"].as_str().unwrap_or("")
            );
            Ok(ExitCode::from(2))
        }
        PeopleCommand::Erase { email, yes: true } => {
            let erased = people::erase(&db, &email, &Actor::new("cli")).await?;
            println!("{}", serde_json::to_string_pretty(&erased)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
