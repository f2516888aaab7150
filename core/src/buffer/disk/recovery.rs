//! What a buffer directory holds when it is opened or inspected, and the repairs `open` makes.
//!
//! One analysis serves both: list the segments, read the cursor, find where unacknowledged records start, and
//! scan every segment from there with the record decoder, counting sound records and damage. `open` (repair
//! mode) also deletes segments wholly before the cursor (left by a crash between the cursor write and the
//! unlink), truncates a torn tail of the last segment and removes a stale `cursor.tmp`, and then makes the
//! segments it keeps durable ([`sync_recovered`]); `inspect` (read-only mode) changes nothing. Damage never makes this fail: it is skipped, counted and described in [`Recovery`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::cursor::{self, CursorRead, Position, CURSOR_TMP};
use super::error::DiskBufferError;
use super::segment::{list_segments, scan_file, segment_path, Tail};
use super::tails::{ChainTails, TailsFile};
use crate::event::Event;

/// What `open` found and did: records waiting for the sink, and any damage skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Sound records after the acknowledged position: the first things `recv_many` returns.
    pub pending_records: u64,
    /// Records skipped: a failed checksum or layout, or an unreadable rest of a segment (counted once each).
    pub corrupt_records: u64,
    /// Bytes of an incomplete last record (a write cut short by a crash), truncated.
    pub torn_tail_bytes: u64,
    /// Segment files missing between the acknowledged position and the newest segment.
    pub missing_segments: u64,
    /// One line per problem, naming the file.
    pub messages: Vec<String>,
    /// The chain tail of every stream the buffer holds or held (filled by `open`).
    pub chain_tails: ChainTails,
    /// Whether the buffer's tails file was there: without it, what deleted segments held is unknown.
    pub tails_file: TailsFile,
}

impl Recovery {
    /// Whether anything was damaged (records skipped, a tail truncated, segments missing, a damaged cursor).
    pub fn is_damaged(&self) -> bool {
        self.corrupt_records > 0
            || self.torn_tail_bytes > 0
            || self.missing_segments > 0
            || !self.messages.is_empty()
    }

    /// An `auditrail.error` event (code `AR0002E`) describing the damage, for the pipeline's own audit trail;
    /// `None` when nothing was damaged.
    pub fn error_event(&self, sink: &str) -> Option<Event> {
        if !self.is_damaged() {
            return None;
        }
        Some(Event::internal(
            "auditrail.error",
            "AR0002E",
            &[
                ("sink", sink.into()),
                ("component", "disk_buffer".into()),
                ("corrupt_records", self.corrupt_records.into()),
                ("torn_tail_bytes", self.torn_tail_bytes.into()),
                ("missing_segments", self.missing_segments.into()),
                ("pending_records", self.pending_records.into()),
                ("message", self.messages.join("; ").into()),
            ],
        ))
    }
}

/// Whether the analysis may change files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `open`: delete acknowledged segments, truncate a torn tail, remove a stale `cursor.tmp`.
    Repair,
    /// `inspect`: change nothing.
    ReadOnly,
}

/// The state of a buffer directory.
#[derive(Debug)]
pub(crate) struct Analysis {
    /// Segments still relevant (none before the cursor), with their sizes after repairs.
    pub segments: BTreeMap<u64, u64>,
    /// The cursor, if one was read.
    pub cursor: Option<Position>,
    /// Where reading starts.
    pub start: Position,
    /// The id the writer's first segment gets.
    pub next_segment: u64,
    /// Findings.
    pub recovery: Recovery,
}

