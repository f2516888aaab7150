//! Segment files and the framing of the records in them.
//!
//! A segment is an append-only file named `<20-digit id>.seg`. It holds records back to back, with no header:
//! `[u32 LE payload length][u32 LE CRC32C of the payload][payload]`, where the payload is
//! `[u16 LE source-name length][source name][origin block, optional][the event's raw JSON bytes]`. Decoding
//! never trusts a length: a record whose checksum fails is skipped on its own, and a length that cannot be right
//! (past the end of the segment, or over [`MAX_RECORD_LEN`]) makes the rest of the segment unreadable.
//! [`scan_segment`] parses any bytes without panicking; recovery, `inspect` and the fuzz target use the same
//! decoder as the reader.
//!
//! The origin block (the event's [`Origin`], where its file source's read batch ends) was added after the first
//! format. It is flagged by its first byte, [`ORIGIN_TAG`]: raw JSON bytes of an event always start with `{`,
//! so a record without the block — every record of the first format, and every event without an origin — is
//! exactly as it always was, and segments written by an older version are replayed unchanged. The block is
//! `[ORIGIN_TAG][u8 flags][u64 LE dev, ino, fingerprint length, fingerprint hash, start, end][u64 LE end line,
//! when flag bit 0 is set]`; unknown flag bits make the record malformed rather than misread.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::event::{Event, Origin};

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

/// First byte of an origin block. An event's raw bytes start with `{`, never with this.
pub(crate) const ORIGIN_TAG: u8 = 0x01;

/// Flag bit of an origin block: an end line number follows the six fixed fields.
const ORIGIN_HAS_LINE: u8 = 0x01;

/// Bytes of an origin block without the end line: tag, flags and six `u64`.
const ORIGIN_FIXED_LEN: usize = 2 + 6 * 8;

/// Bytes the origin block of `origin` takes.
fn origin_len(origin: Option<&Origin>) -> usize {
    match origin {
        None => 0,
        Some(o) => ORIGIN_FIXED_LEN + if o.end_line.is_some() { 8 } else { 0 },
    }
}

/// The payload length of `event`'s record.
pub(crate) fn payload_len(event: &Event) -> usize {
    2 + stored_source(event).len() + origin_len(event.origin()) + event.raw().len()
}

/// The size `event` takes in a segment, header included.
pub(crate) fn record_len(event: &Event) -> usize {
    HEADER_LEN + payload_len(event)
}

