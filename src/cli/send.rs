//! `campaign-sync send --file recipients.csv --campaign ID --template ID`: an email request
//! from a file, checked and stored exactly like `POST /api/email-requests` (one transaction),
//! with a progress bar while the recipients are written.
//!
//! The file is CSV with a header row — `email` (required), `name`, and any other column as a
//! template variable — or JSON: an array of `{email, name, variables}`. The idempotency key
//! defaults to a digest of the file and the options, so running the same command twice sends
//! nothing twice.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::store::audit::Actor;
use crate::store::email_requests::{self, AcceptError, EmailRequestInput, RecipientInput};

/// What `send` takes.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipients: `.csv` (header row: email, name, then variables) or `.json`.
    #[arg(long)]
    pub file: PathBuf,
    /// Our campaign's id.
    #[arg(long)]
    pub campaign: String,
    /// The Mailjet template id.
    #[arg(long)]
    pub template: i64,
    /// Send no earlier than this (RFC 3339, e.g. 2026-12-01T09:00:00Z).
    #[arg(long)]
    pub scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Mailjet SandboxMode: validated, nothing delivered.
    #[arg(long)]
    pub test_mode: bool,
    /// The request's idempotency key (default: a digest of the file and these options).
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

fn read_recipients(file: &std::path::Path, bytes: &[u8]) -> anyhow::Result<Vec<RecipientInput>> {
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match extension.as_str() {
        "json" => serde_json::from_slice(bytes)
            .context("expected a JSON array of {\"email\", \"name\", \"variables\"}"),
        "csv" => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(bytes);
            let headers: Vec<String> = reader
                .headers()
                .context("cannot read the header row")?
                .iter()
                .map(str::to_owned)
                .collect();
            let email_at = headers
                .iter()
                .position(|h| h.eq_ignore_ascii_case("email"))
                .context("the header row has no `email` column")?;
            let name_at = headers.iter().position(|h| h.eq_ignore_ascii_case("name"));
            let mut recipients = Vec::new();
            for (i, record) in reader.records().enumerate() {
                let record = record.with_context(|| format!("line {} is not valid CSV", i + 2))?;
                let mut variables = Map::new();
                for (at, (header, cell)) in headers.iter().zip(record.iter()).enumerate() {
                    if at != email_at && Some(at) != name_at && !cell.is_empty() {
                        variables.insert(header.clone(), Value::String(cell.to_owned()));
                    }
                }
                recipients.push(RecipientInput {
                    email: record.get(email_at).unwrap_or("").to_owned(),
                    name: name_at.and_then(|n| record.get(n)).unwrap_or("").to_owned(),
                    variables,
                });
            }
            Ok(recipients)
        }
        _ => anyhow::bail!("expected a .csv or .json file"),
    }
}

fn default_key(bytes: &[u8], args: &SendArgs) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(bytes);
    ctx.update(
        format!(
            "\n{}\n{}\n{:?}\n{}",
            args.campaign, args.template, args.scheduled_at, args.test_mode
        )
        .as_bytes(),
    );
    format!("cli-{}", hex::encode(ctx.finish()))
}

/// Runs `send`: 0 stored (or already stored), 2 invalid input, 1 anything else.
pub async fn run(settings: Settings, args: SendArgs) -> anyhow::Result<ExitCode> {
    let (key, input) = match read_request(&settings, &args) {
        Ok(read) => read,
        Err(code) => return Ok(code),
    };
    let (request, created) = match store(&settings, &key, &input).await? {
        Ok(stored) => stored,
        Err(code) => return Ok(code),
    };
    if created {
        announce(&settings, &request).await;
    } else {
        println!(
            "request {} was already stored with this key ({} recipients); nothing new was stored",
            request.id, request.recipients
        );
    }
    println!(
        "status: campaign-sync requests show {} (or GET /api/email-requests/{})",
        request.id, request.id
    );
    Ok(ExitCode::SUCCESS)
}

