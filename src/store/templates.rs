//! Mailjet templates imported by `sync_mailjet_templates` (`email_templates`).

use serde_json::Value;
use sqlx::PgPool;

/// A template as the import stores it.
#[derive(Debug, Clone)]
pub struct TemplateRow<'a> {
    pub id: i64,
    pub name: &'a str,
    pub category: Option<String>,
    pub variables: Vec<&'a String>,
    pub variable_defaults: Value,
    pub content_hash: String,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// Upserts a template; an unchanged one only has its `synced_at` moved.
pub async fn upsert(pool: &PgPool, t: &TemplateRow<'_>) -> Result<Change, sqlx::Error> {
    let row: Option<(bool,)> = sqlx::query_as(
        "INSERT INTO email_templates AS t (id, name, category, variables, variable_defaults, content_hash, synced_at)
         VALUES ($1, $2, $3, $4, $5, $6, now())
         ON CONFLICT (id) DO UPDATE SET
             name = excluded.name, category = excluded.category, variables = excluded.variables,
             variable_defaults = excluded.variable_defaults, content_hash = excluded.content_hash,
             synced_at = excluded.synced_at, updated_at = now()
         WHERE (t.name, t.category, t.variables, t.variable_defaults, t.content_hash)
             IS DISTINCT FROM (excluded.name, excluded.category, excluded.variables, excluded.variable_defaults, excluded.content_hash)
         RETURNING (xmax = 0)",
    )
    .bind(t.id)
    .bind(t.name)
    .bind(&t.category)
    .bind(&t.variables)
    .bind(&t.variable_defaults)
    .bind(&t.content_hash)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((true,)) => Change::Created,
        Some((false,)) => Change::Updated,
        None => {
            sqlx::query("UPDATE email_templates SET synced_at = now() WHERE id = $1")
                .bind(t.id)
                .execute(pool)
                .await?;
            Change::Unchanged
        }
    })
}
