//! Campaigns, owned by the Campaign Manager and upserted through the internal API or the CLI,
//! with their Mailjet and Slack mappings (`mcp_integrations`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool, Row};
use utoipa::ToSchema;

use super::audit::{self, Actor};
use super::validate::{FieldError, check_id, check_len, check_pattern};
use super::{Outcome, WriteError};

/// Statuses a campaign can have.
pub const STATUSES: &[&str] = &[
    "draft",
    "scheduled",
    "active",
    "paused",
    "completed",
    "archived",
];

/// A campaign as the Campaign Manager sends it (`PUT /api/campaigns/{id}`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CampaignInput {
    /// Display name, 1–500 characters (no U+0000).
    #[schema(min_length = 1, max_length = 500, pattern = "^[^\u{0}]*$")]
    pub name: String,
    /// Email subject (used to match the Mailjet campaign), up to 998 characters (no U+0000).
    #[serde(default)]
    #[schema(max_length = 998, pattern = "^[^\u{0}]*$")]
    pub subject: Option<String>,
    /// One of draft, scheduled, active, paused, completed, archived.
    #[schema(pattern = "^(draft|scheduled|active|paused|completed|archived)$")]
    pub status: String,
    /// Whether the syncs cover it (default true).
    #[serde(default = "yes")]
    pub active: bool,
    /// Short name used to map a Slack channel `campaign-<slug>`: lowercase letters, digits, - and _.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,79}$")]
    pub slug: Option<String>,
    /// The Mailjet campaign it maps to; absent keeps the current mapping.
    #[serde(default, deserialize_with = "super::validate::optional_whole_number")]
    #[schema(minimum = 1)]
    pub mailjet_campaign_id: Option<i64>,
    /// The Slack channel id it maps to (C… or G…); absent keeps the current mapping.
    #[serde(default)]
    #[schema(pattern = "^[CG][A-Z0-9]{2,19}$")]
    pub slack_channel: Option<String>,
}

fn yes() -> bool {
    true
}

impl CampaignInput {
    /// Every problem with this input, each naming the field.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_len(&mut errors, "name", &self.name, 1, 500);
        if let Some(subject) = &self.subject {
            check_len(&mut errors, "subject", subject, 0, 998);
        }
        if !STATUSES.contains(&self.status.as_str()) {
            errors.push(FieldError::new(
                "status",
                format!("{:?} is not a status", self.status),
                format!("one of {}", STATUSES.join(", ")),
            ));
        }
        if let Some(slug) = &self.slug {
            check_pattern(
                &mut errors,
                "slug",
                slug,
                |s| {
                    let mut chars = s.chars();
                    (1..=80).contains(&s.len())
                        && chars
                            .next()
                            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                        && chars.all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
                        })
                },
                "1 to 80 lowercase letters, digits, - or _, starting with a letter or digit",
            );
        }
        if let Some(id) = self.mailjet_campaign_id
            && id <= 0
        {
            errors.push(FieldError::new(
                "mailjetCampaignId",
                format!("{id} is not a Mailjet id"),
                "a positive integer",
            ));
        }
        if let Some(channel) = &self.slack_channel {
            check_pattern(
                &mut errors,
                "slackChannel",
                channel,
                |c| {
                    (c.starts_with('C') || c.starts_with('G'))
                        && (3..=20).contains(&c.len())
                        && c.chars()
                            .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit())
                },
                "a Slack channel id such as C0123456789",
            );
        }
        errors
    }
}

/// Latest statistics snapshot of a campaign.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatisticsView {
    pub sent: i64,
    pub delivered: i64,
    pub opened: i64,
    pub clicked: i64,
    pub bounced: i64,
    pub spam: i64,
    pub unsubscribed: i64,
    pub open_rate: f64,
    pub click_rate: f64,
    pub engagement_score: f64,
    pub recorded_at: DateTime<Utc>,
}

/// A campaign as the API answers it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub subject: Option<String>,
    pub status: String,
    pub active: bool,
    pub slug: Option<String>,
    pub mailjet_campaign_id: Option<i64>,
    pub slack_channel: Option<String>,
    /// When the Mailjet statistics were last synced.
    pub last_synced: Option<DateTime<Utc>>,
    pub latest_statistics: Option<StatisticsView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
}

const SELECT_VIEW: &str = "SELECT c.id, c.name, c.subject, c.status, c.active, c.slug, c.created_at, c.updated_at, c.deactivated_at,
       mj.external_id AS mailjet_id, mj.last_synced, sl.external_id AS slack_channel,
       s.sent, s.delivered, s.opened, s.clicked, s.bounced, s.spam, s.unsubscribed, s.open_rate, s.click_rate, s.engagement_score, s.recorded_at
  FROM campaigns c
  LEFT JOIN mcp_integrations mj ON mj.service = 'mailjet' AND mj.internal_id = c.id
  LEFT JOIN mcp_integrations sl ON sl.service = 'slack' AND sl.internal_id = c.id
  LEFT JOIN LATERAL (SELECT * FROM email_statistics es WHERE es.campaign_id = c.id ORDER BY es.recorded_at DESC LIMIT 1) s ON true";

