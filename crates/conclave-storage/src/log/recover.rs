//! Recovery: every segment is read and checked on open; a torn record is cut off only at
//! the end of the last segment (see the parent module's docs).

use std::path::PathBuf;

use super::segment::{SEGMENT_HEADER, SegmentStart, segment_header, segment_start};
use super::{Loc, Log, Segment};
use crate::disk::{Disk, OpenMode};
use crate::fsutil::{self, FRAME_HEADER};
use crate::{Entry, OpenError};

/// Read the segments `seg_firsts` (first index and path, oldest first) into `log`.
pub(super) fn recover_segments(
    disk: &dyn Disk,
    log: &mut Log,
    seg_firsts: Vec<(u64, PathBuf)>,
) -> Result<(), OpenError> {
    let count = seg_firsts.len();
    for (i, (first, path)) in seg_firsts.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let file = disk
            .open(&path, OpenMode::Existing)
            .map_err(|e| OpenError::io(&path, e))?;
        let mut bytes = disk.read(&path).map_err(|e| OpenError::io(&path, e))?;
        let corrupt = |offset: u64, reason: String| OpenError::CorruptSegment {
            path: path.display().to_string(),
            offset,
            reason,
        };
        let start = match segment_start(&bytes).map_err(|e| corrupt(8, e.to_string()))? {
            SegmentStart::Header => SEGMENT_HEADER,
            SegmentStart::Headerless => 0,
            SegmentStart::TornHeader if is_last => {
                // Torn while the last segment was created: it held no record yet.
                tracing::warn!(segment = %path.display(), "rewriting a torn segment header");
                bytes = segment_header().to_vec();
                file.set_len(0)
                    .and_then(|_| file.write_all_at(&bytes, 0))
                    .and_then(|_| file.sync_data())
                    .map_err(|e| OpenError::io(&path, e))?;
                SEGMENT_HEADER
            }
            SegmentStart::TornHeader => {
                return Err(corrupt(0, "a segment header is cut short".into()));
            }
        };
        let data_start = start as u64;
        let mut offset = start;
        loop {
            let parsed = fsutil::parse_frame(&bytes[offset..]).and_then(|f| {
                f.map(|(payload, n)| {
                    postcard::from_bytes::<Entry>(payload)
                        .map(|e| (e.log_id, n))
                        .map_err(fsutil::BadFrame::from)
                })
                .transpose()
            });
            match parsed {
                Ok(None) => break,
                Ok(Some((log_id, n))) => {
                    let purged = log.last_purged.is_some_and(|p| log_id.index <= p.index);
                    if !purged {
                        // A record at or below the tail replaces the tail, exactly as the
                        // append that wrote it did (append truncates first).
                        drop(log.locs.split_off(&log_id.index));
                        log.locs.insert(
                            log_id.index,
                            Loc {
                                segment: first,
                                offset: offset as u64,
                                len: (n - FRAME_HEADER) as u32,
                                log_id,
                            },
                        );
                    }
                    offset += n;
                }
                Err(reason) if is_last => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        %reason,
                        "cutting off a torn write at the end of the Raft log (it was never acknowledged)"
                    );
                    file.set_len(offset as u64)
                        .and_then(|_| file.sync_data())
                        .map_err(|e| OpenError::io(&path, e))?;
                    break;
                }
                Err(reason) => return Err(corrupt(offset as u64, reason.to_string())),
            }
        }
        log.segments.push(Segment {
            first_index: first,
            path,
            file,
            len: offset as u64,
            data_start,
        });
    }
    Ok(())
}
