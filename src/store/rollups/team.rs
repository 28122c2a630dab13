//! Team activity per campaign and for everything, per period, from the messages posted in
//! campaign channels (`slack_messages`, counted, never read) and the approvals decided.
//! Unlike email counts these are not sums of days (a user active on two days is one active
//! user of the week), so every period is computed from its sources.
//!
//! Activity score of a person in a period: 1 per message posted in a campaign channel, 1 more
//! for each of those that is a reply in a thread, 5 per approval decided.

use chrono::NaiveDate;
use sqlx::PgPool;

use super::period::Period;

/// How many contributors a period lists.
pub const TOP_CONTRIBUTORS: i64 = 10;

/// The team rows of the period `$2..$3` (of kind `$1`, `$4` contributors listed), written
/// whole; rows of subjects with no activity left are removed.
const RECOMPUTE: &str = "WITH w AS (SELECT ($2::date)::timestamp AT TIME ZONE 'UTC' AS lo, ($3::date)::timestamp AT TIME ZONE 'UTC' AS hi),
         acts AS (
             SELECT ch.campaign_id, m.user_id, 1 AS messages,
                    (m.thread_ts IS NOT NULL AND m.thread_ts <> m.ts)::int AS replies, 0 AS approvals, NULL::float8 AS secs,
                    CASE WHEN m.thread_ts IS NOT NULL AND m.thread_ts <> m.ts THEN m.channel_id || ':' || m.thread_ts END AS thread
             FROM w, slack_messages m JOIN slack_channels ch ON ch.id = m.channel_id AND ch.campaign_id IS NOT NULL
             WHERE m.posted_at >= w.lo AND m.posted_at < w.hi
             UNION ALL
             SELECT a.campaign_id, coalesce(a.decided_by, 'unknown'), 0, 0, 1,
                    extract(epoch FROM a.decided_at - a.created_at)::float8, NULL
             FROM w, approvals a
             WHERE a.decided_at >= w.lo AND a.decided_at < w.hi AND a.status IN ('approved', 'rejected', 'changes_requested')
         ),
         subjects AS (
             SELECT campaign_id, grouping(campaign_id) AS overall, coalesce(sum(messages), 0) AS messages,
                    coalesce(sum(replies), 0) AS replies, count(DISTINCT thread) AS discussions,
                    coalesce(sum(approvals), 0) AS approvals, avg(secs) AS avg_secs, count(DISTINCT user_id) AS active_users
             FROM acts GROUP BY GROUPING SETS ((campaign_id), ())
         ),
         per_user AS (
             SELECT campaign_id, grouping(campaign_id) AS overall, user_id, sum(messages) AS messages, sum(replies) AS replies,
                    sum(approvals) AS approvals, sum(messages) + sum(replies) + 5 * sum(approvals) AS score
             FROM acts GROUP BY GROUPING SETS ((campaign_id, user_id), (user_id))
         ),
         ranked AS (
             SELECT *, row_number() OVER (PARTITION BY overall, campaign_id ORDER BY score DESC, user_id) AS rank FROM per_user
         ),
         top AS (
             SELECT r.overall, r.campaign_id,
                    jsonb_agg(jsonb_strip_nulls(jsonb_build_object('slackUserId', r.user_id, 'userId', who.member, 'name', who.name,
                        'activityScore', r.score, 'messages', r.messages, 'replies', r.replies, 'approvals', r.approvals)) ORDER BY r.rank) AS top
             FROM ranked r
             LEFT JOIN LATERAL (
                 SELECT team_member_id AS member, coalesce(nullif(real_name, ''), nullif(display_name, ''), slack_username) AS name
                 FROM slack_integrations WHERE slack_user_id = r.user_id ORDER BY is_active DESC, last_synced DESC LIMIT 1
             ) who ON true
             WHERE r.rank <= $4 GROUP BY r.overall, r.campaign_id
         ),
         figures AS (
             SELECT CASE WHEN s.overall = 1 THEN NULL ELSE s.campaign_id END AS campaign_id,
                    jsonb_build_object('messagesPosted', s.messages, 'threadReplies', s.replies, 'taskDiscussions', s.discussions,
                        'approvalsProcessed', s.approvals, 'averageResponseTime', round(coalesce(s.avg_secs, 0)::numeric, 1),
                        'activeUsers', s.active_users, 'topContributors', coalesce(t.top, '[]'::jsonb)) AS metrics
             FROM subjects s LEFT JOIN top t ON t.overall = s.overall AND coalesce(t.campaign_id, '') = coalesce(s.campaign_id, '')
             WHERE s.messages + s.approvals > 0
         ),
         written AS (
             INSERT INTO metric_rollups (scope, campaign_id, period, period_start, metrics, computed_at)
             SELECT 'team', campaign_id, $1, $2, metrics, now() FROM figures
             ON CONFLICT (scope, coalesce(campaign_id, ''), coalesce(template_id, 0), period, period_start)
             DO UPDATE SET metrics = excluded.metrics, computed_at = excluded.computed_at
             RETURNING 1
         ),
         gone AS (
             DELETE FROM metric_rollups r WHERE r.scope = 'team' AND r.period = $1 AND r.period_start = $2
                 AND NOT EXISTS (SELECT 1 FROM figures f WHERE coalesce(f.campaign_id, '') = coalesce(r.campaign_id, ''))
         )
         SELECT count(*) FROM written";

/// Recomputes the team rows of the period starting on `start`; how many it wrote.
pub async fn recompute(db: &PgPool, period: Period, start: NaiveDate) -> Result<u64, sqlx::Error> {
    let mut tx = super::begin(db).await?;
    let written: i64 = sqlx::query_scalar(RECOMPUTE)
        .bind(period.as_str())
        .bind(start)
        .bind(period.next(start))
        .bind(TOP_CONTRIBUTORS)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(written as u64)
}
