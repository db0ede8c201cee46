//! The audit log: what each command records, by whom, and that it survives snapshots.

use super::*;
use crate::audit::{Actor, AuditMeta, AuditQuery, Ending, Note, Offline};
use conclave_types::audit::{AuditAction, AuditKind, AuditOutcome, AuditRecord};

fn by_token(accessor: &str) -> AuditMeta {
    AuditMeta {
        actor: Actor::Token {
            accessor_id: accessor.into(),
        },
        source: Some("10.0.0.9:4000".into()),
        request_id: Some("req-7".into()),
    }
}

fn audited(meta: AuditMeta, command: Command) -> Command {
    Command::Audited {
        meta,
        command: Box::new(command),
    }
}

fn records(s: &State) -> Vec<AuditRecord> {
    let (entries, _) = s.audit_log().query(&AuditQuery {
        limit: 100,
        ..Default::default()
    });
    entries
        .into_iter()
        .map(|e| e.record(|ms| ms.to_string()))
        .collect()
}

fn doc_put(body: &str, expected: Option<u64>) -> Command {
    Command::ConfigPut {
        kind: "remote-peers".into(),
        name: "main".into(),
        content: body.as_bytes().to_vec(),
        hash: format!("hash-{body}"),
        author: Some("token:abc".into()),
        expected,
    }
}

#[test]
fn documents_and_acl_changes_are_recorded_with_their_caller_and_outcome() {
    let mut s = State::new();
    s.apply(&clock(1, 1_000));
    let put = s.apply(&audited(by_token("abc"), doc_put("one", Some(0))));
    assert_eq!(put, Outcome::Put { revision: 1 });
    let failed = s.apply(&audited(by_token("abc"), doc_put("two", Some(0))));
    assert!(matches!(failed, Outcome::CasFailed { .. }));
    // An unwrapped write (the agent's own) is recorded too, by the agent.
    s.apply(&Command::ConfigDelete {
        kind: "remote-peers".into(),
        name: "main".into(),
        expected: None,
        author: None,
    });
    let refused = s.apply(&audited(
        by_token("abc"),
        Command::Acl(crate::acl::AclCommand::DeletePolicy {
            name: "nope".into(),
        }),
    ));
    assert!(matches!(
        refused,
        Outcome::Acl {
            refusal: Some(_),
            ..
        }
    ));
    let r = records(&s);
    assert_eq!(r.len(), 4, "{r:#?}");
    assert_eq!(
        (r[0].kind, r[0].action),
        (AuditKind::Acl, AuditAction::Delete)
    );
    assert_eq!(r[0].outcome, AuditOutcome::Refused);
    assert_eq!(r[0].reason.as_deref(), Some("no policy is named \"nope\""));
    assert_eq!(
        (r[1].action, r[1].actor.as_str()),
        (AuditAction::Delete, "agent")
    );
    assert_eq!(r[2].outcome, AuditOutcome::Refused);
    let first = &r[3];
    assert_eq!(
        (first.kind, first.action),
        (AuditKind::Config, AuditAction::Put)
    );
    assert_eq!(first.subject, "remote-peers/main");
    assert_eq!(first.actor, "token:abc");
    assert_eq!(first.source.as_deref(), Some("10.0.0.9:4000"));
    assert_eq!(first.request_id.as_deref(), Some("req-7"));
    assert_eq!(first.details["hash"], "hash-one");
    assert_eq!(
        (first.revision, first.time_ms),
        (1, 1_700_000_001_000),
        "the cluster clock"
    );
    // No content, only its hash.
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        !json.contains("\"one\"") && !json.contains("content"),
        "{json}"
    );
}

#[test]
fn key_value_writes_are_recorded_only_when_wrapped_and_values_never() {
    let mut s = State::new();
    s.apply(&put("plain", "secret-value"));
    s.apply(&audited(
        AuditMeta::by(Actor::Anonymous),
        put("audited/k", "secret-value"),
    ));
    s.apply(&audited(
        AuditMeta::by(Actor::Anonymous),
        Command::Delete {
            key: "audited/k".into(),
            expected: None,
        },
    ));
    let r = records(&s);
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].action, r[1].action),
        (AuditAction::Delete, AuditAction::Put)
    );
    assert_eq!(r[1].subject, "audited/k");
    assert!(!serde_json::to_string(&r).unwrap().contains("secret-value"));
    // An entry is no key-value change: the revision moved for the two writes only.
    assert_eq!(s.revision(), 3);
    assert_eq!((r[1].revision, r[0].revision), (2, 3));
}