fn view(row: &sqlx::postgres::PgRow) -> Result<CampaignView, sqlx::Error> {
    let recorded_at: Option<DateTime<Utc>> = row.try_get("recorded_at")?;
    let latest_statistics = match recorded_at {
        Some(recorded_at) => Some(StatisticsView {
            sent: row.try_get("sent")?,
            delivered: row.try_get("delivered")?,
            opened: row.try_get("opened")?,
            clicked: row.try_get("clicked")?,
            bounced: row.try_get("bounced")?,
            spam: row.try_get("spam")?,
            unsubscribed: row.try_get("unsubscribed")?,
            open_rate: row.try_get("open_rate")?,
            click_rate: row.try_get("click_rate")?,
            engagement_score: row.try_get("engagement_score")?,
            recorded_at,
        }),
        None => None,
    };
    let mailjet_id: Option<String> = row.try_get("mailjet_id")?;
    Ok(CampaignView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        subject: row.try_get("subject")?,
        status: row.try_get("status")?,
        active: row.try_get("active")?,
        slug: row.try_get("slug")?,
        mailjet_campaign_id: mailjet_id.and_then(|m| m.parse().ok()),
        slack_channel: row.try_get("slack_channel")?,
        last_synced: row.try_get("last_synced")?,
        latest_statistics,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        deactivated_at: row.try_get("deactivated_at")?,
    })
}

