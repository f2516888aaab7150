//! The audit event as it travels through auditrail.
//!
//! An event is a flat JSON object in Teleport's shape. It is parsed exactly once, at the source, to check that it
//! is an object with a string `event` and an RFC 3339 `time`, and to remember where `uid`, `event` and `time` sit
//! inside the raw bytes. The raw bytes are what every sink writes: a value that is only forwarded is never
//! re-serialized, so Go's `\u003c` escapes, integers past 2^53 and field order all survive. Only what auditrail
//! itself changes (a `uid` it assigns, whitespace it must fold so that one event stays one line) is rewritten.
//!
//! Beside the bytes an event carries pipeline metadata that no sink writes: its source's name, the
//! acknowledgement finalizer, and, for the file source, its [`Origin`] (which stretch of which file it ends), which
//! a disk buffer stores with the record so that a restarted source can resume after what the buffers hold.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ack::{EventStatus, Finalizer};

/// A byte range inside [`Event::raw`], holding the contents of a JSON string (without its quotes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(outer: &[u8], inner: &[u8]) -> Span {
        let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + inner.len()) as u32,
        }
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where in its source a stretch of events ends: which file, and the stretch of it the events up to this one
/// account for.
///
/// Set by the file source on the last event of each read batch and on some events within a long one; a disk
/// buffer stores it with the record (see
/// `buffer/disk/segment.rs`) and restores it when the record is replayed. At start the source resumes each
/// file after the newest stretch that every one of its sinks' disk buffers holds without a gap, instead of
/// reading again everything after its last checkpoint. It is pipeline metadata: no sink writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Device number of the file.
    pub dev: u64,
    /// Inode number of the file.
    pub ino: u64,
    /// How many bytes of the file's head its fingerprint covers (the file source's inode-reuse guard).
    pub fingerprint_len: u64,
    /// FNV-1a 64 of those bytes.
    pub fingerprint_hash: u64,
    /// Byte offset where the stretch starts: the end of the previous stamped stretch of this file, so that
    /// lines that produced no event (invalid, dead-lettered) in between are covered too.
    pub start: u64,
    /// Byte offset where the stretch ends: after this event's line, and any lines without an event after it.
    pub end: u64,
    /// Line number at `end`, when the source knows it.
    pub end_line: Option<u64>,
}

/// One audit event: its raw JSON bytes, what was parsed from them once, and pipeline metadata.
///
/// Cloning is cheap (a reference count on the bytes and on the acknowledgement batch): the fan-out gives every
/// sink its own clone, and each clone reports its own outcome.
#[derive(Clone)]
pub struct Event {
    raw: Bytes,
    uid: Span,
    kind: Span,
    time: Span,
    timestamp_nanos: i64,
    source: Option<Arc<str>>,
    finalizer: Option<Finalizer>,
    /// The integrity chain's own link to this event's outcome, for a stream with a memory-buffered sink: the
    /// chain learns which numbers are finished at every sink (see `integrity::stream`).
    chain_finalizer: Option<Finalizer>,
    /// The integrity chain's content digest, when the source computed it while parsing (on all cores).
    digest: Option<[u8; 32]>,
    /// Where the stretch of the source this event ends stops, on the events a file source stamps; shared
    /// between the copies the fan-out makes.
    origin: Option<Arc<Origin>>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("raw", &String::from_utf8_lossy(&self.raw))
            .field("source", &self.source)
            .field("origin", &self.origin)
            .finish()
    }
}

