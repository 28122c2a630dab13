//! `campaign-sync campaigns import FILE` and `campaign-sync team import FILE`: the internal
//! API's batch upsert for operators, from CSV (with a header row) or JSON (an array, or
//! `{"items": […]}`). Every row is checked first; nothing is written unless all are valid.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::store::audit::Actor;
use crate::store::batch::{self, BatchReport, MAX_ITEMS, Upsert};
use crate::store::campaigns::CampaignInput;
use crate::store::team_members::TeamMemberInput;

/// What `campaigns` and `team` do.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Upsert every row of a CSV (header row) or JSON file.
    Import {
        /// The file: `.csv` or `.json`.
        file: PathBuf,
    },
}

/// Which records a file holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Campaigns,
    TeamMembers,
}

/// Runs an import.
pub async fn run(
    settings: Settings,
    kind: Kind,
    command: ImportCommand,
) -> anyhow::Result<ExitCode> {
    let ImportCommand::Import { file } = command;
    let rows = match read_rows(&file) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("{}: {e:#}", file.display());
            return Ok(ExitCode::from(2));
        }
    };
    match kind {
        Kind::Campaigns => import::<CampaignInput>(&settings, &file, rows, "campaigns").await,
        Kind::TeamMembers => {
            import::<TeamMemberInput>(&settings, &file, rows, "team members").await
        }
    }
}

async fn import<T: Upsert>(
    settings: &Settings,
    file: &Path,
    rows: Vec<Value>,
    what: &str,
) -> anyhow::Result<ExitCode> {
    let csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let total = rows.len();
    let items = match batch::check::<T>(rows) {
        Ok(items) => items,
        Err(problems) => {
            for p in &problems {
                let place = if csv {
                    format!("line {}", p.index + 2)
                } else {
                    format!("item {}", p.index)
                };
                for e in &p.errors {
                    eprintln!("{}: {place}: {}", file.display(), describe(e, csv));
                }
            }
            eprintln!(
                "{} of {total} rows are invalid; nothing was stored",
                problems.len()
            );
            return Ok(ExitCode::from(2));
        }
    };
    let pool = crate::store::pool(&settings.database, "cli")?;
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let mut report = BatchReport::default();
    let actor = Actor::new("cli");
    for chunk in items.chunks(MAX_ITEMS) {
        match batch::apply(&pool, &actor, chunk).await {
            Ok(done) => {
                report.created += done.created;
                report.updated += done.updated;
                report.unchanged += done.unchanged;
                bar.inc(chunk.len() as u64);
            }
            Err(e) => {
                bar.abandon();
                let stored = report.created + report.updated + report.unchanged;
                let place = if csv {
                    format!("line {}", e.index + 2)
                } else {
                    format!("item {}", e.index)
                };
                eprintln!("{}: {place} ({}): {}", file.display(), e.id, e.error);
                eprintln!(
                    "stopped: {stored} rows before this batch of up to {MAX_ITEMS} were stored; this batch was not"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    bar.finish_and_clear();
    println!(
        "{what}: {total} rows: {} created, {} updated, {} unchanged",
        report.created, report.updated, report.unchanged
    );
    Ok(ExitCode::SUCCESS)
}

/// One problem as a file's author reads it: in a CSV, the column by its header; the API
/// schema is no help to a spreadsheet, so the expectation names the columns instead.
fn describe(e: &crate::store::validate::FieldError, csv: bool) -> String {
    if !csv {
        return e.to_string();
    }
    let expected = if e.expected.contains("/api/openapi.json") {
        "the columns listed in the README (header row, snake_case or camelCase)"
    } else {
        e.expected.as_str()
    };
    match e.field.as_str() {
        "" => format!("{}; expected {expected}", e.problem),
        field => format!("column {field:?}: {}; expected {expected}", e.problem),
    }
}

/// The rows of a CSV or JSON file as JSON objects with the API's field names.
pub fn read_rows(file: &Path) -> anyhow::Result<Vec<Value>> {
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = std::fs::read_to_string(file).context("cannot read the file")?;
    match extension.as_str() {
        "json" => {
            let value: Value = serde_json::from_str(&text).context("is not valid JSON")?;
            match value {
                Value::Array(items) => Ok(items),
                Value::Object(mut o) => match o.remove("items") {
                    Some(Value::Array(items)) => Ok(items),
                    _ => anyhow::bail!("expected an array of records or {{\"items\": [...]}}"),
                },
                _ => anyhow::bail!("expected an array of records or {{\"items\": [...]}}"),
            }
        }
        "csv" => read_csv(&text),
        _ => anyhow::bail!("expected a .csv or .json file"),
    }
}

fn read_csv(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .context("cannot read the header row")?
        .iter()
        .map(camel_case)
        .collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("line {} is not valid CSV", i + 2))?;
        let mut row = Map::new();
        for (header, cell) in headers.iter().zip(record.iter()) {
            if !cell.is_empty() {
                row.insert(header.clone(), cell_value(header, cell));
            }
        }
        rows.push(Value::Object(row));
    }
    Ok(rows)
}

fn camel_case(header: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in header.trim().chars() {
        if c == '_' || c == ' ' || c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Typed cells: booleans and Mailjet ids become JSON booleans and numbers when they parse;
/// otherwise they stay text and validation names the field.
fn cell_value(header: &str, cell: &str) -> Value {
    match header {
        "active" => match cell.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Value::Bool(true),
            "false" | "no" | "0" => Value::Bool(false),
            _ => Value::String(cell.to_owned()),
        },
        "mailjetCampaignId" => cell
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(cell.to_owned())),
        _ => Value::String(cell.to_owned()),
    }
}
