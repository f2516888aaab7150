//! `inspect`: a read-only report on a disk buffer directory, for `auditrail buffer inspect` and
//! `auditrail validate`. It runs the same analysis as `open` without its repairs and without taking the lock, so
//! it can look at the buffer of a running agent (the answer is then a snapshot) and never changes a file.

use std::io;
use std::path::{Path, PathBuf};

use super::cursor::Position;
use super::error::DiskBufferError;
use super::recovery::{analyze, Mode, Recovery};

/// One segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its id (the file is `<20-digit id>.seg`).
    pub id: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What a disk buffer directory holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The directory inspected.
    pub dir: PathBuf,
    /// Segments from the acknowledged position on, oldest first (older ones are deleted at the next open).
    pub segments: Vec<SegmentInfo>,
    /// Sum of the segments' sizes.
    pub total_bytes: u64,
    /// The position acknowledged by the sink, if a readable cursor exists.
    pub acked: Option<Position>,
    /// Sound records after the acknowledged position.
    pub pending_records: u64,
    /// Damage found: what `open` would skip, truncate and report (`damage.pending_records` equals
    /// `pending_records`).
    pub damage: Recovery,
}

impl Inspection {
    /// Whether anything is damaged.
    pub fn is_damaged(&self) -> bool {
        self.damage.is_damaged()
    }
}

/// Reports the segments, the acknowledged position, the records pending and any damage of the buffer in `dir`,
/// changing nothing. A directory that does not exist is an empty buffer.
pub fn inspect(dir: &Path) -> Result<Inspection, DiskBufferError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Inspection {
                dir: dir.to_path_buf(),
                segments: Vec::new(),
                total_bytes: 0,
                acked: None,
                pending_records: 0,
                damage: Recovery::default(),
            })
        }
        Err(source) => {
            return Err(DiskBufferError::ReadDir {
                dir: dir.to_path_buf(),
                source,
            })
        }
        Ok(_) => {}
    }
    let a = analyze(dir, Mode::ReadOnly)?;
    let segments: Vec<SegmentInfo> = a
        .segments
        .iter()
        .map(|(&id, &bytes)| SegmentInfo { id, bytes })
        .collect();
    Ok(Inspection {
        dir: dir.to_path_buf(),
        total_bytes: segments.iter().map(|s| s.bytes).sum(),
        segments,
        acked: a.cursor,
        pending_records: a.recovery.pending_records,
        damage: a.recovery,
    })
}
