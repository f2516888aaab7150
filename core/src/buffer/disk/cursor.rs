//! The cursor file: the position up to which the sink has acknowledged records.
//!
//! It is 28 bytes: the magic `ARCURSR1`, the segment id and the byte offset (u64 LE each), and the CRC32C of
//! those 24 bytes. It is replaced atomically: written to `cursor.tmp`, fsynced, renamed over `cursor`, and the
//! directory fsynced. Segments wholly before the cursor are deleted only after that, so a crash between any two
//! steps leaves either the old or the new cursor, both pointing at records that still exist.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::segment::segment_name;
use crate::crash::{self, CrashPoint};

/// Name of the cursor file in the buffer directory.
pub(crate) const CURSOR_FILE: &str = "cursor";
/// Name of the cursor being replaced.
pub(crate) const CURSOR_TMP: &str = "cursor.tmp";

const MAGIC: &[u8; 8] = b"ARCURSR1";
const LEN: usize = 28;

/// A place in the buffer: a segment id and a byte offset in it (the start of a record, or the segment's end).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The segment id (its file is `<20-digit id>.seg`).
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} byte {}", segment_name(self.segment), self.offset)
    }
}

/// What the cursor file says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CursorRead {
    /// No cursor file: nothing was ever acknowledged.
    Missing,
    /// The acknowledged position.
    Valid(Position),
    /// The file exists but does not hold a cursor; the text says what is wrong.
    Damaged(String),
}

/// The path of the cursor file in `dir`.
pub(crate) fn cursor_path(dir: &Path) -> PathBuf {
    dir.join(CURSOR_FILE)
}

fn encode(pos: Position) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&pos.segment.to_le_bytes());
    out[16..24].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32c::crc32c(&out[..24]);
    out[24..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes cursor file contents.
pub(crate) fn decode(bytes: &[u8]) -> CursorRead {
    if bytes.len() != LEN {
        return CursorRead::Damaged(format!("{} bytes instead of {LEN}", bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return CursorRead::Damaged("it does not start with ARCURSR1".into());
    }
    let crc = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..24]) != crc {
        return CursorRead::Damaged("its checksum does not match".into());
    }
    CursorRead::Valid(Position {
        segment: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
        offset: u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")),
    })
}

/// Reads the cursor of `dir`. Only an I/O error other than "not found" is an error.
pub(crate) fn read(dir: &Path) -> io::Result<CursorRead> {
    match std::fs::read(cursor_path(dir)) {
        Ok(bytes) => Ok(decode(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(CursorRead::Missing),
        Err(e) => Err(e),
    }
}

/// Replaces the cursor of `dir` with `pos`, durably (tmp file, fsync, rename, fsync of `dir_handle`).
pub(crate) fn write(dir: &Path, dir_handle: &File, pos: Position) -> io::Result<()> {
    let tmp = dir.join(CURSOR_TMP);
    let f = crate::private_fs::write_replacing(&tmp, &encode(pos))?;
    f.sync_all()?;
    drop(f);
    crash::point(CrashPoint::AfterCursorWrite);
    std::fs::rename(&tmp, cursor_path(dir))?;
    crash::point(CrashPoint::AfterCursorRename);
    dir_handle.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), CursorRead::Missing);
        let handle = File::open(dir.path()).unwrap();
        let pos = Position {
            segment: 12,
            offset: 3456,
        };
        write(dir.path(), &handle, pos).unwrap();
        assert_eq!(read(dir.path()).unwrap(), CursorRead::Valid(pos));
        assert!(!dir.path().join(CURSOR_TMP).exists());
        let mut bytes = std::fs::read(cursor_path(dir.path())).unwrap();
        bytes[10] ^= 1;
        assert!(matches!(decode(&bytes), CursorRead::Damaged(_)));
        assert!(matches!(decode(b"short"), CursorRead::Damaged(_)));
        assert_eq!(pos.to_string(), "00000000000000000012.seg byte 3456");
    }
}
