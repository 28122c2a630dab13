//! Team members, owned by the Campaign Manager; the Slack user sync matches them by email.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool, Row};
use utoipa::ToSchema;

use super::audit::{self, Actor};
use super::validate::{FieldError, check_email, check_len};
use super::{Outcome, WriteError};

/// A team member as the Campaign Manager sends it (`PUT /api/team-members/{id}`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TeamMemberInput {
    /// Work email; unique (ignoring case); Slack users are matched by it. One `@`, a dot
    /// inside the domain, at most 320 characters, no spaces, control or invisible characters.
    #[schema(
        max_length = 320,
        pattern = "^[^@\u{0}-\u{20}\u{7f}-\u{a0}\u{ad}\u{34f}\u{61c}\u{115f}\u{1160}\u{1680}\u{17b4}\u{17b5}\u{180b}-\u{180f}\u{2000}-\u{200f}\u{2028}-\u{202f}\u{205f}-\u{206f}\u{3000}\u{3164}\u{fe00}-\u{fe0f}\u{feff}\u{ffa0}\u{fff0}-\u{fff8}\u{1d173}-\u{1d17a}\u{e0000}-\u{e0fff}]+@[^.@\u{0}-\u{20}\u{7f}-\u{a0}\u{ad}\u{34f}\u{61c}\u{115f}\u{1160}\u{1680}\u{17b4}\u{17b5}\u{180b}-\u{180f}\u{2000}-\u{200f}\u{2028}-\u{202f}\u{205f}-\u{206f}\u{3000}\u{3164}\u{fe00}-\u{fe0f}\u{feff}\u{ffa0}\u{fff0}-\u{fff8}\u{1d173}-\u{1d17a}\u{e0000}-\u{e0fff}][^@\u{0}-\u{20}\u{7f}-\u{a0}\u{ad}\u{34f}\u{61c}\u{115f}\u{1160}\u{1680}\u{17b4}\u{17b5}\u{180b}-\u{180f}\u{2000}-\u{200f}\u{2028}-\u{202f}\u{205f}-\u{206f}\u{3000}\u{3164}\u{fe00}-\u{fe0f}\u{feff}\u{ffa0}\u{fff0}-\u{fff8}\u{1d173}-\u{1d17a}\u{e0000}-\u{e0fff}]*[.][^@\u{0}-\u{20}\u{7f}-\u{a0}\u{ad}\u{34f}\u{61c}\u{115f}\u{1160}\u{1680}\u{17b4}\u{17b5}\u{180b}-\u{180f}\u{2000}-\u{200f}\u{2028}-\u{202f}\u{205f}-\u{206f}\u{3000}\u{3164}\u{fe00}-\u{fe0f}\u{feff}\u{ffa0}\u{fff0}-\u{fff8}\u{1d173}-\u{1d17a}\u{e0000}-\u{e0fff}]*[^.@\u{0}-\u{20}\u{7f}-\u{a0}\u{ad}\u{34f}\u{61c}\u{115f}\u{1160}\u{1680}\u{17b4}\u{17b5}\u{180b}-\u{180f}\u{2000}-\u{200f}\u{2028}-\u{202f}\u{205f}-\u{206f}\u{3000}\u{3164}\u{fe00}-\u{fe0f}\u{feff}\u{ffa0}\u{fff0}-\u{fff8}\u{1d173}-\u{1d17a}\u{e0000}-\u{e0fff}]$"
    )]
    pub email: String,
    /// Display name, up to 500 characters (no U+0000).
    #[serde(default)]
    #[schema(max_length = 500, pattern = "^[^\u{0}]*$")]
    pub name: String,
    /// Whether the member is active (default true).
    #[serde(default = "yes")]
    pub active: bool,
    /// Whether the member opted out of DMs from campaign-sync (channel notices go on).
    /// Absent: left as it is (the member may have muted DMs from Slack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_dms_muted: Option<bool>,
}

fn yes() -> bool {
    true
}

impl TeamMemberInput {
    /// Every problem with this input, each naming the field.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_email(&mut errors, "email", &self.email);
        check_len(&mut errors, "name", &self.name, 0, 500);
        errors
    }
}

/// The Slack identity the user sync matched.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackIdentity {
    pub slack_user_id: String,
    pub workspace_id: String,
    pub username: String,
    pub is_active: bool,
    pub availability: Option<String>,
    pub last_synced: DateTime<Utc>,
}

/// A team member as the API answers it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamMemberView {
    pub id: String,
    pub email: String,
    pub name: String,
    pub active: bool,
    /// DMs are not sent to this member (they, or the Campaign Manager, muted them).
    pub slack_dms_muted: bool,
    pub slack: Option<SlackIdentity>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One team member, with the Slack identity the sync matched.