/// Why a line or document was not accepted as an event. The label is the `reason` of
/// `auditrail_source_invalid_total` and of the dead-letter record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    /// The bytes are not JSON (or not UTF-8).
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// The JSON is valid but is not an object.
    #[error("expected a JSON object, found {0}")]
    NotObject(&'static str),
    /// The object has no `event` field.
    #[error("missing required field `event` (the event type, e.g. \"session.start\")")]
    MissingEvent,
    /// `event` is present but not a non-empty string.
    #[error("field `event` must be a non-empty string")]
    InvalidEvent,
    /// The object has no `time` field.
    #[error("missing required field `time` (RFC 3339, e.g. \"2017-02-03T06:54:05.000Z\")")]
    MissingTime,
    /// `time` is present but not an RFC 3339 timestamp.
    #[error(
        "field `time` must be an RFC 3339 timestamp string, e.g. \"2017-02-03T06:54:05.000Z\": {0}"
    )]
    InvalidTime(String),
    /// `uid` is present but not a non-empty string.
    #[error("field `uid` must be a non-empty string when present")]
    InvalidUid,
    /// The line is longer than the source's `max_line_bytes`.
    #[error("line is {len} bytes, over the limit of {max} (max_line_bytes)")]
    TooLong {
        /// Length of the offending line (as far as it was read).
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

impl InvalidEvent {
    /// Short stable label used in metrics and dead-letter records.
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidEvent::NotJson(_) => "invalid_json",
            InvalidEvent::NotObject(_) => "not_object",
            InvalidEvent::MissingEvent => "missing_event",
            InvalidEvent::InvalidEvent => "invalid_event",
            InvalidEvent::MissingTime => "missing_time",
            InvalidEvent::InvalidTime(_) => "invalid_time",
            InvalidEvent::InvalidUid => "invalid_uid",
            InvalidEvent::TooLong { .. } => "too_long",
        }
    }

    /// Every reason label, so that metrics can be registered up front and show zeros.
    pub const REASONS: [&'static str; 8] = [
        "invalid_json",
        "not_object",
        "missing_event",
        "invalid_event",
        "missing_time",
        "invalid_time",
        "invalid_uid",
        "too_long",
    ];
}

/// The three fields the pipeline reads, borrowed as raw JSON so that their position in the input is known and
/// nothing else is materialized. Unknown fields are skipped by serde_json without being built.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    uid: Option<&'a RawValue>,
}

/// Whether `text` has a byte below 0x20 (a control character; in compact JSON only inside a string, where JSON
/// forbids it). Written to run 32 bytes per step without branching on each.
fn has_control(text: &[u8]) -> bool {
    let mut chunks = text.chunks_exact(32);
    let found = chunks
        .by_ref()
        .any(|c| c.iter().fold(false, |any, &b| any | (b < 0x20)));
    found || chunks.remainder().iter().any(|&b| b < 0x20)
}

/// Trims JSON insignificant whitespace at both ends.
fn trim(bytes: &[u8]) -> (usize, usize) {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes.iter().position(|b| !is_ws(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |p| p + 1);
    (start, end)
}

/// Returns the contents of a raw JSON string value (without quotes), or `None` if the value is not a string.
fn string_contents(raw: &RawValue) -> Option<&[u8]> {
    let b = raw.get().as_bytes();
    if b.len() >= 2 && b[0] == b'"' {
        Some(&b[1..b.len() - 1])
    } else {
        None
    }
}

/// Removes the whitespace between tokens of a valid JSON text, keeping every token's bytes as they are.
/// Used only when a document spans several lines, since NDJSON output needs one event per line.
fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            out.push(b);
        }
    }
    out
}

fn json_kind(first: u8) -> &'static str {
    match first {
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

/// Parses an RFC 3339 timestamp with any number of fractional digits and returns Unix nanoseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let dt = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| e.to_string())?;
    dt.timestamp_nanos_opt()
        .ok_or_else(|| "timestamp is out of range".to_string())
}

