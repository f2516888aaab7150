//! HEC request bodies → audit events.
//!
//! `/services/collector/event`: JSON envelopes back to back, with or without whitespace between them
//! (`{"event":{...},"time":1.5}{"event":{...}}`). The envelope's `event` is the audit event: its bytes are taken
//! as they are in the body (a `RawValue`, never re-encoded). The other envelope fields (`time`, `host`, `source`,
//! `sourcetype`, `index`, `fields`) are appended under `metadata_key` when one is set, else dropped.
//! `/services/collector/raw`: one event per line; the metadata comes from the query string.
//!
//! A request is taken whole or not at all: the first bad envelope (or line) refuses the request with its HEC
//! code and its 0-based position (`invalid-event-number`), and no event of it enters the pipeline, so a client
//! that fixes or drops the bad event and resends duplicates nothing. (Splunk reports the first bad event the same
//! way; its documentation does not say what becomes of the events before it, and a sender cannot know, so it
//! resends them either way: refusing them all is what makes that resend exact.)
//!
//! gzip bodies (`Content-Encoding: gzip`) are inflated first, at most `max_decompressed_bytes`.

use std::io::Read;

use auditrail_core::{Event, InvalidEvent};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::config::OtherEvents;
use super::protocol::{self, Status};
use crate::sources::ingest::Ingest;

/// The kind given to data that is not an audit event, when it is wrapped.
pub const WRAPPED_KIND: &str = "splunk_hec.event";

/// Why a request's body was refused.
#[derive(Debug)]
pub struct Refusal {
    /// The HEC status to answer.
    pub status: Status,
    /// The 0-based position of the bad envelope or line, when one is to blame.
    pub event: Option<usize>,
    /// What exactly is wrong, for the log and the dead-letter record.
    pub detail: String,
    /// The bad part's bytes (a prefix at most), for the dead-letter record.
    pub raw: Bytes,
}

/// The events of one accepted body.
#[derive(Debug, Default)]
pub struct Parsed {
    /// In body order.
    pub events: Vec<Event>,
    /// How many of them were wrapped (not audit events themselves).
    pub wrapped: u64,
}

/// How to turn envelopes into events.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// `metadata_key`.
    pub metadata_key: Option<&'a str>,
    /// `other_events`.
    pub other: OtherEvents,
}

/// A body could not be inflated.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    /// It inflates past the limit.
    #[error("the body inflates past max_decompressed_bytes ({0} bytes)")]
    TooLarge(usize),
    /// It is not gzip.
    #[error("the body is not valid gzip: {0}")]
    Corrupt(std::io::Error),
    /// Another encoding.
    #[error("Content-Encoding {0:?} is not supported (only gzip)")]
    Unsupported(String),
}

