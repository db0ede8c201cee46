//! The on-disk format is a contract with every existing data directory: these tests fail when
//! an encoding changes, before a release could misread an old log.

use conclave_state::{Batch, Command};
use conclave_storage::{LOG_FORMAT_VERSION, StorageOptions, TypeConfig};
use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader};
use tempfile::TempDir;

/// One of every command, each optional field once empty and once full.
fn every_command() -> Vec<Command> {
    vec![
        Command::Put {
            key: "k".into(),
            value: vec![1, 2],
            expected: None,
        },
        Command::Put {
            key: "k".into(),
            value: vec![],
            expected: Some(7),
        },
        Command::Delete {
            key: "k".into(),
            expected: None,
        },
        Command::Delete {
            key: "k".into(),
            expected: Some(0),
        },
        Command::Clock {
            term: 3,
            now_ms: 1000,
            wall_ms: 2000,
        },
        Command::ConfigPut {
            kind: "remote-peers".into(),
            name: "p".into(),
            content: b"{}".to_vec(),
            hash: "ab".into(),
            author: Some("op".into()),
            expected: Some(4),
        },
        Command::ConfigPut {
            kind: "schema".into(),
            name: "s".into(),
            content: vec![],
            hash: String::new(),
            author: None,
            expected: None,
        },
        Command::ConfigDelete {
            kind: "remote-peers".into(),
            name: "p".into(),
            expected: Some(5),
            author: Some("op".into()),
        },
        Command::ConfigDelete {
            kind: "remote-peers".into(),
            name: "p".into(),
            expected: None,
            author: None,
        },
        Command::Campaign {
            election: "e".into(),
            candidate: "c".into(),
            ttl_ms: 5000,
        },
        Command::Keepalive {
            election: "e".into(),
            candidate: "c".into(),
            epoch: 2,
        },
        Command::Resign {
            election: "e".into(),
            candidate: "c".into(),
            epoch: 2,
        },
        Command::ExpireLeases,
        Command::Handover {
            election: "e".into(),
            target: "t".into(),
            from_epoch: 2,
            window_ms: 15000,
        },
    ]
}

/// The postcard bytes of [`every_command`] as a log entry's batch. If this changes, old
/// logs would be misread: bump `LOG_FORMAT_VERSION` (and the RPC protocol) and keep a
/// decoder for the old layout instead of editing this constant.
const GOLDEN_BATCH_HEX: &str = "0e00016b0201020000016b00010701016b0001016b01000203e807d00f030c72656d6f74652d70656572730170027b7d02616201026f7001040306736368656d61017300000000040c72656d6f74652d70656572730170010501026f70040c72656d6f74652d70656572730170000005016501638827060165016302070165016302080901650174029875";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn log_commands_keep_their_encoding() {
    let batch = Batch {
        commands: every_command(),
    };
    let bytes = postcard::to_stdvec(&batch).unwrap();
    assert_eq!(
        hex(&bytes),
        GOLDEN_BATCH_HEX,
        "the log encoding of Command changed"
    );
    let back: Batch = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back.commands, batch.commands);
    assert_eq!(LOG_FORMAT_VERSION, 2);
}

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Batch {
            commands: vec![Command::Put {
                key: format!("k{index}"),
                value: vec![7; 50],
                expected: None,
            }],
        }),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn opts() -> StorageOptions {
    StorageOptions {
        segment_max_bytes: 400,
        ..StorageOptions::default()
    }
}

/// A log of `n` entries in several segments; returns the segment paths, oldest first.
fn write_log(dir: &TempDir, n: u64) -> Vec<std::path::PathBuf> {
    rt().block_on(async {
        let (mut log, _) = conclave_storage::open(dir.path(), &opts()).unwrap();
        log.blocking_append((1..=n).map(entry)).await.unwrap();
    });
    let mut segs: Vec<_> = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    assert!(segs.len() > 1, "{segs:?}");
    segs
}

fn read_all(dir: &TempDir) -> Vec<u64> {
    rt().block_on(async {
        let (mut log, _) = conclave_storage::open(dir.path(), &opts()).unwrap();
        let got = log.try_get_log_entries(0..1000).await.unwrap();
        got.iter().map(|e| e.log_id.index).collect()
    })
}

#[test]
fn segments_carry_the_format_version() {
    let dir = TempDir::new().unwrap();
    for seg in write_log(&dir, 20) {
        let bytes = std::fs::read(&seg).unwrap();
        assert_eq!(&bytes[..8], b"CNCLSEG\0", "{}", seg.display());
        assert_eq!(bytes[8..12], LOG_FORMAT_VERSION.to_le_bytes());
    }
    assert_eq!(read_all(&dir), (1..=20).collect::<Vec<_>>());
}

