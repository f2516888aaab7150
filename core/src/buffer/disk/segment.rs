//! Segment files and the framing of the records in them.
//!
//! A segment is an append-only file named `<20-digit id>.seg`. It holds records back to back, with no header:
//! `[u32 LE payload length][u32 LE CRC32C of the payload][payload]`, where the payload is
//! `[u16 LE source-name length][source name][the event's raw JSON bytes]`. Decoding never trusts a length: a
//! record whose checksum fails is skipped on its own, and a length that cannot be right (past the end of the
//! segment, or over [`MAX_RECORD_LEN`]) makes the rest of the segment unreadable. [`scan_segment`] parses any
//! bytes without panicking; recovery, `inspect` and the fuzz target use the same decoder as the reader.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::event::Event;

/// Bytes before a record's payload: length and checksum.
pub(crate) const HEADER_LEN: usize = 8;

/// The longest payload a record may have (64 MiB). A length header above it is taken as damage.
pub const MAX_RECORD_LEN: usize = 64 << 20;

/// The file name of segment `id`.
pub(crate) fn segment_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// The path of segment `id` in `dir`.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_name(id))
}

/// The id of a segment file name, or `None` for any other file.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every segment in `dir` with its size in bytes.
pub(crate) fn list_segments(dir: &Path) -> io::Result<BTreeMap<u64, u64>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) else {
            continue;
        };
        match entry.metadata() {
            Ok(m) if m.is_file() => {
                out.insert(id, m.len());
            }
            Ok(_) => {}
            // Deleted between the listing and the stat: it is gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The source name as stored: at most `u16::MAX` bytes.
fn stored_source(event: &Event) -> &[u8] {
    let s = event.source().unwrap_or("").as_bytes();
    &s[..s.len().min(u16::MAX as usize)]
}

/// The payload length of `event`'s record.
pub(crate) fn payload_len(event: &Event) -> usize {
    2 + stored_source(event).len() + event.raw().len()
}

/// The size `event` takes in a segment, header included.
pub(crate) fn record_len(event: &Event) -> usize {
    HEADER_LEN + payload_len(event)
}

/// Appends `event`'s record to `buf` (no allocation beyond `buf` growing).
pub(crate) fn encode(event: &Event, buf: &mut Vec<u8>) {
    let source = stored_source(event);
    let raw = event.raw();
    let len = 2 + source.len() + raw.len();
    let start = buf.len();
    buf.reserve(HEADER_LEN + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&(source.len() as u16).to_le_bytes());
    buf.extend_from_slice(source);
    buf.extend_from_slice(raw);
    let crc = crc32c::crc32c(&buf[start + HEADER_LEN..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why a complete record was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Corruption {
    /// The payload does not match its CRC32C.
    Checksum,
    /// The checksum matches but the payload is not `[u16 name length][name][event]`.
    Malformed,
}

/// One step of decoding, at the start of a byte slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A sound record. Ranges are relative to the slice.
    Record {
        /// The source name.
        source: Range<usize>,
        /// The event's raw bytes.
        raw: Range<usize>,
        /// Length of the whole record.
        len: usize,
    },
    /// A complete record that fails its check; skipping `len` bytes reaches the next record.
    Corrupt {
        /// Length of the whole record.
        len: usize,
        /// What is wrong.
        why: Corruption,
    },
    /// The slice ends before the record does; `needed` bytes (from the slice start) would hold it.
    Incomplete {
        /// Bytes the record needs.
        needed: usize,
    },
    /// The length header cannot be right: the record framing is lost.
    Impossible,
}

/// Decodes the record at the start of `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Decoded {
    if bytes.len() < HEADER_LEN {
        return Decoded::Incomplete { needed: HEADER_LEN };
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if len > MAX_RECORD_LEN {
        return Decoded::Impossible;
    }
    let total = HEADER_LEN + len;
    if bytes.len() < total {
        return Decoded::Incomplete { needed: total };
    }
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let payload = &bytes[HEADER_LEN..total];
    if crc32c::crc32c(payload) != crc {
        return Decoded::Corrupt {
            len: total,
            why: Corruption::Checksum,
        };
    }
    if len < 2 {
        return Decoded::Corrupt {
            len: total,
            why: Corruption::Malformed,
        };
    }
    let name_len = u16::from_le_bytes([payload[0], payload[1]]) as usize;
    if 2 + name_len > len {
        return Decoded::Corrupt {
            len: total,
            why: Corruption::Malformed,
        };
    }
    let name_start = HEADER_LEN + 2;
    Decoded::Record {
        source: name_start..name_start + name_len,
        raw: name_start + name_len..total,
        len: total,
    }
}

/// How a segment ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tail {
    /// The last record ends exactly at the end of the segment.
    #[default]
    Clean,
    /// The segment ends inside a record (a write cut short by a crash), or in zeros that a crash left where
    /// records were being written. In the last segment this is truncated; elsewhere it is damage.
    Torn {
        /// Where the incomplete part starts.
        offset: u64,
        /// How many bytes it spans, to the end of the segment.
        bytes: u64,
    },
    /// A length header that cannot be right: nothing after it can be framed and the rest is skipped.
    Garbage {
        /// Where the bad header is.
        offset: u64,
        /// How many bytes are skipped, to the end of the segment.
        bytes: u64,
    },
}

/// What a segment (or the part of it after a start offset) holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Sound records.
    pub records: u64,
    /// Bytes of sound records, headers included.
    pub record_bytes: u64,
    /// Complete records skipped because their checksum or their layout is wrong.
    pub corrupt_records: u64,
    /// Offset after the last complete record (sound or skipped): where the tail starts.
    pub end: u64,
    /// How the segment ends.
    pub tail: Tail,
}

/// Parses the bytes of a whole segment. Never panics, whatever the input; a fuzz target calls it.
pub fn scan_segment(bytes: &[u8]) -> ScanReport {
    let mut window = SliceWindow(bytes);
    match scan(&mut window, 0, bytes.len() as u64) {
        Ok(report) => report,
        Err(_) => unreachable!("reading a slice cannot fail"),
    }
}

/// Parses the part `[from, end)` of a segment file, reading it in chunks.
pub(crate) fn scan_file(file: &mut File, from: u64, end: u64) -> io::Result<ScanReport> {
    let mut window = FileWindow::new(file);
    scan(&mut window, from, end)
}

/// Gives access to a segment's bytes at an offset.
trait Window {
    /// At least `min` bytes starting at `pos` (fewer only when the data ends before `end`), at most up to `end`.
    fn at(&mut self, pos: u64, min: usize, end: u64) -> io::Result<&[u8]>;
}

struct SliceWindow<'a>(&'a [u8]);

