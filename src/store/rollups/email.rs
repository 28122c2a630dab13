//! Email figures per campaign, per template and for everything.
//!
//! A day is computed from its sources: the change over the day in Mailjet's cumulative
//! statistics of each campaign (the last snapshot of the day minus the last one before it, of
//! the same Mailjet campaign), plus the service's own sends counted by the day of each
//! recipient's timestamp (accepted, delivered, first open, first click, bounce, spam
//! complaint, unsubscription), plus the revenue the Campaign Manager reported for the day.
//! Mailjet's campaign statistics do not include the service's sends (they carry no Mailjet
//! campaign), so the two are added. A week or month is the sum of its days: every count is of
//! something that happened once, on one day.

use chrono::NaiveDate;
use sqlx::{PgConnection, PgPool};

use super::period::Period;

/// The UTC bounds of a day, as SQL: `$1` is the day.
const DAY: &str = "day AS (SELECT $1::date AS d, ($1::date)::timestamp AT TIME ZONE 'UTC' AS lo, ($1::date + 1)::timestamp AT TIME ZONE 'UTC' AS hi)";

/// Recomputes one day's rows of every campaign and template with figures that day, and
/// removes the rows of those that now have none; how many rows it wrote.
pub async fn recompute_day(db: &PgPool, day: NaiveDate) -> Result<u64, sqlx::Error> {
    let mut tx = super::begin(db).await?;
    let campaigns = campaign_day(&mut tx, day).await?;
    let templates = template_day(&mut tx, day).await?;
    tx.commit().await?;
    Ok(campaigns + templates)
}

async fn campaign_day(tx: &mut PgConnection, day: NaiveDate) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "WITH {DAY},
         snap AS (
             SELECT c.campaign_id,
                    greatest(e.sent - coalesce(b.sent, 0), 0) AS sent,
                    greatest(e.delivered - coalesce(b.delivered, 0), 0) AS delivered,
                    greatest(e.opened - coalesce(b.opened, 0), 0) AS opened,
                    greatest(e.clicked - coalesce(b.clicked, 0), 0) AS clicked,
                    greatest(e.bounced - coalesce(b.bounced, 0), 0) AS bounced,
                    greatest(e.spam - coalesce(b.spam, 0), 0) AS spam,
                    greatest(e.unsubscribed - coalesce(b.unsubscribed, 0), 0) AS unsubscribed
             FROM (SELECT DISTINCT s.campaign_id FROM email_statistics s, day WHERE s.recorded_at >= day.lo AND s.recorded_at < day.hi) c
             CROSS JOIN day
             CROSS JOIN LATERAL (SELECT * FROM email_statistics s WHERE s.campaign_id = c.campaign_id AND s.recorded_at < day.hi
                                 ORDER BY s.recorded_at DESC LIMIT 1) e
             LEFT JOIN LATERAL (SELECT * FROM email_statistics s WHERE s.campaign_id = c.campaign_id AND s.recorded_at < day.lo
                                    AND s.mailjet_campaign_id = e.mailjet_campaign_id
                                ORDER BY s.recorded_at DESC LIMIT 1) b ON true
         ),
         own AS ({OWN_SENDS}),
         revenue AS (SELECT campaign_id, amount FROM campaign_revenue, day WHERE campaign_revenue.day = day.d),
         figures AS (
             SELECT campaign_id, sum(sent)::bigint AS sent, sum(delivered)::bigint AS delivered, sum(opened)::bigint AS opened,
                    sum(clicked)::bigint AS clicked, sum(bounced)::bigint AS bounced, sum(spam)::bigint AS spam,
                    sum(unsubscribed)::bigint AS unsubscribed, sum(revenue) AS revenue
             FROM (SELECT campaign_id, sent, delivered, opened, clicked, bounced, spam, unsubscribed, NULL::numeric AS revenue FROM snap
                   UNION ALL SELECT campaign_id, sent, delivered, opened, clicked, bounced, spam, unsubscribed, NULL FROM own
                   UNION ALL SELECT campaign_id, 0, 0, 0, 0, 0, 0, 0, amount FROM revenue) parts
             GROUP BY campaign_id
             HAVING sum(sent + delivered + opened + clicked + bounced + spam + unsubscribed) > 0 OR count(revenue) > 0
         ),
         written AS (
             INSERT INTO metric_rollups AS r (scope, campaign_id, period, period_start, metrics, computed_at)
             SELECT 'email', campaign_id, 'daily', $1,
                    campaign_sync_email_metrics(sent, delivered, opened, clicked, bounced, spam, unsubscribed, revenue), now()
             FROM figures
             ON CONFLICT (scope, coalesce(campaign_id, ''), coalesce(template_id, 0), period, period_start)
             DO UPDATE SET metrics = excluded.metrics, computed_at = excluded.computed_at
             RETURNING campaign_id
         ),
         gone AS (
             DELETE FROM metric_rollups r WHERE r.scope = 'email' AND r.period = 'daily' AND r.period_start = $1
                 AND r.campaign_id IS NOT NULL AND r.campaign_id NOT IN (SELECT campaign_id FROM figures)
         )
         SELECT count(*) FROM written",
        OWN_SENDS = own_sends("r.campaign_id")
    );
    let written: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(day)
        .fetch_one(&mut *tx)
        .await?;
    Ok(written as u64)
}

