//! Any sequence of commands, however odd (huge clocks, empty names, absent holders,
//! reserved keys) keeps every invariant of `crate::fuzzing::check_apply`.

use super::*;

fn small_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]{0,2}",
        Just(String::new()),
        Just("_conclave/x".to_string())
    ]
}

fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..10_000,
        Just(u64::MAX),
        Just(u64::MAX - 1),
        any::<u64>()
    ]
}

fn meta() -> impl Strategy<Value = crate::audit::AuditMeta> {
    use crate::audit::{Actor, AuditMeta};
    (
        prop_oneof![
            Just(Actor::Anonymous),
            small_string().prop_map(|accessor_id| Actor::Token { accessor_id }),
            any_u64().prop_map(|node_id| Actor::Node { node_id }),
            Just(Actor::Agent),
        ],
        proptest::option::of(small_string()),
    )
        .prop_map(|(actor, source)| AuditMeta {
            actor,
            request_id: source.clone(),
            source,
        })
}

fn note() -> impl Strategy<Value = crate::audit::Note> {
    use crate::audit::Note;
    prop_oneof![
        (any_u64(), small_string())
            .prop_map(|(node_id, rpc_addr)| Note::Join { node_id, rpc_addr }),
        (any_u64(), any::<bool>()).prop_map(|(node_id, force)| Note::Remove { node_id, force }),
        proptest::collection::vec(small_string(), 0..3).prop_map(|members| Note::Reap { members }),
        proptest::option::of(0u64..4).prop_map(|to| Note::TransferRequested { to }),
        (any_u64(), 0u64..4).prop_map(|(term, leader)| Note::LeaderElected { term, leader }),
    ]
}

/// Any command, also wrapped for the audit log (or doubly wrapped, which is refused),
/// and notes.
fn command() -> BoxedStrategy<Command> {
    use crate::audit::Ending;
    prop_oneof![
        4 => plain_command(),
        1 => (meta(), plain_command()).prop_map(|(meta, c)| Command::Audited {
            meta,
            command: Box::new(c)
        }),
        1 => (meta(), meta(), plain_command()).prop_map(|(outer, inner, c)| Command::Audited {
            meta: outer,
            command: Box::new(Command::Audited {
                meta: inner,
                command: Box::new(c)
            })
        }),
        1 => (meta(), note(), proptest::option::of(small_string())).prop_map(
            |(meta, note, refused)| Command::Note {
                meta,
                note,
                ending: refused.map_or(Ending::Applied, |reason| Ending::Refused { reason }),
            }
        ),
    ]
    .boxed()
}

fn plain_command() -> BoxedStrategy<Command> {
    prop_oneof![
        (
            small_string(),
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::option::of(0u64..20)
        )
            .prop_map(|(key, value, expected)| Command::Put {
                key,
                value,
                expected
            }),
        (small_string(), proptest::option::of(0u64..20))
            .prop_map(|(key, expected)| Command::Delete { key, expected }),
        (any_u64(), any_u64(), any_u64()).prop_map(|(term, now_ms, wall_ms)| Command::Clock {
            term,
            now_ms,
            wall_ms
        }),
        (
            small_string(),
            small_string(),
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::option::of(0u64..20)
        )
            .prop_map(|(kind, name, content, expected)| Command::ConfigPut {
                kind,
                name,
                content,
                hash: "h".into(),
                author: None,
                expected,
            }),
        (
            small_string(),
            small_string(),
            proptest::option::of(0u64..20)
        )
            .prop_map(|(kind, name, expected)| Command::ConfigDelete {
                kind,
                name,
                expected,
                author: None
            }),
        (small_string(), small_string(), any_u64()).prop_map(|(election, candidate, ttl_ms)| {
            Command::Campaign {
                election,
                candidate,
                ttl_ms,
            }
        }),
        (small_string(), small_string(), any_u64()).prop_map(|(election, candidate, epoch)| {
            Command::Keepalive {
                election,
                candidate,
                epoch,
            }
        }),
        (small_string(), small_string(), any_u64()).prop_map(|(election, candidate, epoch)| {
            Command::Resign {
                election,
                candidate,
                epoch,
            }
        }),
        Just(Command::ExpireLeases),
        (small_string(), small_string(), any_u64(), any_u64()).prop_map(
            |(election, target, from_epoch, window_ms)| Command::Handover {
                election,
                target,
                from_epoch,
                window_ms,
            }
        ),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The invariants the `apply` fuzz target checks, over structured commands.
    #[test]
    fn any_command_sequence_keeps_the_state_machine_invariants(
        commands in proptest::collection::vec(command(), 1..60),
    ) {
        if let Err(broken) = crate::fuzzing::check_apply(&commands) {
            prop_assert!(false, "{}", broken);
        }
    }
}
