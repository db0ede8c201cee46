//! Node names through `apply` and the snapshot.

use crate::node_names::NameRefusal;
use crate::{Command, Outcome, Refusal, State, snapshot};

fn name(node_id: u64, name: &str, replaces: Option<u64>) -> Command {
    Command::NameNode {
        node_id,
        name: name.into(),
        replaces,
    }
}

#[test]
fn names_are_applied_refused_when_taken_and_freed_when_a_node_leaves() {
    let mut s = State::new();
    s.apply(&Command::Put {
        key: "k".into(),
        value: b"v".to_vec(),
        expected: None,
    });
    let revision = s.revision();
    assert_eq!(
        s.apply(&name(7, "db-1", None)),
        Outcome::Named {
            revision,
            refusal: None
        }
    );
    assert_eq!(
        s.apply(&name(8, "db-1", None)),
        Outcome::Named {
            revision,
            refusal: Some(NameRefusal::Taken {
                name: "db-1".into(),
                holder: 7
            })
        }
    );
    assert!(matches!(
        s.apply(&name(8, "not a name", None)),
        Outcome::Refused {
            refusal: Refusal::BadNodeName,
            ..
        }
    ));
    assert_eq!(s.node_names().name_of(7), Some("db-1"));
    assert_eq!(s.revision(), revision, "names are no key-value changes");
    s.apply(&Command::ForgetNode { node_id: 7 });
    assert_eq!(s.node_names().holder_of("db-1"), None);
    assert!(matches!(
        s.apply(&name(8, "db-1", None)),
        Outcome::Named { refusal: None, .. }
    ));
}

#[test]
fn names_survive_a_snapshot_and_a_version_5_snapshot_still_decodes() {
    let mut s = State::new();
    s.apply(&Command::Put {
        key: "a".into(),
        value: b"1".to_vec(),
        expected: None,
    });
    let unnamed = snapshot::encode(&s);
    s.apply(&name(1, "db-1", None));
    s.apply(&name(2, "db-2", None));
    let again = snapshot::decode(&snapshot::encode(&s)).expect("decodes");
    assert_eq!(again, s);
    assert_eq!(again.node_names().holder_of("db-2"), Some(2));
    // Version 5 is version 6's layout without the trailing names (an empty map: one zero).
    assert_eq!(unnamed.last(), Some(&0));
    let mut v5 = unnamed[..unnamed.len() - 1].to_vec();
    v5[8..10].copy_from_slice(&5u16.to_le_bytes());
    let old = snapshot::decode(&v5).expect("a version 5 snapshot decodes");
    assert_eq!(old.get("a").map(|kv| kv.version), Some(1));
    assert!(old.node_names().is_empty());
}
