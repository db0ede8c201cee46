use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn put(key: &str, value: &str) -> Command {
    Command::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        expected: None,
    }
}

#[test]
fn revisions_follow_etcd_semantics() {
    let mut s = State::new();
    assert_eq!(s.apply(&put("a", "1")), Outcome::Put { revision: 1 });
    assert_eq!(s.apply(&put("b", "1")), Outcome::Put { revision: 2 });
    assert_eq!(s.apply(&put("a", "2")), Outcome::Put { revision: 3 });
    let a = s.get("a").unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 3, 2));
    assert_eq!(a.value, b"2");
    assert_eq!(s.revision(), 3);
}

#[test]
fn delete_of_missing_key_changes_nothing() {
    let mut s = State::new();
    s.apply(&put("a", "1"));
    let out = s.apply(&Command::Delete {
        key: "zz".into(),
        expected: None,
    });
    assert_eq!(
        out,
        Outcome::Deleted {
            revision: 1,
            deleted: false
        }
    );
    let out = s.apply(&Command::Delete {
        key: "a".into(),
        expected: None,
    });
    assert_eq!(
        out,
        Outcome::Deleted {
            revision: 2,
            deleted: true
        }
    );
    assert!(s.get("a").is_none());
    // Re-creating resets create revision and version.
    s.apply(&put("a", "x"));
    let a = s.get("a").unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (3, 3, 1));
}

#[test]
fn cas_zero_means_must_not_exist() {
    let mut s = State::new();
    let create = Command::Put {
        key: "k".into(),
        value: b"v".to_vec(),
        expected: Some(0),
    };
    assert_eq!(s.apply(&create), Outcome::Put { revision: 1 });
    assert_eq!(
        s.apply(&create),
        Outcome::CasFailed {
            revision: 1,
            current: 1
        }
    );
}

#[test]
fn cas_on_mod_revision() {
    let mut s = State::new();
    s.apply(&put("k", "v1"));
    s.apply(&put("other", "x"));
    let stale = Command::Put {
        key: "k".into(),
        value: b"v2".to_vec(),
        expected: Some(2),
    };
    assert_eq!(
        s.apply(&stale),
        Outcome::CasFailed {
            revision: 2,
            current: 1
        }
    );
    assert_eq!(s.get("k").unwrap().value, b"v1");
    let fresh = Command::Put {
        key: "k".into(),
        value: b"v2".to_vec(),
        expected: Some(1),
    };
    assert_eq!(s.apply(&fresh), Outcome::Put { revision: 3 });
    let del = Command::Delete {
        key: "k".into(),
        expected: Some(1),
    };
    assert_eq!(
        s.apply(&del),
        Outcome::CasFailed {
            revision: 3,
            current: 3
        }
    );
}

#[test]
fn list_with_prefix_limit_and_continuation() {
    let mut s = State::new();
    for k in ["a/1", "a/2", "a/3", "b/1", "a"] {
        s.apply(&put(k, "v"));
    }
    let (items, more) = s.list("a/", None, 2);
    let keys: Vec<_> = items.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["a/1", "a/2"]);
    assert!(more);
    let (items, more) = s.list("a/", Some("a/2"), 2);
    let keys: Vec<_> = items.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["a/3"]);
    assert!(!more);
    let (items, _) = s.list("", None, 100);
    assert_eq!(items.len(), 5);
    // A continuation key before the prefix starts at the prefix.
    let (items, _) = s.list("b/", Some("a/9"), 10);
    assert_eq!(items.len(), 1);
}

#[test]
fn limits_reject_with_sizes() {
    let l = Limits {
        max_key_bytes: 3,
        max_value_bytes: 2,
    };
    assert_eq!(l.check(&put("", "")), Err(LimitError::EmptyKey));
    assert_eq!(
        l.check(&put("abcd", "")),
        Err(LimitError::KeyTooLarge { size: 4, limit: 3 })
    );
    assert_eq!(
        l.check(&put("a", "xyz")),
        Err(LimitError::ValueTooLarge { size: 3, limit: 2 })
    );
    assert_eq!(l.check(&put("abc", "xy")), Ok(()));
}

