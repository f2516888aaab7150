//! Read-only walks over the sound records a disk buffer directory holds, oldest first.
//!
//! The integrity chain uses [`for_each_record`] at start: what the buffer holds is what the chain has handed on
//! for good, so the chain can resume right after the newest record of each stream instead of leaving a gap for
//! events it had numbered but that never reached the buffer. The file source uses [`for_each_origin`] the same
//! way: a line whose event a buffer holds (or whose sink already took it) need not be read again after a crash,
//! so each file can resume after the newest read batch that every sink's buffer holds, not at its last
//! checkpoint.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::error::DiskBufferError;
use super::segment::{
    decode, list_segments, segment_path, Decoded, HEADER_LEN, MAX_RECORD_LEN, ORIGIN_TAG,
};
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

/// Calls `visit(source, origin)` for every sound record of every segment in `dir` that carries an [`Origin`],
/// in write order. A directory that does not exist holds nothing.
///
/// Only records with an origin block are read whole and checked (CRC32C); the others are stepped over by their
/// length, so the walk costs one sequential read of the directory and little memory, whatever the segment
/// size. An origin is reported only from a record whose checksum holds; damage makes records (and, where the
/// framing is lost, the rest of a segment) invisible, never misread: a caller sees a gap, never a position
/// that was not written.
pub fn for_each_origin(
    dir: &Path,
    mut visit: impl FnMut(&str, &Origin),
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
    let mut record = Vec::new();
    for &id in segments.keys() {
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
                Step::Skipped => {}
                Step::Tagged => {
                    if let Decoded::Record {
                        source,
                        origin: Some(origin),
                        ..
                    } = decode(&record)
                    {
                        visit(std::str::from_utf8(&record[source]).unwrap_or(""), &origin);
                    }
                }
            }
        }
    }
    Ok(())
}

/// What [`next_record`] found.
enum Step {
    /// The segment ends here (or its framing is lost).
    End,
    /// A record without an origin block (or too short to hold one), stepped over.
    Skipped,
    /// A record whose payload starts, after the source name, with [`ORIGIN_TAG`]: whole in `record`, unchecked.
    Tagged,
}

/// Reads the next record's header and source name; when an origin block follows, the whole record into
/// `record` (header included, for [`decode`]), else steps over the rest.
fn next_record(r: &mut BufReader<File>, record: &mut Vec<u8>) -> io::Result<Step> {
    record.clear();
    record.resize(HEADER_LEN + 2, 0);
    if !read_full(r, &mut record[..HEADER_LEN])? {
        return Ok(Step::End);
    }
    let len = u32::from_le_bytes([record[0], record[1], record[2], record[3]]) as usize;
    if len > MAX_RECORD_LEN {
        return Ok(Step::End);
    }
    if len < 2 {
        skip(r, len)?;
        return Ok(Step::Skipped);
    }
    if !read_full(r, &mut record[HEADER_LEN..HEADER_LEN + 2])? {
        return Ok(Step::End);
    }
    let name_len = u16::from_le_bytes([record[HEADER_LEN], record[HEADER_LEN + 1]]) as usize;
    // The name and the byte after it, which tells whether an origin block follows.
    let lead = (name_len + 1).min(len - 2);
    let have = record.len();
    record.resize(have + lead, 0);
    if !read_full(r, &mut record[have..])? {
        return Ok(Step::End);
    }
    let tagged = lead == name_len + 1 && record.last() == Some(&ORIGIN_TAG);
    if !tagged {
        skip(r, len - 2 - lead)?;
        return Ok(Step::Skipped);
    }
    let have = record.len();
    record.resize(HEADER_LEN + len, 0);
    if !read_full(r, &mut record[have..])? {
        return Ok(Step::End);
    }
    Ok(Step::Tagged)
}

/// Fills `buf`; false when the file ends first (a torn tail).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Steps over `n` bytes without reading them when they are not buffered already. Stepping past the end is
/// noticed by the next read.
fn skip(r: &mut BufReader<File>, n: usize) -> io::Result<()> {
    let buffered = r.buffer().len();
    if n <= buffered {
        r.consume(n);
        Ok(())
    } else {
        r.seek_relative(n as i64)
    }
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

    #[test]
    fn visits_the_sound_origins_in_write_order_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Vec::new();
        let mut expected = Vec::new();
        for i in 0..50u64 {
            let o = (i % 5 == 4).then(|| origin(100 + i));
            let source = if i % 10 == 9 { "other" } else { "files" };
            encode(&ev(source, i, o), &mut first);
            if let Some(o) = o {
                expected.push((source.to_string(), o));
            }
        }
        // A stamped record whose checksum fails: not reported, the walk goes on after it.
        encode(&ev("files", 50, Some(origin(500))), &mut first);
        let last = first.len() - 1;
        first[last] ^= 0x20;
        encode(&ev("files", 51, Some(origin(501))), &mut first);
        expected.push(("files".to_string(), origin(501)));
        std::fs::write(segment_path(dir.path(), 3), &first).unwrap();
        // The next segment ends in a stamped record cut short by a crash.
        let mut second = Vec::new();
        encode(&ev("files", 52, Some(origin(602))), &mut second);
        expected.push(("files".to_string(), origin(602)));
        encode(&ev("files", 53, Some(origin(603))), &mut second);
        second.truncate(second.len() - 4);
        std::fs::write(segment_path(dir.path(), 4), &second).unwrap();
        std::fs::write(dir.path().join("cursor"), b"not a segment").unwrap();

        let mut seen = Vec::new();
        for_each_origin(dir.path(), |source, o| seen.push((source.to_string(), *o))).unwrap();
        assert_eq!(seen, expected);
        // The other walk sees the same records, the damaged one aside.
        let mut records = 0;
        for_each_record(dir.path(), |_, _| records += 1).unwrap();
        assert_eq!(records, 50 + 1 + 1);
    }

    #[test]
    fn lost_framing_ends_a_segment_and_a_missing_directory_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        encode(&ev("files", 1, Some(origin(11))), &mut bytes);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[7; 40]);
        std::fs::write(segment_path(dir.path(), 0), &bytes).unwrap();
        let mut seen = Vec::new();
        for_each_origin(dir.path(), |_, o| seen.push(*o)).unwrap();
        assert_eq!(seen, [origin(11)]);
        for_each_origin(&dir.path().join("absent"), |_, _| {
            panic!("nothing to visit")
        })
        .unwrap();
    }
}
