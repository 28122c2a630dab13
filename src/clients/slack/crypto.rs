//! AES-256-GCM for secrets at rest (OAuth tokens): `nonce (12 bytes) || ciphertext+tag`,
//! stored with the id of the key that sealed it, so keys can be rotated.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::config::EncryptionKey;

/// Sealing or opening failed (wrong key, tampered data).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CryptoError(&'static str);

fn key(k: &EncryptionKey) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, &k.bytes)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError("invalid key"))
}

/// Encrypts `plain`, binding it to `context` (e.g. the workspace and field name).
pub fn seal(k: &EncryptionKey, plain: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptoError("no randomness"))?;
    let mut data = plain.to_vec();
    key(k)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut data,
        )
        .map_err(|_| CryptoError("encryption failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(out)
}

/// Decrypts what [`seal`] produced with the same key and context.
pub fn open(k: &EncryptionKey, sealed: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN {
        return Err(CryptoError("ciphertext too short"));
    }
    let (nonce, data) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError("bad nonce"))?;
    let mut data = data.to_vec();
    let plain = key(k)?
        .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
        .map_err(|_| CryptoError("decryption failed (wrong key or tampered)"))?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(byte: u8) -> EncryptionKey {
        EncryptionKey {
            id: "k1".to_owned(),
            bytes: [byte; 32],
        }
    }

    #[test]
    fn sealed_tokens_open_only_with_their_key_and_context() {
        let sealed = seal(&k(1), b"xoxe.xoxb-secret", "T1:access").expect("seal");
        assert!(
            !sealed.windows(6).any(|w| w == b"secret"),
            "no plaintext at rest"
        );
        assert_eq!(
            open(&k(1), &sealed, "T1:access").expect("open"),
            b"xoxe.xoxb-secret"
        );
        assert!(open(&k(2), &sealed, "T1:access").is_err(), "another key");
        assert!(
            open(&k(1), &sealed, "T2:access").is_err(),
            "another context"
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(open(&k(1), &tampered, "T1:access").is_err());
        assert_ne!(
            seal(&k(1), b"same", "c").expect("a"),
            seal(&k(1), b"same", "c").expect("b"),
            "a fresh nonce each time"
        );
    }
}