/// Undoes `Content-Encoding` (none, `identity` or `gzip`), keeping at most `max` bytes.
pub fn inflate(body: Bytes, encoding: Option<&str>, max: usize) -> Result<Bytes, InflateError> {
    match encoding.map(str::trim) {
        None | Some("") => Ok(body),
        Some(e) if e.eq_ignore_ascii_case("identity") => Ok(body),
        Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
            // One more byte than allowed tells "exactly at the limit" from "past it".
            flate2::read::MultiGzDecoder::new(&body[..])
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(InflateError::Corrupt)?;
            if out.len() > max {
                return Err(InflateError::TooLarge(max));
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err(InflateError::Unsupported(other.to_string())),
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    host: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sourcetype: Option<&'a RawValue>,
    #[serde(borrow, default)]
    index: Option<&'a RawValue>,
    #[serde(borrow, default)]
    fields: Option<&'a RawValue>,
}

const DEAD_LETTER_PREFIX: usize = 4096;

fn refuse(status: Status, event: usize, detail: impl Into<String>, raw: &[u8]) -> Refusal {
    Refusal {
        status,
        event: Some(event),
        detail: detail.into(),
        raw: Bytes::copy_from_slice(&raw[..raw.len().min(DEAD_LETTER_PREFIX)]),
    }
}

fn no_data() -> Refusal {
    Refusal {
        status: protocol::NO_DATA,
        event: None,
        detail: "the body is empty".into(),
        raw: Bytes::new(),
    }
}

/// Parses an `/event` body.
pub fn parse_events(body: &Bytes, ingest: &Ingest, opts: Options<'_>) -> Result<Parsed, Refusal> {
    let mut out = Parsed::default();
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>();
    let mut n = 0usize;
    loop {
        let at = stream.byte_offset();
        let rest = &body[at..];
        let Some(first) = rest.iter().position(|b| !b.is_ascii_whitespace()) else {
            break;
        };
        // A serde struct also reads a JSON array positionally: only objects are envelopes.
        if rest[first] != b'{' {
            return Err(refuse(
                protocol::INVALID_DATA_FORMAT,
                n,
                format!("envelope {n} is not a JSON object"),
                &rest[first..],
            ));
        }
        let raw = match stream.next() {
            Some(Ok(raw)) => raw,
            Some(Err(e)) => {
                return Err(refuse(
                    protocol::INVALID_DATA_FORMAT,
                    n,
                    format!("envelope {n} is not valid JSON: {e}"),
                    &rest[first..],
                ))
            }
            None => break,
        };
        let envelope: Envelope<'_> = serde_json::from_str(raw.get()).map_err(|e| {
            refuse(
                protocol::INVALID_DATA_FORMAT,
                n,
                format!("envelope {n}: {e}"),
                raw.get().as_bytes(),
            )
        })?;
        out.push(envelope_event(body, &envelope, n, ingest, opts, raw)?);
        n += 1;
    }
    if n == 0 {
        return Err(no_data());
    }
    Ok(out)
}

impl Parsed {
    fn push(&mut self, (event, wrapped): (Event, bool)) {
        self.wrapped += u64::from(wrapped);
        self.events.push(event);
    }
}

fn envelope_event(
    body: &Bytes,
    env: &Envelope<'_>,
    n: usize,
    ingest: &Ingest,
    opts: Options<'_>,
    whole: &RawValue,
) -> Result<(Event, bool), Refusal> {
    let bad = |status: Status, detail: String| refuse(status, n, detail, whole.get().as_bytes());
    let Some(event) = env.event else {
        return Err(bad(
            protocol::EVENT_FIELD_REQUIRED,
            format!("envelope {n} has no `event` (or it is null)"),
        ));
    };
    let text = event.get();
    if text == "\"\"" || is_empty_object(text) {
        return Err(bad(
            protocol::EVENT_FIELD_BLANK,
            format!("envelope {n}: `event` is blank"),
        ));
    }
    let seconds = match env.time {
        None => None,
        Some(t) => Some(epoch_seconds(t.get()).ok_or_else(|| {
            bad(
                protocol::INVALID_DATA_FORMAT,
                format!(
                    "envelope {n}: `time` must be epoch seconds (a number or a numeric string), found {}",
                    t.get()
                ),
            )
        })?),
    };
    if let Some(f) = env.fields {
        check_fields(f.get()).map_err(|why| {
            bad(
                protocol::INDEXED_FIELDS_ERROR,
                format!("envelope {n}: `fields` {why}"),
            )
        })?;
    }
    let meta = opts.metadata_key.map(|key| {
        let mut m = serde_json::Map::new();
        for (name, v) in [
            ("time", env.time),
            ("host", env.host),
            ("source", env.source),
            ("sourcetype", env.sourcetype),
            ("index", env.index),
            ("fields", env.fields),
        ] {
            if let Some(v) = v {
                // Re-parsed from text that already parsed: cannot fail.
                m.insert(
                    name.into(),
                    serde_json::from_str(v.get()).unwrap_or_default(),
                );
            }
        }
        member(key, &serde_json::Value::Object(m))
    });
    let event_bytes = body.slice_ref(text.as_bytes());
    let own = match &meta {
        None => event_bytes.clone(),
        Some(m) if text.starts_with('{') => Bytes::from(
            auditrail_core::integrity::chain::append_member(&event_bytes, m.as_bytes()),
        ),
        Some(_) => event_bytes.clone(),
    };
    match ingest.parse(own) {
        Ok(e) => Ok((e, false)),
        Err(error) => match (opts.other, &error) {
            (OtherEvents::Wrap, e) if !matches!(e, InvalidEvent::TooLong { .. }) => {
                wrap(text, seconds, meta.as_deref(), ingest)
                    .map(|e| (e, true))
                    .map_err(|e| bad(protocol::INVALID_DATA_FORMAT, format!("envelope {n}: {e}")))
            }
            _ => Err(bad(
                protocol::INVALID_DATA_FORMAT,
                format!("envelope {n}: `event` is not an audit event: {error}"),
            )),
        },
    }
}

