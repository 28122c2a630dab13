//! Messages people post in Slack channels, kept for the team-activity figures: channel, `ts`,
//! author, thread and time — never the text.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// A message as it is kept.
#[derive(Debug, Clone)]
pub struct PostedMessage<'a> {
    pub channel_id: &'a str,
    pub ts: &'a str,
    pub user_id: &'a str,
    pub thread_ts: Option<&'a str>,
    pub posted_at: DateTime<Utc>,
}

/// Keeps the message once (Slack may deliver it twice); whether it was new.
pub async fn record(tx: &mut PgConnection, m: &PostedMessage<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO slack_messages (channel_id, ts, user_id, thread_ts, posted_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (channel_id, ts) DO NOTHING",
    )
    .bind(m.channel_id)
    .bind(m.ts)
    .bind(m.user_id)
    .bind(m.thread_ts)
    .bind(m.posted_at)
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}