#[test]
fn election_holders_are_recorded_at_every_change_and_renewals_are_not() {
    let mut s = State::new();
    s.apply(&clock(1, 1_000));
    s.apply(&campaign("gw", "node-a", 2_000));
    s.apply(&campaign("gw", "node-a", 2_000)); // a renewal
    s.apply(&campaign("gw", "node-b", 2_000)); // busy
    s.apply(&clock(1, 5_000));
    s.apply(&Command::ExpireLeases);
    let r = records(&s);
    let actions: Vec<_> = r
        .iter()
        .map(|e| (e.action, e.details.get("holder").cloned()))
        .collect();
    assert_eq!(
        actions,
        vec![
            (AuditAction::Expired, Some("node-a".into())),
            (AuditAction::Elected, Some("node-a".into())),
        ]
    );
    assert!(
        r.iter()
            .all(|e| e.kind == AuditKind::Election && e.actor == "agent")
    );
}

#[test]
fn a_new_leader_names_its_predecessor_and_whether_a_transfer_asked_for_it() {
    let mut s = State::new();
    let note = |node: u64, note: Note| Command::Note {
        meta: AuditMeta::node(node),
        note,
        ending: Ending::Applied,
    };
    s.apply(&note(1, Note::LeaderElected { term: 2, leader: 1 }));
    s.apply(&note(1, Note::LeaderElected { term: 2, leader: 1 }));
    s.apply(&Command::Note {
        meta: by_token("ops"),
        note: Note::TransferRequested { to: Some(3) },
        ending: Ending::Applied,
    });
    s.apply(&note(3, Note::LeaderElected { term: 3, leader: 3 }));
    let r = records(&s);
    assert_eq!(r.len(), 3, "a retried note adds nothing: {r:#?}");
    assert_eq!(r[0].details["reason"], "transfer");
    assert_eq!(r[0].details["from"], "1");
    assert_eq!(r[1].action, AuditAction::TransferRequested);
    assert_eq!(r[1].actor, "token:ops");
    assert_eq!(r[2].details["reason"], "election");
    assert!(r.iter().all(|e| e.kind == AuditKind::Leadership));
    assert!(
        note(1, Note::LeaderElected { term: 9, leader: 1 }).is_leader_only(),
        "only a leader says it leads"
    );
}

#[test]
fn wrapping_is_one_level_deep_and_never_around_a_leader_only_command() {
    let mut s = State::new();
    for bad in [
        audited(
            AuditMeta::agent(),
            audited(AuditMeta::agent(), put("a", "1")),
        ),
        audited(AuditMeta::agent(), Command::ExpireLeases),
    ] {
        assert!(matches!(
            s.apply(&bad),
            Outcome::Refused {
                refusal: Refusal::NotAuditable,
                ..
            }
        ));
    }
    assert!(s.audit_log().is_empty() && s.is_empty());
}

#[test]
fn the_audit_log_survives_a_snapshot_and_version_3_snapshots_decode_without_one() {
    let mut s = State::new();
    s.apply(&put("a", "1"));
    let plain = snapshot::encode(&s);
    s.apply(&audited(by_token("abc"), doc_put("one", None)));
    s.record_offline(
        Offline::Recover {
            node_id: 1,
            voters_before: vec![1, 2, 3],
        },
        1_796_529_600_000,
    );
    let again = snapshot::decode(&snapshot::encode(&s)).expect("decodes");
    assert_eq!(again, s);
    let r = records(&again);
    assert_eq!(
        (r[0].kind, r[0].actor.as_str()),
        (AuditKind::Recovery, "operator")
    );
    assert_eq!(r[0].details["voters_before"], "1,2,3");
    // A version 3 snapshot is version 4's layout without the trailing audit log (an empty
    // one is five zero bytes: no entries, last seq 0, none dropped, no leader, no transfer).
    assert!(plain.ends_with(&[0, 0, 0, 0, 0]));
    let mut v3 = plain[..plain.len() - 5].to_vec();
    v3[8..10].copy_from_slice(&3u16.to_le_bytes());
    let old = snapshot::decode(&v3).expect("a version 3 snapshot decodes");
    assert_eq!(old.get("a").map(|kv| kv.version), Some(1));
    assert!(old.audit_log().is_empty());
}

/// The log itself: paging, retention, leadership bookkeeping, records.
mod log {
    use super::*;
    use crate::audit::*;

    fn entry(seq: u64, wall_ms: u64, actor: Actor, what: What) -> AuditEntry {
        AuditEntry {
            seq,
            wall_ms,
            revision: seq,
            meta: AuditMeta::by(actor),
            what,
            ending: Ending::Applied,
        }
    }

    fn doc(name: &str) -> What {
        What::Config {
            kind: "k".into(),
            name: name.into(),
            hash: Some("h".into()),
        }
    }

    fn log_of(entries: Vec<AuditEntry>) -> AuditLog {
        let mut log = AuditLog::default();
        for e in entries {
            log.push(|_| e);
        }
        log
    }

