//! `sync_mailjet_stats` (every 30 min): a statistics snapshot of every active campaign mapped to
//! a Mailjet campaign, with rates and an engagement score; unmapped active campaigns are first
//! matched by subject and the mapping recorded. Campaigns are fetched concurrently within the
//! shared rate limit; one campaign's failure is counted against it and does not fail the others.
//!
//! Rates are relative to delivered messages (Mailjet's `MessageSentCount`):
//! `open_rate = opened / delivered`, `click_rate = clicked / delivered`, and
//! `engagement_score = 100 × clamp(0.4 × open_rate + 0.6 × click_rate − 2 × spam_rate −
//! unsubscribe_rate, 0, 1)`: clicks weigh more than opens, complaints and unsubscribes count
//! against.

use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;

use super::support::runs::{self, RunSummary};
use crate::clients::mailjet::{MailjetClient, StatCounters, subject_key};
use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};
use crate::store::statistics;

/// Stable name.
pub const NAME: &str = "sync_mailjet_stats";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(
    NAME,
    "statistics snapshot for every active campaign; auto-map by subject",
)
.schedule("0 */30 * * * *")
.timeout(Duration::from_secs(25 * 60))
.runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

/// Mapped campaigns read from Postgres at a time: memory stays flat however many there are.
const CHUNK: i64 = 1000;

/// Rates and score of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub open_rate: f64,
    pub click_rate: f64,
    pub engagement_score: f64,
}

/// The rates and engagement score of `s` (all 0 when nothing was delivered).
pub fn scores(s: &StatCounters) -> Scores {
    let delivered = s.message_sent_count as f64;
    if delivered <= 0.0 {
        return Scores {
            open_rate: 0.0,
            click_rate: 0.0,
            engagement_score: 0.0,
        };
    }
    let open_rate = s.message_opened_count as f64 / delivered;
    let click_rate = s.message_clicked_count as f64 / delivered;
    let spam_rate = s.message_spam_count as f64 / delivered;
    let unsub_rate = s.message_unsubscribed_count as f64 / delivered;
    let raw = 0.4 * open_rate + 0.6 * click_rate - 2.0 * spam_rate - unsub_rate;
    Scores {
        open_rate,
        click_rate,
        engagement_score: (100.0 * raw.clamp(0.0, 1.0) * 100.0).round() / 100.0,
    }
}

/// Runs one sync as a recorded run.
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    runs::recorded(ctx, NAME, |ctx, run_id| async move {
        let deps = &ctx.deps;
        let client = crate::clients::mailjet_from_settings(&deps.settings, deps.redis.clone()).map_err(JobError::Permanent)?;
        let parallel = deps.settings.mailjet.calls_in_flight();
        let matched = match_by_subject(&deps.db, &client, parallel).await?;
        let (mut synced, mut missing, mut failed) = (0usize, 0usize, 0usize);
        let mut errors: Vec<String> = Vec::new();
        let mut after = String::new();
        loop {
            let chunk = statistics::mapped_active(&deps.db, &after, CHUNK).await?;
            let Some((last, _)) = chunk.last() else { break };
            after = last.clone();
            let full = chunk.len() as i64 == CHUNK;
            let mut results = futures_util::stream::iter(chunk)
                .map(|(campaign, external)| {
                    let client = &client;
                    let pool = &deps.db;
                    async move { snapshot(pool, client, &campaign, &external, run_id).await.map_err(|e| format!("{campaign}: {e}")) }
                })
                .buffer_unordered(parallel);
            while let Some(result) = results.next().await {
                match result {
                    Ok(true) => synced += 1,
                    Ok(false) => missing += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(error = %e, "campaign statistics failed");
                        if errors.len() < 20 {
                            errors.push(e);
                        }
                    }
                }
            }
            if !full {
                break;
            }
        }
        metrics::counter!("sync_items_total", "job" => NAME, "outcome" => "synced").increment(synced as u64);
        metrics::counter!("sync_items_total", "job" => NAME, "outcome" => "failed").increment(failed as u64);
        Ok(RunSummary {
            items_synced: synced as i32,
            items_failed: failed as i32,
            counts: json!({ "matched_by_subject": matched, "not_found_in_mailjet": missing, "errors": errors }),
        })
    })
    .await
}

