//! The applied state, kept in memory and made durable by snapshots.
//!
//! Why in memory: the log is already durable, so the applied state need not be fsync'd on
//! every write; it is rebuilt on restart from the newest snapshot plus the log after it. That
//! keeps the write path to exactly one fsync (the log's).
//!
//! # On disk (`<data>/snapshots/`)
//! `snap-<index 20 digits>-<term>.bin`, each replaced atomically:
//! `b"CNCLSNAP"` ‖ format u16 ‖ crc32 u32 of the body ‖ body = postcard(meta, state bytes),
//! where the state bytes are [`conclave_state::snapshot::encode`]'s. The same bytes are what
//! a leader sends to a follower that needs a snapshot, and what `conclave snapshot save` writes.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use conclave_state::{Change, State};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::disk::{Disk, OsDisk, SharedDisk};
use crate::feed::{Compacted, Feed, FeedLimits};
use crate::log::SnapshotWatermark;
use crate::{Entry, LogId, OpenError, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

const MAGIC: &[u8; 8] = b"CNCLSNAP";
const FORMAT_VERSION: u16 = 1;
const HEADER: usize = 8 + 2 + 4;

#[derive(Serialize, Deserialize)]
struct Envelope {
    meta: SnapshotMeta,
    state: Vec<u8>,
}

/// A decoded snapshot file.
pub struct LoadedSnapshot {
    pub meta: SnapshotMeta,
    pub state: State,
}

/// Why snapshot bytes could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("not a conclave snapshot (bad magic bytes)")]
    BadMagic,
    #[error("snapshot format {found} is not supported (this build reads {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("snapshot checksum mismatch: the file is damaged or incomplete")]
    Checksum,
    #[error("snapshot body is corrupt: {0}")]
    Body(String),
}

/// Encode a snapshot file (header, checksum, meta and state).
pub fn encode_snapshot(meta: &SnapshotMeta, state: &State) -> Vec<u8> {
    let envelope = Envelope {
        meta: meta.clone(),
        state: conclave_state::snapshot::encode(state),
    };
    let body = postcard::to_stdvec(&envelope).expect("postcard encoding into a Vec is infallible");
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Verify and decode a snapshot file's bytes.
pub fn decode_snapshot(bytes: &[u8]) -> Result<LoadedSnapshot, SnapshotFileError> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(SnapshotFileError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(SnapshotFileError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let crc = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]);
    let body = &bytes[HEADER..];
    if crc32fast::hash(body) != crc {
        return Err(SnapshotFileError::Checksum);
    }
    let envelope: Envelope =
        postcard::from_bytes(body).map_err(|e| SnapshotFileError::Body(e.to_string()))?;
    let state = conclave_state::snapshot::decode(&envelope.state)
        .map_err(|e| SnapshotFileError::Body(e.to_string()))?;
    Ok(LoadedSnapshot {
        meta: envelope.meta,
        state,
    })
}

/// The applied state and what Raft needs to know about it.
pub struct Applied {
    pub state: State,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

struct Shared {
    applied: RwLock<Applied>,
    /// The last applied log index, for waiters (health, read-your-writes).
    applied_index: watch::Sender<u64>,
    snapshots_built: AtomicU64,
    feed: RwLock<Feed>,
    /// The newest revision in the feed, for watchers waiting for more.
    feed_revision: watch::Sender<u64>,
    /// The cluster clock of the applied state and when this node applied it.
    clock_seen: Mutex<(u64, Instant)>,
}

/// A read-only handle on the applied state, for the API's local reads.
#[derive(Clone)]
pub struct StateHandle {
    shared: Arc<Shared>,
}

impl StateHandle {
    /// Run `f` on the current applied state.
    pub fn read<R>(&self, f: impl FnOnce(&Applied) -> R) -> R {
        f(&read_lock(&self.shared))
    }

    /// Watch the last applied log index.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.shared.applied_index.subscribe()
    }

    pub fn snapshots_built(&self) -> u64 {
        self.shared.snapshots_built.load(Ordering::Relaxed)
    }

    /// Up to `limit` changes applied after revision `after`, oldest first.
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Arc<Change>>, Compacted> {
        self.shared
            .feed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .after(after, limit)
    }

