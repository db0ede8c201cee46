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
    assert_eq!(a.value, &b"2"[..]);
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
    assert_eq!(s.get("k").unwrap().value, &b"v1"[..]);
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
        ..Limits::default()
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
            other => unreachable!("the model covers the key-value commands only: {other:?}"),
        };
        let current = self.kv.get(key).map_or(0, |e| e.2);
        if let Some(e) = expected
            && e != current
        {
            return Outcome::CasFailed {
                revision: self.revision,
                current,
            };
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
            _ => {
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
                prop_assert_eq!((&got.value[..], got.create_revision, got.mod_revision, got.version), (&v[..], *c, *m, *ver));
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

#[test]
fn every_revision_is_exactly_one_change() {
    let mut s = State::new();
    s.apply(&clock(1, 0));
    s.apply(&put("k", "v"));
    s.apply(&campaign("e", "a", 1_000));
    s.apply(&campaign("e", "a", 1_000)); // renewal: no change
    s.apply(&Command::ConfigPut {
        kind: "remote-peers".into(),
        name: "default".into(),
        content: b"{}".to_vec(),
        hash: "h1".into(),
        author: None,
        expected: Some(0),
    });
    s.apply(&Command::Delete {
        key: "nope".into(),
        expected: None,
    });
    s.apply(&clock(1, 5_000));
    s.apply(&Command::ExpireLeases);
    s.apply(&Command::Delete {
        key: "k".into(),
        expected: None,
    });
    let changes = s.take_changes();
    let revisions: Vec<u64> = changes.iter().map(|c| c.revision).collect();
    assert_eq!(revisions, vec![1, 2, 3, 4, 5]);
    assert_eq!(s.revision(), 5);
    let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "k",
            "_conclave/elections/e",
            "_conclave/config/remote-peers/default",
            "_conclave/elections/e",
            "k"
        ]
    );
    let ended: ElectionEvent = serde_json::from_slice(changes[3].value.as_ref().unwrap()).unwrap();
    assert_eq!(ended.transition, Transition::Expired);
    assert_eq!(ended.epoch, 1);
    assert!(changes[4].value.is_none());
    assert!(s.take_changes().is_empty());
}

#[test]
fn config_documents_keep_history_and_honour_cas() {
    let mut s = State::new();
    let write = |s: &mut State, body: &str, expected| {
        s.apply(&Command::ConfigPut {
            kind: "k".into(),
            name: "n".into(),
            content: body.as_bytes().to_vec(),
            hash: format!("hash-{body}"),
            author: Some("ops".into()),
            expected,
        })
    };
    assert_eq!(write(&mut s, "one", Some(0)), Outcome::Put { revision: 1 });
    assert_eq!(
        write(&mut s, "two", Some(0)),
        Outcome::CasFailed {
            revision: 1,
            current: 1
        }
    );
    assert_eq!(write(&mut s, "two", Some(1)), Outcome::Put { revision: 2 });
    s.apply(&put("other", "x"));
    let entry = s.config_entry("k", "n").unwrap();
    assert_eq!(
        entry.at(1).unwrap().unwrap().content.as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(entry.at(3).unwrap().unwrap().revision, 2);
    assert_eq!(
        s.apply(&Command::ConfigDelete {
            kind: "k".into(),
            name: "n".into(),
            expected: Some(2),
            author: None
        }),
        Outcome::Deleted {
            revision: 4,
            deleted: true
        }
    );
    let entry = s.config_entry("k", "n").unwrap();
    assert!(entry.live().is_none());
    assert!(entry.at(4).unwrap().is_none());
    assert_eq!(entry.versions.len(), 3);
    assert_eq!(s.config_documents(None).count(), 0);
    // A deleted document counts as absent for CAS.
    assert_eq!(
        write(&mut s, "three", Some(0)),
        Outcome::Put { revision: 5 }
    );
    for i in 0..registry::MAX_VERSIONS {
        write(&mut s, &format!("v{i}"), None);
    }
    let entry = s.config_entry("k", "n").unwrap();
    assert_eq!(entry.versions.len(), registry::MAX_VERSIONS);
    assert_eq!(entry.at(1), Err(entry.versions[0].revision));
}

#[test]
fn version_1_snapshots_still_decode() {
    // A version 1 snapshot: magic, version 1, postcard of (revision, kv map), written with
    // the layout of that time (values were `Vec<u8>`; now `Bytes`, same bytes on the wire).
    #[derive(serde::Serialize)]
    struct KeyValueV1 {
        value: Vec<u8>,
        create_revision: u64,
        mod_revision: u64,
        version: u64,
    }
    let mut kv = BTreeMap::new();
    kv.insert(
        "a".to_string(),
        KeyValueV1 {
            value: b"1".to_vec(),
            create_revision: 3,
            mod_revision: 3,
            version: 1,
        },
    );
    let mut bytes = b"CNCLSTAT".to_vec();
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend(postcard::to_stdvec(&(3u64, kv)).unwrap());
    let state = snapshot::decode(&bytes).unwrap();
    assert_eq!(state.revision(), 3);
    assert_eq!(state.get("a").unwrap().value, &b"1"[..]);
    assert!(state.elections().next().is_none());
}

#[test]
fn user_keys_under_the_system_prefix_are_refused() {
    let l = Limits::default();
    assert_eq!(
        l.check(&put("_conclave/config/x", "1")),
        Err(LimitError::Reserved)
    );
    assert_eq!(
        l.check(&campaign("e", "a", 10)),
        Err(LimitError::TtlOutOfRange { ttl_ms: 10 })
    );
}

fn clock(term: u64, now_ms: u64) -> Command {
    Command::Clock {
        term,
        now_ms,
        wall_ms: 1_700_000_000_000 + now_ms,
    }
}

fn campaign(name: &str, who: &str, ttl_ms: u64) -> Command {
    Command::Campaign {
        election: name.into(),
        candidate: who.into(),
        ttl_ms,
    }
}

fn keepalive(name: &str, who: &str, epoch: u64) -> Command {
    Command::Keepalive {
        election: name.into(),
        candidate: who.into(),
        epoch,
    }
}

fn resign(name: &str, who: &str, epoch: u64) -> Command {
    Command::Resign {
        election: name.into(),
        candidate: who.into(),
        epoch,
    }
}

fn epoch_of(o: &Outcome) -> u64 {
    match o {
        Outcome::Elected { epoch, .. } => *epoch,
        other => panic!("expected Elected, got {other:?}"),
    }
}

fn handover(name: &str, target: &str, from_epoch: u64, window_ms: u64) -> Command {
    Command::Handover {
        election: name.into(),
        target: target.into(),
        from_epoch,
        window_ms,
    }
}

mod audit;
mod elections;
mod node_names;
mod refusals;

mod arbitrary_commands;