#[test]
fn headerless_segments_of_earlier_releases_still_read_and_grow() {
    let dir = TempDir::new().unwrap();
    for seg in write_log(&dir, 20) {
        let bytes = std::fs::read(&seg).unwrap();
        std::fs::write(&seg, &bytes[16..]).unwrap();
    }
    assert_eq!(read_all(&dir), (1..=20).collect::<Vec<_>>());
    rt().block_on(async {
        let (mut log, _) = conclave_storage::open(dir.path(), &opts()).unwrap();
        log.blocking_append((21..=25).map(entry)).await.unwrap();
    });
    assert_eq!(read_all(&dir), (1..=25).collect::<Vec<_>>());
}

#[test]
fn a_segment_of_an_unknown_format_is_refused_not_misread() {
    let dir = TempDir::new().unwrap();
    let segs = write_log(&dir, 20);
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
    std::fs::write(&segs[0], bytes).unwrap();
    let err = conclave_storage::open(dir.path(), &opts())
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains("log format 9") && msg.contains(".seg"),
        "{msg}"
    );
}

#[test]
fn a_header_torn_while_creating_the_last_segment_is_rewritten() {
    let dir = TempDir::new().unwrap();
    write_log(&dir, 20);
    let torn = dir.path().join("log").join(format!("{:020}.seg", 21));
    std::fs::write(&torn, b"CNCLS").unwrap();
    assert_eq!(read_all(&dir), (1..=20).collect::<Vec<_>>());
    rt().block_on(async {
        let (mut log, _) = conclave_storage::open(dir.path(), &opts()).unwrap();
        log.blocking_append((21..=22).map(entry)).await.unwrap();
    });
    assert_eq!(read_all(&dir), (1..=22).collect::<Vec<_>>());
}

mod arbitrary_bytes_on_disk {
    //! Whatever a data directory holds (a disk error, a bad copy, an attacker with access to
    //! it), opening it gives the entries or an error naming the file: never a panic. Random
    //! input, not coverage-guided (that needs a nightly toolchain).

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn a_damaged_segment_opens_or_is_refused(
            at in 0usize..2000,
            garbage in proptest::collection::vec(any::<u8>(), 1..64),
            truncate in proptest::option::of(0usize..2000),
        ) {
            let dir = TempDir::new().unwrap();
            let segs = write_log(&dir, 30);
            let target = &segs[segs.len() / 2];
            let mut bytes = std::fs::read(target).unwrap();
            let at = at % bytes.len();
            for (i, b) in garbage.iter().enumerate() {
                if let Some(x) = bytes.get_mut(at + i) {
                    *x = *b;
                }
            }
            if let Some(n) = truncate {
                bytes.truncate(n % (bytes.len() + 1));
            }
            std::fs::write(target, &bytes).unwrap();
            rt().block_on(async {
                if let Ok((mut log, _)) = conclave_storage::open(dir.path(), &opts()) {
                    let _ = log.try_get_log_entries(0..1000).await;
                }
            });
        }

        #[test]
        fn a_snapshot_of_random_bytes_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = conclave_state::snapshot::decode(&bytes);
        }
    }
}

/// ACL commands, appended after the others: their own golden bytes, so that a change to a
/// policy's or token's shape in the log is caught like any other command's.
const GOLDEN_ACL_HEX: &str = "050a0001610168017301640101700101020a010170000300016b0101000007020a0201700a0301610168017301640101700101020a040161";

#[test]
fn acl_commands_keep_their_encoding() {
    use conclave_state::acl::{Access, AclCommand, Policy, Resource, Rule, Token};
    let token = Token {
        accessor_id: "a".into(),
        secret_hash: "h".into(),
        salt: "s".into(),
        description: "d".into(),
        policies: vec!["p".into()],
        created_ms: 1,
        expires_ms: Some(2),
    };
    let batch = Batch {
        commands: vec![
            Command::Acl(AclCommand::Bootstrap(token.clone())),
            Command::Acl(AclCommand::PutPolicy(Policy {
                name: "p".into(),
                description: String::new(),
                rules: vec![
                    Rule {
                        resource: Resource::Kv { prefix: "k".into() },
                        access: Access::Write,
                    },
                    Rule {
                        resource: Resource::Config { kind: None },
                        access: Access::Read,
                    },
                    Rule {
                        resource: Resource::Audit,
                        access: Access::Admin,
                    },
                ],
            })),
            Command::Acl(AclCommand::DeletePolicy { name: "p".into() }),
            Command::Acl(AclCommand::CreateToken(token)),
            Command::Acl(AclCommand::DeleteToken {
                accessor_id: "a".into(),
            }),
        ],
    };
    let bytes = postcard::to_stdvec(&batch).unwrap();
    assert_eq!(
        hex(&bytes),
        GOLDEN_ACL_HEX,
        "the log encoding of ACL commands changed"
    );
    let back: Batch = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, batch);
}

