//! Small filesystem helpers whose only job is durability: write-then-rename with fsync of
//! both the file and its directory, so a crash leaves either the old or the new content.

use std::io;
use std::path::Path;

use crate::disk::{Disk, OpenMode, OsDisk, parent_dir};

/// Atomically replace `path` with `bytes` on the operating system's file system.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_on(&OsDisk, path, bytes)
}

/// Atomically replace `path` with `bytes`: write a temp file, fsync it, rename, fsync the dir.
pub fn write_atomic_on(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path)?;
    let tmp = path.with_extension("tmp");
    {
        let f = disk.open(&tmp, OpenMode::CreateEmpty)?;
        f.write_all_at(bytes, 0)?;
        f.sync_data()?;
    }
    disk.rename(&tmp, path)?;
    disk.sync_dir(dir)
}

/// Read a whole file from the operating system, `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    read_optional_on(&OsDisk, path)
}

/// Read a whole file, `Ok(None)` when it does not exist.
pub fn read_optional_on(disk: &dyn Disk, path: &Path) -> io::Result<Option<Vec<u8>>> {
    match disk.read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Frame `payload` as `len (u32 LE) ‖ crc32 (u32 LE) ‖ payload`, appending to `out`.
pub fn frame_into(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Size of the frame header written by [`frame_into`].
pub const FRAME_HEADER: usize = 8;

/// Why bytes are not a whole, intact frame (or record).
#[derive(Debug, thiserror::Error)]
pub enum BadFrame {
    #[error("truncated frame header ({0} bytes)")]
    TruncatedHeader(usize),
    #[error("frame length overflows")]
    LengthOverflow,
    #[error("truncated frame: header says {expected} bytes, {present} present")]
    Truncated { expected: usize, present: usize },
    #[error("checksum mismatch")]
    Checksum,
    /// The frame is intact but its payload does not decode as what it should hold.
    #[error("undecodable entry: {0}")]
    Undecodable(#[from] postcard::Error),
}

/// Parse one frame at the start of `buf`: `Ok(Some((payload, total_len)))`, `Ok(None)` when
/// `buf` is empty, an error when the frame is truncated or its checksum does not match.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, BadFrame> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.len() < FRAME_HEADER {
        return Err(BadFrame::TruncatedHeader(buf.len()));
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let end = FRAME_HEADER
        .checked_add(len)
        .ok_or(BadFrame::LengthOverflow)?;
    if buf.len() < end {
        return Err(BadFrame::Truncated {
            expected: len,
            present: buf.len() - FRAME_HEADER,
        });
    }
    let payload = &buf[FRAME_HEADER..end];
    if crc32fast::hash(payload) != crc {
        return Err(BadFrame::Checksum);
    }
    Ok(Some((payload, end)))
}
