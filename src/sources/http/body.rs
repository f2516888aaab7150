//! Splits a request body into events: a JSON array, a single JSON object (pretty-printed or not), or NDJSON.
//! Each element or line is parsed on its own, so one bad line is reported by its number while the others go
//! through.

use auditrail_core::{Event, InvalidEvent};
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::sources::ingest::{Ingest, Rejected};

/// Where an event was inside the body.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// 1-based NDJSON line.
    Line(usize),
    /// 0-based array index.
    Index(usize),
    /// The whole body.
    Body,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line(l) => write!(f, "line {l}"),
            Position::Index(i) => write!(f, "array index {i}"),
            Position::Body => f.write_str("body"),
        }
    }
}

/// The events and the refusals of one body.
pub struct Parsed {
    /// Accepted events.
    pub events: Vec<Event>,
    /// Refused parts, with their positions.
    pub rejected: Vec<(Position, Rejected)>,
}

/// Parses `body`; `location` names the request in dead-letter records.
pub fn parse(body: Bytes, ingest: &Ingest, location: &str) -> Parsed {
    let mut out = Parsed {
        events: Vec::new(),
        rejected: Vec::new(),
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let reject = |out: &mut Parsed, pos: Position, error: InvalidEvent, raw: Bytes| {
        out.rejected.push((
            pos,
            Rejected {
                location: format!("{location} {pos}"),
                error,
                raw,
            },
        ));
    };
    match first {
        None => reject(
            &mut out,
            Position::Body,
            InvalidEvent::NotJson("the body is empty".into()),
            body,
        ),
        Some(b'[') => match serde_json::from_slice::<Vec<&RawValue>>(&body) {
            Ok(items) => {
                for (i, item) in items.iter().enumerate() {
                    let raw = body.slice_ref(item.get().as_bytes());
                    match ingest.parse(raw.clone()) {
                        Ok(e) => out.events.push(e),
                        Err(error) => reject(&mut out, Position::Index(i), error, raw),
                    }
                }
            }
            Err(e) => reject(
                &mut out,
                Position::Body,
                InvalidEvent::NotJson(format!(
                    "the body starts like a JSON array but is not one: {e}"
                )),
                body.clone(),
            ),
        },
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() => {
            match ingest.parse(body.clone()) {
                Ok(e) => out.events.push(e),
                Err(error) => reject(&mut out, Position::Body, error, body),
            }
        }
        Some(_) => {
            let mut start = 0;
            for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                let raw = body.slice(start..start + line.len());
                start += line.len() + 1;
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                match ingest.parse(raw.clone()) {
                    Ok(e) => out.events.push(e),
                    Err(error) => reject(&mut out, Position::Line(n + 1), error, raw),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingest() -> (tempfile::TempDir, Ingest) {
        let dir = tempfile::tempdir().unwrap();
        let i = Ingest::new("h", 1 << 20, dir.path());
        (dir, i)
    }

    const A: &str = r#"{"event":"a","time":"2017-02-03T06:54:05Z","uid":"1"}"#;
    const B: &str = r#"{"event":"b","time":"2017-02-03T06:54:05Z","uid":"2"}"#;

    #[test]
    fn object_array_ndjson() {
        let (_d, i) = ingest();
        assert_eq!(parse(Bytes::from(A), &i, "r").events.len(), 1);
        let pretty =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(A).unwrap())
                .unwrap();
        let p = parse(Bytes::from(pretty), &i, "r");
        assert_eq!(p.events.len(), 1);
        assert!(!p.events[0].raw().contains(&b'\n'));
        let p = parse(Bytes::from(format!("[{A}, {B}]")), &i, "r");
        assert_eq!(
            p.events
                .iter()
                .map(|e| e.uid().into_owned())
                .collect::<Vec<_>>(),
            ["1", "2"]
        );
        let p = parse(Bytes::from(format!("{A}\n\n{B}\n")), &i, "r");
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[1].raw().as_ref(), B.as_bytes());
    }

    #[test]
    fn bad_parts_are_located() {
        let (_d, i) = ingest();
        let p = parse(
            Bytes::from(format!("{A}\nnope\n{B}\n{{\"event\":\"x\"}}")),
            &i,
            "r",
        );
        assert_eq!(p.events.len(), 2);
        let pos: Vec<_> = p
            .rejected
            .iter()
            .map(|(p, r)| (*p, r.error.reason()))
            .collect();
        assert_eq!(
            pos,
            [
                (Position::Line(2), "invalid_json"),
                (Position::Line(4), "missing_time")
            ]
        );
        assert_eq!(p.rejected[0].1.location, "r line 2");
        let p = parse(Bytes::from(format!("[{A}, 5]")), &i, "r");
        assert_eq!(p.rejected[0].0, Position::Index(1));
        let p = parse(Bytes::from(format!("[{A}, ")), &i, "r");
        assert_eq!((p.events.len(), p.rejected[0].0), (0, Position::Body));
        assert_eq!(parse(Bytes::from("  "), &i, "r").rejected.len(), 1);
    }
}
