//! Read-only walks over the sound records a disk buffer directory holds, oldest first.
//!
//! [`super::open`] uses [`for_each_record`] to take the chain tails of the records a buffer still holds (see
//! `tails.rs`), before its sink can take and delete anything, so the integrity chain resumes right after the
//! newest record of each stream the buffer got. The file source uses [`for_each_origin`] the same
//! way: a line whose event a buffer holds (or whose sink already took it) need not be read again after a crash,
//! so each file can resume after the newest read batch that every sink's buffer holds, not at its last
//! checkpoint.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::error::DiskBufferError;
use super::segment::{decode, list_segments, segment_path, Decoded, HEADER_LEN, MAX_RECORD_LEN};
use crate::event::Origin;

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
                Decoded::Record {
                    source, raw, len, ..
                } => {
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

/// What [`for_each_origin`] meets, in write order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walked<'a> {
    /// A sound record that carries an [`Origin`].
    Origin {
        /// The record's source name.
        source: &'a str,
        /// Its origin.
        origin: &'a Origin,
    },
    /// Bytes that cannot be read as records: a failed checksum or layout, a lost framing, a segment (other than
    /// the newest) that ends inside a record, or segment files missing between others. Any record, of any
    /// source, may have been there.
    Damage,
}

/// Calls `visit` for every sound record of every segment in `dir` that carries an [`Origin`], and for every
/// place where records cannot be read, in write order. A directory that does not exist holds nothing.
///
/// Every record is read and checked (CRC32C), one at a time, so the walk costs one sequential read of the
/// directory and little memory whatever the segment size. A caller that needs to know that nothing was lost
/// between two origins (the file source does) learns it from the absence of [`Walked::Damage`] between them.
/// Records before the oldest segment were acknowledged by the sink (segments are deleted only then); the end
/// of the newest segment may be a record still being appended, which is not damage.
pub fn for_each_origin(
    dir: &Path,
    mut visit: impl FnMut(Walked<'_>),
) -> Result<(), DiskBufferError> {
    let segments = match list_segments(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DiskBufferError::ReadDir {
                dir: dir.to_path_buf(),
                source,
            })
        }
    };
    let newest = segments.keys().next_back().copied();
    let mut previous: Option<u64> = None;
    let mut record = Vec::new();
    for &id in segments.keys() {
        if previous.is_some_and(|p| id != p + 1) {
            visit(Walked::Damage);
        }
        previous = Some(id);
        let path = segment_path(dir, id);
        let file = match File::open(&path) {
            Ok(f) => f,
            // Deleted after an acknowledgement since the listing: its records reached the sink.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(DiskBufferError::ReadSegment { path, source }),
        };
        let mut reader = BufReader::with_capacity(64 << 10, file);
        loop {
            let step = next_record(&mut reader, &mut record).map_err(|source| {
                DiskBufferError::ReadSegment {
                    path: path.clone(),
                    source,
                }
            })?;
            match step {
                Step::End => break,
                Step::Cut => {
                    if Some(id) != newest {
                        visit(Walked::Damage);
                    }
                    break;
                }
                Step::Lost => {
                    visit(Walked::Damage);
                    break;
                }
                Step::Whole => match decode(&record) {
                    Decoded::Record {
                        source,
                        origin: Some(origin),
                        ..
                    } => visit(Walked::Origin {
                        source: std::str::from_utf8(&record[source]).unwrap_or(""),
                        origin: &origin,
                    }),
                    Decoded::Record { origin: None, .. } => {}
                    Decoded::Corrupt { .. } | Decoded::Incomplete { .. } | Decoded::Impossible => {
                        visit(Walked::Damage)
                    }
                },
            }
        }
    }
    Ok(())
}

/// What [`next_record`] read.
enum Step {
    /// The segment ends exactly after the last record.
    End,
    /// The segment ends inside a record.
    Cut,
    /// A length that cannot be right: the framing of the rest of the segment is lost.
    Lost,
    /// A whole record (header included) is in the buffer, not yet checked.
    Whole,
}

/// Reads the next whole record of a segment into `record`.
fn next_record(r: &mut BufReader<File>, record: &mut Vec<u8>) -> io::Result<Step> {
    record.clear();
    record.resize(HEADER_LEN, 0);
    match read_full(r, record)? {
        0 => return Ok(Step::End),
        n if n < HEADER_LEN => return Ok(Step::Cut),
        _ => {}
    }
    let len = u32::from_le_bytes([record[0], record[1], record[2], record[3]]) as usize;
    if len > MAX_RECORD_LEN {
        return Ok(Step::Lost);
    }
    record.resize(HEADER_LEN + len, 0);
    if read_full(r, &mut record[HEADER_LEN..])? < len {
        return Ok(Step::Cut);
    }
    Ok(Step::Whole)
}

