//! Read-only walk over every sound record a disk buffer directory holds, oldest first.
//!
//! The integrity chain uses it at start: what the buffer holds is what the chain has handed on for good, so
//! the chain can resume right after the newest record of each stream instead of leaving a gap for events it
//! had numbered but that never reached the buffer.

use std::path::Path;

use super::error::DiskBufferError;
use super::segment::{decode, list_segments, segment_path, Decoded};

/// Calls `visit(source, event_bytes)` for every sound record of every segment in `dir`, in write order.
/// Damaged records are skipped; a torn tail ends a segment. A directory that does not exist holds nothing.
pub fn for_each_record(
    dir: &Path,
    mut visit: impl FnMut(&str, &[u8]),
) -> Result<(), DiskBufferError> {
    let segments = match list_segments(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DiskBufferError::ReadDir {
                dir: dir.to_path_buf(),
                source,
            })
        }
    };
    for &id in segments.keys() {
        let path = segment_path(dir, id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // Deleted after an acknowledgement since the listing: nothing left to see in it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(DiskBufferError::ReadDir { dir: path, source }),
        };
        let mut pos = 0;
        while pos < bytes.len() {
            match decode(&bytes[pos..]) {
                Decoded::Record { source, raw, len } => {
                    let at = |r: std::ops::Range<usize>| &bytes[pos + r.start..pos + r.end];
                    visit(std::str::from_utf8(at(source)).unwrap_or(""), at(raw));
                    pos += len;
                }
                Decoded::Corrupt { len, .. } => pos += len,
                Decoded::Incomplete { .. } | Decoded::Impossible => break,
            }
        }
    }
    Ok(())
}