/// The file's recipients as a checked request with its idempotency key; what is wrong is
/// printed (exit 2).
fn read_request(
    settings: &Settings,
    args: &SendArgs,
) -> Result<(String, EmailRequestInput), ExitCode> {
    let bytes = std::fs::read(&args.file).map_err(|e| {
        eprintln!("{}: cannot read the file: {e}", args.file.display());
        ExitCode::from(2)
    })?;
    let recipients = read_recipients(&args.file, &bytes).map_err(|e| {
        eprintln!("{}: {e:#}", args.file.display());
        ExitCode::from(2)
    })?;
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| default_key(&bytes, args));
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        eprintln!("--idempotency-key: expected 1 to 255 visible ASCII characters");
        return Err(ExitCode::from(2));
    }
    let input = EmailRequestInput {
        campaign_id: args.campaign.clone(),
        template_id: args.template,
        recipients,
        scheduled_at: args.scheduled_at,
        test_mode: args.test_mode,
    };
    let problems = input.validate(settings.email.max_recipients);
    if !problems.is_empty() {
        print_problems(args, &problems);
        return Err(ExitCode::from(2));
    }
    Ok((key, input))
}

/// Each problem, recipients by their CSV line (the first 20).
fn print_problems(args: &SendArgs, problems: &email_requests::Problems) {
    eprintln!("{}: nothing was stored:", args.file.display());
    for f in &problems.fields {
        eprintln!("  {}", fix_field(f));
    }
    for item in problems.recipients.iter().take(20) {
        for e in &item.errors {
            // Recipient n is on line n + 2 of a CSV (after the header row).
            eprintln!(
                "  recipient {} (CSV line {}): {e}",
                item.index,
                item.index + 2
            );
        }
    }
    if problems.invalid_recipients > 20 {
        eprintln!(
            "  … {} invalid recipients in all",
            problems.invalid_recipients
        );
    }
}

/// Stores the request with a progress bar; a request the data refuses is printed (exit 2).
async fn store(
    settings: &Settings,
    key: &str,
    input: &EmailRequestInput,
) -> anyhow::Result<Result<(email_requests::Accepted, bool), ExitCode>> {
    let pool = crate::store::pool(&settings.database, "cli")?;
    let bar = indicatif::ProgressBar::new(input.recipients.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} storing recipients {bar:40} {pos}/{len} ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let actor = Actor::new("cli");
    let accepted =
        email_requests::accept(&pool, key, input, &actor, |n| bar.set_position(n as u64)).await;
    bar.finish_and_clear();
    match accepted {
        Ok(done) => Ok(Ok(done)),
        Err(AcceptError::Unknown(field)) => {
            eprintln!("nothing was stored: {}", fix_field(&field));
            Ok(Err(ExitCode::from(2)))
        }
        Err(e @ AcceptError::KeyReused(_)) => {
            eprintln!("nothing was stored: {e}");
            Ok(Err(ExitCode::from(2)))
        }
        Err(AcceptError::MissingVariables(items)) => {
            eprintln!(
                "nothing was stored: recipients lack template variables (give them as columns)"
            );
            for item in items.iter().take(20) {
                for error in &item.errors {
                    eprintln!(
                        "  recipient {} (file row {}): {error}",
                        item.index + 1,
                        item.index + 2
                    );
                }
            }
            Ok(Err(ExitCode::from(2)))
        }
        Err(AcceptError::Db(e)) => Err(e).context("storing the request failed"),
    }
}

/// Says what was stored and tells the worker (its schedule sends it if Redis is away).
async fn announce(settings: &Settings, request: &email_requests::Accepted) {
    println!(
        "stored request {} with {} recipients for campaign {} (template {}{})",
        request.id,
        request.recipients,
        request.campaign_id,
        request.template_id,
        if request.test_mode { ", test mode" } else { "" }
    );
    let kicked = match crate::redis_conn::connection(&settings.redis) {
        Ok(redis) => crate::jobs::process_email_queue::kick_request(
            redis,
            &settings.redis.key_prefix,
            request.scheduled_at,
            "manual",
        )
        .await
        .is_ok(),
        Err(_) => false,
    };
    if !kicked {
        println!(
            "the worker could not be told (Redis); process_email_queue's schedule will send it"
        );
    }
}

/// A field problem with the CLI option's name instead of the JSON field's.
fn fix_field(f: &crate::store::validate::FieldError) -> String {
    let option = match f.field.as_str() {
        "campaignId" => "--campaign",
        "templateId" => "--template",
        "recipients" => "--file",
        other => other,
    };
    format!("{option}: {}; expected {}", f.problem, f.expected)
}