/// Query-string metadata of a `/raw` request.
#[derive(Debug, Default, Deserialize)]
pub struct RawQuery {
    /// `channel`.
    pub channel: Option<String>,
    /// `time`, epoch seconds.
    pub time: Option<String>,
    /// `host`.
    pub host: Option<String>,
    /// `source`.
    pub source: Option<String>,
    /// `sourcetype`.
    pub sourcetype: Option<String>,
    /// `index`.
    pub index: Option<String>,
    /// `token`: never accepted (tokens in URLs end up in access logs).
    pub token: Option<String>,
}

/// Parses a `/raw` body: one event per line (`\n` or `\r\n`), blank lines skipped.
pub fn parse_raw(
    body: &Bytes,
    query: &RawQuery,
    ingest: &Ingest,
    opts: Options<'_>,
) -> Result<Parsed, Refusal> {
    let seconds = match &query.time {
        None => None,
        Some(t) => Some(epoch_seconds(t).ok_or_else(|| Refusal {
            status: protocol::INVALID_DATA_FORMAT,
            event: None,
            detail: format!("query `time` must be epoch seconds, found {t:?}"),
            raw: Bytes::new(),
        })?),
    };
    let meta = opts.metadata_key.map(|key| {
        let mut m = serde_json::Map::new();
        if let Some(s) = seconds {
            m.insert("time".into(), serde_json::json!(s));
        }
        for (name, v) in [
            ("host", &query.host),
            ("source", &query.source),
            ("sourcetype", &query.sourcetype),
            ("index", &query.index),
        ] {
            if let Some(v) = v {
                m.insert(name.into(), serde_json::Value::String(v.clone()));
            }
        }
        member(key, &serde_json::Value::Object(m))
    });
    let mut out = Parsed::default();
    let mut start = 0;
    let mut n = 0;
    for line in body.split(|&b| b == b'\n') {
        let from = start;
        start += line.len() + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let raw = body.slice(from..from + line.len());
        let own = match &meta {
            Some(m) if raw.trim_ascii_start().starts_with(b"{") => Bytes::from(
                auditrail_core::integrity::chain::append_member(&raw, m.as_bytes()),
            ),
            _ => raw.clone(),
        };
        let event = match ingest.parse(own) {
            Ok(e) => (e, false),
            Err(error) => {
                let bad = |detail: String| refuse(protocol::INVALID_DATA_FORMAT, n, detail, &raw);
                match (opts.other, &error) {
                    (OtherEvents::Wrap, e) if !matches!(e, InvalidEvent::TooLong { .. }) => {
                        let text = std::str::from_utf8(&raw)
                            .map_err(|_| bad(format!("line {n} is not UTF-8")))?;
                        let data = serde_json::to_string(text).unwrap_or_default();
                        let event = wrap(&data, seconds, meta.as_deref(), ingest)
                            .map_err(|e| bad(format!("line {n}: {e}")))?;
                        (event, true)
                    }
                    _ => return Err(bad(format!("line {n} is not an audit event: {error}"))),
                }
            }
        };
        out.push(event);
        n += 1;
    }
    if n == 0 {
        return Err(no_data());
    }
    Ok(out)
}

/// `"key":{...}`.
fn member(key: &str, value: &serde_json::Value) -> String {
    format!(
        "{}:{}",
        serde_json::Value::String(key.into()),
        serde_json::to_string(value).unwrap_or_default()
    )
}