    /// Watch the newest revision in the change feed.
    pub fn feed_revision(&self) -> watch::Receiver<u64> {
        self.shared.feed_revision.subscribe()
    }

    /// This node's estimate of the cluster clock: the last stamp it applied plus the time
    /// since (by its monotonic clock). It lags the leader's clock by the replication delay,
    /// so deadlines computed from it are late, never early.
    pub fn cluster_clock_estimate(&self) -> u64 {
        let (clock, seen) = *self
            .shared
            .clock_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        clock.saturating_add(seen.elapsed().as_millis() as u64)
    }
}

fn read_lock(shared: &Shared) -> RwLockReadGuard<'_, Applied> {
    shared.applied.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock(shared: &Shared) -> RwLockWriteGuard<'_, Applied> {
    shared.applied.write().unwrap_or_else(|p| p.into_inner())
}

/// openraft's state machine: applies committed entries through [`State::apply_batch`].
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
    disk: SharedDisk,
    dir: PathBuf,
    /// The newest snapshot on disk, for the log's purges.
    durable: Arc<SnapshotWatermark>,
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

fn snapshot_files(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = disk
        .list(dir)?
        .into_iter()
        .filter(|n| n.starts_with("snap-") && n.ends_with(".bin"))
        .map(|n| dir.join(n))
        .collect();
    // Names embed the zero-padded index first, so lexical order is log order.
    files.sort();
    Ok(files)
}

