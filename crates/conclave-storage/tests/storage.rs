//! Storage conformance and crash-recovery tests, on real files.

use std::io::Write;

use conclave_storage::{LogStore, StateMachineStore, StorageError, StorageOptions, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        // Tiny segments so the suite exercises rolling, truncating and purging across files.
        let (log, sm) = conclave_storage::open(
            dir.path(),
            &StorageOptions {
                segment_max_bytes: 256,
                ..StorageOptions::default()
            },
        )
        .expect("open");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

fn entry(term: u64, index: u64, key: &str) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(conclave_state::Batch {
            commands: vec![conclave_state::Command::Put {
                key: key.into(),
                value: vec![7; 100],
                expected: None,
            }],
        }),
    }
}

/// The log's segment files, oldest first.
fn segments(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(data_dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn reopen_recovers_entries_and_cuts_a_torn_tail() {
    let dir = TempDir::new().unwrap();
    let opts = StorageOptions {
        segment_max_bytes: 1024,
        ..StorageOptions::default()
    };
    rt().block_on(async {
        let (mut log, _) = conclave_storage::open(dir.path(), &opts).unwrap();
        let entries: Vec<_> = (1..=30).map(|i| entry(1, i, &format!("k{i}"))).collect();
        log.blocking_append(entries).await.unwrap();
    });
    // Simulate a crash mid-write: garbage half-record at the end of the newest segment.
    let segs = segments(dir.path());
    assert!(segs.len() > 1, "expected several segments, got {segs:?}");
    let last = segs.last().unwrap().clone();
    let len_before = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap()
        .write_all(&[200, 0, 0, 0, 1, 2, 3])
        .unwrap();

    rt().block_on(async {
        let (mut log, _) = conclave_storage::open(dir.path(), &opts).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.unwrap().index, 30);
        let got = log.try_get_log_entries(1..=30).await.unwrap();
        assert_eq!(got.len(), 30);
        assert_eq!(got[29].log_id.index, 30);
        // The torn bytes were cut, and appending continues cleanly.
        assert_eq!(std::fs::metadata(&last).unwrap().len(), len_before);
        log.blocking_append(vec![entry(2, 31, "k31")])
            .await
            .unwrap();
    });
    rt().block_on(async {
        let (mut log, _) = conclave_storage::open(dir.path(), &opts).unwrap();
        let got = log.try_get_log_entries(25..).await.unwrap();
        assert_eq!(got.len(), 7);
        assert_eq!(got[6].log_id.leader_id.term, 2);
    });
}

#[test]
fn corruption_in_an_old_segment_is_refused_with_its_location() {
    let dir = TempDir::new().unwrap();
    let opts = StorageOptions {
        segment_max_bytes: 512,
        ..StorageOptions::default()
    };
    rt().block_on(async {
        let (mut log, _) = conclave_storage::open(dir.path(), &opts).unwrap();
        let entries: Vec<_> = (1..=20).map(|i| entry(1, i, "k")).collect();
        log.blocking_append(entries).await.unwrap();
    });
    let segs = segments(dir.path());
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&segs[0], bytes).unwrap();
    let err = conclave_storage::open(dir.path(), &opts)
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(msg.contains("corrupt") && msg.contains(".seg"), "{msg}");
}

#[test]
fn purge_everything_then_append_after_the_purge_point() {
    let dir = TempDir::new().unwrap();
    let opts = StorageOptions {
        segment_max_bytes: 400,
        ..StorageOptions::default()
    };
    rt().block_on(async {
        let (mut log, sm) = conclave_storage::open(dir.path(), &opts).unwrap();
        let entries: Vec<_> = (1..=10).map(|i| entry(1, i, "k")).collect();
        log.blocking_append(entries).await.unwrap();
        // As after installing a snapshot that is ahead of the log: openraft purges the log
        // before the state machine has written the snapshot.
        let snapshot_last = LogId::new(CommittedLeaderId::new(3, 1), 50);
        log.purge(snapshot_last).await.unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id.unwrap().index, 50);
        // Until the snapshot is on disk, the purge is not: a restart now finds the entries.
        let (mut reopened, _) = conclave_storage::open(dir.path(), &opts).unwrap();
        let st = reopened.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, None);
        assert_eq!(st.last_log_id.unwrap().index, 10);
        drop(reopened);
        // The snapshot is written, then the leader's next entries arrive.
        let meta = conclave_storage::SnapshotMeta {
            last_log_id: Some(snapshot_last),
            ..Default::default()
        };
        let bytes =
            conclave_storage::state_machine::encode_snapshot(&meta, &conclave_state::State::new());
        sm.persist_file(Some(snapshot_last), &bytes).unwrap();
        log.blocking_append(vec![entry(3, 51, "x")]).await.unwrap();
    });
    rt().block_on(async {
        let (mut log, _) = conclave_storage::open(dir.path(), &opts).unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.unwrap().index, 50);
        assert_eq!(st.last_log_id.unwrap().index, 51);
        assert_eq!(log.try_get_log_entries(0..100).await.unwrap().len(), 1);
    });
}
