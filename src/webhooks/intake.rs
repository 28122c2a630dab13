//! What every delivery goes through once its sender is verified: split into events, made
//! storable, given an identity, and checked event by event, so one bad event never costs the
//! others.
//!
//! - U+0000 cannot be stored by PostgreSQL (neither text nor jsonb). A sender's event holding
//!   it is stored with each U+0000 replaced by U+FFFD (counted in
//!   `webhook_events_sanitized_total`), rather than refused: the sender would retry a refusal
//!   forever, and the event is still meaningful.
//! - An event's identity is the SHA-256 of its whole content (keys sorted), so a redelivery is
//!   recognised while two distinct events of one message in the same second (two opens from
//!   different devices) stay two.

use serde_json::Value;
use serde_json::value::RawValue;

use crate::store::webhook_events::NewEvent;

/// Replaces U+0000 in every string and object key with U+FFFD; returns whether it did.
pub fn sanitize(value: &mut Value) -> bool {
    match value {
        Value::String(s) if s.contains('\0') => {
            *s = s.replace('\0', "\u{FFFD}");
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |acc, v| sanitize(v) | acc),
        Value::Object(map) => {
            let mut changed = false;
            if map.keys().any(|k| k.contains('\0')) {
                let entries = std::mem::take(map);
                for (k, v) in entries {
                    map.insert(k.replace('\0', "\u{FFFD}"), v);
                }
                changed = true;
            }
            map.values_mut().fold(changed, |acc, v| sanitize(v) | acc)
        }
        _ => false,
    }
}

/// The identity of an event: hex SHA-256 of its canonical JSON (object keys sorted).
pub fn content_id(value: &Value) -> String {
    // serde_json's maps are ordered by key, so equal content serialises to equal bytes.
    let canonical = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical).as_ref())
}

/// The events of a Mailjet delivery as received: the elements of an array (v2, grouped) or
/// the one object (v1). A body that is not JSON, or neither an array nor an object, is an
/// error: there is nothing in it to keep.
pub fn split_group(body: &[u8]) -> Result<Vec<&RawValue>, String> {
    let start = body.trim_ascii_start();
    if start.starts_with(b"[") {
        serde_json::from_slice::<Vec<&RawValue>>(body).map_err(|e| format!("body is not JSON: {e}"))
    } else if start.starts_with(b"{") {
        serde_json::from_slice::<&RawValue>(body)
            .map(|raw| vec![raw])
            .map_err(|e| format!("body is not JSON: {e}"))
    } else {
        match serde_json::from_slice::<&RawValue>(body) {
            Err(e) => Err(format!("body is not JSON: {e}")),
            Ok(_) => Err("expected an event object or an array of them".to_owned()),
        }
    }
}

/// One Mailjet event from its raw text, or why it cannot be used.
pub fn mailjet_event(raw: &str) -> Result<NewEvent, String> {
    let mut item: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
    if !item.is_object() {
        return Err("is not an object".to_owned());
    }
    if sanitize(&mut item) {
        metrics::counter!("webhook_events_sanitized_total", "source" => "mailjet").increment(1);
    }
    let event = item
        .get("event")
        .and_then(Value::as_str)
        .ok_or("\"event\" is missing or not a string")?
        .to_owned();
    item.get("time")
        .and_then(Value::as_i64)
        .ok_or("\"time\" is missing or not an integer (unix seconds)")?;
    match item.get("MessageID") {
        Some(Value::Number(n)) => n.as_i64().ok_or("\"MessageID\" is not a 64-bit integer")?,
        _ => return Err("\"MessageID\" is missing or not an integer".to_owned()),
    };
    if let Some(custom) = item.get("CustomID")
        && !custom.is_string()
    {
        return Err("\"CustomID\" is not a string".to_owned());
    }
    Ok(NewEvent {
        external_id: content_id(&item),
        event_type: event,
        payload: item,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_in_strings_and_keys_becomes_the_replacement_character() {
        let mut v = json!({ "a\u{0}": "x\u{0}y", "list": ["\u{0}", 1], "ok": "fine" });
        assert!(sanitize(&mut v));
        assert_eq!(
            v,
            json!({ "a\u{FFFD}": "x\u{FFFD}y", "list": ["\u{FFFD}", 1], "ok": "fine" })
        );
        assert!(!sanitize(&mut v), "nothing left to replace");
    }

    #[test]
    fn identity_is_the_whole_content_whatever_the_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"event":"open","time":1,"ip":"1.1.1.1"}"#).expect("json");
        let b: Value =
            serde_json::from_str(r#"{"ip":"1.1.1.1","time":1,"event":"open"}"#).expect("json");
        let c: Value =
            serde_json::from_str(r#"{"event":"open","time":1,"ip":"2.2.2.2"}"#).expect("json");
        assert_eq!(content_id(&a), content_id(&b));
        assert_ne!(content_id(&a), content_id(&c));
        assert_eq!(content_id(&a).len(), 64);
    }

    #[test]
    fn a_group_splits_into_raw_events_and_a_bad_event_is_named() {
        let body = br#" [{"event":"open","time":1,"MessageID":5}, 7, {"event":"sent"}] "#;
        let raw = split_group(body).expect("array");
        assert_eq!(raw.len(), 3);
        assert!(mailjet_event(raw[0].get()).is_ok());
        assert_eq!(
            mailjet_event(raw[1].get()).err().as_deref(),
            Some("is not an object")
        );
        assert!(
            mailjet_event(raw[2].get())
                .err()
                .is_some_and(|e| e.contains("time"))
        );
        assert!(split_group(b"42").is_err_and(|e| e.contains("expected an event object")));
        assert!(split_group(b"[{").is_err_and(|e| e.starts_with("body is not JSON")));
        assert_eq!(split_group(br#"{"event":"x"}"#).map(|r| r.len()), Ok(1));
    }
}
