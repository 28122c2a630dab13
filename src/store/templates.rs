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

/// A variable a template uses.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateVariable {
    pub name: String,
    /// What Mailjet uses when a recipient gives none; absent when the recipient must give it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Whether an email request must give it for every recipient.
    pub required: bool,
}

/// A template as the API lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    /// Mailjet's template id (`templateId` of an email request).
    pub id: i64,
    pub name: String,
    pub category: Option<String>,
    pub variables: Vec<TemplateVariable>,
    /// When a send that used it was last accepted by Mailjet.
    pub last_used: Option<chrono::DateTime<chrono::Utc>>,
    /// The engagement score of every send that used it (absent before any was delivered).
    pub performance_score: Option<f64>,
}

/// How the list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Best performance score first (templates never scored last).
    Performance,
    /// Most recently used first (never used last).
    Recency,
    Name,
}

type TemplateRecord = (
    i64,
    String,
    Option<String>,
    Vec<String>,
    Value,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<f64>,
);

/// A page of templates, optionally of one category.
pub async fn list(
    pool: &PgPool,
    category: Option<&str>,
    sort: Sort,
    limit: i64,
    offset: i64,
) -> Result<Vec<TemplateView>, sqlx::Error> {
    let order = match sort {
        Sort::Performance => "performance_score DESC NULLS LAST, id",
        Sort::Recency => "last_used DESC NULLS LAST, id",
        Sort::Name => "lower(name), id",
    };
    let rows: Vec<TemplateRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, name, category, variables, variable_defaults, last_used, performance_score FROM email_templates
         WHERE ($1::text IS NULL OR category = $1) ORDER BY {order} LIMIT $2 OFFSET $3"
    )))
    .bind(category)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(view).collect())
}

fn view(row: TemplateRecord) -> TemplateView {
    let (id, name, category, variables, defaults, last_used, performance_score) = row;
    TemplateView {
        id,
        name,
        category,
        variables: variables
            .into_iter()
            .map(|name| {
                let default = defaults
                    .get(&name)
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                TemplateVariable {
                    required: default.is_none(),
                    name,
                    default,
                }
            })
            .collect(),
        last_used,
        performance_score,
    }
}

/// The variables of template `id` that have no default (`None` when there is no such template).
pub async fn required_variables(
    tx: &mut sqlx::PgConnection,
    id: i64,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    let row: Option<(Vec<String>, Value)> =
        sqlx::query_as("SELECT variables, variable_defaults FROM email_templates WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(row.map(|(variables, defaults)| {
        variables
            .into_iter()
            .filter(|v| defaults.get(v).is_none_or(Value::is_null))
            .collect()
    }))
}