/// Reads as much of `buf` as the file holds; returns how many bytes that was.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::disk::segment::encode;
    use crate::event::Event;
    use bytes::Bytes;
    use std::sync::Arc;

    fn ev(source: &str, i: u64, origin: Option<Origin>) -> Event {
        let mut e = Event::parse(
            Bytes::from(format!(
                r#"{{"event":"x","uid":"{i}","time":"2017-02-03T06:54:05Z","pad":"{}"}}"#,
                "p".repeat(i as usize % 7 * 100)
            )),
            1 << 20,
        )
        .unwrap();
        e.set_source(Arc::from(source));
        if let Some(o) = origin {
            e.set_origin(Arc::new(o));
        }
        e
    }

    fn origin(end: u64) -> Origin {
        Origin {
            dev: 1,
            ino: 2,
            fingerprint_len: 256,
            fingerprint_hash: 3,
            start: end - 10,
            end,
            end_line: end.is_multiple_of(2).then_some(end / 10),
        }
    }

    fn walk(dir: &Path) -> Vec<Option<(String, Origin)>> {
        let mut seen = Vec::new();
        for_each_origin(dir, |w| {
            seen.push(match w {
                Walked::Origin { source, origin } => Some((source.to_string(), *origin)),
                Walked::Damage => None,
            })
        })
        .unwrap();
        seen
    }

    #[test]
    fn visits_the_sound_origins_in_write_order_and_every_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Vec::new();
        let mut expected = Vec::new();
        for i in 0..50u64 {
            let o = (i % 5 == 4).then(|| origin(100 + i));
            let source = if i % 10 == 9 { "other" } else { "files" };
            encode(&ev(source, i, o), &mut first);
            if let Some(o) = o {
                expected.push(Some((source.to_string(), o)));
            }
        }
        // A stamped record whose checksum fails, then an unstamped one: both damage, and the walk goes on.
        encode(&ev("files", 50, Some(origin(500))), &mut first);
        let last = first.len() - 1;
        first[last] ^= 0x20;
        encode(&ev("files", 51, None), &mut first);
        let last = first.len() - 1;
        first[last] ^= 0x20;
        expected.extend([None, None]);
        encode(&ev("files", 52, Some(origin(502))), &mut first);
        expected.push(Some(("files".to_string(), origin(502))));
        std::fs::write(segment_path(dir.path(), 3), &first).unwrap();
        // A segment cut inside a record that is not the newest: damage.
        let mut second = Vec::new();
        encode(&ev("files", 53, Some(origin(603))), &mut second);
        expected.push(Some(("files".to_string(), origin(603))));
        encode(&ev("files", 54, None), &mut second);
        second.truncate(second.len() - 4);
        expected.push(None);
        std::fs::write(segment_path(dir.path(), 4), &second).unwrap();
        // Segment 5 is missing: damage. The newest may end in a record still being written: not damage.
        expected.push(None);
        let mut newest = Vec::new();
        encode(&ev("files", 55, Some(origin(705))), &mut newest);
        expected.push(Some(("files".to_string(), origin(705))));
        encode(&ev("files", 56, Some(origin(706))), &mut newest);
        newest.truncate(newest.len() - 4);
        std::fs::write(segment_path(dir.path(), 6), &newest).unwrap();
        std::fs::write(dir.path().join("cursor"), b"not a segment").unwrap();

        assert_eq!(walk(dir.path()), expected);
        // The other walk sees the same sound records.
        let mut records = 0;
        for_each_record(dir.path(), |_, _| records += 1).unwrap();
        assert_eq!(records, 50 + 1 + 1 + 1);
    }

    #[test]
    fn lost_framing_ends_a_segment_and_a_missing_directory_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        encode(&ev("files", 1, Some(origin(11))), &mut bytes);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[7; 40]);
        std::fs::write(segment_path(dir.path(), 0), &bytes).unwrap();
        // Zeros (what a power cut can leave where pages never reached the disk) are damage too.
        let mut zeros = vec![0u8; 64];
        encode(&ev("files", 2, Some(origin(12))), &mut zeros);
        std::fs::write(segment_path(dir.path(), 1), &zeros).unwrap();
        assert_eq!(
            walk(dir.path()),
            [
                Some(("files".to_string(), origin(11))),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                Some(("files".to_string(), origin(12))),
            ]
        );
        assert!(walk(&dir.path().join("absent")).is_empty());
    }
}