    #[test]
    fn a_query_pages_newest_first_and_filters() {
        let token = || Actor::Token {
            accessor_id: "abc".into(),
        };
        let log = log_of(vec![
            entry(1, 10, Actor::Anonymous, doc("a")),
            entry(2, 20, token(), doc("b")),
            entry(
                3,
                30,
                Actor::Node { node_id: 7 },
                What::Note(Note::Promote { node_id: 2 }),
            ),
            entry(4, 40, token(), doc("c")),
            entry(5, 50, token(), doc("d")),
        ]);
        let seqs = |(page, cursor): (Vec<&AuditEntry>, Option<u64>)| {
            (page.iter().map(|e| e.seq).collect::<Vec<_>>(), cursor)
        };
        let q = AuditQuery {
            limit: 2,
            ..Default::default()
        };
        assert_eq!(seqs(log.query(&q)), (vec![5, 4], Some(4)));
        let next = AuditQuery {
            before_seq: Some(4),
            ..q.clone()
        };
        assert_eq!(seqs(log.query(&next)), (vec![3, 2], Some(2)));
        let last = AuditQuery {
            before_seq: Some(2),
            ..q.clone()
        };
        assert_eq!(seqs(log.query(&last)), (vec![1], None));
        let by_token = AuditQuery {
            actor: Some("token:abc".into()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(seqs(log.query(&by_token)), (vec![5, 4, 2], None));
        let by_accessor = AuditQuery {
            actor: Some("abc".into()),
            ..by_token.clone()
        };
        assert_eq!(seqs(log.query(&by_accessor)).0, vec![5, 4, 2]);
        let by_node = AuditQuery {
            actor: Some("7".into()),
            kind: Some(AuditKind::Membership),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(seqs(log.query(&by_node)).0, vec![3]);
        let since = AuditQuery {
            since_ms: Some(30),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(seqs(log.query(&since)), (vec![5, 4, 3], None));
    }

    #[test]
    fn the_log_keeps_the_newest_entries_and_counts_the_dropped() {
        let mut log = AuditLog::default();
        for i in 0..MAX_AUDIT_ENTRIES as u64 + 5 {
            log.push(|seq| entry(seq, i, Actor::Agent, doc("x")));
        }
        assert_eq!(log.len(), MAX_AUDIT_ENTRIES);
        assert_eq!(log.dropped(), 5);
        assert_eq!(log.entries().next().map(|e| e.seq), Some(6));
        // A reader resuming after 5 misses nothing; after 4, entry 5 is gone.
        assert!(!log.dropped_after(5) && log.dropped_after(4));
        assert!(!log.dropped_after(log.last_seq()));
        assert!(!AuditLog::default().dropped_after(0));
        assert_eq!(log.implausible(u64::MAX), None);
    }

    #[test]
    fn a_decoded_log_whose_sequence_could_not_be_reached_is_implausible() {
        // Found by the snapshot fuzz target: a sequence at u64::MAX overflowed on the next
        // entry.
        let at = AuditLog::at;
        assert!(at(u64::MAX, 0).implausible(10).is_some());
        assert!(at(1 << 63, 0).implausible(10).is_none());
        assert!(
            at(5, 6).implausible(10).is_some(),
            "more dropped than written"
        );
        assert!(at(5, 5).implausible(10).is_none());
    }

    #[test]
    fn a_new_leader_is_credited_to_a_transfer_only_when_one_asked_for_it() {
        let mut log = AuditLog::default();
        let first = log.leadership(1, 1);
        assert_eq!(
            first,
            Some(What::Leadership {
                term: 1,
                from: None,
                to: 1,
                transfer: false
            })
        );
        assert_eq!(log.leadership(1, 1), None, "a retried note adds nothing");
        log.transfer_requested(Some(Some(3)));
        let to_other = log.leadership(2, 2);
        assert!(matches!(
            to_other,
            Some(What::Leadership {
                from: Some(1),
                transfer: false,
                ..
            })
        ));
        log.transfer_requested(Some(None));
        let to_best = log.leadership(3, 3);
        assert!(matches!(
            to_best,
            Some(What::Leadership {
                from: Some(2),
                transfer: true,
                ..
            })
        ));
        assert!(matches!(
            log.leadership(4, 1),
            Some(What::Leadership {
                transfer: false,
                ..
            })
        ));
    }

    #[test]
    fn records_name_no_secret_and_print_actors_as_filtered() {
        let e = entry(
            1,
            1_796_529_600_000,
            Actor::Token {
                accessor_id: "abc".into(),
            },
            What::Acl(AclChange::CreateToken {
                accessor_id: "def".into(),
                policies: vec!["ops".into(), "read".into()],
            }),
        );
        let r = e.record(|ms| ms.to_string());
        assert_eq!(r.actor, "token:abc");
        assert_eq!(r.kind, AuditKind::Acl);
        assert_eq!(r.subject, "token def");
        assert_eq!(r.details["policies"], "ops,read");
        assert_eq!(r.time, "1796529600000");
        for actor in [
            Actor::Anonymous,
            Actor::Agent,
            Actor::Operator,
            Actor::Node { node_id: 3 },
        ] {
            let e = entry(1, 0, actor.clone(), doc("a"));
            assert!(e.by(&actor.to_string()), "{actor}");
        }
    }
}
