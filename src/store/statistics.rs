//! Campaign statistics from Mailjet (`email_statistics` snapshots) and the campaign ↔ Mailjet
//! mappings they are read through (`mcp_integrations`).

use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Up to `limit` active campaigns mapped to a Mailjet campaign, by id after `after`:
/// (campaign id, Mailjet campaign id as stored).
pub async fn mapped_active(
    db: &PgPool,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, m.external_id FROM campaigns c JOIN mcp_integrations m ON m.service = 'mailjet' AND m.internal_id = c.id
         WHERE c.active AND c.id > $1 ORDER BY c.id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Active campaigns with a subject and no Mailjet mapping: (campaign id, subject).
pub async fn unmapped_with_subject(db: &PgPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.subject FROM campaigns c WHERE c.active AND c.subject IS NOT NULL AND c.subject <> ''
           AND NOT EXISTS (SELECT 1 FROM mcp_integrations m WHERE m.service = 'mailjet' AND m.internal_id = c.id) ORDER BY c.id",
    )
    .fetch_all(db)
    .await
}

/// Maps `campaign` to Mailjet campaign `mailjet_id`, found by its `subject`; false when a
/// mapping was there already.
pub async fn map_by_subject(
    tx: &mut PgConnection,
    mailjet_id: i64,
    campaign: &str,
    subject: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO mcp_integrations (service, external_id, internal_id, matched_by, metadata)
         VALUES ('mailjet', $1, $2, 'subject', $3) ON CONFLICT DO NOTHING",
    )
    .bind(mailjet_id.to_string())
    .bind(campaign)
    .bind(json!({ "subject": subject }))
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// One statistics snapshot of a campaign.
#[derive(Debug, Clone, Default)]
pub struct Snapshot<'a> {
    pub campaign: &'a str,
    pub mailjet_campaign_id: i64,
    pub sent: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub bounced: i64,
    pub spam: i64,
    pub blocked: i64,
    pub unsubscribed: i64,
    pub open_rate: f64,
    pub click_rate: f64,
    pub engagement_score: f64,
    pub sync_run_id: Uuid,
}

/// Stores a snapshot and marks the campaign's mapping synced, in one transaction.
pub async fn record_snapshot(db: &PgPool, s: &Snapshot<'_>) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO email_statistics (campaign_id, mailjet_campaign_id, sent, delivered, opened, clicked, bounced, spam, blocked, unsubscribed, open_rate, click_rate, engagement_score, sync_run_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(s.campaign)
    .bind(s.mailjet_campaign_id)
    .bind(s.sent)
    .bind(s.delivered)
    .bind(s.opened)
    .bind(s.clicked)
    .bind(s.bounced)
    .bind(s.spam)
    .bind(s.blocked)
    .bind(s.unsubscribed)
    .bind(s.open_rate)
    .bind(s.click_rate)
    .bind(s.engagement_score)
    .bind(s.sync_run_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE mcp_integrations SET last_synced = now(), updated_at = now()
         WHERE service = 'mailjet' AND internal_id = $1",
    )
    .bind(s.campaign)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
