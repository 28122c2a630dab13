//! Rows a run left `posting`. One whose call never began is handed on at once. One whose call
//! began (the run crashed, or the call never answered) is looked for in its channel's history by the post id in its message metadata. Found, it is settled with
//! the message's `ts` and not posted again; not found, it is put back to be posted. Updates
//! and ephemerals are simply redone (an update is idempotent). A history that cannot be read
//! now leaves its rows for the next run.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::{Client, Tally};
use crate::queue::job::JobError;
use crate::store::slack_posts::{self, Abandoned, Outcome};

/// How far before the oldest abandoned attempt the history is read.
const SLACK: chrono::Duration = chrono::Duration::seconds(120);
/// History pages (of 200) read per channel at most.
const PAGES: usize = 25;

/// Abandoned posts by where they were going (channel, thread); the others (never recorded a
/// destination, or an update or ephemeral, harmless to redo) are released at once.
async fn places(
    db: &sqlx::PgPool,
    rows: Vec<Abandoned>,
    tally: &mut Tally,
) -> Result<BTreeMap<(String, Option<String>), Vec<Abandoned>>, JobError> {
    let mut by_place: BTreeMap<(String, Option<String>), Vec<Abandoned>> = BTreeMap::new();
    for row in rows {
        match (&row.slack_channel, row.op.as_str(), row.posting_since) {
            (Some(channel), "post", Some(_)) => by_place
                .entry((channel.clone(), row.parent_ts.clone()))
                .or_default()
                .push(row),
            _ => {
                if slack_posts::release(
                    db,
                    row.id,
                    "its call had not begun when its run ended or gave it up",
                )
                .await?
                {
                    tally.handed_on += 1;
                }
            }
        }
    }
    Ok(by_place)
}

/// Settles or releases every row left `posting` longer than `grace`.
pub(super) async fn abandoned(
    db: &sqlx::PgPool,
    client: &Client,
    grace: Duration,
) -> Result<Tally, JobError> {
    let rows = slack_posts::abandoned(db, grace).await?;
    let mut tally = Tally::default();
    let by_place = places(db, rows, &mut tally).await?;
    for ((channel, thread), rows) in by_place {
        let oldest = rows
            .iter()
            .filter_map(|r| r.posting_since)
            .min()
            .unwrap_or_else(chrono::Utc::now)
            - SLACK;
        let oldest = oldest.timestamp_micros() as f64 / 1e6;
        let found = match client
            .posted_since(&channel, thread.as_deref(), oldest, PAGES)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, channel, rows = rows.len(), "could not read the channel's history; its ambiguous posts wait for the next run");
                continue;
            }
        };
        let by_id: HashMap<String, String> = found
            .into_iter()
            .filter_map(|f| Some((f.payload["post_id"].as_str()?.to_owned(), f.ts)))
            .collect();
        for row in rows {
            match by_id.get(&row.id.to_string()) {
                Some(ts) => {
                    let sent = Outcome::Sent {
                        channel: channel.clone(),
                        ts: ts.clone(),
                    };
                    if slack_posts::settle(db, row.id, row.claim.unwrap_or_default(), &sent).await?
                    {
                        tally.found += 1;
                        metrics::counter!("slack_posts_reconciled_total", "outcome" => "found")
                            .increment(1);
                    }
                }
                None => {
                    if slack_posts::release(db, row.id, "not found in the channel's history after an ambiguous attempt; posting again").await? {
                        tally.reposted += 1;
                        metrics::counter!("slack_posts_reconciled_total", "outcome" => "reposted").increment(1);
                    }
                }
            }
        }
    }
    Ok(tally)
}