/// Analyses (and in [`Mode::Repair`], repairs) the buffer in `dir`.
pub(crate) fn analyze(dir: &Path, mode: Mode) -> Result<Analysis, DiskBufferError> {
    let mut rec = Recovery::default();
    let read_dir_err = |source: io::Error| DiskBufferError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut segments = list_segments(dir).map_err(read_dir_err)?;
    if mode == Mode::Repair {
        // A cursor write cut short; the cursor it was replacing is still in place.
        let _ = std::fs::remove_file(dir.join(CURSOR_TMP));
    }
    let cursor = match cursor::read(dir) {
        Ok(CursorRead::Missing) => None,
        Ok(CursorRead::Valid(p)) => Some(p),
        Ok(CursorRead::Damaged(why)) => {
            rec.messages.push(format!(
                "cursor file {} is damaged ({why}): replaying from the oldest segment, so records already delivered may be sent again",
                cursor::cursor_path(dir).display()
            ));
            None
        }
        Err(source) => {
            return Err(DiskBufferError::ReadCursor {
                path: cursor::cursor_path(dir),
                source,
            })
        }
    };

    if let Some(c) = cursor {
        let acked: Vec<u64> = segments.range(..c.segment).map(|(&id, _)| id).collect();
        for id in acked {
            segments.remove(&id);
            if mode == Mode::Repair {
                let path = segment_path(dir, id);
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(segment = %path.display(), "deleted a disk buffer segment acknowledged before a restart")
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(segment = %path.display(), error = %e, "cannot delete an acknowledged disk buffer segment")
                    }
                }
            }
        }
    }

    let first = segments.keys().next().copied();
    let last = segments.keys().next_back().copied();

    // Segment files missing between the acknowledged position (or the oldest segment) and the newest one.
    let lo = cursor.map(|c| c.segment).or(first);
    if let (Some(lo), Some(hi)) = (lo, last) {
        if hi >= lo {
            let present = segments.range(lo..=hi).count() as u64;
            rec.missing_segments = (hi - lo + 1) - present;
        }
    }
    if let Some(c) = cursor {
        if c.offset > 0 && !segments.contains_key(&c.segment) && last.is_none_or(|h| h < c.segment)
        {
            rec.missing_segments += 1;
        }
    }

    let start = match cursor {
        None => Position {
            segment: first.unwrap_or(0),
            offset: 0,
        },
        Some(c) => match segments.get(&c.segment) {
            Some(&size) if c.offset <= size => c,
            Some(&size) => {
                rec.messages.push(format!(
                    "the acknowledged position {c} is past the end of {} ({size} bytes): nothing is replayed from that segment",
                    segment_path(dir, c.segment).display()
                ));
                Position {
                    segment: c.segment,
                    offset: size,
                }
            }
            None => {
                let next = segments.range(c.segment..).next().map(|(&id, _)| id);
                if c.offset > 0 || next.is_some() {
                    rec.messages.push(format!(
                        "segment {} holding the acknowledged position is missing: its unacknowledged records are lost; continuing at the next segment",
                        segment_path(dir, c.segment).display()
                    ));
                }
                Position {
                    segment: next.unwrap_or(c.segment),
                    offset: 0,
                }
            }
        },
    };
    if rec.missing_segments > 0 && lo.is_some_and(|lo| segments.contains_key(&lo)) {
        rec.messages.push(format!(
            "{} segment file(s) missing in {}: their records are lost",
            rec.missing_segments,
            dir.display()
        ));
    }

    let ids: Vec<(u64, u64)> = segments
        .range(start.segment..)
        .map(|(&id, &size)| (id, size))
        .collect();
    for (id, size) in ids {
        let from = if id == start.segment { start.offset } else { 0 };
        let path = segment_path(dir, id);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                segments.remove(&id);
                continue;
            }
            Err(source) => return Err(DiskBufferError::ReadSegment { path, source }),
        };
        let report =
            scan_file(&mut file, from, size).map_err(|source| DiskBufferError::ReadSegment {
                path: path.clone(),
                source,
            })?;
        rec.pending_records += report.records;
        if report.corrupt_records > 0 {
            rec.corrupt_records += report.corrupt_records;
            rec.messages.push(format!(
                "segment {}: {} record(s) failed their CRC32C or layout check and were skipped",
                path.display(),
                report.corrupt_records
            ));
        }
        match report.tail {
            Tail::Clean => {}
            Tail::Torn { offset, bytes } if Some(id) == last => {
                rec.torn_tail_bytes += bytes;
                let done = match mode {
                    Mode::Repair => "was truncated",
                    Mode::ReadOnly => "is truncated when the buffer is opened",
                };
                rec.messages.push(format!(
                    "segment {}: incomplete last record ({bytes} bytes from byte {offset}), left by a crash during a write, {done}",
                    path.display()
                ));
                if mode == Mode::Repair {
                    match truncate(&path, offset) {
                        Ok(()) => {
                            segments.insert(id, offset);
                        }
                        Err(e) => tracing::warn!(
                            segment = %path.display(),
                            error = %e,
                            "cannot truncate the torn tail of a disk buffer segment; it is skipped instead"
                        ),
                    }
                }
            }
            Tail::Torn { offset, bytes } | Tail::Garbage { offset, bytes } => {
                rec.corrupt_records += 1;
                rec.messages.push(format!(
                    "segment {}: unreadable from byte {offset} ({bytes} bytes skipped)",
                    path.display()
                ));
            }
        }
    }

    let next_segment = last
        .map_or(0, |l| l + 1)
        .max(cursor.map_or(0, |c| c.segment))
        .max(start.segment);
    Ok(Analysis {
        segments,
        cursor,
        start,
        next_segment,
        recovery: rec,
    })
}

/// Makes what a previous run left durable: every segment `open` keeps, then the directory.
///
/// After kill -9 the records written since the last fsync live only in the page cache, and they are replayed
/// like any other. A file source may also resume after them (they are in the buffer, so their lines need not be
/// read again); were they lost to a power cut after that, the source would never read those lines again. So
/// `open` syncs them once, before it returns and any source starts. Segments synced before cost little: a file
/// without dirty pages syncs at once.
pub(crate) fn sync_recovered(
    dir: &Path,
    dir_handle: &File,
    segments: &BTreeMap<u64, u64>,
) -> Result<(), DiskBufferError> {
    for &id in segments.keys() {
        let path = segment_path(dir, id);
        let synced = File::open(&path).and_then(|f| f.sync_all());
        match synced {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(DiskBufferError::Sync { path, source }),
        }
    }
    dir_handle
        .sync_all()
        .map_err(|source| DiskBufferError::Sync {
            path: dir.to_path_buf(),
            source,
        })
}

fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()
}