impl StateMachineStore {
    /// Open the snapshot directory and restore the newest snapshot, if any.
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        Self::open_with(dir, FeedLimits::default())
    }

    /// [`StateMachineStore::open`] with the change feed's retention.
    pub fn open_with(dir: &Path, feed_limits: FeedLimits) -> Result<Self, OpenError> {
        Self::open_on(OsDisk::shared(), dir, feed_limits)
    }

    /// [`StateMachineStore::open_with`] on `disk`.
    pub fn open_on(
        disk: SharedDisk,
        dir: &Path,
        feed_limits: FeedLimits,
    ) -> Result<Self, OpenError> {
        disk.create_dir_all(dir)
            .map_err(|e| OpenError::io(dir, e))?;
        let mut applied = Applied {
            state: State::new(),
            last_applied: None,
            membership: StoredMembership::default(),
        };
        let files = snapshot_files(&*disk, dir).map_err(|e| OpenError::io(dir, e))?;
        if let Some(newest) = files.last() {
            let bytes = disk.read(newest).map_err(|e| OpenError::io(newest, e))?;
            let loaded = decode_snapshot(&bytes).map_err(|e| OpenError::CorruptFile {
                path: newest.display().to_string(),
                reason: e.to_string(),
            })?;
            applied.state = loaded.state;
            applied.last_applied = loaded.meta.last_log_id;
            applied.membership = loaded.meta.last_membership;
        }
        let durable = Arc::new(SnapshotWatermark::default());
        durable.advance(applied.last_applied);
        let index = applied.last_applied.map_or(0, |l| l.index);
        let revision = applied.state.revision();
        let clock = applied.state.clock().now_ms;
        Ok(Self {
            shared: Arc::new(Shared {
                applied: RwLock::new(applied),
                applied_index: watch::channel(index).0,
                snapshots_built: AtomicU64::new(0),
                feed: RwLock::new(Feed::new(revision, feed_limits)),
                feed_revision: watch::channel(revision).0,
                clock_seen: Mutex::new((clock, Instant::now())),
            }),
            disk,
            dir: dir.to_owned(),
            durable,
        })
    }

    pub fn handle(&self) -> StateHandle {
        StateHandle {
            shared: self.shared.clone(),
        }
    }

    /// Which snapshots are durable: the log purges on disk no further than they reach.
    pub fn durable_snapshots(&self) -> Arc<SnapshotWatermark> {
        self.durable.clone()
    }

    fn newest_snapshot_file(&self) -> io::Result<Option<PathBuf>> {
        Ok(snapshot_files(&*self.disk, &self.dir)?.pop())
    }

    /// Write `bytes` as the snapshot for `last_log_id` and remove older ones (offline tools).
    pub fn persist_file(&self, last_log_id: Option<LogId>, bytes: &[u8]) -> io::Result<()> {
        self.persist(last_log_id, bytes)
    }

    /// Write `bytes` as the snapshot for `last_log_id` and remove older ones.
    fn persist(&self, last_log_id: Option<LogId>, bytes: &[u8]) -> io::Result<()> {
        let (index, term) = last_log_id.map_or((0, 0), |l| (l.index, l.leader_id.term));
        let name = format!("snap-{index:020}-{term}.bin");
        let path = self.dir.join(&name);
        crate::fsutil::write_atomic_on(&*self.disk, &path, bytes)?;
        self.durable.advance(last_log_id);
        for old in snapshot_files(&*self.disk, &self.dir)? {
            if old != path {
                let _ = self.disk.remove_file(&old);
            }
        }
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    /// The applied state is copied under the read lock and encoded, checksummed and written
    /// on a blocking thread with no lock held: apply (which takes the write lock) waits only
    /// for the copy, not for the encoding of the whole state.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (meta, state) = {
            let applied = read_lock(&self.shared);
            let n = self.shared.snapshots_built.fetch_add(1, Ordering::Relaxed) + 1;
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id: format!(
                    "{}-{}-{n}",
                    applied.last_applied.map_or(0, |l| l.leader_id.term),
                    applied.last_applied.map_or(0, |l| l.index)
                ),
            };
            (meta, applied.state.clone())
        };
        let this = self.clone();
        let last = meta.last_log_id;
        let encoding = meta.clone();
        let started = std::time::Instant::now();
        let bytes = tokio::task::spawn_blocking(move || {
            let bytes = encode_snapshot(&encoding, &state);
            drop(state);
            this.persist(last, &bytes).map(|_| bytes)
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, io::Error::other(e)))?
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        metrics::histogram!("conclave_snapshot_build_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("conclave_snapshot_size_bytes").set(bytes.len() as f64);
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = read_lock(&self.shared);
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> Result<Vec<Vec<conclave_state::Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let (last_index, changes, clock) = {
            let mut applied = write_lock(&self.shared);
            let clock_before = applied.state.clock().now_ms;
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => results.push(Vec::new()),
                    EntryPayload::Normal(batch) => {
                        results.push(applied.state.apply_batch(&batch));
                    }
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m);
                        results.push(Vec::new());
                    }
                }
            }
            let clock = applied.state.clock().now_ms;
            (
                applied.last_applied.map_or(0, |l| l.index),
                applied.state.take_changes(),
                (clock != clock_before).then_some(clock),
            )
        };
        if let Some(clock) = clock {
            *self
                .shared
                .clock_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = (clock, Instant::now());
        }
        if let Some(last) = changes.last().map(|c| c.revision) {
            let mut feed = self.shared.feed.write().unwrap_or_else(|p| p.into_inner());
            for change in changes {
                feed.push(change);
            }
            drop(feed);
            self.shared.feed_revision.send_replace(last);
        }
        self.shared.applied_index.send_replace(last_index);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let loaded = decode_snapshot(&bytes)
            .map_err(|e| snap_err(ErrorVerb::Read, io::Error::other(e.to_string())))?;
        let this = self.clone();
        let last = meta.last_log_id;
        tokio::task::spawn_blocking(move || this.persist(last, &bytes))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, io::Error::other(e)))?
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let index = {
            let mut applied = write_lock(&self.shared);
            applied.state = loaded.state;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            let revision = applied.state.revision();
            // Watchers behind this point cannot be served from here any more.
            self.shared
                .feed
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .reset(revision);
            self.shared.feed_revision.send_replace(revision);
            *self
                .shared
                .clock_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner()) =
                (applied.state.clock().now_ms, Instant::now());
            meta.last_log_id.map_or(0, |l| l.index)
        };
        self.shared.applied_index.send_replace(index);
        tracing::info!(last_log_id = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(path) = self
            .newest_snapshot_file()
            .map_err(|e| snap_err(ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        let bytes = self
            .disk
            .read(&path)
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let loaded = decode_snapshot(&bytes)
            .map_err(|e| snap_err(ErrorVerb::Read, io::Error::other(e.to_string())))?;
        Ok(Some(Snapshot {
            meta: loaded.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