impl Event {
    /// Parses one event from `bytes` (a line, or one element of a JSON array).
    ///
    /// `bytes` is trimmed; a document that spans lines is folded onto one line; a missing `uid` is assigned a
    /// UUIDv7, appended as the last field. `bytes` longer than `max_len` are refused before any parsing.
    pub fn parse(bytes: Bytes, max_len: usize) -> Result<Event, InvalidEvent> {
        if bytes.len() > max_len {
            return Err(InvalidEvent::TooLong {
                len: bytes.len(),
                max: max_len,
            });
        }
        let (start, end) = trim(&bytes);
        let mut raw = bytes.slice(start..end);
        let Some(&first) = raw.first() else {
            return Err(InvalidEvent::NotJson("empty input".into()));
        };
        if first != b'{' {
            // Report what it is if it is valid JSON at all, else why it is not.
            return match serde_json::from_slice::<serde::de::IgnoredAny>(&raw) {
                Ok(_) => Err(InvalidEvent::NotObject(json_kind(first))),
                Err(e) => Err(InvalidEvent::NotJson(e.to_string())),
            };
        }
        if memchr::memchr2(b'\n', b'\r', &raw).is_some() {
            raw = Bytes::from(compact(&raw));
        }
        // One vectorized UTF-8 check of the whole line lets serde_json skip checking each string on its own.
        // simdutf8 checks with AVX2 where it can; the standard library's check runs only to explain a failure.
        let text = simdutf8::basic::from_utf8(&raw).map_err(|_| {
            let why = std::str::from_utf8(&raw).map_or_else(|e| e.to_string(), |_| String::new());
            InvalidEvent::NotJson(format!("not UTF-8: {why}"))
        })?;
        let probe: Probe<'_> = match serde_json::from_str(text) {
            Ok(p) => p,
            Err(e) => return Err(classify_serde_error(e)),
        };
        let kind = probe.event.ok_or(InvalidEvent::MissingEvent)?;
        let kind = string_contents(kind)
            .filter(|s| !s.is_empty())
            .ok_or(InvalidEvent::InvalidEvent)?;
        let time = probe.time.ok_or(InvalidEvent::MissingTime)?;
        let time = string_contents(time)
            .ok_or_else(|| InvalidEvent::InvalidTime("not a string".into()))?;
        let time_str = std::str::from_utf8(time).expect("serde_json validated UTF-8");
        let timestamp_nanos = if time_str.contains('\\') {
            let decoded: String = serde_json::from_str(&format!("\"{time_str}\""))
                .map_err(|e| InvalidEvent::InvalidTime(e.to_string()))?;
            parse_time(&decoded)
        } else {
            parse_time(time_str)
        }
        .map_err(InvalidEvent::InvalidTime)?;
        let uid = match probe.uid {
            Some(u) => Some(
                string_contents(u)
                    .filter(|s| !s.is_empty())
                    .ok_or(InvalidEvent::InvalidUid)?,
            ),
            None => None,
        };
        let (kind, time) = (Span::of(&raw, kind), Span::of(&raw, time));
        let (raw, uid) = match uid {
            Some(u) => {
                let uid = Span::of(&raw, u);
                (raw, uid)
            }
            None => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                append_uid(
                    &raw,
                    uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text),
                )
            }
        };
        Ok(Event {
            raw,
            uid,
            kind,
            time,
            timestamp_nanos,
            source: None,
            finalizer: None,
            chain_finalizer: None,
            digest: None,
            origin: None,
        })
    }

    /// [`Self::parse`] and [`Self::compute_digest`] in one reading of the text: the canonical form the digest is
    /// taken of also tells where `event`, `time` and `uid` are, so the separate parse is skipped. Anything but
    /// a plain valid event (no `uid`, escapes in `time`, control characters, a line break, top-level names with
    /// escapes, a field given twice, deep nesting, anything the canonical form refuses) takes the two steps
    /// as they are, so the outcome, errors included, is theirs.
    pub fn parse_digested(
        bytes: Bytes,
        max_len: usize,
        scratch: &mut Vec<u8>,
    ) -> Result<Event, InvalidEvent> {
        if bytes.len() <= max_len {
            if let Some(event) = Self::parse_digested_fast(&bytes, scratch) {
                return Ok(event);
            }
        }
        let mut event = Self::parse(bytes, max_len)?;
        event.compute_digest(scratch);
        Ok(event)
    }

    fn parse_digested_fast(bytes: &Bytes, scratch: &mut Vec<u8>) -> Option<Event> {
        /// Well below serde_json's nesting limit, so that both paths accept the same texts.
        const FAST_DEPTH: usize = 64;
        let (start, end) = trim(bytes);
        let raw = bytes.slice(start..end);
        // serde_json refuses control characters inside strings, which the canonical scan lets through; tabs
        // between tokens are legal but rare: both go the two-step way. (Line breaks are folded there too.)
        if raw.first() != Some(&b'{') || has_control(&raw) {
            return None;
        }
        scratch.clear();
        let picked = crate::integrity::canonical::canonicalize_picking(
            &raw,
            Some(crate::integrity::FIELD),
            ["event", "time", "uid"],
            scratch,
        )
        .ok()?;
        if picked.repeated || picked.unplain_names || picked.depth > FAST_DEPTH {
            return None;
        }
        let contents = |span: Option<(usize, usize)>| -> Option<Span> {
            let (from, to) = span?;
            (to - from > 2 && raw[from] == b'"').then_some(Span {
                start: from as u32 + 1,
                end: to as u32 - 1,
            })
        };
        let [kind, time, uid] = picked.values;
        let (kind, time, uid) = (contents(kind)?, contents(time)?, contents(uid)?);
        let time_text = std::str::from_utf8(&raw[time.range()]).ok()?;
        if time_text.contains('\\') {
            return None;
        }
        let timestamp_nanos = parse_time(time_text).ok()?;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&scratch[..]).into();
        Some(Event {
            raw,
            uid,
            kind,
            time,
            timestamp_nanos,
            source: None,
            finalizer: None,
            chain_finalizer: None,
            digest: Some(digest),
            origin: None,
        })
    }

    /// Builds an event that auditrail itself emits (`auditrail.dropped`, `auditrail.error`, ...).
    ///
    /// `fields` are appended after `event`, `uid`, `code` and `time`, in the order given.
    pub fn internal(kind: &str, code: &str, fields: &[(&str, serde_json::Value)]) -> Event {
        let now = chrono::Utc::now();
        let mut obj = serde_json::Map::new();
        obj.insert("event".into(), kind.into());
        obj.insert("uid".into(), uuid::Uuid::now_v7().to_string().into());
        obj.insert("code".into(), code.into());
        obj.insert(
            "time".into(),
            now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .into(),
        );
        for (k, v) in fields {
            obj.insert((*k).into(), v.clone());
        }
        let bytes = serde_json::to_vec(&obj).expect("a map of JSON values always serializes");
        Event::parse(Bytes::from(bytes), usize::MAX).expect("internal events are well formed")
    }

    /// The event as it is written: one line of JSON without the trailing newline.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The `uid` field as it appears in the JSON (escapes included, which real uids never have).
    pub fn uid_raw(&self) -> &str {
        self.str_at(self.uid)
    }

    /// The `uid` field, with JSON escapes decoded.
    pub fn uid(&self) -> Cow<'_, str> {
        self.decoded(self.uid)
    }

    /// The event type (`event` field), with JSON escapes decoded.
    pub fn kind(&self) -> Cow<'_, str> {
        self.decoded(self.kind)
    }

    /// The `time` field exactly as received.
    pub fn time_raw(&self) -> &str {
        self.str_at(self.time)
    }

    /// The `time` field as Unix nanoseconds (UTC).
    pub fn timestamp_nanos(&self) -> i64 {
        self.timestamp_nanos
    }

    /// Name of the source that produced the event, once set by the pipeline.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Sets the source name (shared between all events of that source).
    pub fn set_source(&mut self, source: Arc<str>) {
        self.source = Some(source);
    }

    /// Where the stretch of its source this event ends stops, when the source set it.
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_deref()
    }

    /// Sets where the stretch of its source this event ends stops (see [`Origin`]).
    pub fn set_origin(&mut self, origin: Arc<Origin>) {
        self.origin = Some(origin);
    }

    /// Attaches the acknowledgement finalizer: the source learns this event's outcome through it.
    pub fn set_finalizer(&mut self, finalizer: Finalizer) {
        self.finalizer = Some(finalizer);
    }

    /// Attaches the integrity chain's finalizer (see the field's doc).
    pub fn set_chain_finalizer(&mut self, finalizer: Finalizer) {
        self.chain_finalizer = Some(finalizer);
    }

    /// Detaches the integrity chain's finalizer (when a numbering is taken back).
    pub fn take_chain_finalizer(&mut self) -> Option<Finalizer> {
        self.chain_finalizer.take()
    }

    /// Computes and keeps the integrity chain's content digest of the event (see
    /// [`crate::integrity::chain::content_digest`]), so the chain does not compute it on its own, sequential
    /// path. `scratch` is reused between calls.
    pub fn compute_digest(&mut self, scratch: &mut Vec<u8>) {
        self.digest = crate::integrity::chain::content_digest(&self.raw, scratch).ok();
    }

    /// The content digest computed by [`Self::compute_digest`], if it was.
    pub fn digest(&self) -> Option<&[u8; 32]> {
        self.digest.as_ref()
    }

    /// Appends `member` (`"name":value`) as the object's last member. Everything before it keeps its bytes, so
    /// the parsed positions stay valid.
    pub fn append_member(&mut self, member: &[u8]) {
        self.raw = Bytes::from(crate::integrity::chain::append_member(&self.raw, member));
    }

    /// Sets bytes made from the current ones by appending members (see
    /// [`crate::integrity::chain::append_member_to`]) and returns the current ones. Everything before the
    /// closing brace must be kept, so the parsed positions stay valid.
    pub fn replace_raw(&mut self, raw: Bytes) -> Bytes {
        debug_assert!(
            raw.starts_with(&self.raw[..self.raw.iter().rposition(|&b| b == b'}').unwrap_or(0)])
        );
        std::mem::replace(&mut self.raw, raw)
    }

    /// Puts back raw bytes this event had before [`Self::append_member`] or [`Self::replace_raw`] (undoing it).
    pub fn restore_raw(&mut self, raw: Bytes) {
        debug_assert!(raw.len() <= self.raw.len());
        self.raw = raw;
    }

    /// Records this copy's outcome and releases it. Dropping an event without calling this reports it failed,
    /// so the source keeps it for redelivery.
    pub fn finish(mut self, status: EventStatus) {
        if let Some(f) = self.finalizer.as_mut() {
            f.set_status(status);
        }
        if let Some(f) = self.chain_finalizer.as_mut() {
            f.set_status(status);
        }
    }

    /// Looks up a top-level field by name and returns its value if it is a string (escapes decoded), or its raw
    /// JSON text otherwise. This parses the event again; use it off the hot path (e.g. path templates that
    /// name fields other than `event`, `uid` and `time`).
    pub fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "event" => return Some(self.kind()),
            "uid" => return Some(self.uid()),
            "time" => return Some(Cow::Borrowed(self.time_raw())),
            _ => {}
        }
        let map: std::collections::HashMap<Cow<'_, str>, &RawValue> =
            serde_json::from_slice(&self.raw).ok()?;
        let v = map.get(name)?;
        let text = v.get();
        if text.starts_with('"') {
            let s: Cow<'_, str> = serde_json::from_str(text).ok()?;
            Some(Cow::Owned(s.into_owned()))
        } else {
            Some(Cow::Owned(text.to_owned()))
        }
    }

    fn str_at(&self, span: Span) -> &str {
        // The span was taken from a string that serde_json checked to be valid UTF-8.
        std::str::from_utf8(&self.raw[span.range()]).unwrap_or_default()
    }

    fn decoded(&self, span: Span) -> Cow<'_, str> {
        let s = self.str_at(span);
        if s.contains('\\') {
            let quoted = &self.raw[span.start as usize - 1..span.end as usize + 1];
            serde_json::from_slice::<String>(quoted)
                .map(Cow::Owned)
                .unwrap_or(Cow::Borrowed(s))
        } else {
            Cow::Borrowed(s)
        }
    }
}