async fn template_day(tx: &mut PgConnection, day: NaiveDate) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "WITH {DAY},
         own AS ({OWN_SENDS}),
         written AS (
             INSERT INTO metric_rollups AS r (scope, template_id, period, period_start, metrics, computed_at)
             SELECT 'template', template_id, 'daily', $1,
                    campaign_sync_email_metrics(sent, delivered, opened, clicked, bounced, spam, unsubscribed, NULL), now()
             FROM own
             ON CONFLICT (scope, coalesce(campaign_id, ''), coalesce(template_id, 0), period, period_start)
             DO UPDATE SET metrics = excluded.metrics, computed_at = excluded.computed_at
             RETURNING template_id
         ),
         gone AS (
             DELETE FROM metric_rollups r WHERE r.scope = 'template' AND r.period = 'daily' AND r.period_start = $1
                 AND r.template_id NOT IN (SELECT template_id FROM own)
         )
         SELECT count(*) FROM written",
        OWN_SENDS = own_sends("r.template_id")
    );
    let written: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(day)
        .fetch_one(&mut *tx)
        .await?;
    Ok(written as u64)
}

/// The service's own sends' figures for the day, grouped by `key` (a column of the request):
/// the sends accepted that day, and those with an event that day, each counted on the day of
/// its own timestamp.
fn own_sends(key: &str) -> String {
    let name = key.trim_start_matches("r.");
    format!(
        "SELECT {name}, sum(sent)::bigint AS sent, sum(delivered)::bigint AS delivered, sum(opened)::bigint AS opened,
                sum(clicked)::bigint AS clicked, sum(bounced)::bigint AS bounced, sum(spam)::bigint AS spam,
                sum(unsubscribed)::bigint AS unsubscribed
         FROM (
             SELECT {key}, count(*) AS sent, 0 AS delivered, 0 AS opened, 0 AS clicked, 0 AS bounced, 0 AS spam, 0 AS unsubscribed
             FROM day, email_sends s JOIN email_requests r ON r.id = s.request_id
             WHERE s.sent_at >= day.lo AND s.sent_at < day.hi GROUP BY {key}
             UNION ALL
             SELECT {key}, 0,
                    count(*) FILTER (WHERE s.delivered_at >= day.lo AND s.delivered_at < day.hi),
                    count(*) FILTER (WHERE s.first_opened_at >= day.lo AND s.first_opened_at < day.hi),
                    count(*) FILTER (WHERE s.first_clicked_at >= day.lo AND s.first_clicked_at < day.hi),
                    count(*) FILTER (WHERE s.bounced_at >= day.lo AND s.bounced_at < day.hi),
                    count(*) FILTER (WHERE s.spam_at >= day.lo AND s.spam_at < day.hi),
                    count(*) FILTER (WHERE s.unsubscribed_at >= day.lo AND s.unsubscribed_at < day.hi)
             FROM day,
                  (SELECT DISTINCT e.send_id FROM email_events e, day
                   WHERE e.occurred_at >= day.lo AND e.occurred_at < day.hi AND e.send_id IS NOT NULL) touched
             JOIN email_sends s ON s.id = touched.send_id JOIN email_requests r ON r.id = s.request_id
             GROUP BY {key}
         ) parts GROUP BY {name}
         HAVING sum(sent + delivered + opened + clicked + bounced + spam + unsubscribed) > 0"
    )
}

