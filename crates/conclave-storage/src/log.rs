//! The Raft log: append-only segment files, fsync'd before an append is reported durable.
//!
//! Why hand-written: the log is conclave's hot write path and its access pattern is simple
//! (append at the tail, truncate the tail, purge the head, read ranges), so a purpose-built
//! file beats a general B-tree: one `pwrite` and one `fdatasync` per append batch.
//!
//! # On disk (`<data>/log/`)
//! - `<first index, 20 digits>.seg`: a header `"CNCLSEG\0" ‖ format u32 LE ‖ 0u32`, then
//!   records `len u32 ‖ crc32 u32 ‖ postcard(Entry)`. The format version
//!   ([`LOG_FORMAT_VERSION`]) names the encoding of the entries (postcard is positional, so
//!   reordering a `Command` variant is a new format; `conclave-storage`'s golden-bytes test
//!   fails first). A segment of another version is refused with its path, never misread.
//!   Segments written before the header existed (format 1, the same entry encoding) start
//!   with a record and are read as they are.
//! - `vote`: the last vote, replaced atomically (fsync'd) on every change.
//! - `purged`: the last purged log id, replaced atomically before segments are deleted.
//! - `committed`: the committed log id, overwritten in place without fsync (losing it only
//!   delays re-applying entries after a restart; a torn write reads as "unknown").
//!
//! # Recovery
//! Every segment is scanned and checksummed on open. A bad record at the tail of the *last*
//! segment is a torn write from a crash: it was never reported durable, so it is cut off.
//! A bad record anywhere else is corruption and opening fails with the file and offset.
//!
//! # Durability
//! `append` writes the records (readable at once, as openraft requires), then hands the
//! fsync to a flusher thread, which syncs every file touched by all appends queued so far
//! and only then fires their callbacks. openraft waits for the callback before it counts
//! the entries towards a commit, so nothing is acknowledged before it is on disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError};

mod flusher;
mod purge;
mod recover;
mod segment;

use flusher::{FlushJob, run_flusher};

pub use purge::SnapshotWatermark;
pub use segment::LOG_FORMAT_VERSION;
use segment::{SEGMENT_HEADER, segment_header};

use crate::disk::{DiskFile, OpenMode, OsDisk, SharedDisk};
use crate::fsutil::{self, FRAME_HEADER};
use crate::{Entry, LogId, OpenError, StorageError, TypeConfig, Vote};

/// Where one entry lives on disk.
#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
    log_id: LogId,
}

struct Segment {
    first_index: u64,
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    len: u64,
    /// Where the records start (after the header; 0 in a format-1 segment).
    data_start: u64,
}

/// Counters that make the group commit observable.
#[derive(Debug, Default)]
pub struct LogStats {
    /// `fdatasync` calls on segment files.
    pub fsyncs: AtomicU64,
    /// Log entries appended.
    pub entries_appended: AtomicU64,
    /// Append calls made durable.
    pub appends_flushed: AtomicU64,
}

struct Log {
    disk: SharedDisk,
    dir: PathBuf,
    segment_max_bytes: u64,
    segments: Vec<Segment>,
    /// Locations of the entries present, by index.
    locs: BTreeMap<u64, Loc>,
    /// Purged as far as openraft is concerned.
    last_purged: Option<LogId>,
    /// Purged as far as the `purged` file says (see [`purge`]).
    durable_purged: Option<LogId>,
    /// The durable snapshots that bound purges on disk; `None` for a log on its own.
    snapshots: Option<Arc<SnapshotWatermark>>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    committed_file: Arc<dyn DiskFile>,
}

/// The Raft log store. Cloning gives another handle to the same log (used as the reader).
#[derive(Clone)]
pub struct LogStore {
    log: Arc<Mutex<Log>>,
    flusher: mpsc::Sender<FlushJob>,
    stats: Arc<LogStats>,
}

fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

fn io_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Logs, verb, AnyError::new(&e)).into()
}

fn decode_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorVerb::Read, e)
}

/// Encode a small metadata file (`vote`, `purged`, `committed`): one framed record.
fn encode_meta<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    let payload = postcard::to_stdvec(value)?;
    let mut framed = Vec::with_capacity(FRAME_HEADER + payload.len());
    fsutil::frame_into(&mut framed, &payload);
    Ok(framed)
}

