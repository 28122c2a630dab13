//! `ENCRYPTION_KEYS`: the ring's order, the older one-key form joining it, and what a
//! malformed entry is told.

use base64::Engine;

use super::tests::{KEY_32, env, load_from, problems};
use super::*;

#[test]
fn encryption_keys_seal_with_the_first_and_open_with_all_including_encryption_key() {
    let other = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let settings = load_from(
        &env(&[
            ("ENCRYPTION_KEYS", &format!("k3:{other}, k2:{KEY_32}")),
            ("ENCRYPTION_KEY", KEY_32),
            ("ENCRYPTION_KEY_ID", "k1"),
        ]),
        Process::Tool,
    )
    .expect("valid");
    let ring = settings.security.encryption_keys.expect("ring");
    assert_eq!(ring.ids(), ["k3", "k2", "k1"]);
    assert_eq!(ring.sealing().bytes, [9u8; 32]);
    assert_eq!(ring.get("k1").expect("k1").bytes[31], 31);
    assert!(!format!("{ring:?}").contains(&other));
}

#[test]
fn malformed_encryption_keys_name_the_entry_and_what_is_expected() {
    let other = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    for (raw, says) in [
        (other.clone(), "entry 1 is not id:key"),
        (format!("k1:{other},k1:{other}"), "\"k1\" appears twice"),
        (format!("k1:{other},k2:short"), "key \"k2\" is not base64"),
        (format!("k 1:{other}"), "entry 1 has an id"),
    ] {
        let found = problems(&env(&[("ENCRYPTION_KEYS", &raw)]), Process::Tool);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("ENCRYPTION_KEYS"), "{found:#?}");
        assert!(found[0].contains(says), "{raw}: {found:#?}");
        assert!(
            !found[0].contains(&other),
            "no key in the message: {found:#?}"
        );
    }
}