impl Window for SliceWindow<'_> {
    fn at(&mut self, pos: u64, _min: usize, end: u64) -> io::Result<&[u8]> {
        let start = (pos as usize).min(self.0.len());
        let stop = (end as usize).clamp(start, self.0.len());
        Ok(&self.0[start..stop])
    }
}

/// A sliding buffer over a file: scanning a 1 GiB segment needs only a few MiB of memory.
struct FileWindow<'a> {
    file: &'a mut File,
    buf: Vec<u8>,
    base: u64,
}

const WINDOW: usize = 4 << 20;

impl<'a> FileWindow<'a> {
    fn new(file: &'a mut File) -> Self {
        FileWindow {
            file,
            buf: Vec::new(),
            base: 0,
        }
    }
}

impl Window for FileWindow<'_> {
    fn at(&mut self, pos: u64, min: usize, end: u64) -> io::Result<&[u8]> {
        let have_end = self.base + self.buf.len() as u64;
        let wanted_end = end.min(pos.saturating_add(min as u64));
        if pos < self.base || wanted_end > have_end || (pos >= have_end && pos < end) {
            let len = (end.saturating_sub(pos)).min(WINDOW.max(min) as u64) as usize;
            self.buf.clear();
            self.file.seek(SeekFrom::Start(pos))?;
            (&mut *self.file)
                .take(len as u64)
                .read_to_end(&mut self.buf)?;
            self.base = pos;
        }
        let start = ((pos - self.base) as usize).min(self.buf.len());
        let stop = ((end.saturating_sub(self.base)) as usize).clamp(start, self.buf.len());
        Ok(&self.buf[start..stop])
    }
}

/// Whether every byte in `[from, end)` is zero (what a crash can leave where a file was extended but its data
/// never reached the disk).
fn zeros_to_end<W: Window>(w: &mut W, mut from: u64, end: u64) -> io::Result<bool> {
    while from < end {
        let chunk = w.at(from, 1, end)?;
        if chunk.is_empty() {
            return Ok(true);
        }
        if chunk.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        from += chunk.len() as u64;
    }
    Ok(true)
}

