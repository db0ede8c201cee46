//! `apply` refuses, on every node alike, a command that breaks a naming rule: the state never
//! holds a reserved or empty key, a document whose name could leave a directory, or an
//! election without a name, and a stale clock stamp never moves the clock.

use super::*;

fn config_put(kind: &str, name: &str) -> Command {
    Command::ConfigPut {
        kind: kind.into(),
        name: name.into(),
        content: b"{}".to_vec(),
        hash: "h".into(),
        author: None,
        expected: None,
    }
}

fn refused(outcome: &Outcome) -> Option<Refusal> {
    match outcome {
        Outcome::Refused { refusal, .. } => Some(*refusal),
        _ => None,
    }
}

#[test]
fn reserved_and_empty_keys_are_refused_and_change_nothing() {
    let mut s = State::new();
    s.apply(&put("a", "1"));
    s.take_changes();
    for (key, why) in [
        ("_conclave/config/x/../../..", Refusal::ReservedKey),
        ("_conclave/", Refusal::ReservedKey),
        ("", Refusal::EmptyKey),
    ] {
        let before = s.clone();
        assert_eq!(refused(&s.apply(&put(key, "x"))), Some(why), "{key:?}");
        let delete = Command::Delete {
            key: key.into(),
            expected: None,
        };
        assert_eq!(refused(&s.apply(&delete)), Some(why), "{key:?}");
        assert_eq!(s, before);
        assert!(s.take_changes().is_empty());
    }
    assert_eq!(s.apply(&put("a", "2")), Outcome::Put { revision: 2 });
}

#[test]
fn documents_whose_names_could_leave_a_directory_are_refused() {
    let mut s = State::new();
    for (kind, name, why) in [
        ("", "x", Refusal::BadKind),
        ("../etc", "x", Refusal::BadKind),
        ("peers", "/abs/path", Refusal::BadDocumentName),
        ("peers", "..", Refusal::BadDocumentName),
        ("peers", "a/b", Refusal::BadDocumentName),
    ] {
        assert_eq!(refused(&s.apply(&config_put(kind, name))), Some(why));
        let delete = Command::ConfigDelete {
            kind: kind.into(),
            name: name.into(),
            expected: None,
            author: None,
        };
        assert_eq!(refused(&s.apply(&delete)), Some(why));
    }
    assert_eq!(s.revision(), 0);
    assert_eq!(s.config_documents(None).count(), 0);
    assert_eq!(
        s.apply(&config_put("peers", "gw.prod")),
        Outcome::Put { revision: 1 }
    );
}

#[test]
fn elections_need_a_name_and_a_candidate() {
    let mut s = State::new();
    s.apply(&clock(1, 1_000));
    for c in [
        campaign("", "a", 5_000),
        campaign("gw", "", 5_000),
        keepalive("", "a", 1),
        resign("gw", "", 1),
        handover("gw", "", 1, 5_000),
    ] {
        assert_eq!(refused(&s.apply(&c)), Some(Refusal::EmptyElectionName));
    }
    assert!(s.elections().next().is_none());
}

#[test]
fn a_stamp_of_an_earlier_term_never_moves_the_clock() {
    let mut s = State::new();
    s.apply(&clock(3, 1_000));
    let before = s.clock();
    assert_eq!(
        refused(&s.apply(&clock(2, 9_000_000))),
        Some(Refusal::StaleClock)
    );
    assert_eq!(s.clock(), before);
    // The same term and later ones still stamp.
    s.apply(&clock(3, 2_000));
    assert_eq!(s.clock().now_ms, 2_000);
}

#[test]
fn at_the_last_revision_nothing_more_is_applied() {
    let mut s = State::new();
    s.apply(&put("a", "1"));
    s.revision = crate::MAX_REVISION;
    let before = s.clone();
    assert_eq!(
        refused(&s.apply(&put("a", "2"))),
        Some(Refusal::RevisionsExhausted)
    );
    assert_eq!(
        refused(&s.apply(&Command::ExpireLeases)),
        Some(Refusal::RevisionsExhausted)
    );
    assert_eq!(s, before);
}

#[test]
fn a_snapshot_no_command_sequence_could_produce_is_refused() {
    let mut s = State::new();
    s.apply(&put("a", "1"));
    s.apply(&clock(1, 1_000));
    s.apply(&campaign("gw", "n1", 5_000));
    assert!(snapshot::decode(&snapshot::encode(&s)).is_ok());
    let mut beyond = s.clone();
    beyond.revision = u64::MAX;
    let mut stale_key = s.clone();
    if let Some(kv) = stale_key.kv.get_mut("a") {
        kv.version = 99;
    }
    let mut stale_epoch = s.clone();
    if let Some(e) = stale_epoch.elections.get_mut("gw") {
        e.last_epoch = 1_000;
    }
    for (bad, what) in [
        (beyond, "revision"),
        (stale_key, "\"a\""),
        (stale_epoch, "\"gw\""),
    ] {
        match snapshot::decode(&snapshot::encode(&bad)) {
            Err(snapshot::SnapshotError::Implausible(why)) => assert!(why.contains(what), "{why}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn acl_state_survives_a_snapshot_and_version_2_snapshots_decode_without_one() {
    use crate::acl::{AclCommand, GLOBAL_MANAGEMENT, Token};
    let mut s = State::new();
    s.apply(&Command::Put {
        key: "a".into(),
        value: b"1".to_vec(),
        expected: None,
    });
    let plain = snapshot::encode(&s);
    let root = Token {
        accessor_id: "root".into(),
        secret_hash: "ab".repeat(32),
        salt: "cd".repeat(16),
        description: "bootstrap".into(),
        policies: vec![GLOBAL_MANAGEMENT.into()],
        created_ms: 5,
        expires_ms: None,
    };
    let outcome = s.apply(&Command::Acl(AclCommand::Bootstrap(root)));
    assert!(
        matches!(
            outcome,
            Outcome::Acl {
                revision: 1,
                refusal: None
            }
        ),
        "{outcome:?}"
    );
    let again = snapshot::decode(&snapshot::encode(&s)).expect("decodes");
    assert_eq!(again, s);
    assert!(again.acl().bootstrapped && again.acl().tokens.contains_key("root"));

    // A version 2 snapshot is version 3's layout without the trailing ACL state (an empty
    // one is three zero bytes: not bootstrapped, no policies, no tokens).
    let mut v2 = plain[..plain.len() - 3].to_vec();
    v2[8..10].copy_from_slice(&2u16.to_le_bytes());
    let old = snapshot::decode(&v2).expect("a version 2 snapshot decodes");
    assert_eq!(
        old.get("a").map(|kv| kv.value.clone()),
        Some(bytes::Bytes::from_static(b"1"))
    );
    assert_eq!(old.acl(), &crate::acl::AclState::default());
    assert!(plain.ends_with(&[0, 0, 0]));
}