/// Decode a small framed metadata file (`vote`, `purged`, `committed`).
fn decode_meta<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<Option<T>, OpenError> {
    let corrupt = |reason: String| OpenError::CorruptFile {
        path: dir.join(name).display().to_string(),
        reason,
    };
    fsutil::parse_frame(bytes)
        .map_err(|e| corrupt(e.to_string()))?
        .map(|(p, _)| postcard::from_bytes(p).map_err(|e| corrupt(e.to_string())))
        .transpose()
}

impl Log {
    fn last_log_id(&self) -> Option<LogId> {
        self.locs
            .last_key_value()
            .map(|(_, l)| l.log_id)
            .or(self.last_purged)
    }

    /// Remove entries `index..` from the index and the files (inclusive of `index`).
    fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let removed = self.locs.split_off(&index);
        let Some((_, cut)) = removed.first_key_value() else {
            return Ok(());
        };
        let cut = *cut;
        // Drop whole segments after the one holding the cut, durably, then cut that one: in
        // the other order a power cut could bring a removed segment back behind a cut one,
        // leaving a hole in the log.
        let mut removed_any = false;
        while self
            .segments
            .last()
            .is_some_and(|s| s.first_index > cut.segment)
        {
            if let Some(seg) = self.segments.pop() {
                self.disk.remove_file(&seg.path)?;
                removed_any = true;
            }
        }
        if removed_any {
            self.disk.sync_dir(&self.dir)?;
        }
        if let Some(seg) = self.segments.last_mut() {
            seg.file.set_len(cut.offset)?;
            seg.file.sync_data()?;
            seg.len = cut.offset;
        }
        Ok(())
    }

    /// The first run of missing indexes `(from, to)` (inclusive) between held entries.
    fn first_gap(&self) -> Option<(u64, u64)> {
        let mut indexes = self.locs.keys();
        let mut prev = *indexes.next()?;
        for &i in indexes {
            if i != prev + 1 {
                return Some((prev + 1, i - 1));
            }
            prev = i;
        }
        None
    }

    /// The `committed` file is written without fsync, and a follower records the leader's
    /// commit index while its own append is still being flushed: after a power cut it can
    /// name an entry the log no longer holds, which openraft would fail to re-apply on
    /// start. Such a value is forgotten (the leader tells it again).
    fn forget_committed_beyond_the_log(&mut self) {
        let Some(c) = self.committed else { return };
        let purged = self.last_purged.is_some_and(|p| c.index <= p.index);
        let held = self.locs.get(&c.index).is_some_and(|l| l.log_id == c);
        if !purged && !held {
            tracing::warn!(
                committed = %c,
                last = ?self.last_log_id(),
                "the recorded commit index names an entry lost with unsynced writes; it is learned again from the leader"
            );
            self.committed = None;
        }
    }

    fn segment_of(&self, first_index: u64) -> Option<&Segment> {
        let i = self
            .segments
            .binary_search_by_key(&first_index, |s| s.first_index)
            .ok()?;
        Some(&self.segments[i])
    }

    fn read_entry(&self, loc: &Loc) -> Result<Entry, StorageError> {
        let seg = self.segment_of(loc.segment).ok_or_else(|| {
            decode_err(io::Error::other(format!(
                "segment {} missing for entry {}",
                loc.segment, loc.log_id.index
            )))
        })?;
        let mut buf = vec![0u8; FRAME_HEADER + loc.len as usize];
        seg.file
            .read_exact_at(&mut buf, loc.offset)
            .map_err(|e| io_err(ErrorVerb::Read, e))?;
        let (payload, _) = fsutil::parse_frame(&buf)
            .map_err(|r| decode_err(io::Error::other(r.to_string())))?
            .ok_or_else(|| decode_err(io::Error::other("empty record")))?;
        postcard::from_bytes(payload).map_err(decode_err)
    }

    /// Start a segment at `first_index`. The active one is synced first: only the last
    /// segment may end in a torn record (recovery refuses one anywhere else), so a segment
    /// must be whole on disk before a newer one can exist.
    fn new_segment(&mut self, first_index: u64) -> io::Result<()> {
        if let Some(active) = self.segments.last() {
            active.file.sync_data()?;
        }
        let path = self.dir.join(segment_name(first_index));
        let file = self.disk.open(&path, OpenMode::CreateEmpty)?;
        file.write_all_at(&segment_header(), 0)?;
        file.sync_data()?;
        self.disk.sync_dir(&self.dir)?;
        self.segments.push(Segment {
            first_index,
            path,
            file,
            len: SEGMENT_HEADER as u64,
            data_start: SEGMENT_HEADER as u64,
        });
        Ok(())
    }
}

