//! A send request as the API and `send` take it, and everything about it that can be checked
//! without the database: a 400 for its form, a 422 when it only repeats an address.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::store::batch::ItemErrors;
use crate::store::validate::{FieldError, check_email, check_len, check_nul, check_text};

/// Most recipients listed in one validation answer.
const MAX_LISTED: usize = 1_000;
/// Largest `variables` of one recipient, as JSON.
const MAX_VARIABLES_BYTES: usize = 16 * 1024;

/// A send request.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({
    "campaignId": "spring-launch",
    "templateId": 4242,
    "recipients": [{"email": "ada@example.com", "name": "Ada", "variables": {"first_name": "Ada"}}],
    "testMode": true
}))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailRequestInput {
    /// Our campaign's id (it must exist and be active, else 422).
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    pub campaign_id: String,
    /// The Mailjet template (imported by `sync_mailjet_templates`; unknown: 422).
    #[serde(deserialize_with = "crate::store::validate::whole_number")]
    #[schema(minimum = 1)]
    pub template_id: i64,
    /// 1 to `EMAIL_MAX_RECIPIENTS` recipients, each address once ignoring case (a repeat: 422).
    #[schema(min_items = 1)]
    pub recipients: Vec<RecipientInput>,
    /// Send no earlier than this (RFC 3339); now when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "rfc3339"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Send through Mailjet's `SandboxMode`: validated, nothing delivered.
    #[serde(default)]
    pub test_mode: bool,
}

fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid `scheduledAt`: {raw:?} is not an RFC 3339 time such as 2026-12-01T09:00:00Z"
                ))
            })
    })
    .transpose()
}

/// One recipient.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientInput {
    /// The address, as for a team member: one `@`, a dot inside the domain, at most 320
    /// characters, no spaces, control or invisible characters (the document's pattern is the
    /// team member's).
    #[schema(max_length = 320)]
    pub email: String,
    /// Up to 500 characters (no U+0000).
    #[serde(default)]
    #[schema(max_length = 500, pattern = "^[^\u{0}]*$")]
    pub name: String,
    /// Template variables (`{{var:name}}`) of this recipient: any JSON without U+0000, at most
    /// 16 KiB.
    #[serde(default)]
    #[schema(schema_with = crate::store::validate::variables_schema)]
    pub variables: Map<String, Value>,
}

/// What is wrong with a request: fields of the request, and recipients by index.
#[derive(Debug, Default)]
pub struct Problems {
    pub fields: Vec<FieldError>,
    pub recipients: Vec<ItemErrors>,
    /// Recipients with problems (more than are listed when there are many).
    pub invalid_recipients: usize,
    /// Recipients with a problem the schema describes (the others only repeat an address).
    pub malformed: usize,
}

impl Problems {
    /// Whether there is nothing wrong.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.invalid_recipients == 0
    }

    /// Whether every problem is a repeated address: the request follows the schema, and is
    /// refused for what it says (422), not for its form (400).
    pub fn only_repeats(&self) -> bool {
        self.fields.is_empty() && self.malformed == 0
    }

    /// One line saying what is wrong.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self.fields.iter().map(ToString::to_string).collect();
        if self.invalid_recipients > 0 {
            let listed = self.recipients.len();
            let first = self
                .recipients
                .first()
                .map(|i| {
                    let what = i
                        .errors
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    format!(" (first: recipients[{}].{what})", i.index)
                })
                .unwrap_or_default();
            parts.push(if listed < self.invalid_recipients {
                format!(
                    "{} recipients are invalid, the first {listed} are listed{first}",
                    self.invalid_recipients
                )
            } else {
                format!("{} recipients are invalid{first}", self.invalid_recipients)
            });
        }
        parts.join("; ")
    }
}

/// What is wrong with one recipient on its own (its form; repeats are the request's).
fn recipient_errors(r: &RecipientInput) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_email(&mut errors, "email", &r.email);
    check_len(&mut errors, "name", &r.name, 0, 500);
    check_text(&mut errors, "name", &r.name);
    for (key, value) in &r.variables {
        check_text(&mut errors, "variables", key);
        check_nul(&mut errors, &format!("variables.{key}"), value);
    }
    let size = serde_json::to_vec(&r.variables).map_or(0, |v| v.len());
    if size > MAX_VARIABLES_BYTES {
        errors.push(FieldError::new(
            "variables",
            format!("is {size} bytes of JSON"),
            format!("at most {MAX_VARIABLES_BYTES} bytes"),
        ));
    }
    errors
}

impl EmailRequestInput {
    /// Everything wrong with the request that can be told without the database.
    pub fn validate(&self, max_recipients: usize) -> Problems {
        let mut problems = Problems::default();
        let fields = &mut problems.fields;
        let mut id_errors = crate::store::campaigns::validate_id(&self.campaign_id);
        for e in &mut id_errors {
            e.field = "campaignId".to_owned();
        }
        fields.extend(id_errors);
        if self.template_id <= 0 {
            fields.push(FieldError::new(
                "templateId",
                format!("{} is not a template id", self.template_id),
                "a positive Mailjet template id",
            ));
        }
        match self.recipients.len() {
            0 => fields.push(FieldError::new(
                "recipients",
                "is empty",
                format!("1 to {max_recipients} recipients"),
            )),
            n if n > max_recipients => fields.push(FieldError::new(
                "recipients",
                format!("has {n} recipients"),
                format!("at most {max_recipients} (EMAIL_MAX_RECIPIENTS); split the request"),
            )),
            _ => {}
        }
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(self.recipients.len());
        for (index, r) in self.recipients.iter().enumerate() {
            let mut errors = recipient_errors(r);
            if !errors.is_empty() {
                problems.malformed += 1;
            }
            let key = r.email.to_lowercase();
            if let Some(first) = seen.get(&key) {
                errors.push(FieldError::new(
                    "email",
                    format!("is a duplicate of recipients[{first}]'s address"),
                    "each address once (ignoring case)",
                ));
            } else {
                seen.insert(key, index);
            }
            if !errors.is_empty() {
                problems.invalid_recipients += 1;
                if problems.recipients.len() < MAX_LISTED {
                    problems.recipients.push(ItemErrors { index, errors });
                }
            }
        }
        problems
    }

    /// SHA-256 of the canonical JSON of the request (object keys sorted).
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical);
        hex::encode(digest)
    }
}
