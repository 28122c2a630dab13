//! `campaign-sync rollup --from DATE --to DATE` (backfill the analytics of a window, with a
//! progress bar) and `campaign-sync report --period weekly --format csv|json` (the engagement
//! report of one period, every campaign).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use clap::{Args, ValueEnum};

use crate::config::Settings;
use crate::jobs::rollup_metrics::{Plan, Step};
use crate::store::analytics::{self, Ranked};
use crate::store::rollups::period::Period;

/// What `rollup` recomputes.
#[derive(Debug, Args)]
pub struct RollupArgs {
    /// First day (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub from: NaiveDate,
    /// Last day (YYYY-MM-DD, UTC; default today; later days are left out).
    #[arg(long)]
    pub to: Option<NaiveDate>,
}

/// Recomputes every day of the window and the weeks and months they fall in.
pub async fn rollup(settings: Settings, args: RollupArgs) -> anyhow::Result<ExitCode> {
    let to = args.to.unwrap_or_else(|| Utc::now().date_naive());
    if args.from > to {
        eprintln!("--from {} is after --to {to}", args.from);
        return Ok(ExitCode::from(2));
    }
    let db = crate::store::pool(&settings.database, "cli")?;
    let plan = Plan::window(args.from, to);
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(plan.steps() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg:24} {bar:40} {pos}/{len} ({elapsed}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let done = plan
        .run(&db, |step| {
            bar.set_message(match step {
                Step::EmailDay(day) => format!("email {day}"),
                Step::EmailPeriod(kind, start) => format!("email {} {start}", kind.as_str()),
                Step::TeamPeriod(kind, start) => format!("team {} {start}", kind.as_str()),
            });
            bar.inc(1);
        })
        .await
        .context("the rollup failed; rerun it: every step recomputes whole rows")?;
    bar.finish_and_clear();
    println!(
        "rolled up {} to {to}: {} days, {} rows written in {:.1} s",
        args.from,
        plan.email_days.len(),
        done.rows,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// A report's format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

/// A report's kind of period.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportPeriod {
    Daily,
    Weekly,
    Monthly,
}

/// Which report.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long, value_enum, default_value = "weekly")]
    pub period: ReportPeriod,
    /// A day of the period (YYYY-MM-DD); default: the last complete period.
    #[arg(long)]
    pub date: Option<NaiveDate>,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
}

const PAGE: i64 = 1_000;

/// Prints every campaign's figures of one period, by campaign id, to stdout.
pub async fn report(settings: Settings, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let kind = match args.period {
        ReportPeriod::Daily => Period::Daily,
        ReportPeriod::Weekly => Period::Weekly,
        ReportPeriod::Monthly => Period::Monthly,
    };
    let start = match args.date {
        Some(day) => kind.start_of(day),
        None => kind.previous(kind.start_of(Utc::now().date_naive())),
    };
    let db = crate::store::pool(&settings.database, "cli")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if let Format::Csv = args.format {
        writeln!(
            out,
            "period,period_start,campaign_id,campaign_name,sent,delivered,opened,clicked,bounced,spam,unsubscribed,revenue,open_rate,click_rate,engagement_score,open_rate_trend,click_rate_trend"
        )?;
    }
    let mut after = String::new();
    let mut first = true;
    loop {
        let page = analytics::report_page(&db, kind, start, &after, PAGE).await?;
        for row in &page {
            match args.format {
                Format::Csv => writeln!(out, "{}", csv_line(kind, start, row))?,
                Format::Json => {
                    let line = serde_json::json!({ "period": kind.as_str(), "periodStart": start, "campaignId": row.id, "campaignName": row.name, "metrics": row.metrics, "trends": row.trends });
                    writeln!(out, "{}{line}", if first { "[" } else { "," })?;
                    first = false;
                }
            }
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.id.clone(),
            _ => break,
        }
    }
    if let Format::Json = args.format {
        writeln!(out, "{}", if first { "[]" } else { "]" })?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn csv_line(kind: Period, start: NaiveDate, row: &Ranked) -> String {
    let m = &row.metrics;
    let t = &row.trends;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    [
        kind.as_str().to_owned(),
        start.to_string(),
        csv_field(&row.id),
        csv_field(&row.name),
        m.sent.to_string(),
        m.delivered.to_string(),
        m.opened.to_string(),
        m.clicked.to_string(),
        m.bounced.to_string(),
        m.spam.to_string(),
        m.unsubscribed.to_string(),
        opt(m.revenue),
        format!("{:.4}", m.open_rate),
        format!("{:.4}", m.click_rate),
        m.engagement_score.to_string(),
        opt(t.open_rate_trend),
        opt(t.click_rate_trend),
    ]
    .join(",")
}

/// A CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@` is prefixed with `'`
/// so a spreadsheet does not run it as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}
