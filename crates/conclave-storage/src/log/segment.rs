//! The header of a log segment: magic, then the format version of the records after it.

/// The encoding of the entries in new segments. 1 = the headerless segments of earlier
/// releases; 2 = the same records behind a header.
pub const LOG_FORMAT_VERSION: u32 = 2;
/// The first bytes of a segment with a header. As a record length (`u32 LE`) it would be
/// over 1 GiB, far above any record, so a headerless segment never starts with it.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"CNCLSEG\0";
pub(crate) const SEGMENT_HEADER: usize = 16;

pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&LOG_FORMAT_VERSION.to_le_bytes());
    h
}

/// How a segment file begins.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SegmentStart {
    /// A whole header of this format: records follow it.
    Header,
    /// No header: a format-1 segment (or an empty file), records from byte 0.
    Headerless,
    /// Part of a header: a crash while the segment was being created.
    TornHeader,
}

/// A segment of a log format this release does not read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "log format {found}, but this conclave reads formats 1 and {LOG_FORMAT_VERSION} (a data directory of a newer release?)"
)]
pub(crate) struct UnknownFormat {
    pub found: u32,
}

pub(crate) fn segment_start(bytes: &[u8]) -> Result<SegmentStart, UnknownFormat> {
    let n = bytes.len().min(SEGMENT_MAGIC.len());
    if bytes.is_empty() || bytes[..n] != SEGMENT_MAGIC[..n] {
        return Ok(SegmentStart::Headerless);
    }
    if bytes.len() < SEGMENT_HEADER {
        return Ok(SegmentStart::TornHeader);
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    match u32::from_le_bytes(v) {
        LOG_FORMAT_VERSION => Ok(SegmentStart::Header),
        found => Err(UnknownFormat { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_start_is_read_as_header_headerless_torn_or_unknown() {
        let header = segment_header();
        assert_eq!(segment_start(&header), Ok(SegmentStart::Header));
        assert_eq!(segment_start(&[]), Ok(SegmentStart::Headerless));
        assert_eq!(
            segment_start(&[9, 0, 0, 0, 1]),
            Ok(SegmentStart::Headerless)
        );
        assert_eq!(segment_start(&header[..11]), Ok(SegmentStart::TornHeader));
        let mut newer = header;
        newer[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(segment_start(&newer), Err(UnknownFormat { found: 7 }));
    }
}
