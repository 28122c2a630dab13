//! Re-sealing stored credentials with the keyring's current key (`tokens reseal`): each is
//! opened with the key that sealed it and sealed again, in the same context.

use super::crypto;
use crate::config::Keyring;
use crate::store::oauth_tokens;

/// Why one stored credential could not be re-sealed.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error(
        "the {provider} credential of workspace {workspace} is sealed with key {key_id:?}, which is not in ENCRYPTION_KEYS; add that key back and run reseal again"
    )]
    KeyGone {
        provider: String,
        workspace: String,
        key_id: String,
    },
    #[error(
        "the {provider} credential of workspace {workspace} does not open with key {key_id:?}: {why}"
    )]
    Corrupt {
        provider: String,
        workspace: String,
        key_id: String,
        why: String,
    },
    #[error("the {provider} credential of workspace {workspace} could not be sealed again: {why}")]
    Seal {
        provider: String,
        workspace: String,
        why: String,
    },
}

/// Re-seals one stored credential with the ring's sealing key: the new ciphertexts, or why not.
pub fn reseal_row(
    keys: &Keyring,
    row: &oauth_tokens::SealedRow,
) -> Result<(Vec<u8>, Option<Vec<u8>>), ResealError> {
    let who = || (row.provider.clone(), row.workspace_id.clone());
    let old = keys.get(&row.key_id).ok_or_else(|| {
        let (provider, workspace) = who();
        ResealError::KeyGone {
            provider,
            workspace,
            key_id: row.key_id.clone(),
        }
    })?;
    let again = |sealed: &[u8], field: &str| -> Result<Vec<u8>, ResealError> {
        let context = format!("{}:{}:{field}", row.provider, row.workspace_id);
        let plain = crypto::open(old, sealed, &context).map_err(|e| {
            let (provider, workspace) = who();
            ResealError::Corrupt {
                provider,
                workspace,
                key_id: row.key_id.clone(),
                why: e.to_string(),
            }
        })?;
        crypto::seal(keys.sealing(), &plain, &context).map_err(|e| {
            let (provider, workspace) = who();
            ResealError::Seal {
                provider,
                workspace,
                why: e.to_string(),
            }
        })
    };
    let access = again(&row.access_token_enc, "access")?;
    let refresh = row
        .refresh_token_enc
        .as_deref()
        .map(|r| again(r, "refresh"))
        .transpose()?;
    Ok((access, refresh))
}
