//! Power-loss tests for the log: it runs on a disk that keeps only what was synced
//! ([`PowerLossDisk`]), the power is cut at a random mutation during a random mix of
//! appends, votes, commits, truncations and purges, and the log that comes back must hold
//! every acknowledged entry, no entry that was never written, no vote older than the last
//! one saved, and a committed index it can actually re-apply.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conclave_storage::powerloss::PowerLossDisk;
use conclave_storage::{
    LogStore, SharedDisk, StateMachineStore, StorageError, StorageOptions, TypeConfig, Vote,
};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn root() -> PathBuf {
    PathBuf::from("/sim")
}

struct SimBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, ()> for SimBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachineStore), StorageError> {
        let disk: SharedDisk = Arc::new(PowerLossDisk::new(&root(), 7));
        let opts = StorageOptions {
            segment_max_bytes: 256,
            ..StorageOptions::default()
        };
        let (log, sm) = conclave_storage::open_on(disk, &root(), &opts).expect("open");
        Ok(((), log, sm))
    }
}

/// The simulated disk behaves as a file system as far as openraft's own suite can tell.
#[test]
fn openraft_storage_suite_on_the_simulated_disk() {
    Suite::test_all(SimBuilder).expect("openraft storage suite");
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(conclave_state::Batch {
            commands: vec![conclave_state::Command::Put {
                key: format!("k{index}-t{term}"),
                value: vec![index as u8; 40 + (index % 50) as usize],
                expected: None,
            }],
        }),
    }
}

