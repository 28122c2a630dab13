//! Field-level validation shared by the API and the CLI: each problem names the field, what is
//! wrong and what is expected.

use serde::Serialize;
use utoipa::ToSchema;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as named in the JSON body (camelCase).
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// What is expected.
    pub expected: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: &str, problem: impl Into<String>, expected: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            problem: problem.into(),
            expected: expected.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}; expected {}",
            self.field, self.problem, self.expected
        )
    }
}

/// A length (in characters) within `min..=max`.
pub fn check_len(errors: &mut Vec<FieldError>, field: &str, value: &str, min: usize, max: usize) {
    let len = value.chars().count();
    if len < min || len > max {
        let problem = if len == 0 {
            "is empty".to_owned()
        } else {
            format!("has {len} characters")
        };
        errors.push(FieldError::new(
            field,
            problem,
            format!("{min} to {max} characters"),
        ));
    }
}

/// A value accepted by `ok`.
pub fn check_pattern(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &str,
    ok: impl Fn(&str) -> bool,
    expected: &str,
) {
    if !ok(value) {
        errors.push(FieldError::new(
            field,
            format!("{value:?} is not allowed"),
            expected,
        ));
    }
}

/// An id owned by the Campaign Manager: 1–128 of letters, digits, `_ . : -`.
pub fn check_id(errors: &mut Vec<FieldError>, field: &str, id: &str) {
    check_pattern(
        errors,
        field,
        id,
        |s| {
            (1..=128).contains(&s.len())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
        },
        "1 to 128 letters, digits, _, ., : or -",
    );
}

/// A plausible email address (one @, a dot in the domain, no spaces, at most 320 characters).
pub fn check_email(errors: &mut Vec<FieldError>, field: &str, email: &str) {
    let ok = email.len() <= 320
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if !ok {
        errors.push(FieldError::new(
            field,
            format!("{email:?} is not an email address"),
            "an address such as name@example.com",
        ));
    }
}

/// A body that does not fit the schema, as one field problem (serde names the field).
pub fn from_serde(e: &serde_json::Error) -> FieldError {
    let message = e.to_string();
    // "unknown field `x`, expected one of …", "missing field `name`", "invalid type: … at line 1 column 9"
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field"))
        .unwrap_or("")
        .to_owned();
    let problem = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    FieldError::new(
        &field,
        problem,
        "a body that follows the schema in /api/openapi.json",
    )
}
