//! Batches of upserts (API `…:batch` endpoints and the CLI importers): every item is checked
//! first and problems are reported by index; then the batch is written in one transaction.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

use super::audit::Actor;
use super::validate::{FieldError, check_id};
use super::{Outcome, WriteError, campaigns, team_members};

/// Most items in one batch.
pub const MAX_ITEMS: usize = 1000;

/// Something that can be upserted by id.
pub trait Upsert: DeserializeOwned + Send + Sync {
    /// What is stored, as the API shows it.
    type View: Serialize + Send;
    /// The kind of thing, as messages name it (`campaign`).
    const KIND: &'static str;
    /// Field problems of this item.
    fn problems(&self) -> Vec<FieldError>;
    /// The stored item `id`, if any.
    fn view(
        pool: &PgPool,
        id: &str,
    ) -> impl std::future::Future<Output = Result<Option<Self::View>, sqlx::Error>> + Send;
    /// Writes it inside `conn`'s transaction.
    fn upsert(
        &self,
        conn: &mut PgConnection,
        actor: &Actor,
        id: &str,
    ) -> impl std::future::Future<Output = Result<Outcome, WriteError>> + Send;
}

impl Upsert for campaigns::CampaignInput {
    type View = campaigns::CampaignView;
    const KIND: &'static str = "campaign";
    fn problems(&self) -> Vec<FieldError> {
        self.validate()
    }
    async fn view(pool: &PgPool, id: &str) -> Result<Option<Self::View>, sqlx::Error> {
        campaigns::get(pool, id).await
    }
    async fn upsert(
        &self,
        conn: &mut PgConnection,
        actor: &Actor,
        id: &str,
    ) -> Result<Outcome, WriteError> {
        campaigns::upsert(conn, actor, id, self).await
    }
}

impl Upsert for team_members::TeamMemberInput {
    type View = team_members::TeamMemberView;
    const KIND: &'static str = "team member";
    fn problems(&self) -> Vec<FieldError> {
        self.validate()
    }
    async fn view(pool: &PgPool, id: &str) -> Result<Option<Self::View>, sqlx::Error> {
        team_members::get(pool, id).await
    }
    async fn upsert(
        &self,
        conn: &mut PgConnection,
        actor: &Actor,
        id: &str,
    ) -> Result<Outcome, WriteError> {
        team_members::upsert(conn, actor, id, self).await
    }
}

/// A checked item.
#[derive(Debug, Clone)]
pub struct Item<T> {
    /// Position in the batch (0-based).
    pub index: usize,
    /// The record's id.
    pub id: String,
    /// The record.
    pub input: T,
}

/// The problems of one item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemErrors {
    /// Position in the batch (0-based).
    pub index: usize,
    /// Its problems.
    pub errors: Vec<FieldError>,
}

/// What a batch did to each item.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct BatchReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub items: Vec<ItemOutcome>,
}

/// What happened to one item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemOutcome {
    pub index: usize,
    pub id: String,
    pub outcome: Outcome,
}

/// A write that failed at one item (nothing of the batch was stored).
#[derive(Debug, thiserror::Error)]
#[error("item {index} ({id}): {error}")]
pub struct BatchWriteError {
    pub index: usize,
    pub id: String,
    pub error: WriteError,
}

/// What a repeated id is told to be.
const REPEATED_ID: &str = "each id once per batch";

/// Whether every problem [`check`] found is an id repeated within the batch: the batch follows
/// the schema and is refused for what it says, not for its form.
pub fn repeats_only(problems: &[ItemErrors]) -> bool {
    problems
        .iter()
        .all(|p| p.errors.iter().all(|e| e.expected == REPEATED_ID))
}

/// Checks `values` (objects with an `id` and the record's fields).
pub fn check<T: Upsert>(values: Vec<Value>) -> Result<Vec<Item<T>>, Vec<ItemErrors>> {
    let mut items = Vec::with_capacity(values.len());
    let mut problems = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (index, value) in values.into_iter().enumerate() {
        match check_one::<T>(value) {
            Ok((id, input)) => {
                if let Some(first) = seen.insert(id.clone(), index) {
                    let error = FieldError::new(
                        "id",
                        format!("{id:?} also appears at index {first}"),
                        REPEATED_ID,
                    );
                    problems.push(ItemErrors {
                        index,
                        errors: vec![error],
                    });
                } else {
                    items.push(Item { index, id, input });
                }
            }
            Err(errors) => problems.push(ItemErrors { index, errors }),
        }
    }
    if problems.is_empty() {
        Ok(items)
    } else {
        Err(problems)
    }
}

fn check_one<T: Upsert>(value: Value) -> Result<(String, T), Vec<FieldError>> {
    let mut nul = Vec::new();
    super::validate::check_nul(&mut nul, "", &value);
    if !nul.is_empty() {
        return Err(nul);
    }
    let Value::Object(mut fields) = value else {
        return Err(vec![FieldError::new(
            "",
            "is not an object",
            "an object with an id and the record's fields",
        )]);
    };
    let id = match fields.remove("id") {
        Some(Value::String(id)) => id,
        Some(other) => {
            return Err(vec![FieldError::new(
                "id",
                format!("{other} is not a string"),
                "a string id",
            )]);
        }
        None => return Err(vec![FieldError::new("id", "is missing", "a string id")]),
    };
    let mut errors = Vec::new();
    check_id(&mut errors, "id", &id);
    match serde_json::from_value::<T>(Value::Object(fields)) {
        Ok(input) => {
            errors.extend(input.problems());
            if errors.is_empty() {
                Ok((id, input))
            } else {
                Err(errors)
            }
        }
        Err(e) => {
            errors.push(super::validate::from_serde(&e));
            Err(errors)
        }
    }
}

/// Writes checked items in one transaction; the first failing item aborts the whole batch.
pub async fn apply<T: Upsert>(
    pool: &PgPool,
    actor: &Actor,
    items: &[Item<T>],
) -> Result<BatchReport, BatchWriteError> {
    let fail = |item: Option<&Item<T>>, error: WriteError| BatchWriteError {
        index: item.map(|i| i.index).unwrap_or(0),
        id: item.map(|i| i.id.clone()).unwrap_or_default(),
        error,
    };
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| fail(None, WriteError::Db(e)))?;
    let mut report = BatchReport::default();
    for item in items {
        let outcome = item
            .input
            .upsert(&mut tx, actor, &item.id)
            .await
            .map_err(|e| fail(Some(item), e))?;
        match outcome {
            Outcome::Created => report.created += 1,
            Outcome::Updated => report.updated += 1,
            Outcome::Unchanged => report.unchanged += 1,
        }
        report.items.push(ItemOutcome {
            index: item.index,
            id: item.id.clone(),
            outcome,
        });
    }
    tx.commit()
        .await
        .map_err(|e| fail(None, WriteError::from_db(e)))?;
    Ok(report)
}