/// Audit commands (`Audited`, `Note`), appended after the ACL ones: every actor, note and
/// ending, each optional field once empty and once full.
const GOLDEN_AUDIT_HEX: &str = "0d0b01016101017301017201016b000b000000080c030000000203613a31000c030000010203613a31010101780c030000020203623a31000c030000030201000c0300000402000c030000050200000c0300000601016d000c0300000700000c030000070103000c0201010173010172080401000c040000040100";

#[test]
fn audit_commands_keep_their_encoding() {
    use conclave_state::audit::{Actor, AuditMeta, Ending, Note};
    let meta = |actor| AuditMeta {
        actor,
        source: Some("s".into()),
        request_id: Some("r".into()),
    };
    let note = |note, ending| Command::Note {
        meta: AuditMeta::agent(),
        note,
        ending,
    };
    let batch = Batch {
        commands: vec![
            Command::Audited {
                meta: meta(Actor::Token {
                    accessor_id: "a".into(),
                }),
                command: Box::new(Command::Delete {
                    key: "k".into(),
                    expected: None,
                }),
            },
            Command::Audited {
                meta: AuditMeta::by(Actor::Anonymous),
                command: Box::new(Command::ExpireLeases),
            },
            note(
                Note::Join {
                    node_id: 2,
                    rpc_addr: "a:1".into(),
                },
                Ending::Applied,
            ),
            note(
                Note::Add {
                    node_id: 2,
                    rpc_addr: "a:1".into(),
                    voter: true,
                },
                Ending::Refused { reason: "x".into() },
            ),
            note(
                Note::Move {
                    node_id: 2,
                    rpc_addr: "b:1".into(),
                },
                Ending::Applied,
            ),
            note(
                Note::Remove {
                    node_id: 2,
                    force: true,
                },
                Ending::Applied,
            ),
            note(Note::Promote { node_id: 2 }, Ending::Applied),
            note(
                Note::Demote {
                    node_id: 2,
                    force: false,
                },
                Ending::Applied,
            ),
            note(
                Note::Reap {
                    members: vec!["m".into()],
                },
                Ending::Applied,
            ),
            note(Note::TransferRequested { to: None }, Ending::Applied),
            note(Note::TransferRequested { to: Some(3) }, Ending::Applied),
            Command::Note {
                meta: meta(Actor::Node { node_id: 1 }),
                note: Note::LeaderElected { term: 4, leader: 1 },
                ending: Ending::Applied,
            },
            Command::Note {
                meta: AuditMeta::by(Actor::Operator),
                note: Note::Promote { node_id: 1 },
                ending: Ending::Applied,
            },
        ],
    };
    let bytes = postcard::to_stdvec(&batch).unwrap();
    assert_eq!(
        hex(&bytes),
        GOLDEN_AUDIT_HEX,
        "the log encoding of audit commands changed"
    );
    let back: Batch = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, batch);
}

/// IPAM commands, appended after the audit ones: every command, each optional field once
/// empty and once full (`conclave_state::ipam::samples`).
const GOLDEN_IPAM_HEX: &str = "0d0d0000000a000000180000000000000d0001016e01fd00000000000000000000000000000040016401016b01760101fd0000000000000000000000000000010101fd00000000000000000000000000000101fd00000000000000000000000000000101000a000001000a0000090101700d01016e00000d01016e0101640101016b01760d02016e010d03016e000000000000010d03016e01000a00000701016801016f01016b017601017201e0d403020d040007616c6c6f632d310d0401016e01fd0000000000000000000000000000010d0402016e01680d0507616c6c6f632d31000d0507616c6c6f632d310188270d0602016e000a000007000000016e01fd00000000000000000000000000000101016801016f01016b0176";

#[test]
fn ipam_commands_keep_their_encoding() {
    let batch = Batch {
        commands: conclave_state::ipam::samples::commands()
            .into_iter()
            .map(Command::Ipam)
            .collect(),
    };
    let bytes = postcard::to_stdvec(&batch).unwrap();
    assert_eq!(
        hex(&bytes),
        GOLDEN_IPAM_HEX,
        "the log encoding of IPAM commands changed"
    );
    let back: Batch = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, batch);
}
