//! Resumable cursor pagination for the Slack syncs. Each page is written in one transaction
//! together with the cursor of the next page (`sync_runs.cursor`), so a run that stops
//! mid-way — a failure, a deploy, a kill — leaves the exact point to go on from. The next run
//! of the job picks that cursor up instead of starting again, and keeps the time the
//! interrupted pass began, so "not seen since the pass began" still means gone from Slack.
//!
//! While one page is being written the next one is already being fetched.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::clients::error::UpstreamError;
use crate::queue::job::JobError;

/// A saved cursor is only trusted for this long (Slack's cursors do not last for ever, and a
/// pass this old is better started again).
const RESUME_WITHIN_HOURS: i32 = 24;

/// Where a pass is: the cursor of the next page ("" = the first) and when the pass began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub next: String,
    pub pass_started_at: DateTime<Utc>,
}

/// What a complete pass did.
#[derive(Debug, Clone)]
pub struct Pass {
    /// When the pass began (earlier than this run when it was resumed).
    pub started_at: DateTime<Utc>,
    /// Whether it went on from an interrupted run's cursor.
    pub resumed: bool,
    /// Pages fetched by this run.
    pub pages: usize,
}

/// The cursor an interrupted run of `job` left, if the last run to finish did not succeed.
pub async fn resume_point(db_pool: &PgPool, job: &str) -> Result<Option<Position>, JobError> {
    let saved =
        crate::store::sync_runs::resumable_cursor(db_pool, job, RESUME_WITHIN_HOURS).await?;
    Ok(saved.and_then(|s| serde_json::from_str(&s).ok()))
}

async fn save(conn: &mut PgConnection, run_id: Uuid, position: &Position) -> Result<(), JobError> {
    let text = serde_json::to_string(position).map_err(|e| JobError::Permanent(e.into()))?;
    crate::store::sync_runs::save_cursor(conn, run_id, &text).await?;
    Ok(())
}

/// Fetches one page from a cursor: the items and the next cursor ("" at the end).
pub trait Fetch {
    type Item: Send;
    fn fetch(
        &self,
        cursor: &str,
    ) -> impl Future<Output = Result<(Vec<Self::Item>, String), UpstreamError>> + Send;
}

/// Stores one page inside the transaction that also saves the cursor.
pub trait Write<T> {
    fn write(
        &mut self,
        items: Vec<T>,
        tx: &mut PgConnection,
    ) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Runs one pass of `job` (run `run_id`), from an interrupted run's cursor when there is one.
pub async fn pass<F: Fetch + Sync, W: Write<F::Item> + Send>(
    db_pool: &PgPool,
    job: &str,
    run_id: Uuid,
    source: &F,
    sink: &mut W,
    stopping: &tokio::sync::watch::Receiver<bool>,
) -> Result<Pass, JobError> {
    let resumed = resume_point(db_pool, job).await?;
    let mut position = resumed.clone().unwrap_or_else(|| Position {
        next: String::new(),
        pass_started_at: Utc::now(),
    });
    if resumed.is_some() {
        tracing::info!(job, "resuming an interrupted pass from its saved cursor");
        // Saved at once, so this run failing before its first page still leaves the point.
        let mut conn = db_pool.acquire().await?;
        save(&mut conn, run_id, &position).await?;
    }
    let mut pages = 1;
    let mut fetched = source.fetch(&position.next).await;
    loop {
        let (items, next) = fetched?;
        position.next = next;
        let write_page = async {
            let mut tx = db_pool.begin().await?;
            sink.write(items, &mut tx).await?;
            save(&mut tx, run_id, &position).await?;
            tx.commit().await.map_err(JobError::from)
        };
        if position.next.is_empty() {
            write_page.await?;
            break;
        }
        if *stopping.borrow() {
            write_page.await?;
            return Err(JobError::retry(
                "the worker is stopping; the next run goes on from the saved cursor".to_owned(),
            ));
        }
        let (written, next_page) = tokio::join!(write_page, source.fetch(&position.next));
        written?;
        pages += 1;
        fetched = next_page;
    }
    Ok(Pass {
        started_at: position.pass_started_at,
        resumed: resumed.is_some(),
        pages,
    })
}