/// `{"event":"splunk_hec.event","time":"<RFC 3339>","data":<data>[,<meta>]}`, parsed.
fn wrap(
    data: &str,
    seconds: Option<f64>,
    meta: Option<&str>,
    ingest: &Ingest,
) -> Result<Event, InvalidEvent> {
    let time = seconds
        .and_then(|s| {
            let nanos = (s * 1e9).round();
            (nanos.is_finite() && nanos.abs() < i64::MAX as f64)
                .then(|| chrono::DateTime::from_timestamp_nanos(nanos as i64))
        })
        .unwrap_or_else(chrono::Utc::now);
    let time = time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let mut raw = format!(r#"{{"event":"{WRAPPED_KIND}","time":"{time}","data":{data}"#);
    if let Some(m) = meta {
        raw.push(',');
        raw.push_str(m);
    }
    raw.push('}');
    ingest.parse(Bytes::from(raw))
}

fn is_empty_object(text: &str) -> bool {
    text.strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .is_some_and(|inner| inner.trim().is_empty())
}

/// Epoch seconds from a JSON number or numeric string (HEC allows both).
fn epoch_seconds(text: &str) -> Option<f64> {
    let t = text.trim();
    let t = t
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t);
    t.parse::<f64>().ok().filter(|s| s.is_finite())
}