fn key_of(e: &Entry<TypeConfig>) -> String {
    match &e.payload {
        EntryPayload::Normal(b) => match b.commands.first() {
            Some(conclave_state::Command::Put { key, .. }) => key.clone(),
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    }
}

/// What the test knows must, or may, be on disk.
#[derive(Default)]
struct Model {
    /// Every log id written at an index since the last acknowledged truncation below it.
    possible: BTreeMap<u64, Vec<LogId<u64>>>,
    /// The entry acknowledged durable at each index (truncations remove them).
    acked: BTreeMap<u64, LogId<u64>>,
    purged_acked: u64,
    vote_acked: Option<Vote>,
    vote_in_flight: Option<Vote>,
    term: u64,
    next: u64,
    /// The highest index ever recorded as committed: Raft never truncates at or below it.
    committed: u64,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const SEGMENT: u64 = 600;

async fn open(disk: &PowerLossDisk) -> LogStore {
    LogStore::open_on(Arc::new(disk.clone()), &root().join("log"), SEGMENT)
        .unwrap_or_else(|e| panic!("the log does not open after a power cut: {e}"))
}

/// Run random operations until the power goes; returns the model.
async fn run_until_cut(disk: &PowerLossDisk, rng: &mut StdRng) -> Model {
    let mut log = open(disk).await;
    let mut m = Model {
        term: 1,
        next: 1,
        ..Model::default()
    };
    disk.cut_after(rng.random_range(0..600));
    for _ in 0..2_000 {
        let roll = rng.random_range(0..100);
        let ok = if roll < 60 {
            let n = rng.random_range(1..=4);
            let entries: Vec<_> = (m.next..m.next + n).map(|i| entry(m.term, i)).collect();
            for e in &entries {
                m.possible.entry(e.log_id.index).or_default().push(e.log_id);
            }
            let last = entries.last().map(|e| e.log_id);
            let commit = rng.random_bool(0.5);
            if commit {
                m.committed = m.next + n - 1;
            }
            // A follower records the leader's commit index while its own append is still
            // being flushed: the committed file may then run ahead of the durable log.
            let mut committer = log.clone();
            let (appended, _) = tokio::join!(log.blocking_append(entries), async {
                if commit {
                    let _ = committer.save_committed(last).await;
                }
            });
            if appended.is_ok() {
                for i in m.next..m.next + n {
                    m.acked.insert(i, log_id(m.term, i));
                }
            }
            m.next += n;
            appended.is_ok()
        } else if roll < 70 {
            let vote = Vote::new(m.term + 1, rng.random_range(1..=3));
            m.vote_in_flight = Some(vote);
            let ok = log.save_vote(&vote).await.is_ok();
            if ok {
                m.vote_acked = Some(vote);
                m.term += 1;
            }
            ok
        } else if roll < 78 && m.next > m.committed.max(m.purged_acked) + 2 {
            let at = rng.random_range(m.committed.max(m.purged_acked) + 1..m.next);
            let ok = log.truncate(log_id(m.term, at)).await.is_ok();
            // Asked to go: whether or not the cut came first, they may be gone.
            m.acked.split_off(&at);
            if ok {
                m.possible.split_off(&at);
                m.next = at;
                // A new leader's entries replace the cut ones.
                m.term += 1;
            }
            ok
        } else if roll < 85 && m.acked.range(..=m.committed).next().is_some() {
            let (&lo, _) = m.acked.first_key_value().unwrap();
            let (&hi, _) = m.acked.range(..=m.committed).next_back().unwrap();
            let at = rng.random_range(lo..=hi);
            let id = m.acked[&at];
            let ok = log.purge(id).await.is_ok();
            m.acked = m.acked.split_off(&(at + 1));
            if ok {
                m.purged_acked = at;
            }
            ok
        } else {
            let c = m.acked.last_key_value().map(|(_, id)| *id);
            m.committed = m.committed.max(c.map_or(0, |c| c.index));
            log.save_committed(c).await.is_ok()
        };
        if !ok {
            break;
        }
    }
    assert!(
        disk.is_cut(),
        "the run ended before the power cut; raise the op count"
    );
    m
}

async fn check_recovered(disk: &PowerLossDisk, m: &Model, seed: u64) {
    let mut log = open(disk).await;
    let state = log.get_log_state().await.unwrap();
    let purged = state.last_purged_log_id.map_or(0, |p| p.index);
    assert!(
        purged >= m.purged_acked,
        "seed {seed}: purge to {} was acknowledged, the log says {purged}",
        m.purged_acked
    );
    let last = state.last_log_id.map_or(0, |l| l.index);
    let entries = log.try_get_log_entries(purged + 1..last + 1).await.unwrap();
    assert_eq!(
        entries.len() as u64,
        last - purged,
        "seed {seed}: the log has a hole"
    );
    for e in &entries {
        let i = e.log_id.index;
        let options = m.possible.get(&i).map(Vec::as_slice).unwrap_or_default();
        assert!(
            options.contains(&e.log_id),
            "seed {seed}: entry {} was never written (written there: {options:?})",
            e.log_id
        );
        assert_eq!(key_of(e), format!("k{i}-t{}", e.log_id.leader_id.term));
        if let Some(acked) = m.acked.get(&i) {
            assert_eq!(&e.log_id, acked, "seed {seed}: acknowledged entry replaced");
        }
    }
    if let Some((&i, _)) = m.acked.last_key_value() {
        assert!(
            last >= i,
            "seed {seed}: entry {i} was acknowledged, the log ends at {last}"
        );
    }
    let vote = log.read_vote().await.unwrap();
    assert!(
        vote == m.vote_acked || vote == m.vote_in_flight,
        "seed {seed}: vote {vote:?}, acknowledged {:?}",
        m.vote_acked
    );
    // What openraft will re-apply on start must be in the log (or behind the purge point).
    if let Some(c) = log.read_committed().await.unwrap()
        && c.index > purged
    {
        let at = entries.iter().find(|e| e.log_id.index == c.index);
        assert_eq!(
            at.map(|e| e.log_id),
            Some(c),
            "seed {seed}: committed {c} is not in the recovered log (last {last})"
        );
    }
    // And the log takes new entries where it ends.
    log.blocking_append([entry(m.term + 10, last + 1)])
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: cannot append after recovery: {e}"));
}

#[test]
fn every_acknowledged_append_survives_a_power_cut_anywhere() {
    let rt = rt();
    for seed in 0..1000u64 {
        let disk = PowerLossDisk::new(&root(), seed);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let model = rt.block_on(run_until_cut(&disk, &mut rng));
        let after = disk.power_cut();
        rt.block_on(check_recovered(&after, &model, seed));
        // A second cut right after recovery (the recovery's own writes, e.g. cutting a torn
        // tail, must be durable before they are relied on).
        let again = after.power_cut();
        rt.block_on(async {
            let mut log = open(&again).await;
            let state = log.get_log_state().await.unwrap();
            assert!(state.last_purged_log_id.map_or(0, |p| p.index) >= model.purged_acked);
        });
    }
}

#[test]
fn a_missing_directory_is_not_silently_accepted() {
    // The seam is used for every path the stores touch: opening a log under a path the
    // simulated disk does not hold fails with the path, never with a panic.
    let disk = PowerLossDisk::new(&root(), 1);
    let err = LogStore::open_on(Arc::new(disk), Path::new("/elsewhere/log"), SEGMENT)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("/elsewhere/log"), "{err}");
}