fn classify_serde_error(e: serde_json::Error) -> InvalidEvent {
    let msg = e.to_string();
    if msg.starts_with("duplicate field `event`") {
        InvalidEvent::InvalidEvent
    } else if msg.starts_with("duplicate field `time`") {
        InvalidEvent::InvalidTime("duplicate field".into())
    } else if msg.starts_with("duplicate field `uid`") {
        InvalidEvent::InvalidUid
    } else {
        InvalidEvent::NotJson(msg)
    }
}

/// Appends `"uid":"<uid>"` as the last field of the object in `raw` and returns the new bytes and the uid span.
fn append_uid(raw: &[u8], uid: &str) -> (Bytes, Span) {
    let mut member = Vec::with_capacity(uid.len() + 8);
    member.extend_from_slice(b"\"uid\":\"");
    member.extend_from_slice(uid.as_bytes());
    member.push(b'"');
    let out = crate::integrity::chain::append_member(raw, &member);
    // The uid ends just before its closing quote and the object's closing brace.
    let end = out.len() - 2;
    (
        Bytes::from(out),
        Span {
            start: (end - uid.len()) as u32,
            end: end as u32,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<Event, InvalidEvent> {
        Event::parse(Bytes::copy_from_slice(s.as_bytes()), 1 << 20)
    }

    /// Parses `text` both ways (one reading, and parse then digest) and checks they agree on everything; the
    /// uid a missing one gets is random, so it is compared only when the text had one.
    fn assert_same_both_ways(text: &[u8]) {
        let bytes = Bytes::copy_from_slice(text);
        let mut scratch = Vec::new();
        let one = Event::parse_digested(bytes.clone(), 1 << 12, &mut scratch);
        let two = Event::parse(bytes, 1 << 12).map(|mut e| {
            e.compute_digest(&mut scratch);
            e
        });
        match (one, two) {
            (Ok(a), Ok(b)) => {
                let assigned = a.raw() != b.raw();
                if !assigned {
                    assert_eq!(
                        a.uid_raw(),
                        b.uid_raw(),
                        "{}",
                        String::from_utf8_lossy(text)
                    );
                    assert_eq!(a.digest(), b.digest(), "{}", String::from_utf8_lossy(text));
                }
                assert_eq!(a.kind(), b.kind());
                assert_eq!(a.time_raw(), b.time_raw());
                assert_eq!(a.timestamp_nanos(), b.timestamp_nanos());
                assert_eq!(a.digest().is_some(), b.digest().is_some());
            }
            (a, b) => assert_eq!(
                a.map(|e| e.raw().clone()).map_err(|e| e.to_string()),
                b.map(|e| e.raw().clone()).map_err(|e| e.to_string()),
                "{}",
                String::from_utf8_lossy(text)
            ),
        }
    }

    #[test]
    fn one_reading_agrees_with_parse_then_digest() {
        let deep = format!(
            r#"{{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z","d":{}1{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        let cases: Vec<&str> = vec![
            r#"{"event":"session.start","uid":"u-1","time":"2017-02-03T06:54:05.123Z","cmd":"a \u003c b","n":[1,2.5,{"z":null}]}"#,
            r#"  {"event":"x","uid":"u","time":"2017-02-03T06:54:05Z"}  "#,
            r#"{"event":"x","time":"2017-02-03T06:54:05Z"}"#,
            r#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05\u005a"}"#,
            r#"{"event":"x","event":"y","uid":"u","time":"2017-02-03T06:54:05Z"}"#,
            r#"{"event":"x","uid":"u","uid":"u","time":"2017-02-03T06:54:05Z"}"#,
            "{\"event\":\"x\",\"uid\":\"u\",\"time\":\"2017-02-03T06:54:05Z\",\"c\":\"a\tb\"}",
            "{\"event\":\"x\",\t\"uid\":\"u\",\"time\":\"2017-02-03T06:54:05Z\"}",
            "{\"event\":\"x\",\n\"uid\":\"u\",\"time\":\"2017-02-03T06:54:05Z\"}",
            r#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z","n":01}"#,
            r#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z","n":-0.5e+3}"#,
            r#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z","n":1e400}"#,
            r#"{"\u0065vent":"x","uid":"u","time":"2017-02-03T06:54:05Z"}"#,
            r#"{"event":5,"uid":"u","time":"2017-02-03T06:54:05Z"}"#,
            r#"{"event":"","uid":"u","time":"2017-02-03T06:54:05Z"}"#,
            r#"{"event":"x","uid":"","time":"2017-02-03T06:54:05Z"}"#,
            r#"{"event":"x","uid":"u","time":""}"#,
            r#"{"event":"x","uid":"u","time":"yesterday"}"#,
            r#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z","auditrail.integrity":{"seq":1}}"#,
            r#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z","s":"\x"}"#,
            r#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z","s":"\ud800"}"#,
            r#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z"} x"#,
            r#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z","a":tru}"#,
            r#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z","#,
            r#"["event"]"#,
            "",
            &deep,
        ];
        for case in cases {
            assert_same_both_ways(case.as_bytes());
        }
        let too_long = format!(
            r#"{{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z","p":"{}"}}"#,
            "a".repeat(1 << 12)
        );
        assert_same_both_ways(too_long.as_bytes());
    }

    proptest! {
        /// Whatever an edit does to a valid event (a byte from JSON's alphabet put in, or one taken out, at
        /// any place), both ways come to the same outcome.
        #[test]
        fn one_reading_agrees_after_random_edits(
            edits in proptest::collection::vec(
                (any::<proptest::sample::Index>(), proptest::option::of(proptest::sample::select(
                    b"{}[]:,\"\\ \t\nu0e1-+.aEtfnl\x01\xff".to_vec(),
                ))),
                1..4,
            )
        ) {
            let mut text = br#"{"event":"session.start","uid":"u-1","time":"2017-02-03T06:54:05.123Z","cmd":"a \u003c b","n":[1,2.5,{"z":null}],"k":true}"#.to_vec();
            for (at, byte) in edits {
                let i = at.index(text.len() + 1);
                match byte {
                    Some(b) => text.insert(i, b),
                    None if i < text.len() => {
                        text.remove(i);
                    }
                    None => {}
                }
            }
            assert_same_both_ways(&text);
        }
    }

    #[test]
    fn keeps_bytes_verbatim() {
        let line = r#"{"event":"session.start","uid":"u-1","time":"2017-02-03T06:54:05.000Z","n":123456789012345678901234567890,"cmd":"a \u003c b \u0026 c","x":{"y":[1,null]}}"#;
        let e = parse(line).unwrap();
        assert_eq!(e.raw().as_ref(), line.as_bytes());
        assert_eq!(e.uid(), "u-1");
        assert_eq!(e.kind(), "session.start");
        assert_eq!(e.time_raw(), "2017-02-03T06:54:05.000Z");
        assert_eq!(e.timestamp_nanos(), 1_486_104_845_000_000_000);
    }

    #[test]
    fn assigns_uuid_v7_when_uid_missing() {
        let e = parse(r#"{"event":"print","time":"2017-02-03T06:54:05Z"}"#).unwrap();
        let uid = uuid::Uuid::parse_str(&e.uid()).unwrap();
        assert_eq!(uid.get_version_num(), 7);
        let s = std::str::from_utf8(e.raw()).unwrap();
        assert_eq!(
            s,
            format!(r#"{{"event":"print","time":"2017-02-03T06:54:05Z","uid":"{uid}"}}"#)
        );
        let v: serde_json::Value = serde_json::from_str(s).unwrap();
        assert_eq!(v["uid"], uid.to_string());
    }

    #[test]
    fn accepts_every_fraction_length() {
        for t in [
            "2017-02-03T06:54:05Z",
            "2017-02-03T06:54:05.1Z",
            "2017-02-03T06:54:05.123456Z",
            "2017-02-03T06:54:05.123456789Z",
            "2017-02-03T08:54:05.5+02:00",
        ] {
            let e = parse(&format!(r#"{{"event":"x","time":"{t}"}}"#)).unwrap();
            assert_eq!(e.time_raw(), t);
        }
    }

    #[test]
    fn folds_multi_line_documents_onto_one_line() {
        let e = parse("{\n  \"event\": \"x\",\n  \"time\": \"2017-02-03T06:54:05Z\",\n  \"uid\": \"a\",\n  \"s\": \"two  spaces\"\n}\n").unwrap();
        assert_eq!(
            e.raw().as_ref(),
            br#"{"event":"x","time":"2017-02-03T06:54:05Z","uid":"a","s":"two  spaces"}"#
        );
        assert_eq!(e.uid(), "a");
    }

    #[test]
    fn names_what_is_wrong() {
        let cases = [
            ("not json", "invalid_json"),
            ("[1,2]", "not_object"),
            ("\"s\"", "not_object"),
            (r#"{"time":"2017-02-03T06:54:05Z"}"#, "missing_event"),
            (
                r#"{"event":"","time":"2017-02-03T06:54:05Z"}"#,
                "invalid_event",
            ),
            (
                r#"{"event":5,"time":"2017-02-03T06:54:05Z"}"#,
                "invalid_event",
            ),
            (r#"{"event":"x"}"#, "missing_time"),
            (r#"{"event":"x","time":"yesterday"}"#, "invalid_time"),
            (r#"{"event":"x","time":17}"#, "invalid_time"),
            (
                r#"{"event":"x","time":"2017-02-03T06:54:05Z","uid":7}"#,
                "invalid_uid",
            ),
            (
                r#"{"event":"x","event":"y","time":"2017-02-03T06:54:05Z"}"#,
                "invalid_event",
            ),
            (
                r#"{"event":"x","time":"2017-02-03T06:54:05Z""#,
                "invalid_json",
            ),
            (
                r#"{"event":"x","time":"2017-02-03T06:54:05Z"} {}"#,
                "invalid_json",
            ),
        ];
        for (input, reason) in cases {
            let err = parse(input).unwrap_err();
            assert_eq!(err.reason(), reason, "{input}: {err}");
        }
        let err = Event::parse(Bytes::from_static(b"{\"event\":\"x\"}"), 5).unwrap_err();
        assert_eq!(err.reason(), "too_long");
        assert_eq!(
            err.to_string(),
            "line is 13 bytes, over the limit of 5 (max_line_bytes)"
        );
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let err = Event::parse(
            Bytes::from_static(b"{\"event\":\"\xff\",\"time\":\"2017-02-03T06:54:05Z\"}"),
            1024,
        )
        .unwrap_err();
        assert_eq!(err.reason(), "invalid_json");
    }

    #[test]
    fn decodes_escaped_fields() {
        let e =
            parse(r#"{"event":"a\u002eb","time":"2017-02-03T06:54:05Z","uid":"x\"y"}"#).unwrap();
        assert_eq!(e.kind(), "a.b");
        assert_eq!(e.uid(), "x\"y");
        assert_eq!(e.field("event").unwrap(), "a.b");
    }

    #[test]
    fn field_lookup() {
        let e =
            parse(r#"{"event":"x","time":"2017-02-03T06:54:05Z","user":"al/ice","n":5}"#).unwrap();
        assert_eq!(e.field("user").unwrap(), "al/ice");
        assert_eq!(e.field("n").unwrap(), "5");
        assert!(e.field("nope").is_none());
    }

    #[test]
    fn internal_events_are_valid() {
        let e = Event::internal("auditrail.dropped", "AR0001W", &[("count", 5.into())]);
        assert_eq!(e.kind(), "auditrail.dropped");
        let v: serde_json::Value = serde_json::from_slice(e.raw()).unwrap();
        assert_eq!(v["count"], 5);
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[ -~\\u{80}-\\u{10ffff}]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z.]{1,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn valid_events_round_trip_verbatim(
            extra in prop::collection::btree_map("[a-z_.]{1,8}", json_value(), 0..6),
            with_uid in any::<bool>(),
            pretty in any::<bool>(),
        ) {
            let mut obj = serde_json::Map::new();
            obj.insert("event".into(), "session.start".into());
            obj.insert("time".into(), "2017-02-03T06:54:05.123Z".into());
            if with_uid { obj.insert("uid".into(), "uid-1".into()); }
            for (k, v) in extra {
                if !matches!(k.as_str(), "event" | "time" | "uid") { obj.insert(k, v); }
            }
            let compact = serde_json::to_string(&obj).unwrap();
            let text = if pretty { serde_json::to_string_pretty(&obj).unwrap() } else { compact.clone() };
            let e = parse(&text).unwrap();
            let out = std::str::from_utf8(e.raw()).unwrap();
            prop_assert!(!out.contains('\n'));
            if with_uid {
                prop_assert_eq!(out, compact.as_str());
            } else {
                prop_assert_eq!(&out[..compact.len() - 1], &compact[..compact.len() - 1]);
                let v: serde_json::Value = serde_json::from_str(out).unwrap();
                let uid = e.uid();
                prop_assert_eq!(v["uid"].as_str().unwrap(), uid.as_ref());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Event::parse(Bytes::from(bytes), 128);
        }
    }
}