/// One campaign, with its mappings and latest statistics.
pub async fn get(pool: &PgPool, id: &str) -> Result<Option<CampaignView>, sqlx::Error> {
    let sql = format!("{SELECT_VIEW} WHERE c.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(view).transpose()
}

/// A page of campaigns by id, optionally only active or inactive ones, and the total.
pub async fn list(
    pool: &PgPool,
    active: Option<bool>,
    page: i64,
    per_page: i64,
) -> Result<(Vec<CampaignView>, i64), sqlx::Error> {
    let sql = format!(
        "{SELECT_VIEW} WHERE ($1::boolean IS NULL OR c.active = $1) ORDER BY c.id LIMIT $2 OFFSET $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(active)
        .bind(per_page)
        .bind((page - 1) * per_page)
        .fetch_all(pool)
        .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM campaigns WHERE ($1::boolean IS NULL OR active = $1)",
    )
    .bind(active)
    .fetch_one(pool)
    .await?;
    let items = rows.iter().map(view).collect::<Result<_, _>>()?;
    Ok((items, total))
}

/// Creates or updates campaign `id` inside `conn`'s transaction, recording what changed.
pub async fn upsert(
    conn: &mut PgConnection,
    actor: &Actor,
    id: &str,
    input: &CampaignInput,
) -> Result<Outcome, WriteError> {
    check_conflicts(conn, id, input).await?;
    let current = sqlx::query(
        "SELECT name, subject, status, active, slug FROM campaigns WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let mut changes = serde_json::Map::new();
    let outcome = match current {
        None => {
            sqlx::query("INSERT INTO campaigns (id, name, subject, status, active, slug, deactivated_at) VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 THEN NULL ELSE now() END)")
                .bind(id).bind(&input.name).bind(&input.subject).bind(&input.status).bind(input.active).bind(&input.slug)
                .execute(&mut *conn).await?;
            changes.insert(
                "created".into(),
                serde_json::to_value(input).unwrap_or(Value::Null),
            );
            Outcome::Created
        }
        Some(row) => {
            let before = json!({
                "name": row.try_get::<String, _>("name")?, "subject": row.try_get::<Option<String>, _>("subject")?,
                "status": row.try_get::<String, _>("status")?, "active": row.try_get::<bool, _>("active")?, "slug": row.try_get::<Option<String>, _>("slug")?,
            });
            let after = json!({ "name": input.name, "subject": input.subject, "status": input.status, "active": input.active, "slug": input.slug });
            diff(&before, &after, &mut changes);
            if !changes.is_empty() {
                sqlx::query("UPDATE campaigns SET name = $2, subject = $3, status = $4, active = $5, slug = $6, updated_at = now(),
                             deactivated_at = CASE WHEN $5 THEN NULL ELSE coalesce(deactivated_at, now()) END WHERE id = $1")
                    .bind(id).bind(&input.name).bind(&input.subject).bind(&input.status).bind(input.active).bind(&input.slug)
                    .execute(&mut *conn).await?;
            }
            Outcome::Updated
        }
    };
    if let Some(mailjet) = input.mailjet_campaign_id {
        set_mapping(conn, "mailjet", id, &mailjet.to_string(), &mut changes).await?;
    }
    if let Some(channel) = &input.slack_channel {
        set_mapping(conn, "slack", id, channel, &mut changes).await?;
    }
    if changes.is_empty() {
        return Ok(Outcome::Unchanged);
    }
    let action = if outcome == Outcome::Created {
        "campaign.created"
    } else {
        "campaign.updated"
    };
    audit::record(conn, actor, action, "campaign", id, Value::Object(changes)).await?;
    Ok(outcome)
}

fn diff(before: &Value, after: &Value, changes: &mut serde_json::Map<String, Value>) {
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (field, new) in a {
            let old = b.get(field).cloned().unwrap_or(Value::Null);
            if &old != new {
                changes.insert(field.clone(), json!({ "from": old, "to": new }));
            }
        }
    }
}

async fn check_conflicts(
    conn: &mut PgConnection,
    id: &str,
    input: &CampaignInput,
) -> Result<(), WriteError> {
    if let Some(mailjet) = input.mailjet_campaign_id {
        let owner: Option<String> = sqlx::query_scalar("SELECT internal_id FROM mcp_integrations WHERE service = 'mailjet' AND external_id = $1 AND internal_id <> $2")
            .bind(mailjet.to_string()).bind(id).fetch_optional(&mut *conn).await?;
        if let Some(owner) = owner {
            return Err(WriteError::Conflict(format!(
                "Mailjet campaign {mailjet} is already mapped to campaign {owner:?}"
            )));
        }
    }
    if let Some(channel) = &input.slack_channel {
        let owner: Option<String> = sqlx::query_scalar("SELECT internal_id FROM mcp_integrations WHERE service = 'slack' AND external_id = $1 AND internal_id <> $2")
            .bind(channel).bind(id).fetch_optional(&mut *conn).await?;
        if let Some(owner) = owner {
            return Err(WriteError::Conflict(format!(
                "Slack channel {channel} is already mapped to campaign {owner:?}"
            )));
        }
    }
    if let Some(slug) = &input.slug {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT id FROM campaigns WHERE slug = $1 AND id <> $2")
                .bind(slug)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(owner) = owner {
            return Err(WriteError::Conflict(format!(
                "slug {slug:?} is already used by campaign {owner:?}"
            )));
        }
    }
    Ok(())
}

async fn set_mapping(
    conn: &mut PgConnection,
    service: &str,
    id: &str,
    external: &str,
    changes: &mut serde_json::Map<String, Value>,
) -> Result<(), WriteError> {
    let current: Option<String> = sqlx::query_scalar(
        "SELECT external_id FROM mcp_integrations WHERE service = $1 AND internal_id = $2",
    )
    .bind(service)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if current.as_deref() == Some(external) {
        return Ok(());
    }
    sqlx::query("DELETE FROM mcp_integrations WHERE service = $1 AND internal_id = $2")
        .bind(service)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO mcp_integrations (service, external_id, internal_id, matched_by) VALUES ($1, $2, $3, 'api')")
        .bind(service).bind(external).bind(id).execute(&mut *conn).await?;
    changes.insert(
        format!("{service}Mapping"),
        json!({ "from": current, "to": external }),
    );
    Ok(())
}

/// Deactivates campaign `id` (history is kept). None when there is no such campaign.
pub async fn deactivate(
    conn: &mut PgConnection,
    actor: &Actor,
    id: &str,
) -> Result<Option<Outcome>, WriteError> {
    let was: Option<bool> =
        sqlx::query_scalar("SELECT active FROM campaigns WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    match was {
        None => Ok(None),
        Some(false) => Ok(Some(Outcome::Unchanged)),
        Some(true) => {
            sqlx::query("UPDATE campaigns SET active = false, deactivated_at = now(), updated_at = now() WHERE id = $1").bind(id).execute(&mut *conn).await?;
            audit::record(
                conn,
                actor,
                "campaign.deactivated",
                "campaign",
                id,
                json!({ "active": { "from": true, "to": false } }),
            )
            .await?;
            Ok(Some(Outcome::Updated))
        }
    }
}

/// Checks an id the Campaign Manager owns.
pub fn validate_id(id: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_id(&mut errors, "id", id);
    errors
}

/// The id of the campaign whose slug (or, failing that, id) is `key`.
pub async fn id_by_slug_or_id(pool: &PgPool, key: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM campaigns WHERE slug = $1 OR id = $1 ORDER BY (slug = $1) DESC NULLS LAST LIMIT 1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await
}