impl LogStore {
    /// Open the log in `dir`, creating it when missing, and recover from a torn tail.
    pub fn open(dir: &Path, segment_max_bytes: u64) -> Result<Self, OpenError> {
        Self::open_on(OsDisk::shared(), dir, segment_max_bytes)
    }

    /// [`LogStore::open`] on `disk`.
    pub fn open_on(
        disk: SharedDisk,
        dir: &Path,
        segment_max_bytes: u64,
    ) -> Result<Self, OpenError> {
        disk.create_dir_all(dir)
            .map_err(|e| OpenError::io(dir, e))?;

        let read_meta = |name: &str| -> Result<Option<Vec<u8>>, OpenError> {
            let p = dir.join(name);
            fsutil::read_optional_on(&*disk, &p).map_err(|e| OpenError::io(&p, e))
        };
        let vote: Option<Vote> = match read_meta("vote")? {
            Some(b) => decode_meta(dir, "vote", &b)?,
            None => None,
        };
        let last_purged: Option<LogId> = match read_meta("purged")? {
            Some(b) => decode_meta::<Option<LogId>>(dir, "purged", &b)?.flatten(),
            None => None,
        };
        // A torn `committed` write only loses an optimisation; treat it as unknown.
        let committed: Option<LogId> = read_meta("committed")?.and_then(|b| {
            decode_meta::<Option<LogId>>(dir, "committed", &b)
                .ok()
                .flatten()
                .flatten()
        });
        let committed_path = dir.join("committed");
        let committed_file = disk
            .open(&committed_path, OpenMode::CreateOrKeep)
            .map_err(|e| OpenError::io(&committed_path, e))?;

        let mut seg_firsts: Vec<(u64, PathBuf)> = Vec::new();
        for name in disk.list(dir).map_err(|e| OpenError::io(dir, e))? {
            let Some(stem) = name.strip_suffix(".seg") else {
                continue;
            };
            if let Ok(first) = stem.parse::<u64>() {
                seg_firsts.push((first, dir.join(&name)));
            }
        }
        seg_firsts.sort();

        let mut log = Log {
            disk: disk.clone(),
            dir: dir.to_owned(),
            segment_max_bytes,
            segments: Vec::new(),
            locs: BTreeMap::new(),
            last_purged,
            durable_purged: last_purged,
            snapshots: None,
            vote,
            committed,
            committed_file,
        };

        recover::recover_segments(&*disk, &mut log, seg_firsts)?;

        if let Some(gap) = log.first_gap() {
            return Err(OpenError::CorruptFile {
                path: dir.display().to_string(),
                reason: format!(
                    "the log has no entries {}..{} between its segments",
                    gap.0, gap.1
                ),
            });
        }
        log.forget_committed_beyond_the_log();

        let stats = Arc::new(LogStats::default());
        let (tx, rx) = mpsc::channel::<FlushJob>();
        let flusher_stats = stats.clone();
        std::thread::Builder::new()
            .name("conclave-log-flusher".into())
            .spawn(move || run_flusher(rx, &flusher_stats))
            .map_err(|e| OpenError::io(dir, e))?;

        Ok(LogStore {
            log: Arc::new(Mutex::new(log)),
            flusher: tx,
            stats,
        })
    }