#[test]
fn snapshot_rejects_garbage_and_unknown_versions() {
    assert!(matches!(
        snapshot::decode(b"nope"),
        Err(snapshot::SnapshotError::BadMagic)
    ));
    let mut bytes = snapshot::encode(&State::new());
    bytes[8] = 99;
    assert!(matches!(
        snapshot::decode(&bytes),
        Err(snapshot::SnapshotError::UnsupportedVersion { found: 99, .. })
    ));
    let mut s = State::new();
    s.apply(&put("k", "v"));
    let mut bytes = snapshot::encode(&s);
    bytes.truncate(bytes.len() - 1);
    assert!(matches!(
        snapshot::decode(&bytes),
        Err(snapshot::SnapshotError::Corrupt(_))
    ));
}

/// A reference model: key -> (value, create, mod, version), plus the revision counter.
#[derive(Default)]
struct Model {
    revision: u64,
    kv: BTreeMap<String, (Vec<u8>, u64, u64, u64)>,
}

impl Model {
    fn apply(&mut self, c: &Command) -> Outcome {
        let (key, expected) = match c {
            Command::Put { key, expected, .. } | Command::Delete { key, expected } => {
                (key, *expected)
            }
        };
        let current = self.kv.get(key).map_or(0, |e| e.2);
        if let Some(e) = expected {
            if e != current {
                return Outcome::CasFailed {
                    revision: self.revision,
                    current,
                };
            }
        }
        match c {
            Command::Put { value, .. } => {
                self.revision += 1;
                let r = self.revision;
                let entry = self.kv.entry(key.clone()).or_insert((vec![], r, r, 0));
                entry.0 = value.clone();
                entry.2 = r;
                entry.3 += 1;
                Outcome::Put { revision: r }
            }
            Command::Delete { .. } => {
                let deleted = self.kv.remove(key).is_some();
                if deleted {
                    self.revision += 1;
                }
                Outcome::Deleted {
                    revision: self.revision,
                    deleted,
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Cmd(Command),
    SnapshotRoundTrip,
}

fn step() -> impl Strategy<Value = Step> {
    let key = prop::sample::select(vec!["a", "a/b", "b", "c", "ab"]).prop_map(String::from);
    let expected = prop::option::of(0u64..8);
    prop_oneof![
        6 => (key.clone(), prop::collection::vec(any::<u8>(), 0..4), expected.clone())
            .prop_map(|(key, value, expected)| Step::Cmd(Command::Put { key, value, expected })),
        3 => (key, expected).prop_map(|(key, expected)| Step::Cmd(Command::Delete { key, expected })),
        1 => Just(Step::SnapshotRoundTrip),
    ]
}

proptest! {
    #[test]
    fn apply_matches_btreemap_model(steps in prop::collection::vec(step(), 1..200)) {
        let mut state = State::new();
        let mut model = Model::default();
        for s in &steps {
            match s {
                Step::Cmd(c) => prop_assert_eq!(state.apply(c), model.apply(c)),
                Step::SnapshotRoundTrip => {
                    let restored = snapshot::decode(&snapshot::encode(&state)).unwrap();
                    prop_assert_eq!(&restored, &state);
                    state = restored;
                }
            }
            prop_assert_eq!(state.revision(), model.revision);
            prop_assert_eq!(state.len(), model.kv.len());
            for (k, (v, c, m, ver)) in &model.kv {
                let got = state.get(k).unwrap();
                prop_assert_eq!((&got.value, got.create_revision, got.mod_revision, got.version), (v, *c, *m, *ver));
            }
        }
        // Prefix listing agrees with a filter over the model.
        let (items, more) = state.list("a", None, usize::MAX);
        prop_assert!(!more);
        let expect: Vec<&str> = model.kv.keys().filter(|k| k.starts_with('a')).map(String::as_str).collect();
        let got: Vec<&str> = items.iter().map(|(k, _)| *k).collect();
        prop_assert_eq!(got, expect);
    }
}
