//! One person's data, for data-subject requests: what is held about an e-mail address (the
//! export), and its erasure — in one transaction, everywhere it is held: the address, name
//! and variables of their sends (pseudonymised, so campaign figures stay whole; pending sends
//! cancelled), their events' details, raw webhook payloads and rejected deliveries that name
//! them, their suppression (kept as the address's SHA-256, so it still suppresses), their
//! team-member record and Slack identities, and their messages' author in team activity. The
//! audit entry names the person by hash only.

use aws_lc_rs::digest;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use super::audit::{self, Actor};

/// The pseudonym of an address: `sha256:` and the hex SHA-256 of it lower-cased.
pub fn pseudonym(email: &str) -> String {
    let normal = email.trim().to_lowercase();
    let hash = digest::digest(&digest::SHA256, normal.as_bytes());
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What an erasure changed, by kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Erased {
    pub sends_pseudonymised: u64,
    pub sends_cancelled: u64,
    pub events_cleared: u64,
    pub webhook_payloads_erased: u64,
    pub rejected_deliveries_deleted: u64,
    pub suppressions_hashed: u64,
    pub team_members_pseudonymised: u64,
    pub slack_identities_deleted: u64,
    pub slack_messages_pseudonymised: u64,
    pub outgoing_payloads_erased: u64,
}

/// Erases what is held about `email` in one transaction, audited by the address's hash.
pub async fn erase(db: &PgPool, email: &str, actor: &Actor) -> Result<Erased, sqlx::Error> {
    let normal = email.trim().to_lowercase();
    let hash = pseudonym(&normal);
    let mut tx = db.begin().await?;
    let mut erased = erase_sends(&mut tx, &normal, &hash).await?;
    erase_raw(&mut tx, email.trim(), &normal, &mut erased).await?;
    erase_member(&mut tx, &normal, &hash, &mut erased).await?;
    sqlx::query(
        "INSERT INTO erased_people (email_hash) VALUES ($1)
         ON CONFLICT (email_hash) DO UPDATE SET erased_at = now()",
    )
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    let details = serde_json::to_value(&erased).unwrap_or(Value::Null);
    audit::record(&mut tx, actor, "person.erase", "person", &hash, details).await?;
    tx.commit().await?;
    Ok(erased)
}

/// Sends (address, name, variables, history, errors) and their events' details.
async fn erase_sends(
    tx: &mut PgConnection,
    normal: &str,
    hash: &str,
) -> Result<Erased, sqlx::Error> {
    let rows: Vec<(uuid::Uuid, bool)> = sqlx::query_as(
        "UPDATE email_sends SET email = $2, name = '', variables = '{}', history = '[]',
             status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
             last_error = CASE WHEN status = 'pending' THEN 'the recipient was erased' ELSE NULL END,
             updated_at = now()
         WHERE lower(email) = $1
         RETURNING id, status = 'cancelled' AND last_error = 'the recipient was erased'",
    )
    .bind(normal)
    .bind(hash)
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<uuid::Uuid> = rows.iter().map(|(id, _)| *id).collect();
    let events = sqlx::query(
        "UPDATE email_events SET details = '{}' WHERE send_id = ANY($1) AND details <> '{}'",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(Erased {
        sends_pseudonymised: ids.len() as u64,
        sends_cancelled: rows.iter().filter(|(_, c)| *c).count() as u64,
        events_cleared: events,
        ..Erased::default()
    })
}

/// Raw payloads that name the address: webhook events (an unapplied one is not applied any
/// more), rejected deliveries, outgoing webhooks already settled; and the suppression.
async fn erase_raw(
    tx: &mut PgConnection,
    raw: &str,
    normal: &str,
    erased: &mut Erased,
) -> Result<(), sqlx::Error> {
    erased.webhook_payloads_erased = sqlx::query(
        "UPDATE webhook_events SET payload = NULL,
             status = CASE WHEN status = 'received' THEN 'ignored' ELSE status END,
             last_error = CASE WHEN status = 'received' THEN 'its person was erased' ELSE last_error END
         WHERE payload IS NOT NULL AND strpos(lower(payload::text), $1) > 0",
    )
    .bind(normal)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    erased.rejected_deliveries_deleted = sqlx::query(
        "DELETE FROM webhook_rejections WHERE position(convert_to($1, 'UTF8') IN raw) > 0 OR position(convert_to($2, 'UTF8') IN raw) > 0",
    )
    .bind(normal)
    .bind(raw)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    erased.outgoing_payloads_erased = sqlx::query(
        "UPDATE outgoing_webhooks SET payload = '{\"erased\": true}'
         WHERE status <> 'pending' AND strpos(lower(payload::text), $1) > 0",
    )
    .bind(normal)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    erased.suppressions_hashed = sqlx::query(
        "WITH gone AS (DELETE FROM email_suppressions WHERE email = $1 RETURNING reason, source, created_at)
         INSERT INTO email_suppressions (email, reason, source, created_at)
         SELECT $2, reason, source, created_at FROM gone ON CONFLICT (email) DO NOTHING",
    )
    .bind(normal)
    .bind(pseudonym(normal))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(())
}

/// The team member (id and address replaced, name cleared: approvals and posts follow the
/// id), their Slack identities, and the author of their messages in team activity.
async fn erase_member(
    tx: &mut PgConnection,
    normal: &str,
    hash: &str,
    erased: &mut Erased,
) -> Result<(), sqlx::Error> {
    let short = &hash["sha256:".len()..];
    let alias = format!("erased-{}", &short[..16.min(short.len())]);
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT si.slack_user_id FROM slack_integrations si JOIN team_members tm ON tm.id = si.team_member_id WHERE lower(tm.email) = $1",
    )
    .bind(normal)
    .fetch_all(&mut *tx)
    .await?;
    erased.slack_messages_pseudonymised =
        sqlx::query("UPDATE slack_messages SET user_id = 'erased' WHERE user_id = ANY($1)")
            .bind(&users)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    erased.slack_identities_deleted = sqlx::query(
        "DELETE FROM slack_integrations WHERE team_member_id IN (SELECT id FROM team_members WHERE lower(email) = $1)",
    )
    .bind(normal)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    erased.team_members_pseudonymised = sqlx::query(
        "UPDATE team_members SET id = $2, email = $2 || '@erased.invalid', name = '', active = false, updated_at = now()
         WHERE lower(email) = $1",
    )
    .bind(normal)
    .bind(&alias)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(())
}

/// Everything held about `email` (a data-subject access request), as JSON.
pub async fn export(db: &PgPool, email: &str) -> Result<Value, sqlx::Error> {
    let normal = email.trim().to_lowercase();
    let hash = pseudonym(&normal);
    let member: Option<Value> = sqlx::query_scalar(
        "SELECT jsonb_build_object('id', id, 'email', email, 'name', name, 'active', active, 'createdAt', created_at, 'updatedAt', updated_at)
         FROM team_members WHERE lower(email) = $1",
    )
    .bind(&normal)
    .fetch_optional(db)
    .await?;
    let identities: Value = sqlx::query_scalar(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('workspaceId', si.workspace_id, 'slackUserId', si.slack_user_id,
             'username', si.slack_username, 'realName', si.real_name, 'displayName', si.display_name, 'active', si.is_active,
             'lastSynced', si.last_synced)), '[]')
         FROM slack_integrations si JOIN team_members tm ON tm.id = si.team_member_id WHERE lower(tm.email) = $1",
    )
    .bind(&normal)
    .fetch_one(db)
    .await?;
    let sends = export_sends(db, &normal).await?;
    let suppression: Option<Value> = sqlx::query_scalar(
        "SELECT jsonb_build_object('reason', reason, 'source', source, 'since', created_at, 'byHash', email <> $1)
         FROM email_suppressions WHERE email IN ($1, $2) LIMIT 1",
    )
    .bind(&normal)
    .bind(&hash)
    .fetch_optional(db)
    .await?;
    let payloads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_events WHERE payload IS NOT NULL AND strpos(lower(payload::text), $1) > 0",
    )
    .bind(&normal)
    .fetch_one(db)
    .await?;
    let erased_at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT erased_at FROM erased_people WHERE email_hash = $1")
            .bind(&hash)
            .fetch_optional(db)
            .await?;
    Ok(json!({
        "email": normal, "pseudonym": hash, "erasedAt": erased_at, "teamMember": member,
        "slackIdentities": identities, "sends": sends, "suppression": suppression,
        "webhookPayloadsNamingThem": payloads,
    }))
}

/// Every send to the address, with its events.
async fn export_sends(db: &PgPool, normal: &str) -> Result<Value, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'requestId', s.request_id, 'campaignId', r.campaign_id,
             'templateId', r.template_id, 'email', s.email, 'name', s.name, 'variables', s.variables, 'status', s.status,
             'sentAt', s.sent_at, 'deliveredAt', s.delivered_at, 'opens', s.open_count, 'clicks', s.click_count,
             'bouncedAt', s.bounced_at, 'unsubscribedAt', s.unsubscribed_at, 'createdAt', s.created_at,
             'events', (SELECT coalesce(jsonb_agg(jsonb_build_object('type', e.event_type, 'at', e.occurred_at, 'details', e.details)
                        ORDER BY e.occurred_at), '[]') FROM email_events e WHERE e.send_id = s.id))
             ORDER BY s.created_at), '[]')
         FROM email_sends s JOIN email_requests r ON r.id = s.request_id WHERE lower(s.email) = $1",
    )
    .bind(normal)
    .fetch_one(db)
    .await
}