pub async fn get(pool: &PgPool, id: &str) -> Result<Option<TeamMemberView>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT t.id, t.email, t.name, t.active, t.slack_dms_muted, t.created_at, t.updated_at,
                s.slack_user_id, s.workspace_id, s.slack_username, s.is_active, s.availability, s.last_synced
           FROM team_members t
           LEFT JOIN LATERAL (SELECT * FROM slack_integrations si WHERE si.team_member_id = t.id ORDER BY si.is_active DESC, si.last_synced DESC LIMIT 1) s ON true
          WHERE t.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let slack_user_id: Option<String> = row.try_get("slack_user_id")?;
    let slack = match slack_user_id {
        Some(slack_user_id) => Some(SlackIdentity {
            slack_user_id,
            workspace_id: row.try_get("workspace_id")?,
            username: row.try_get("slack_username")?,
            is_active: row.try_get("is_active")?,
            availability: row.try_get("availability")?,
            last_synced: row.try_get("last_synced")?,
        }),
        None => None,
    };
    Ok(Some(TeamMemberView {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        active: row.try_get("active")?,
        slack_dms_muted: row.try_get("slack_dms_muted")?,
        slack,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    }))
}

/// Creates or updates team member `id` inside `conn`'s transaction, recording what changed.
/// Each field of `after` that differs from `before`, as `{from, to}`.
fn changes(before: &Value, after: &Value) -> serde_json::Map<String, Value> {
    let mut changes = serde_json::Map::new();
    for (field, new) in after.as_object().into_iter().flatten() {
        let old = before.get(field).cloned().unwrap_or(Value::Null);
        if &old != new {
            changes.insert(field.clone(), json!({ "from": old, "to": new }));
        }
    }
    changes
}

/// What the audit log keeps of a member's fields: the address as its pseudonym only (a
/// change `{from, to}` too), never the address itself.
fn without_address(mut v: Value) -> Value {
    let hash = |e: &Value| {
        e.as_str()
            .map_or(Value::Null, |e| json!(super::people::pseudonym(e)))
    };
    if v["email"].is_string() {
        v["email"] = hash(&v["email"]);
    } else if v["email"].is_object() {
        v["email"] = json!({ "from": hash(&v["email"]["from"]), "to": hash(&v["email"]["to"]) });
    }
    v
}

/// An email belongs to one team member (ignoring case): another's is a conflict.
async fn email_is_free(conn: &mut PgConnection, id: &str, email: &str) -> Result<(), WriteError> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT id FROM team_members WHERE lower(email) = lower($1) AND id <> $2",
    )
    .bind(email)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match owner {
        Some(owner) => Err(WriteError::Conflict(format!(
            "email: the address already belongs to team member {owner:?}"
        ))),
        None => Ok(()),
    }
}

pub async fn upsert(
    conn: &mut PgConnection,
    actor: &Actor,
    id: &str,
    input: &TeamMemberInput,
) -> Result<Outcome, WriteError> {
    email_is_free(conn, id, &input.email).await?;
    let current = sqlx::query(
        "SELECT email, name, active, slack_dms_muted FROM team_members WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let mut after = json!({ "email": input.email, "name": input.name, "active": input.active });
    if let Some(muted) = input.slack_dms_muted {
        after["slack_dms_muted"] = json!(muted);
    }
    let Some(row) = current else {
        sqlx::query("INSERT INTO team_members (id, email, name, active, slack_dms_muted) VALUES ($1, $2, $3, $4, coalesce($5, false))")
            .bind(id)
            .bind(&input.email)
            .bind(&input.name)
            .bind(input.active)
            .bind(input.slack_dms_muted)
            .execute(&mut *conn)
            .await?;
        audit::record(
            conn,
            actor,
            "team_member.created",
            "team_member",
            id,
            json!({ "created": without_address(after) }),
        )
        .await?;
        return Ok(Outcome::Created);
    };
    let before = json!({ "email": row.try_get::<String, _>("email")?, "name": row.try_get::<String, _>("name")?, "active": row.try_get::<bool, _>("active")?,
        "slack_dms_muted": row.try_get::<bool, _>("slack_dms_muted")? });
    let changes = changes(&before, &after);
    if changes.is_empty() {
        return Ok(Outcome::Unchanged);
    }
    sqlx::query("UPDATE team_members SET email = $2, name = $3, active = $4, slack_dms_muted = coalesce($5, slack_dms_muted), updated_at = now() WHERE id = $1")
        .bind(id).bind(&input.email).bind(&input.name).bind(input.active).bind(input.slack_dms_muted)
        .execute(&mut *conn).await?;
    audit::record(
        conn,
        actor,
        "team_member.updated",
        "team_member",
        id,
        without_address(Value::Object(changes)),
    )
    .await?;
    Ok(Outcome::Updated)
}