fn scan<W: Window>(w: &mut W, from: u64, end: u64) -> io::Result<ScanReport> {
    let mut report = ScanReport::default();
    let mut pos = from;
    let mut want = HEADER_LEN;
    while pos < end {
        let bytes = w.at(pos, want, end)?;
        if bytes.is_empty() {
            // The data ends before `end` (a file shorter than listed): what is missing is a torn tail.
            break;
        }
        match decode(bytes) {
            Decoded::Record { len, .. } => {
                report.records += 1;
                report.record_bytes += len as u64;
                pos += len as u64;
                want = HEADER_LEN;
            }
            Decoded::Corrupt { len, .. } => {
                if zeros_to_end(w, pos, end)? {
                    report.end = pos;
                    report.tail = Tail::Torn {
                        offset: pos,
                        bytes: end - pos,
                    };
                    return Ok(report);
                }
                report.corrupt_records += 1;
                pos += len as u64;
                want = HEADER_LEN;
            }
            Decoded::Incomplete { needed } => {
                if pos + needed as u64 <= end && needed > want {
                    // The window was asked for less than this record: widen it once.
                    want = needed;
                    continue;
                }
                break;
            }
            Decoded::Impossible => {
                report.end = pos;
                report.tail = if zeros_to_end(w, pos, end)? {
                    Tail::Torn {
                        offset: pos,
                        bytes: end - pos,
                    }
                } else {
                    Tail::Garbage {
                        offset: pos,
                        bytes: end - pos,
                    }
                };
                return Ok(report);
            }
        }
    }
    report.end = pos.min(end);
    if pos < end {
        report.tail = Tail::Torn {
            offset: pos,
            bytes: end - pos,
        };
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn ev(i: usize) -> Event {
        let mut e = Event::parse(
            Bytes::from(format!(
                r#"{{"event":"x","uid":"{i}","time":"2017-02-03T06:54:05Z"}}"#
            )),
            1024,
        )
        .unwrap();
        e.set_source(Arc::from("src"));
        e
    }

    fn segment(n: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        for i in 0..n {
            encode(&ev(i), &mut buf);
        }
        buf
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_segment_name("cursor"), None);
    }

    #[test]
    fn encodes_and_decodes() {
        let e = ev(7);
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        assert_eq!(buf.len(), record_len(&e));
        match decode(&buf) {
            Decoded::Record { source, raw, len } => {
                assert_eq!(&buf[source], b"src");
                assert_eq!(&buf[raw], e.raw().as_ref());
                assert_eq!(len, buf.len());
            }
            other => panic!("{other:?}"),
        }
        let report = scan_segment(&segment(5));
        assert_eq!(report.records, 5);
        assert_eq!(report.tail, Tail::Clean);
    }

    #[test]
    fn classifies_damage() {
        let good = segment(3);
        let one = good.len() / 3;
        // Torn: cut inside the last record.
        let r = scan_segment(&good[..good.len() - 5]);
        assert_eq!((r.records, r.corrupt_records), (2, 0));
        assert_eq!(
            r.tail,
            Tail::Torn {
                offset: 2 * one as u64,
                bytes: one as u64 - 5
            }
        );
        // A flipped payload byte: that record alone.
        let mut flipped = good.clone();
        flipped[one + 20] ^= 0x40;
        let r = scan_segment(&flipped);
        assert_eq!((r.records, r.corrupt_records, r.tail), (2, 1, Tail::Clean));
        // An impossible length: the rest of the segment.
        let mut garbage = good.clone();
        garbage[one..one + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let r = scan_segment(&garbage);
        assert_eq!(r.records, 1);
        assert!(matches!(r.tail, Tail::Garbage { offset, .. } if offset == one as u64));
        // Zeros where records were being written: a torn tail.
        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0; 100]);
        let r = scan_segment(&zeros);
        assert_eq!(r.records, 3);
        assert_eq!(
            r.tail,
            Tail::Torn {
                offset: good.len() as u64,
                bytes: 100
            }
        );
    }

    #[test]
    fn file_scan_matches_slice_scan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.seg");
        let mut bytes = segment(50);
        bytes[300] ^= 1;
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&path, &bytes).unwrap();
        let mut f = File::open(&path).unwrap();
        let from_file = scan_file(&mut f, 0, bytes.len() as u64).unwrap();
        assert_eq!(from_file, scan_segment(&bytes));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let r = scan_segment(&bytes);
            prop_assert!(r.end <= bytes.len() as u64);
        }

        #[test]
        fn damaged_segments_never_panic(
            n in 1usize..20,
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = segment(n);
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            let cut = cut.index(bytes.len() + 1);
            bytes.truncate(cut);
            let r = scan_segment(&bytes);
            prop_assert!(r.records + r.corrupt_records <= n as u64);
        }
    }
}
