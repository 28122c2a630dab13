//! Slack identities (`slack_integrations`): the Slack users of the workspace, each matched to a
//! team member by email, with their availability.

use sqlx::{PgConnection, PgPool};

/// The team member whose email is `email` (ignoring case).
pub async fn member_by_email(
    tx: &mut PgConnection,
    email: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM team_members WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_optional(&mut *tx)
        .await
}

/// A Slack user as an event or a page of `users.list` gives it.
#[derive(Debug, Clone, Default)]
pub struct SlackUserRow {
    pub slack_user_id: String,
    pub username: String,
    pub real_name: Option<String>,
    pub display_name: Option<String>,
    /// Lowercased, when the profile has one.
    pub email: Option<String>,
    pub active: bool,
}

/// Upserts one user from a `user_change`/`team_join` event, keeping an earlier match when
/// `member` is unknown.
pub async fn upsert_one(
    tx: &mut PgConnection,
    workspace: &str,
    member: Option<&str>,
    user: &SlackUserRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO slack_integrations (team_member_id, workspace_id, slack_user_id, slack_username, real_name, display_name, is_active, last_synced)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())
         ON CONFLICT (workspace_id, slack_user_id) DO UPDATE SET team_member_id = coalesce(EXCLUDED.team_member_id, slack_integrations.team_member_id),
           slack_username = EXCLUDED.slack_username, real_name = EXCLUDED.real_name, display_name = EXCLUDED.display_name,
           is_active = EXCLUDED.is_active, last_synced = now(), updated_at = now()",
    )
    .bind(member)
    .bind(workspace)
    .bind(&user.slack_user_id)
    .bind(&user.username)
    .bind(&user.real_name)
    .bind(&user.display_name)
    .bind(user.active)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A user whose link to a team member a page changed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkChange {
    pub slack_user_id: String,
    /// The member it is linked to now.
    pub now: Option<String>,
    /// The member it was linked to before.
    pub before: Option<String>,
    /// Whether the user is new to us.
    pub new: bool,
}

/// Upserts a page of users in one statement, matching each to a team member by email, and
/// answers every user's link before and after. `updated_at` moves only when something but the
/// sync time changed.
pub async fn upsert_page(
    tx: &mut PgConnection,
    workspace: &str,
    users: &[SlackUserRow],
) -> Result<Vec<LinkChange>, sqlx::Error> {
    let column = |f: fn(&SlackUserRow) -> Option<String>| users.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<&str> = users.iter().map(|u| u.slack_user_id.as_str()).collect();
    let usernames: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    let active: Vec<bool> = users.iter().map(|u| u.active).collect();
    sqlx::query_as(
        "WITH page AS (
             SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[])
                 AS p(slack_user_id, username, real_name, display_name, email, active)
         ), matched AS (
             SELECT p.*, tm.id AS team_member_id FROM page p
             LEFT JOIN team_members tm ON p.email IS NOT NULL AND lower(tm.email) = p.email
         ), old AS (
             SELECT s.slack_user_id, s.team_member_id FROM slack_integrations s
             WHERE s.workspace_id = $1 AND s.slack_user_id = ANY($2)
         ), up AS (
             INSERT INTO slack_integrations AS s
                 (workspace_id, slack_user_id, slack_username, real_name, display_name, is_active, team_member_id, last_synced)
             SELECT $1, slack_user_id, username, real_name, display_name, active, team_member_id, now() FROM matched
             ON CONFLICT (workspace_id, slack_user_id) DO UPDATE SET
                 slack_username = excluded.slack_username,
                 real_name = excluded.real_name,
                 display_name = excluded.display_name,
                 is_active = excluded.is_active,
                 team_member_id = excluded.team_member_id,
                 last_synced = excluded.last_synced,
                 updated_at = CASE WHEN (s.slack_username, s.real_name, s.display_name, s.is_active, s.team_member_id)
                         IS DISTINCT FROM (excluded.slack_username, excluded.real_name, excluded.display_name, excluded.is_active, excluded.team_member_id)
                     THEN now() ELSE s.updated_at END
             RETURNING s.slack_user_id, s.team_member_id
         )
         SELECT up.slack_user_id, up.team_member_id AS now, old.team_member_id AS before, old.slack_user_id IS NULL AS new
         FROM up LEFT JOIN old USING (slack_user_id)",
    )
    .bind(workspace)
    .bind(&ids)
    .bind(&usernames)
    .bind(column(|u| u.real_name.clone()))
    .bind(column(|u| u.display_name.clone()))
    .bind(column(|u| u.email.clone()))
    .bind(&active)
    .fetch_all(&mut *tx)
    .await
}

/// The active users matched to a team member, whose availability is followed.
pub async fn matched_active(pool: &PgPool, workspace: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT slack_user_id FROM slack_integrations
         WHERE workspace_id = $1 AND is_active AND team_member_id IS NOT NULL ORDER BY slack_user_id",
    )
    .bind(workspace)
    .fetch_all(pool)
    .await
}

/// Records a user's availability (`active` or `away`).
pub async fn set_availability(
    pool: &PgPool,
    workspace: &str,
    user: &str,
    availability: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE slack_integrations SET availability = $3, availability_at = now()
         WHERE workspace_id = $1 AND slack_user_id = $2",
    )
    .bind(workspace)
    .bind(user)
    .bind(availability)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deactivates the users of `workspace` that a full pass started at `since` did not see
/// (deleted from Slack); how many.
pub async fn deactivate_unseen(
    db: &PgPool,
    workspace: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<u64, sqlx::Error> {
    let gone = sqlx::query(
        "UPDATE slack_integrations SET is_active = false, updated_at = now()
         WHERE workspace_id = $1 AND is_active AND last_synced < $2",
    )
    .bind(workspace)
    .bind(since)
    .execute(db)
    .await?;
    Ok(gone.rows_affected())
}
