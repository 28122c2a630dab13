//! `rollup_metrics` (hourly): the daily, weekly and monthly figures the analytics API reads
//! (`metric_rollups`), recomputed for the days whose sources changed since the last
//! successful run — a late event (a click three days after the send) makes its own day
//! changed, and with it that day's week and month. The first run, with no successful run
//! before it, computes every day that has data. Every row is recomputed whole from its
//! sources, so a rerun, or a backfill over the same window (`campaign-sync rollup`), writes
//! the same rows.
//!
//! Changes are looked for from the last successful run's start less [`OVERLAP`], which covers
//! a transaction that began before that start and committed after it.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use serde_json::json;
use sqlx::PgPool;

use super::support::runs::{self, RunSummary};
use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};
use crate::store::rollups::{self, email, period::Period, team};

/// Stable name.
pub const NAME: &str = "rollup_metrics";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(
    NAME,
    "daily, weekly and monthly email and team figures with trends",
)
.schedule("0 5 * * * *")
.timeout(Duration::from_secs(50 * 60))
.runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

/// The advisory lock one plan at a time holds (per database).
const RUN_LOCK: i64 = 0x6373_726f_6c6c_7570; // "csrollup"

/// How far before the last successful run's start changes are looked for.
pub const OVERLAP: chrono::Duration = chrono::Duration::minutes(10);

/// Runs one incremental rollup as a recorded run.
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    runs::recorded(ctx, NAME, |ctx, _run| async move {
        let db = &ctx.deps.db;
        let since = crate::store::sync_runs::last_success_start(db, NAME)
            .await
            .map_err(failed)?;
        let plan = match since {
            Some(since) => Plan::changed_since(db, since - OVERLAP).await,
            None => Plan::everything(db).await,
        }
        .map_err(failed)?;
        let done = plan.run(db, |_| {}).await.map_err(failed)?;
        Ok(RunSummary {
            items_synced: i32::try_from(done.rows).unwrap_or(i32::MAX),
            items_failed: 0,
            counts: json!({
                "email_days": plan.email_days.len(), "team_days": plan.team_days.len(),
                "rows_written": done.rows, "since": since.map(|s| (s - OVERLAP).to_rfc3339()),
            }),
        })
    })
    .await
}

fn failed(e: sqlx::Error) -> JobError {
    JobError::from(e).context("rollup failed")
}

/// Rows written by the day steps after which the table's planner statistics are refreshed.
const REFRESH_STATISTICS_AFTER: u64 = 10_000;

/// The days to recompute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub email_days: BTreeSet<NaiveDate>,
    pub team_days: BTreeSet<NaiveDate>,
}

/// What a plan did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Done {
    /// Rows written (upserted) across every step.
    pub rows: u64,
}

/// One step of a plan, as a progress bar shows it.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    EmailDay(NaiveDate),
    EmailPeriod(Period, NaiveDate),
    TeamPeriod(Period, NaiveDate),
}

impl Plan {
    /// Every day of `from..=to` (capped at today), for both email and team figures.
    pub fn window(from: NaiveDate, to: NaiveDate) -> Plan {
        let to = to.min(Utc::now().date_naive());
        let days: BTreeSet<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
        Plan {
            email_days: days.clone(),
            team_days: days,
        }
    }

    /// The days whose sources changed since `since`.
    pub async fn changed_since(
        db: &PgPool,
        since: chrono::DateTime<Utc>,
    ) -> Result<Plan, sqlx::Error> {
        let today = Utc::now().date_naive();
        let (email, team) = rollups::changed_days(db, since).await?;
        Ok(Plan {
            email_days: email.into_iter().filter(|d| *d <= today).collect(),
            team_days: team.into_iter().filter(|d| *d <= today).collect(),
        })
    }

    /// Every day that has data.
    pub async fn everything(db: &PgPool) -> Result<Plan, sqlx::Error> {
        Ok(match rollups::data_span(db).await? {
            Some((first, last)) => Plan::window(first, last),
            None => Plan::default(),
        })
    }

    /// The periods of `kind` the plan's `days` fall in, and for trends the periods after
    /// them (whose change is measured against them), up to the current one.
    fn periods(
        days: &BTreeSet<NaiveDate>,
        kind: Period,
    ) -> (BTreeSet<NaiveDate>, BTreeSet<NaiveDate>) {
        let current = kind.start_of(Utc::now().date_naive());
        let starts: BTreeSet<NaiveDate> = days.iter().map(|d| kind.start_of(*d)).collect();
        let mut trended = starts.clone();
        trended.extend(
            starts
                .iter()
                .map(|s| kind.next(*s))
                .filter(|s| *s <= current),
        );
        (starts, trended)
    }

    /// How many steps [`Plan::run`] reports.
    pub fn steps(&self) -> usize {
        let email: usize = Period::ALL
            .into_iter()
            .map(|kind| Plan::periods(&self.email_days, kind).1.len())
            .sum();
        let team: usize = Period::ALL
            .into_iter()
            .map(|kind| Plan::periods(&self.team_days, kind).0.len())
            .sum();
        self.email_days.len() + email + team
    }

    /// Runs the plan while holding the rollup lock: a scheduled run and a backfill wait for
    /// each other rather than write the same rows at once.
    pub async fn run(&self, db: &PgPool, on_step: impl FnMut(Step)) -> Result<Done, sqlx::Error> {
        // A detached connection: if the run is cancelled, closing it frees the lock.
        let mut lock = db.acquire().await?.detach();
        crate::store::advisory_lock(&mut lock, RUN_LOCK).await?;
        let result = self.recompute(db, on_step).await;
        let _ = crate::store::advisory_unlock(&mut lock, RUN_LOCK).await;
        let _ = sqlx::Connection::close(lock).await;
        result
    }

    /// Recomputes: each email day, then each week and month as the sum of its days, the
    /// all-campaigns rows, the trends (of those periods and of the ones after them) and the
    /// templates' last use and score; then each team period. `on_step` is told of each step.
    async fn recompute(
        &self,
        db: &PgPool,
        mut on_step: impl FnMut(Step),
    ) -> Result<Done, sqlx::Error> {
        let mut done = Done::default();
        for day in &self.email_days {
            done.rows += email::recompute_day(db, *day).await?;
            on_step(Step::EmailDay(*day));
        }
        if done.rows >= REFRESH_STATISTICS_AFTER {
            // A backfill into a new or emptied table: without fresh statistics Postgres plans
            // the sums and trends for an empty table (nested loops over 10,000 rows each).
            crate::store::rollups::refresh_statistics(db).await?;
        }
        for kind in Period::ALL {
            let (starts, trended) = Plan::periods(&self.email_days, kind);
            for start in &starts {
                if kind != Period::Daily {
                    done.rows += email::recompute_sum(db, kind, *start).await?;
                }
                email::recompute_total(db, kind, *start).await?;
            }
            for start in &trended {
                email::recompute_trends(db, kind, *start).await?;
                on_step(Step::EmailPeriod(kind, *start));
            }
        }
        for day in &self.email_days {
            email::refresh_templates(db, *day).await?;
        }
        for kind in Period::ALL {
            for start in Plan::periods(&self.team_days, kind).0 {
                done.rows += team::recompute(db, kind, start).await?;
                on_step(Step::TeamPeriod(kind, start));
            }
        }
        Ok(done)
    }
}