    pub fn stats(&self) -> Arc<LogStats> {
        self.stats.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        // A panic while holding the lock leaves the in-memory index possibly inconsistent with
        // the files; continuing is still safe because every read verifies checksums.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bound purges on disk by the snapshots `watermark` reports durable (see [`purge`]).
    pub fn bind_purges_to(&self, watermark: Arc<SnapshotWatermark>) {
        self.lock().snapshots = Some(watermark);
    }

    /// The last committed log index this node has recorded.
    pub fn committed_index(&self) -> Option<u64> {
        self.lock().committed.map(|c| c.index)
    }

    /// Entries currently held (not purged), for status output.
    pub fn first_and_last_index(&self) -> (u64, Option<u64>) {
        let log = self.lock();
        (
            log.locs.first_key_value().map_or(0, |(i, _)| *i),
            log.locs.last_key_value().map(|(i, _)| *i),
        )
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let log = self.lock();
        let locs: Vec<Loc> = log.locs.range(range).map(|(_, l)| *l).collect();
        locs.iter().map(|loc| log.read_entry(loc)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = self.lock();
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id: log.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// The vote is durable before this returns. Its fsync runs on a blocking thread with no
    /// lock held, so it stalls neither the async runtime nor the readers of the log; openraft
    /// saves one vote at a time (`&mut self`, awaited), so two saves cannot reorder.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let framed = encode_meta(vote).map_err(|e| io_err(ErrorVerb::Write, e))?;
        let (disk, path) = {
            let log = self.lock();
            (log.disk.clone(), log.dir.join("vote"))
        };
        let vote_err = |e: io::Error| {
            StorageIOError::new(ErrorSubject::Vote, ErrorVerb::Write, AnyError::new(&e))
        };
        tokio::task::spawn_blocking(move || fsutil::write_atomic_on(&*disk, &path, &framed))
            .await
            .map_err(|e| vote_err(io::Error::other(e)))?
            .map_err(vote_err)?;
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut log = self.lock();
        let framed = encode_meta(&committed).map_err(|e| io_err(ErrorVerb::Write, e))?;
        // Deliberately not fsync'd: see the module docs.
        log.committed_file
            .write_all_at(&framed, 0)
            .map_err(|e| io_err(ErrorVerb::Write, e))?;
        log.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut log = self.lock();
        // A purge waiting for its snapshot finishes before the log grows past it.
        log.persist_purge()
            .map_err(|e| io_err(ErrorVerb::Delete, e))?;
        let mut touched: Vec<Arc<dyn DiskFile>> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut pending: Vec<Loc> = Vec::new();
        let mut appended = 0u64;

        for entry in entries {
            let index = entry.log_id.index;
            // openraft truncates conflicting entries before appending; appending at or below
            // the tail is treated the same way, so the file never holds two versions.
            if pending.is_empty() && log.locs.range(index..).next().is_some() {
                log.truncate_from(index)
                    .map_err(|e| io_err(ErrorVerb::Delete, e))?;
            }
            let payload = postcard::to_stdvec(&entry).map_err(|e| io_err(ErrorVerb::Write, e))?;
            let active = log
                .segments
                .last()
                .map(|s| (s.len + buf.len() as u64, s.data_start));
            let need_new = match active {
                None => true,
                Some((len, start)) => {
                    len > start && len + payload.len() as u64 > log.segment_max_bytes
                }
            };
            if need_new {
                write_pending(&mut log, &mut buf, &mut pending, &mut touched)?;
                log.new_segment(index)
                    .map_err(|e| io_err(ErrorVerb::Write, e))?;
            }
            let seg = log
                .segments
                .last()
                .ok_or_else(|| io_err(ErrorVerb::Write, io::Error::other("no active segment")))?;
            pending.push(Loc {
                segment: seg.first_index,
                offset: seg.len + buf.len() as u64,
                len: payload.len() as u32,
                log_id: entry.log_id,
            });
            fsutil::frame_into(&mut buf, &payload);
            appended += 1;
        }
        write_pending(&mut log, &mut buf, &mut pending, &mut touched)?;
        drop(log);
        self.stats
            .entries_appended
            .fetch_add(appended, Ordering::Relaxed);

        self.flusher
            .send(FlushJob {
                files: touched,
                callback,
            })
            .map_err(|_| {
                io_err(
                    ErrorVerb::Write,
                    io::Error::other("the log flusher thread has stopped"),
                )
            })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lock()
            .truncate_from(log_id.index)
            .map_err(|e| io_err(ErrorVerb::Delete, e))
    }

    /// Entries up to `log_id` are gone for openraft at once; on disk, see [`purge`].
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut log = self.lock();
        if log.last_purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        log.last_purged = Some(log_id);
        log.locs = log.locs.split_off(&(log_id.index + 1));
        log.persist_purge()
            .map_err(|e| io_err(ErrorVerb::Delete, e))
    }
}

/// Write the buffered records to the active segment and index them.
fn write_pending(
    log: &mut Log,
    buf: &mut Vec<u8>,
    pending: &mut Vec<Loc>,
    touched: &mut Vec<Arc<dyn DiskFile>>,
) -> Result<(), StorageError> {
    if buf.is_empty() {
        return Ok(());
    }
    let seg = log
        .segments
        .last_mut()
        .ok_or_else(|| io_err(ErrorVerb::Write, io::Error::other("no active segment")))?;
    seg.file
        .write_all_at(buf, seg.len)
        .map_err(|e| io_err(ErrorVerb::Write, e))?;
    seg.len += buf.len() as u64;
    if !touched.iter().any(|f| Arc::ptr_eq(f, &seg.file)) {
        touched.push(seg.file.clone());
    }
    buf.clear();
    for loc in pending.drain(..) {
        log.locs.insert(loc.log_id.index, loc);
    }
    Ok(())
}