/// Maps active campaigns without a Mailjet mapping to the Mailjet campaign with their subject.
async fn match_by_subject(
    pool: &sqlx::PgPool,
    client: &impl MailjetClient,
    parallel: usize,
) -> Result<usize, JobError> {
    let unmapped = statistics::unmapped_with_subject(pool).await?;
    if unmapped.is_empty() {
        return Ok(0);
    }
    let subjects: Vec<String> = unmapped.iter().map(|(_, s)| s.clone()).collect();
    let found = match client.find_campaigns_by_subjects(&subjects, parallel).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "matching campaigns by subject failed; trying again next run");
            return Ok(0);
        }
    };
    // In id order: of two campaigns with one subject, the first takes the Mailjet campaign.
    let mut matched = 0;
    for (campaign, subject) in &unmapped {
        let Some(found) = found.get(&subject_key(subject)) else {
            continue;
        };
        // A Mailjet campaign already mapped to another campaign stays where it is.
        let mut tx = pool.begin().await?;
        if statistics::map_by_subject(&mut tx, found.id, campaign, &found.subject).await? {
            crate::store::audit::record(
                &mut tx,
                &crate::store::audit::Actor::new("worker"),
                "campaign.mapped",
                "campaign",
                campaign,
                json!({ "mailjet": found.id, "matched_by": "subject" }),
            )
            .await?;
            matched += 1;
        }
        tx.commit().await?;
    }
    Ok(matched)
}

/// Stores one snapshot; false when Mailjet has no such campaign.
async fn snapshot(
    pool: &sqlx::PgPool,
    client: &impl MailjetClient,
    campaign: &str,
    external: &str,
    run_id: uuid::Uuid,
) -> Result<bool, String> {
    let id: i64 = external
        .parse()
        .map_err(|_| format!("mapping {external:?} is not a Mailjet id"))?;
    let Some(stats) = client
        .campaign_statistics(id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(false);
    };
    let s = scores(&stats);
    let bounced = stats.message_hard_bounced_count + stats.message_soft_bounced_count;
    let snapshot = statistics::Snapshot {
        campaign,
        mailjet_campaign_id: id,
        sent: stats.total,
        delivered: stats.message_sent_count,
        opened: stats.message_opened_count,
        clicked: stats.message_clicked_count,
        bounced,
        spam: stats.message_spam_count,
        blocked: stats.message_blocked_count,
        unsubscribed: stats.message_unsubscribed_count,
        open_rate: s.open_rate,
        click_rate: s.click_rate,
        engagement_score: s.engagement_score,
        sync_run_id: run_id,
    };
    statistics::record_snapshot(pool, &snapshot)
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_relative_to_delivered_and_the_score_is_bounded() {
        let s = StatCounters {
            message_sent_count: 1000,
            message_opened_count: 400,
            message_clicked_count: 100,
            message_spam_count: 5,
            message_unsubscribed_count: 10,
            ..Default::default()
        };
        let r = scores(&s);
        assert_eq!((r.open_rate, r.click_rate), (0.4, 0.1));
        // 0.4·0.4 + 0.6·0.1 − 2·0.005 − 0.01 = 0.2
        assert!((r.engagement_score - 20.0).abs() < 1e-9, "{r:?}");
        assert_eq!(scores(&StatCounters::default()).engagement_score, 0.0);
        let spammy = StatCounters {
            message_sent_count: 10,
            message_spam_count: 10,
            ..Default::default()
        };
        assert_eq!(scores(&spammy).engagement_score, 0.0, "never negative");
    }
}
