//! What log recovery must do with *any* bytes on disk, written once for the `log_recovery`
//! fuzz target in `fuzz/` and for the regression tests that replay what a fuzzer found.
//!
//! The promise under test: a crash can leave any prefix of the last segment's bytes, and
//! then recovery keeps exactly the entries that were whole, as they were written; any other
//! damage either opens to a contiguous, readable log or is refused with the file and offset.
//! Recovery never panics, and recovering twice finds what recovering once left.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use conclave_state::{Batch, Command};
use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

use crate::{Entry, LogId, LogStore};

/// Small segments, so a pristine log spans several files.
const SEGMENT_BYTES: u64 = 300;
const ENTRIES: u64 = 12;

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1 + index / 5, 1), index),
        payload: EntryPayload::Normal(Batch {
            commands: vec![Command::Put {
                key: format!("k{index}"),
                value: vec![index as u8; 40],
                expected: None,
            }],
        }),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    // A current-thread runtime on this thread cannot fail to build short of OOM.
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// A scratch directory of this process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "conclave-fuzz-log-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory under the temp dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The segment files (name, bytes) of a log of [`ENTRIES`] entries, oldest first.
fn pristine() -> &'static [(String, Vec<u8>)] {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let scratch = Scratch::new();
        runtime().block_on(async {
            let mut log = LogStore::open(&scratch.0, SEGMENT_BYTES).expect("a fresh log opens");
            log.blocking_append((1..=ENTRIES).map(entry))
                .await
                .expect("appending to a fresh log");
        });
        segments(&scratch.0)
            .into_iter()
            .map(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                (
                    name.unwrap_or_default(),
                    std::fs::read(&p).unwrap_or_default(),
                )
            })
            .collect()
    })
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| it.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    segs.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    segs.sort();
    segs
}

/// What opening a log found.
#[derive(Debug, PartialEq)]
enum Recovery {
    /// Every entry from first to last, encoded.
    Opened(Vec<(u64, Vec<u8>)>),
    /// Opening refused the log, with this reason.
    Refused(String),
}

fn recovered(dir: &Path) -> Recovery {
    let mut log = match LogStore::open(dir, SEGMENT_BYTES) {
        Ok(log) => log,
        Err(e) => return Recovery::Refused(e.to_string()),
    };
    let (first, last) = log.first_and_last_index();
    let Some(last) = last else {
        return Recovery::Opened(Vec::new());
    };
    let entries = runtime()
        .block_on(log.try_get_log_entries(first..=last))
        .unwrap_or_else(|e| panic!("a log that opened cannot read {first}..={last}: {e}"));
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert!(
        indexes == (first..=last).collect::<Vec<_>>(),
        "a log that opened is not contiguous: {indexes:?}"
    );
    Recovery::Opened(
        entries
            .iter()
            .map(|e| (e.log_id.index, encode(e)))
            .collect(),
    )
}

fn encode(e: &Entry) -> Vec<u8> {
    postcard::to_stdvec(e).unwrap_or_default()
}

/// Fuzz target `log_recovery`. The first byte picks the damage:
/// - `0`: the last segment is cut after `u16` bytes (a crash mid-append): recovery must keep
///   exactly the whole entries, as written.
/// - `1`: the rest of the input XORed into the segments' bytes at `u16` offsets: any
///   outcome but a panic, an unreadable log or one recovery disagreeing with the next.
/// - otherwise: the rest of the input is the only segment file.
pub fn log_recovery_bytes(bytes: &[u8]) {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    let scratch = Scratch::new();
    let files = pristine();
    let write = |name: &str, data: &[u8]| {
        std::fs::write(scratch.0.join(name), data).expect("writing a scratch segment");
    };
    match mode {
        0 => {
            let cut = rest
                .get(..2)
                .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
            let (last, earlier) = files.split_last().expect("the pristine log has segments");
            for (name, data) in earlier {
                write(name, data);
            }
            write(&last.0, &last.1[..cut.min(last.1.len())]);
            let got = match recovered(&scratch.0) {
                Recovery::Opened(got) => got,
                Recovery::Refused(why) => panic!("a cut tail must recover, not fail: {why}"),
            };
            let expected: Vec<(u64, Vec<u8>)> = (1..=ENTRIES)
                .map(|i| (i, encode(&entry(i))))
                .take(got.len())
                .collect();
            assert!(got == expected, "a cut tail recovered other entries");
            let last_first: u64 = last.0.trim_end_matches(".seg").parse().unwrap_or(1);
            assert!(
                got.len() as u64 >= last_first - 1,
                "a cut in the last segment lost entries of earlier ones"
            );
        }
        1 => {
            let mut images: Vec<(String, Vec<u8>)> = files.to_vec();
            let total: usize = images.iter().map(|(_, d)| d.len()).sum();
            for chunk in rest.chunks_exact(3) {
                let mut at = u16::from_le_bytes([chunk[0], chunk[1]]) as usize % total.max(1);
                for (_, data) in images.iter_mut() {
                    if at < data.len() {
                        data[at] ^= chunk[2];
                        break;
                    }
                    at -= data.len();
                }
            }
            for (name, data) in &images {
                write(name, data);
            }
            check_recovery_settles(&scratch.0);
        }
        _ => {
            write("00000000000000000001.seg", rest);
            check_recovery_settles(&scratch.0);
        }
    }
}

/// Whatever the first recovery did (cut a tail, refuse), a second one agrees with it.
fn check_recovery_settles(dir: &Path) {
    let first = recovered(dir);
    let second = recovered(dir);
    assert!(
        first == second,
        "recovering twice disagrees: {first:?} then {second:?}"
    );
}