/// HEC's indexed fields: a flat object whose values are strings, numbers or arrays of them.
fn check_fields(text: &str) -> Result<(), &'static str> {
    // Owned keys: a key with an escape (`"a\\"b"`) cannot be borrowed from the text.
    let map: std::collections::HashMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|_| "must be a JSON object")?;
    for v in map.values() {
        let v = v.get().trim_start();
        if v.starts_with('{') {
            return Err("must be flat: a value is an object");
        }
        if v.starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(v).map_err(|_| "is not valid")?;
            if items
                .iter()
                .any(|i| matches!(i.get().trim_start().as_bytes().first(), Some(b'{' | b'[')))
            {
                return Err("must be flat: an array holds an object or an array");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn ingest() -> (tempfile::TempDir, Ingest) {
        let dir = tempfile::tempdir().unwrap();
        let i = Ingest::new("hec", 1 << 20, dir.path());
        (dir, i)
    }

    const OPTS: Options<'static> = Options {
        metadata_key: None,
        other: OtherEvents::Wrap,
    };
    const A: &str = r#"{"event":"user.login","time":"2017-02-03T06:54:05Z","uid":"a"}"#;

    #[test]
    fn envelopes_back_to_back_keep_the_event_bytes() {
        let (_d, i) = ingest();
        let inner = r#"{ "event" : "user.login","time":"2017-02-03T06:54:05Z", "uid":"a" }"#;
        let body = Bytes::from(format!(
            "{{\"time\":1.5,\"host\":\"h\",\"event\":{inner}}}{{\"event\":{A}}}\n\r\n {{\"event\":{A}}}"
        ));
        let p = parse_events(&body, &i, OPTS).unwrap();
        assert_eq!(p.events.len(), 3);
        assert_eq!(p.events[0].raw().as_ref(), inner.as_bytes());
        assert_eq!(p.events[1].raw().as_ref(), A.as_bytes());
        assert_eq!(p.wrapped, 0);
    }

    #[test]
    fn metadata_goes_under_the_key() {
        let (_d, i) = ingest();
        let body = Bytes::from(format!(
            r#"{{"time":"1485.25","host":"h1","sourcetype":"teleport:audit","fields":{{"k":"v"}},"event":{A}}}"#
        ));
        let opts = Options {
            metadata_key: Some("hec"),
            ..OPTS
        };
        let p = parse_events(&body, &i, opts).unwrap();
        let v: serde_json::Value = serde_json::from_slice(p.events[0].raw()).unwrap();
        assert_eq!(v["hec"]["host"], "h1");
        assert_eq!(v["hec"]["fields"]["k"], "v");
        assert_eq!(v["uid"], "a");
    }

    #[test]
    fn errors_name_the_first_bad_envelope() {
        let (_d, i) = ingest();
        let at = |body: String| {
            let r = parse_events(&Bytes::from(body), &i, OPTS).unwrap_err();
            (r.status.code, r.event)
        };
        assert_eq!(
            at(format!("{{\"event\":{A}}}{{\"host\":\"x\"}}")),
            (12, Some(1))
        );
        assert_eq!(
            at(format!("{{\"event\":{A}}}{{\"event\":null}}")),
            (12, Some(1))
        );
        assert_eq!(at("{\"event\":\"\"}".into()), (13, Some(0)));
        assert_eq!(at("{\"event\":{}}".into()), (13, Some(0)));
        assert_eq!(at(format!("{{\"event\":{A}}}{{\"event\":")), (6, Some(1)));
        assert_eq!(at(format!("[{{\"event\":{A}}}]")), (6, Some(0)));
        assert_eq!(
            at("{\"event\":\"x\",\"time\":\"soon\"}".into()),
            (6, Some(0))
        );
        assert_eq!(
            at("{\"event\":\"x\",\"fields\":{\"a\":{\"b\":1}}}".into()),
            (15, Some(0))
        );
        let r = parse_events(&Bytes::from(" \n "), &i, OPTS).unwrap_err();
        assert_eq!((r.status.code, r.event), (5, None));
        let strict = Options {
            other: OtherEvents::Reject,
            ..OPTS
        };
        let r = parse_events(&Bytes::from("{\"event\":\"Hello\"}"), &i, strict).unwrap_err();
        assert_eq!(r.status.code, 6);
    }

    #[test]
    fn indexed_fields_are_checked_whatever_their_keys_hold() {
        assert_eq!(check_fields(r#"{"a\"b":"v","c\u00e9":[1,"x"]}"#), Ok(()));
        assert_eq!(check_fields(r#"{"k":1.5,"l":"s"}"#), Ok(()));
        assert!(check_fields(r#"{"a\"b":{"c":1}}"#).is_err());
        assert!(check_fields(r#"{"a":[[1]]}"#).is_err());
        assert!(check_fields(r#"["a"]"#).is_err());
    }

    #[test]
    fn other_data_is_wrapped() {
        let (_d, i) = ingest();
        let body = Bytes::from(r#"{"event":"Hello, world!","time":1426279439.5}"#);
        let p = parse_events(&body, &i, OPTS).unwrap();
        assert_eq!(p.wrapped, 1);
        let e = &p.events[0];
        assert_eq!(e.kind(), WRAPPED_KIND);
        let v: serde_json::Value = serde_json::from_slice(e.raw()).unwrap();
        assert_eq!(v["data"], "Hello, world!");
        assert_eq!(v["time"], "2015-03-13T20:43:59.500Z");
    }

    #[test]
    fn raw_lines() {
        let (_d, i) = ingest();
        let q = RawQuery::default();
        let p = parse_raw(&Bytes::from(format!("{A}\r\n\nplain text\n")), &q, &i, OPTS).unwrap();
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[0].raw().as_ref(), A.as_bytes());
        assert_eq!(p.wrapped, 1);
        let strict = Options {
            other: OtherEvents::Reject,
            ..OPTS
        };
        let r = parse_raw(&Bytes::from(format!("{A}\nplain\n")), &q, &i, strict).unwrap_err();
        assert_eq!((r.status.code, r.event), (6, Some(1)));
        assert_eq!(
            parse_raw(&Bytes::from("\n"), &q, &i, OPTS)
                .unwrap_err()
                .status
                .code,
            5
        );
    }

    #[test]
    fn gzip_is_bounded() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![b' '; 10_000]).unwrap();
        let body = Bytes::from(gz.finish().unwrap());
        assert_eq!(
            inflate(body.clone(), Some("gzip"), 10_000).unwrap().len(),
            10_000
        );
        assert!(matches!(
            inflate(body, Some("gzip"), 9_999),
            Err(InflateError::TooLarge(_))
        ));
        assert!(matches!(
            inflate(Bytes::from("nope"), Some("gzip"), 100),
            Err(InflateError::Corrupt(_))
        ));
        assert!(matches!(
            inflate(Bytes::from("x"), Some("br"), 100),
            Err(InflateError::Unsupported(_))
        ));
    }
}
