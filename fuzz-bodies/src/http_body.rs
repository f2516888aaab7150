//! Untrusted request bodies → the http source's body splitter (JSON array, single object or NDJSON): must never
//! panic; every array element or non-blank line is accounted for, exactly once and in order, as an event or as
//! a refusal at its position (the whole body when it is neither); a refusal carries the part's own bytes and
//! the error parsing that part alone gives; an accepted part is what parsing it alone accepts; and no part over
//! the per-event limit is ever accepted.
//!
//! Input layout (see [`http_body_input`]): one byte choosing the per-event limit, `(b + 1) * 32` bytes, then the
//! body.

use auditrail::sources::http::body::{parse, Position};
use auditrail::sources::ingest::Ingest;
use auditrail_core::{Event, InvalidEvent};
use bytes::Bytes;
use serde_json::value::RawValue;

/// The parts the body must be split into, worked out independently of the splitter.
fn expected_parts(body: &Bytes) -> Vec<(Position, Bytes)> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        None => vec![(Position::Body, body.clone())],
        Some(b'[') => match serde_json::from_slice::<Vec<&RawValue>>(body) {
            Ok(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Position::Index(i), body.slice_ref(v.get().as_bytes())))
                .collect(),
            Err(_) => vec![(Position::Body, body.clone())],
        },
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => {
            vec![(Position::Body, body.clone())]
        }
        Some(_) => {
            let mut parts = Vec::new();
            let mut start = 0;
            for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                if !line.iter().all(|b| b.is_ascii_whitespace()) {
                    parts.push((Position::Line(n + 1), body.slice(start..start + line.len())));
                }
                start += line.len() + 1;
            }
            parts
        }
    }
}

/// The `http_body` target.
pub fn http_body(input: &[u8]) {
    let Some((&limit, body)) = input.split_first() else {
        return;
    };
    let max_line = (usize::from(limit) + 1) * 32;
    // Dead letters would go under this directory; parsing alone never writes them.
    let ingest = Ingest::new("fuzz", max_line, std::path::Path::new("/nonexistent"));
    let body = Bytes::copy_from_slice(body);
    let parsed = parse(body.clone(), &ingest, "fuzz request");
    let parts = expected_parts(&body);
    assert_eq!(
        parsed.events.len() + parsed.rejected.len(),
        parts.len(),
        "every part accounted for once"
    );
    // Neither an array nor an object: the body as a whole is refused.
    let whole_refused = body.iter().all(|b| b.is_ascii_whitespace())
        || (parts.len() == 1
            && parts[0].0 == Position::Body
            && body.trim_ascii_start().starts_with(b"["));
    let mut events = parsed.events.iter();
    let mut rejected = parsed.rejected.iter().peekable();
    for (pos, part) in &parts {
        let alone = Event::parse(part.clone(), max_line);
        if rejected.peek().is_some_and(|(p, _)| p == pos) {
            let (_, r) = rejected.next().unwrap();
            assert_eq!(r.raw, *part, "{pos}: a refusal carries the part's bytes");
            assert_eq!(r.location, format!("fuzz request {pos}"));
            if whole_refused {
                assert!(
                    matches!(r.error, InvalidEvent::NotJson(_)),
                    "{pos}: {:?}",
                    r.error
                );
            } else {
                assert_eq!(
                    Err(&r.error),
                    alone.as_ref().map(|_| ()),
                    "{pos}: the part's own error"
                );
            }
        } else {
            let e = events
                .next()
                .unwrap_or_else(|| panic!("{pos}: neither accepted nor refused"));
            assert!(
                part.len() <= max_line,
                "{pos}: accepted over the limit of {max_line}"
            );
            let a = alone
                .unwrap_or_else(|err| panic!("{pos}: accepted, but alone it is refused: {err}"));
            assert_eq!(e.kind(), a.kind(), "{pos}");
            assert_eq!(e.timestamp_nanos(), a.timestamp_nanos(), "{pos}");
            assert!(!e.raw().contains(&b'\n'), "{pos}: an event is one line");
            assert_eq!(e.source(), Some("fuzz"), "{pos}: tagged with its source");
        }
    }
    assert!(
        rejected.next().is_none(),
        "refusals in part order, each at a part"
    );
    assert!(events.next().is_none());
}

/// The input that [`http_body`] reads as `body` with a per-event limit of `(limit + 1) * 32` bytes.
pub fn http_body_input(limit: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![limit];
    out.extend_from_slice(body);
    out
}