/// Recomputes the period starting on `start` (weekly or monthly) of every campaign and
/// template as the sum of its days, removing rows with no days left.
pub async fn recompute_sum(
    db: &PgPool,
    period: Period,
    start: NaiveDate,
) -> Result<u64, sqlx::Error> {
    let mut tx = super::begin(db).await?;
    let end = period.next(start);
    let written: i64 = sqlx::query_scalar(
        "WITH figures AS (
             SELECT scope, campaign_id, template_id,
                    sum((metrics->>'sent')::bigint)::bigint AS sent, sum((metrics->>'delivered')::bigint)::bigint AS delivered,
                    sum((metrics->>'opened')::bigint)::bigint AS opened, sum((metrics->>'clicked')::bigint)::bigint AS clicked,
                    sum((metrics->>'bounced')::bigint)::bigint AS bounced, sum((metrics->>'spam')::bigint)::bigint AS spam,
                    sum((metrics->>'unsubscribed')::bigint)::bigint AS unsubscribed, sum((metrics->>'revenue')::numeric) AS revenue
             FROM metric_rollups
             WHERE scope IN ('email', 'template') AND period = 'daily' AND period_start >= $2 AND period_start < $3
               AND (campaign_id IS NOT NULL OR template_id IS NOT NULL)
             GROUP BY scope, campaign_id, template_id
         ),
         written AS (
             INSERT INTO metric_rollups (scope, campaign_id, template_id, period, period_start, metrics, computed_at)
             SELECT scope, campaign_id, template_id, $1, $2,
                    campaign_sync_email_metrics(sent, delivered, opened, clicked, bounced, spam, unsubscribed, revenue), now()
             FROM figures
             ON CONFLICT (scope, coalesce(campaign_id, ''), coalesce(template_id, 0), period, period_start)
             DO UPDATE SET metrics = excluded.metrics, computed_at = excluded.computed_at
             RETURNING 1
         ),
         gone AS (
             DELETE FROM metric_rollups r WHERE r.scope IN ('email', 'template') AND r.period = $1 AND r.period_start = $2
                 AND (r.campaign_id IS NOT NULL OR r.template_id IS NOT NULL)
                 AND NOT EXISTS (SELECT 1 FROM figures f WHERE f.scope = r.scope
                                 AND coalesce(f.campaign_id, '') = coalesce(r.campaign_id, '') AND coalesce(f.template_id, 0) = coalesce(r.template_id, 0))
         )
         SELECT count(*) FROM written",
    )
    .bind(period.as_str())
    .bind(start)
    .bind(end)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(written as u64)
}

/// Recomputes the all-campaigns row of a period as the sum of the campaigns' rows.
pub async fn recompute_total(
    db: &PgPool,
    period: Period,
    start: NaiveDate,
) -> Result<(), sqlx::Error> {
    let mut tx = super::begin(db).await?;
    sqlx::query(
        "WITH figures AS (
             SELECT count(*) AS campaigns,
                    sum((metrics->>'sent')::bigint)::bigint AS sent, sum((metrics->>'delivered')::bigint)::bigint AS delivered,
                    sum((metrics->>'opened')::bigint)::bigint AS opened, sum((metrics->>'clicked')::bigint)::bigint AS clicked,
                    sum((metrics->>'bounced')::bigint)::bigint AS bounced, sum((metrics->>'spam')::bigint)::bigint AS spam,
                    sum((metrics->>'unsubscribed')::bigint)::bigint AS unsubscribed, sum((metrics->>'revenue')::numeric) AS revenue
             FROM metric_rollups WHERE scope = 'email' AND period = $1 AND period_start = $2 AND campaign_id IS NOT NULL
         ),
         written AS (
             INSERT INTO metric_rollups (scope, period, period_start, metrics, computed_at)
             SELECT 'email', $1, $2,
                    campaign_sync_email_metrics(sent, delivered, opened, clicked, bounced, spam, unsubscribed, revenue)
                        || jsonb_build_object('campaigns', campaigns), now()
             FROM figures WHERE campaigns > 0
             ON CONFLICT (scope, coalesce(campaign_id, ''), coalesce(template_id, 0), period, period_start)
             DO UPDATE SET metrics = excluded.metrics, computed_at = excluded.computed_at
         )
         DELETE FROM metric_rollups r WHERE r.scope = 'email' AND r.period = $1 AND r.period_start = $2
             AND r.campaign_id IS NULL AND (SELECT campaigns FROM figures) = 0",
    )
    .bind(period.as_str())
    .bind(start)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Writes the trends of every email and template row of the period starting on `start`:
