//! Reading Redis stream replies: consumer-group sizes, entries and their fields.

use redis::Value;
use redis::aio::ConnectionManager;

use super::QueueError;
use super::keys::{GROUP, QueueKeys};

/// Waiting (not yet delivered) and in-flight counts of a queue's group.
pub async fn group_sizes(
    conn: &mut ConnectionManager,
    keys: &QueueKeys,
) -> Result<(u64, u64), QueueError> {
    let reply: Result<Value, redis::RedisError> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(keys.stream())
        .query_async(conn)
        .await;
    let reply = match reply {
        Ok(v) => v,
        // No stream yet: nothing waiting.
        Err(e) if e.code() == Some("ERR") || e.to_string().contains("no such key") => {
            return Ok((0, 0));
        }
        Err(e) => return Err(e.into()),
    };
    let groups = match reply {
        Value::Array(groups) => groups,
        _ => return Ok((0, 0)),
    };
    for group in groups {
        let fields = field_pairs(&group);
        if fields
            .iter()
            .any(|(k, v)| k == "name" && as_string(v).as_deref() == Some(GROUP))
        {
            let number = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| as_u64(v))
                    .unwrap_or(0)
            };
            return Ok((number("lag"), number("pending")));
        }
    }
    let len: u64 = redis::cmd("XLEN")
        .arg(keys.stream())
        .query_async(conn)
        .await?;
    Ok((len, 0))
}

pub(super) fn field_pairs(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| Some((as_string(pair.first()?)?, pair.get(1)?)))
            .collect(),
        Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| Some((as_string(k)?, v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...]], ...]` → `(id, value of field "t")`.
pub(super) fn parse_entries(value: &Value) -> Vec<(String, Option<String>)> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else {
                return None;
            };
            let id = as_string(parts.first()?)?;
            let task = parts.get(1).and_then(|fields| {
                field_pairs(fields)
                    .into_iter()
                    .find(|(k, _)| k == "t")
                    .and_then(|(_, v)| as_string(v))
            });
            Some((id, task))
        })
        .collect()
}

pub(crate) fn as_string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(super) fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::Nil => Some(0),
        other => as_string(other).and_then(|s| s.parse().ok()),
    }
}

pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
