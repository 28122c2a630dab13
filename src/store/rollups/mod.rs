//! `metric_rollups`: daily, weekly and monthly figures, written by `rollup_metrics` and
//! `campaign-sync rollup`, read by the analytics API. Every write recomputes a whole row from
//! its sources, so a rerun writes the same rows.

pub mod email;
pub mod period;
pub mod team;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgPool, Postgres, Transaction};

/// A transaction for a rollup statement, without JIT compilation: the statements are planned
/// as expensive but touch a day's rows through indexes, and compiling them costs more (about
/// 0.8 s each) than running them.
pub(crate) async fn begin(db: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
    Ok(tx)
}

/// The days whose figures may have changed since `since`: email days (a statistics snapshot,
/// a send accepted, an event received — and for a bounce, complaint or block, the days of the
/// send's earlier events of that type, since those move the send's timestamp while opens,
/// clicks and deliveries keep their first — or revenue reported) and team days (a message
/// stored, an approval decided).
pub async fn changed_days(
    db: &PgPool,
    since: DateTime<Utc>,
) -> Result<(Vec<NaiveDate>, Vec<NaiveDate>), sqlx::Error> {
    let email: Vec<NaiveDate> = sqlx::query_scalar(
        "WITH fresh AS (SELECT send_id, event_type, occurred_at FROM email_events WHERE created_at >= $1)
         SELECT DISTINCT d FROM (
             SELECT (recorded_at AT TIME ZONE 'UTC')::date AS d FROM email_statistics WHERE recorded_at >= $1
             UNION SELECT (sent_at AT TIME ZONE 'UTC')::date FROM email_sends WHERE sent_at >= $1
             UNION SELECT (occurred_at AT TIME ZONE 'UTC')::date FROM fresh
             UNION SELECT (e.occurred_at AT TIME ZONE 'UTC')::date FROM fresh f
                 JOIN email_events e ON e.send_id = f.send_id AND e.event_type = f.event_type
                 WHERE f.event_type IN ('bounce', 'spam', 'blocked')
             UNION SELECT day FROM campaign_revenue WHERE updated_at >= $1
         ) days ORDER BY d",
    )
    .bind(since)
    .fetch_all(db)
    .await?;
    let team: Vec<NaiveDate> = sqlx::query_scalar(
        "SELECT DISTINCT d FROM (
             SELECT (posted_at AT TIME ZONE 'UTC')::date AS d FROM slack_messages WHERE created_at >= $1
             UNION SELECT (decided_at AT TIME ZONE 'UTC')::date FROM approvals WHERE updated_at >= $1 AND decided_at IS NOT NULL
         ) days ORDER BY d",
    )
    .bind(since)
    .fetch_all(db)
    .await?;
    Ok((email, team))
}

/// The first and last day with any data the rollups read, if there is any.
pub async fn data_span(db: &PgPool) -> Result<Option<(NaiveDate, NaiveDate)>, sqlx::Error> {
    let span: (Option<NaiveDate>, Option<NaiveDate>) = sqlx::query_as(
        "SELECT (min(t) AT TIME ZONE 'UTC')::date, (max(t) AT TIME ZONE 'UTC')::date FROM (
             (SELECT recorded_at AS t FROM email_statistics ORDER BY recorded_at LIMIT 1)
             UNION ALL (SELECT recorded_at FROM email_statistics ORDER BY recorded_at DESC LIMIT 1)
             UNION ALL (SELECT occurred_at FROM email_events ORDER BY occurred_at LIMIT 1)
             UNION ALL (SELECT occurred_at FROM email_events ORDER BY occurred_at DESC LIMIT 1)
             UNION ALL (SELECT sent_at FROM email_sends WHERE sent_at IS NOT NULL ORDER BY sent_at LIMIT 1)
             UNION ALL (SELECT sent_at FROM email_sends WHERE sent_at IS NOT NULL ORDER BY sent_at DESC LIMIT 1)
             UNION ALL (SELECT posted_at FROM slack_messages ORDER BY posted_at LIMIT 1)
             UNION ALL (SELECT posted_at FROM slack_messages ORDER BY posted_at DESC LIMIT 1)
             UNION ALL (SELECT decided_at FROM approvals WHERE decided_at IS NOT NULL ORDER BY decided_at LIMIT 1)
             UNION ALL (SELECT decided_at FROM approvals WHERE decided_at IS NOT NULL ORDER BY decided_at DESC LIMIT 1)
             UNION ALL (SELECT day::timestamp AT TIME ZONE 'UTC' FROM campaign_revenue ORDER BY day LIMIT 1)
             UNION ALL (SELECT day::timestamp AT TIME ZONE 'UTC' FROM campaign_revenue ORDER BY day DESC LIMIT 1)
         ) ends",
    )
    .fetch_one(db)
    .await?;
    Ok(match span {
        (Some(first), Some(last)) => Some((first, last)),
        _ => None,
    })
}

/// Refreshes the planner's statistics of `metric_rollups` (ANALYZE samples it; a second or so
/// at a million rows).
pub async fn refresh_statistics(db: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("ANALYZE metric_rollups").execute(db).await?;
    Ok(())
}