/// Appends `event`'s record to `buf` (no allocation beyond `buf` growing).
pub(crate) fn encode(event: &Event, buf: &mut Vec<u8>) {
    let source = stored_source(event);
    let raw = event.raw();
    let len = payload_len(event);
    let start = buf.len();
    buf.reserve(HEADER_LEN + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&(source.len() as u16).to_le_bytes());
    buf.extend_from_slice(source);
    if let Some(o) = event.origin() {
        let flags = if o.end_line.is_some() {
            ORIGIN_HAS_LINE
        } else {
            0
        };
        buf.extend_from_slice(&[ORIGIN_TAG, flags]);
        for v in [
            o.dev,
            o.ino,
            o.fingerprint_len,
            o.fingerprint_hash,
            o.start,
            o.end,
        ] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        if let Some(line) = o.end_line {
            buf.extend_from_slice(&line.to_le_bytes());
        }
    }
    buf.extend_from_slice(raw);
    let crc = crc32c::crc32c(&buf[start + HEADER_LEN..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the origin block at the start of `bytes` (which starts with [`ORIGIN_TAG`]); returns it and its length,
/// or `None` when the block is cut short or has unknown flags.
fn decode_origin(bytes: &[u8]) -> Option<(Origin, usize)> {
    let flags = *bytes.get(1)?;
    if flags & !ORIGIN_HAS_LINE != 0 {
        return None;
    }
    let len = ORIGIN_FIXED_LEN + if flags & ORIGIN_HAS_LINE != 0 { 8 } else { 0 };
    let block = bytes.get(..len)?;
    let field = |i: usize| {
        let at = 2 + 8 * i;
        u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"))
    };
    let origin = Origin {
        dev: field(0),
        ino: field(1),
        fingerprint_len: field(2),
        fingerprint_hash: field(3),
        start: field(4),
        end: field(5),
        end_line: (flags & ORIGIN_HAS_LINE != 0).then(|| field(6)),
    };
    Some((origin, len))
}

/// Why a complete record was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Corruption {
    /// The payload does not match its CRC32C.
    Checksum,
    /// The checksum matches but the payload is not `[u16 name length][name][origin block?][event]`.
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
        /// Where the event's read batch ends in its source, when the record carries it.
        origin: Option<Origin>,
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
    let mut raw_start = name_start + name_len;
    let mut origin = None;
    if bytes.get(raw_start) == Some(&ORIGIN_TAG) {
        match decode_origin(&bytes[raw_start..total]) {
            Some((o, block)) => {
                origin = Some(o);
                raw_start += block;
            }
            None => {
                return Decoded::Corrupt {
                    len: total,
                    why: Corruption::Malformed,
                }
            }
        }
    }
    Decoded::Record {
        source: name_start..name_start + name_len,
        raw: raw_start..total,
        origin,
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
            Decoded::Record {
                source,
                raw,
                origin,
                len,
            } => {
                assert_eq!(&buf[source], b"src");
                assert_eq!(origin, None);
                assert_eq!(&buf[raw], e.raw().as_ref());
                assert_eq!(len, buf.len());
            }
            other => panic!("{other:?}"),
        }
        let report = scan_segment(&segment(5));
        assert_eq!(report.records, 5);
        assert_eq!(report.tail, Tail::Clean);
    }

    fn stamped(i: usize, end_line: Option<u64>) -> (Event, Origin) {
        let origin = Origin {
            dev: 0xfd01,
            ino: 1_234_567 + i as u64,
            fingerprint_len: 256,
            fingerprint_hash: 0xdead_beef_0bad_f00d,
            start: 1000 * i as u64,
            end: 1000 * i as u64 + 999,
            end_line,
        };
        let mut e = ev(i);
        e.set_origin(Arc::new(origin));
        (e, origin)
    }

    /// A record exactly as the first format wrote it (before origins): `[len][crc][u16 name length][name][raw]`.
    fn first_format_record(name: &[u8], raw: &[u8]) -> Vec<u8> {
        let mut payload = (name.len() as u16).to_le_bytes().to_vec();
        payload.extend_from_slice(name);
        payload.extend_from_slice(raw);
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn records_with_an_origin_carry_it_back() {
        for end_line in [Some(77), None] {
            let (e, origin) = stamped(3, end_line);
            let mut buf = Vec::new();
            encode(&e, &mut buf);
            assert_eq!(buf.len(), record_len(&e));
            assert_eq!(
                buf.len(),
                record_len(&ev(3)) + 50 + 8 * end_line.iter().count()
            );
            match decode(&buf) {
                Decoded::Record {
                    source,
                    raw,
                    origin: got,
                    len,
                } => {
                    assert_eq!(&buf[source], b"src");
                    assert_eq!(&buf[raw], e.raw().as_ref());
                    assert_eq!(got, Some(origin));
                    assert_eq!(len, buf.len());
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn first_format_records_decode_and_are_what_an_event_without_origin_encodes_to() {
        let raw = br#"{"event":"x","uid":"7","time":"2017-02-03T06:54:05Z"}"#;
        let old = first_format_record(b"src", raw);
        // The same record as the first version wrote it, literally (length 58, its CRC32C), so that neither the
        // helper above nor the format can drift.
        let mut literal = b"\x3a\x00\x00\x00\x05\x55\x7a\x44\x03\x00src".to_vec();
        literal.extend_from_slice(raw);
        assert_eq!(old, literal);
        match decode(&old) {
            Decoded::Record {
                source,
                raw: r,
                origin,
                len,
            } => {
                assert_eq!(&old[source], b"src");
                assert_eq!(&old[r], raw);
                assert_eq!(origin, None);
                assert_eq!(len, old.len());
            }
            other => panic!("{other:?}"),
        }
        let mut new = Vec::new();
        encode(&ev(7), &mut new);
        assert_eq!(
            new, old,
            "an event without origin is written in the first format"
        );
        let report = scan_segment(&[old.clone(), old].concat());
        assert_eq!((report.records, report.tail), (2, Tail::Clean));
    }

    #[test]
    fn a_cut_or_unknown_origin_block_is_malformed_not_misread() {
        let raw = br#"{"event":"x","uid":"7","time":"2017-02-03T06:54:05Z"}"#;
        let mut cut = vec![ORIGIN_TAG, 0];
        cut.extend_from_slice(&[1; 20]);
        let mut unknown_flags = vec![ORIGIN_TAG, 0x80];
        unknown_flags.extend_from_slice(&[0; 48]);
        unknown_flags.extend_from_slice(raw);
        for body in [cut, unknown_flags] {
            let record = first_format_record(b"src", &body);
            assert_eq!(
                decode(&record),
                Decoded::Corrupt {
                    len: record.len(),
                    why: Corruption::Malformed
                }
            );
        }
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

    fn any_origin() -> impl Strategy<Value = Option<Origin>> {
        proptest::option::of(
            (any::<[u64; 6]>(), proptest::option::of(any::<u64>())).prop_map(|(v, end_line)| {
                Origin {
                    dev: v[0],
                    ino: v[1],
                    fingerprint_len: v[2],
                    fingerprint_hash: v[3],
                    start: v[4],
                    end: v[5],
                    end_line,
                }
            }),
        )
    }

    proptest! {
        /// Any mix of records with and without an origin, any source name: each decodes to what was encoded, at
        /// the length `record_len` promised, one after the other.
        #[test]
        fn records_round_trip(
            records in prop::collection::vec(("[a-z\\x01{]{0,12}", any::<u32>(), any_origin()), 1..12),
        ) {
            let mut buf = Vec::new();
            let mut events = Vec::new();
            for (name, uid, origin) in &records {
                let mut e = Event::parse(
                    Bytes::from(format!(r#"{{"event":"x","uid":"{uid}","time":"2017-02-03T06:54:05Z"}}"#)),
                    1024,
                )
                .unwrap();
                e.set_source(Arc::from(name.as_str()));
                if let Some(o) = origin {
                    e.set_origin(Arc::new(*o));
                }
                let before = buf.len();
                encode(&e, &mut buf);
                prop_assert_eq!(buf.len() - before, record_len(&e));
                events.push(e);
            }
            let mut pos = 0;
            for (e, (name, _, origin)) in events.iter().zip(&records) {
                match decode(&buf[pos..]) {
                    Decoded::Record { source, raw, origin: got, len } => {
                        prop_assert_eq!(&buf[pos + source.start..pos + source.end], name.as_bytes());
                        prop_assert_eq!(&buf[pos + raw.start..pos + raw.end], e.raw().as_ref());
                        prop_assert_eq!(got, *origin);
                        pos += len;
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
            prop_assert_eq!(pos, buf.len());
            let report = scan_segment(&buf);
            prop_assert_eq!((report.records, report.tail), (records.len() as u64, Tail::Clean));
        }

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
