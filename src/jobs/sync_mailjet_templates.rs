//! `sync_mailjet_templates` (hourly): every Mailjet template into `email_templates` with its
//! name, category and the variables its subject, HTML and text use — `{{var:name}}`,
//! `{{var:name:"default"}}`, and the older `[[var:name]]` — with their defaults. A template
//! whose content did not change (same SHA-256) is left as it is. One template's failure is
//! counted against it and does not fail the others.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::support::runs::{self, RunSummary};
use crate::clients::mailjet::{MailjetClient, MailjetTemplate, TemplateContent};
use crate::queue::job::{self, JobContext, JobDefinition, JobError, NoArgs};
use crate::store::templates;

/// Stable name.
pub const NAME: &str = "sync_mailjet_templates";

/// The job: its policy, schedule and handler (`crate::jobs::ALL` lists it).
pub const JOB: JobDefinition = JobDefinition::new(NAME, "import templates and their variables")
    .schedule("0 15 * * * *")
    .timeout(Duration::from_secs(50 * 60))
    .runs(|ctx, args| Box::pin(async move { run(ctx, job::args(args)?).await }));

/// Templates listed per request.
const PAGE: usize = 100;
/// Contents fetched at once (the shared Mailjet rate paces them).
const CONCURRENCY: usize = 4;

/// The variables `content` uses, each with its default when one is given (the first default
/// seen wins). Names are `[A-Za-z0-9_.-]+`; spaces inside the braces are allowed.
pub fn variables(content: &str) -> BTreeMap<String, Option<String>> {
    let mut found = BTreeMap::new();
    for (open, close) in [("{{", "}}"), ("[[", "]]")] {
        let mut rest = content;
        while let Some(at) = rest.find(open) {
            rest = &rest[at + open.len()..];
            let Some(end) = rest.find(close) else { break };
            if let Some((name, default)) = parse_tag(&rest[..end]) {
                let slot = found.entry(name).or_insert(None);
                if slot.is_none() {
                    *slot = default;
                }
            }
        }
    }
    found
}

/// `var:name` or `var:name:"default"` (inside the braces) → (name, default).
fn parse_tag(tag: &str) -> Option<(String, Option<String>)> {
    let body = tag.trim().strip_prefix("var:")?;
    let (name, default) = match body.split_once(':') {
        Some((name, default)) => {
            let default = default.trim();
            let unquoted = default
                .strip_prefix('"')
                .and_then(|d| d.strip_suffix('"'))
                .unwrap_or(default);
            (name, Some(unquoted.to_owned()))
        }
        None => (body, None),
    };
    let name = name.trim();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    valid.then(|| (name.to_owned(), default))
}

fn content_hash(content: &TemplateContent) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [
        content.subject(),
        content.html.as_deref().unwrap_or(""),
        content.text.as_deref().unwrap_or(""),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    hex::encode(ctx.finish())
}

/// Runs one sync as a recorded run.
pub async fn run(ctx: JobContext, _args: NoArgs) -> Result<(), JobError> {
    runs::recorded(ctx, NAME, |ctx, _run_id| async move {
        let deps = &ctx.deps;
        let client = crate::clients::mailjet_from_settings(&deps.settings, deps.redis.clone())
            .map_err(JobError::Permanent)?;
        let mut listed = Vec::new();
        loop {
            let page = client.templates(listed.len(), PAGE).await?;
            let last = page.len() < PAGE;
            listed.extend(page);
            if last {
                break;
            }
        }
        let results: Vec<Result<Change, String>> = futures_util::stream::iter(listed)
            .map(|template| {
                let client = &client;
                let pool = &deps.db;
                async move {
                    let id = template.id;
                    import(pool, client, template)
                        .await
                        .map_err(|e| format!("template {id}: {e}"))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let count = |c: Change| {
            results
                .iter()
                .filter(|r| matches!(r, Ok(x) if *x == c))
                .count()
        };
        let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        for e in &errors {
            tracing::warn!(error = %e, "template import failed");
        }
        let synced = results.len() - errors.len();
        metrics::counter!("sync_items_total", "job" => NAME, "outcome" => "synced")
            .increment(synced as u64);
        metrics::counter!("sync_items_total", "job" => NAME, "outcome" => "failed")
            .increment(errors.len() as u64);
        Ok(RunSummary {
            items_synced: synced as i32,
            items_failed: errors.len() as i32,
            counts: json!({
                "created": count(Change::Created),
                "updated": count(Change::Updated),
                "unchanged": count(Change::Unchanged),
                "vanished": count(Change::Vanished),
                "errors": errors.iter().take(20).collect::<Vec<_>>(),
            }),
        })
    })
    .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Unchanged,
    /// Listed, then gone before its content was read.
    Vanished,
}

async fn import(
    pool: &sqlx::PgPool,
    client: &impl MailjetClient,
    template: MailjetTemplate,
) -> Result<Change, String> {
    let Some(content) = client
        .template_content(template.id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Change::Vanished);
    };
    let mut vars = variables(content.subject());
    for part in [&content.html, &content.text].into_iter().flatten() {
        for (name, default) in variables(part) {
            let slot = vars.entry(name).or_insert(None);
            if slot.is_none() {
                *slot = default;
            }
        }
    }
    let names: Vec<&String> = vars.keys().collect();
    let defaults: serde_json::Map<String, Value> = vars
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|d| (k.clone(), Value::String(d.clone()))))
        .collect();
    let category = (!template.categories.is_empty()).then(|| template.categories.join(","));
    let hash = content_hash(&content);
    let row = templates::TemplateRow {
        id: template.id,
        name: &template.name,
        category,
        variables: names,
        variable_defaults: Value::Object(defaults),
        content_hash: hash,
    };
    let change = templates::upsert(pool, &row)
        .await
        .map_err(|e| crate::store::describe_sqlx(&e))?;
    Ok(match change {
        templates::Change::Created => Change::Created,
        templates::Change::Updated => Change::Updated,
        templates::Change::Unchanged => Change::Unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_with_and_without_defaults_in_both_syntaxes() {
        let found = variables(
            r#"<h1>{{var:headline:"Big news"}}</h1> Hi {{ var:first_name }}, {{var:first_name:"friend"}}
               [[var:legacy]] {{data:company:"us"}} {{var:}} {{var:bad name}} {{var:cta_url}"#,
        );
        let expected: BTreeMap<String, Option<String>> = [
            ("first_name", Some("friend")),
            ("headline", Some("Big news")),
            ("legacy", None),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
        .collect();
        assert_eq!(
            found, expected,
            "data: tags, empty and invalid names and unclosed tags are not variables"
        );
    }

    #[test]
    fn the_hash_changes_with_any_part() {
        let a = TemplateContent {
            html: Some("<p>x</p>".into()),
            text: Some("x".into()),
            headers: Some(json!({ "Subject": "s" })),
        };
        let mut b = a.clone();
        b.text = Some("y".into());
        assert_ne!(content_hash(&a), content_hash(&b));
        assert_eq!(content_hash(&a), content_hash(&a.clone()));
    }
}