/// period-over-period change of the open and click rates, in percent of the previous
/// period's rate (absent when there was no previous period or its rate was 0), and the
/// engagement score with its change in points.
pub async fn recompute_trends(
    db: &PgPool,
    period: Period,
    start: NaiveDate,
) -> Result<(), sqlx::Error> {
    let mut tx = super::begin(db).await?;
    sqlx::query(
        "UPDATE metric_rollups cur SET trends = t.trends FROM (
             SELECT c.id, jsonb_strip_nulls(jsonb_build_object(
                 'openRateTrend', CASE WHEN (p.metrics->>'openRate')::float8 > 0
                     THEN round((((c.metrics->>'openRate')::float8 / (p.metrics->>'openRate')::float8 - 1) * 100)::numeric, 2) END,
                 'clickRateTrend', CASE WHEN (p.metrics->>'clickRate')::float8 > 0
                     THEN round((((c.metrics->>'clickRate')::float8 / (p.metrics->>'clickRate')::float8 - 1) * 100)::numeric, 2) END,
                 'engagementScore', (c.metrics->>'engagementScore')::float8,
                 'engagementScoreChange', round(((c.metrics->>'engagementScore')::float8 - (p.metrics->>'engagementScore')::float8)::numeric, 2)
             )) AS trends
             FROM metric_rollups c
             LEFT JOIN metric_rollups p ON p.scope = c.scope AND p.period = c.period AND p.period_start = $3
                  AND coalesce(p.campaign_id, '') = coalesce(c.campaign_id, '') AND coalesce(p.template_id, 0) = coalesce(c.template_id, 0)
             WHERE c.scope IN ('email', 'template') AND c.period = $1 AND c.period_start = $2
         ) t
         WHERE cur.id = t.id AND cur.trends IS DISTINCT FROM t.trends",
    )
    .bind(period.as_str())
    .bind(start)
    .bind(period.previous(start))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Moves each template's `last_used` to its latest send accepted on `day`, and sets its
/// performance score: the engagement score of all its sends so far (its monthly rows summed).
pub async fn refresh_templates(db: &PgPool, day: NaiveDate) -> Result<(), sqlx::Error> {
    let mut tx = super::begin(db).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH {DAY},
         used AS (
             SELECT r.template_id, max(s.sent_at) AS last FROM day, email_sends s JOIN email_requests r ON r.id = s.request_id
             WHERE s.sent_at >= day.lo AND s.sent_at < day.hi GROUP BY r.template_id
         ),
         touched AS (SELECT template_id FROM metric_rollups WHERE scope = 'template' AND period = 'daily' AND period_start = $1),
         score AS (
             SELECT template_id, campaign_sync_engagement(sum((metrics->>'delivered')::bigint)::bigint, sum((metrics->>'opened')::bigint)::bigint,
                        sum((metrics->>'clicked')::bigint)::bigint, sum((metrics->>'spam')::bigint)::bigint,
                        sum((metrics->>'unsubscribed')::bigint)::bigint) AS score,
                    sum((metrics->>'delivered')::bigint) AS delivered
             FROM metric_rollups WHERE scope = 'template' AND period = 'monthly' AND template_id IN (SELECT template_id FROM touched)
             GROUP BY template_id
         )
         UPDATE email_templates t SET
             last_used = CASE WHEN u.last IS NOT NULL THEN greatest(t.last_used, u.last) ELSE t.last_used END,
             performance_score = CASE WHEN s.delivered > 0 THEN s.score ELSE t.performance_score END
         FROM (SELECT template_id FROM touched UNION SELECT template_id FROM used) x
         LEFT JOIN used u ON u.template_id = x.template_id
         LEFT JOIN score s ON s.template_id = x.template_id
         WHERE t.id = x.template_id"
    )))
    .bind(day)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
