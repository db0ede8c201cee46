//! The flusher thread: it syncs every file that the appends queued so far touched, then
//! tells openraft those appends are durable (one `fdatasync` per file for a whole group).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use openraft::storage::LogFlushed;

use super::LogStats;
use crate::TypeConfig;
use crate::disk::DiskFile;

pub(super) struct FlushJob {
    pub(super) files: Vec<Arc<dyn DiskFile>>,
    pub(super) callback: LogFlushed<TypeConfig>,
}

/// The flusher: waits for a job, takes every job queued behind it, syncs each touched file
/// once, then reports all of them durable. This is where concurrent appends share an fsync.
pub(super) fn run_flusher(rx: mpsc::Receiver<FlushJob>, stats: &LogStats) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let mut files: Vec<&Arc<dyn DiskFile>> = Vec::new();
        for job in &jobs {
            for f in &job.files {
                if !files.iter().any(|g| Arc::ptr_eq(g, f)) {
                    files.push(f);
                }
            }
        }
        let mut result: Result<(), (io::ErrorKind, String)> = Ok(());
        for f in files {
            stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let synced = f.sync_data();
            // Through the `metrics` facade: recorded only where the agent installed an
            // exporter, free elsewhere.
            metrics::histogram!("conclave_storage_fsync_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            if let Err(e) = synced {
                tracing::error!(error = %e, "fdatasync of the Raft log failed");
                result = Err((e.kind(), e.to_string()));
                break;
            }
        }
        stats
            .appends_flushed
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        for job in jobs {
            let r = result
                .clone()
                .map_err(|(kind, msg)| io::Error::new(kind, msg));
            job.callback.log_io_completed(r);
        }
    }
}
