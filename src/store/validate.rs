//! Field-level validation shared by the API and the CLI: each problem names the field, what is
//! wrong and what is expected.

use serde::{Deserialize, Serialize};
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

/// An integer field that also takes a JSON number with a zero fraction (`7.0`): JSON Schema
/// counts it as an integer, so a client generated from the document may send it.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    as_whole(&n).ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number")))
}

/// [`whole_number`] for an optional field.
pub fn optional_whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<i64>, D::Error> {
    let n: Option<serde_json::Number> = Option::deserialize(d)?;
    n.map(|n| {
        as_whole(&n).ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number")))
    })
    .transpose()
}

fn as_whole(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| {
                f.fract() == 0.0
                    && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(f)
            })
            .map(|f| f as i64)
    })
}

/// The schema of template variables: any JSON whose strings and keys hold no U+0000.
pub fn variables_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::RefOr::Ref(utoipa::openapi::Ref::from_schema_name("TemplateValues"))
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

/// A character that does not show: controls (C0, C1), and the format and filler characters
/// that render as nothing (zero-width spaces and joiners, bidirectional marks, the BOM, soft
/// hyphens, Hangul fillers). An address containing one looks like another address.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// Every string (and object key) of `value` holding U+0000, which PostgreSQL cannot store in
/// text or jsonb, as one problem each, named by its path in the body (`recipients[2].name`).
pub fn check_nul(errors: &mut Vec<FieldError>, path: &str, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => errors.push(nul_error(path)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_nul(errors, &format!("{path}[{i}]"), item);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let field = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key.contains('\0') {
                    errors.push(nul_error(&field.replace('\0', "\\u0000")));
                } else {
                    check_nul(errors, &field, item);
                }
            }
        }
        _ => {}
    }
}

/// A text field holding U+0000.
pub fn check_text(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if value.contains('\0') {
        errors.push(nul_error(field));
    }
}

fn nul_error(field: &str) -> FieldError {
    FieldError::new(
        field,
        "contains the NUL character (U+0000), which cannot be stored",
        "text without U+0000",
    )
}

/// A plausible email address (one @, a dot in the domain, no spaces, no control or invisible
/// characters, at most 320 characters).
pub fn check_email(errors: &mut Vec<FieldError>, field: &str, email: &str) {
    if let Some((at, c)) = email.chars().enumerate().find(|(_, c)| is_invisible(*c)) {
        errors.push(FieldError::new(
            field,
            format!(
                "contains the invisible or control character U+{:04X} at position {}",
                u32::from(c),
                at + 1
            ),
            "an address of visible characters only, such as name@example.com",
        ));
        return;
    }
    let ok = email.chars().count() <= 320
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
            // Something like an address is not echoed: an error body never carries one.
            if email.contains('@') {
                format!(
                    "is not an email address ({} characters)",
                    email.chars().count()
                )
            } else {
                format!("{email:?} is not an email address")
            },
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_is_found_in_any_string_or_key_and_named_by_its_path() {
        let body = json!({
            "name": "ok",
            "recipients": [{"email": "a@example.com"}, {"name": "Ad\u{0}a", "variables": {"x\u{0}": 1, "y": ["\u{0}"]}}]
        });
        let mut errors = Vec::new();
        check_nul(&mut errors, "", &body);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "recipients[1].name",
                "recipients[1].variables.x\\u0000",
                "recipients[1].variables.y[0]"
            ]
        );
        assert!(errors[0].problem.contains("U+0000"));
    }

    #[test]
    fn addresses_with_control_or_invisible_characters_are_refused() {
        for bad in [
            "a\u{200B}@example.com",
            "a@exa\u{0}mple.com",
            "\u{FEFF}a@example.com",
            "a@example.com\u{7}",
            "a\u{202E}@example.com",
            "a\u{00AD}b@example.com",
        ] {
            let mut errors = Vec::new();
            check_email(&mut errors, "recipients[0].email", bad);
            assert_eq!(errors.len(), 1, "{bad:?}");
            assert!(errors[0].problem.contains("U+"), "{:?}", errors[0]);
        }
        let mut errors = Vec::new();
        check_email(&mut errors, "email", "ada.lovelace+news@example.co.uk");
        check_email(&mut errors, "email", "jos\u{e9}@exampl\u{e9}.fr");
        assert!(errors.is_empty(), "{errors:?}");
    }
}
