//! Client keys: configured names matched in constant time, unconfigured tokens logged as a
//! stable hash, never raw; unset token variables named in the error.

use switchyard::config::Config;
use switchyard::proxy::keys::{ANONYMOUS, KeyRing};

#[test]
fn configured_keys_match_by_name_and_others_are_refused() {
    let ring = KeyRing::new([
        ("team-search".to_string(), "sk-one".to_string()),
        ("team-chat".to_string(), "sk-two".to_string()),
    ])
    .unwrap();
    assert!(ring.has_keys());
    assert_eq!(
        ring.authenticate(Some("sk-two")).as_deref(),
        Some("team-chat")
    );
    assert_eq!(
        ring.authenticate(Some("sk-one")).as_deref(),
        Some("team-search")
    );
    assert_eq!(ring.authenticate(Some("sk-three")), None);
    assert_eq!(ring.authenticate(None), None);
    assert_eq!(ring.authenticate(Some("")), None);
}

#[test]
fn open_ring_logs_a_stable_hash_never_the_token() {
    let ring = KeyRing::new([]).unwrap();
    assert!(!ring.has_keys());
    let id = ring.authenticate(Some("sk-secret-token")).unwrap();
    assert!(id.starts_with("tok-") && id.len() == 16, "{id}");
    assert!(!id.contains("secret"));
    assert_eq!(
        id,
        KeyRing::new([])
            .unwrap()
            .authenticate(Some("sk-secret-token"))
            .unwrap()
    );
    assert_ne!(id, ring.authenticate(Some("sk-other")).unwrap());
    assert_eq!(ring.authenticate(None).as_deref(), Some(ANONYMOUS));
}

#[test]
fn duplicate_names_or_tokens_are_config_errors() {
    let dup = |a: (&str, &str), b: (&str, &str)| {
        KeyRing::new([
            (a.0.to_string(), a.1.to_string()),
            (b.0.to_string(), b.1.to_string()),
        ])
        .unwrap_err()
        .to_string()
    };
    assert!(dup(("a", "t1"), ("a", "t2")).contains("twice"));
    assert!(dup(("a", "t1"), ("b", "t1")).contains("same token"));
}

#[test]
fn unset_token_env_names_key_and_variable() {
    let cfg = Config::parse(
        "[[key]]\nname = \"team-x\"\ntoken_env = \"SWITCHYARD_TEST_UNSET_TOKEN_9F2\"\n",
        "test",
    )
    .unwrap();
    let e = KeyRing::from_config(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("team-x") && e.contains("SWITCHYARD_TEST_UNSET_TOKEN_9F2"),
        "{e}"
    );
}
