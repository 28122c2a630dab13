//! Our own secrets: the API and metrics tokens, and the keys secrets at rest are sealed with
//! (`ENCRYPTION_KEYS`, or the older one-key `ENCRYPTION_KEY` + `ENCRYPTION_KEY_ID`).

use base64::Engine;

use super::reader::{MIN_TOKEN_LEN, Reader, need};
use super::settings::{EncryptionKey, Keyring, SecuritySettings};

pub(super) fn read(r: &mut Reader<'_>) -> SecuritySettings {
    let ring = r
        .raw("security.encryption_keys")
        .map(|v| v.raw.trim().to_owned());
    let mut keys = ring
        .and_then(|raw| {
            decode_ring(&raw)
                .map_err(|e| r.problem("security.encryption_keys", e))
                .ok()
        })
        .unwrap_or_default();
    let single = r
        .raw("security.encryption_key")
        .map(|v| v.raw.trim().to_owned());
    let bytes = single.and_then(|raw| {
        decode_key(&raw)
            .map_err(|e| r.problem("security.encryption_key", e))
            .ok()
    });
    let id = need(
        r,
        "security.encryption_key_id",
        r.string("security.encryption_key_id"),
    );
    if let Some(bytes) = bytes
        && !keys.iter().any(|k: &EncryptionKey| k.id == id)
    {
        keys.push(EncryptionKey { id, bytes });
    }
    SecuritySettings {
        api_token: r.token("security.api_token", MIN_TOKEN_LEN),
        metrics_token: r.token("security.metrics_token", MIN_TOKEN_LEN),
        encryption_keys: Keyring::new(keys),
    }
}

/// `ENCRYPTION_KEYS`: `id:base64,id:base64`, the first sealing.
fn decode_ring(raw: &str) -> Result<Vec<EncryptionKey>, String> {
    let mut keys: Vec<EncryptionKey> = Vec::new();
    for (n, entry) in raw.split(',').map(str::trim).enumerate() {
        let Some((id, key)) = entry.split_once(':') else {
            return Err(format!(
                "entry {} is not id:key; expected e.g. k2:<base64 of 32 bytes>,k1:<base64 of 32 bytes>",
                n + 1
            ));
        };
        let id = id.trim();
        let valid_id = !id.is_empty()
            && id.len() <= 32
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_id {
            return Err(format!(
                "entry {} has an id that is not 1 to 32 letters, digits, - or _",
                n + 1
            ));
        }
        if keys.iter().any(|k| k.id == id) {
            return Err(format!("key id {id:?} appears twice"));
        }
        let bytes = decode_key(key.trim()).map_err(|e| format!("key {id:?} {e}"))?;
        keys.push(EncryptionKey {
            id: id.to_owned(),
            bytes,
        });
    }
    Ok(keys)
}

fn decode_key(raw: &str) -> Result<[u8; 32], String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let decoded = engine.decode(raw).map_err(|_| {
        "is not base64; expected base64 of 32 random bytes (openssl rand -base64 32)".to_owned()
    })?;
    <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| {
        format!(
            "decodes to {} bytes; expected exactly 32 bytes (openssl rand -base64 32)",
            decoded.len()
        )
    })
}
