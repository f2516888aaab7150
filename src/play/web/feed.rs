//! What the browser players are fed: the recording as a clean asciicast v2 text (whatever the file's
//! version and damage), the problems found on the way, and the session's events on the recording's
//! timeline.
//!
//! The browser's player (asciinema-player) stops at the first line it cannot parse; feeding it only the
//! events the reader accepted, in v2 form with absolute times, lets it show everything readable, while the
//! problems (`file:line: what`) are shown beside it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use serde::Serialize;

use crate::play::cast::{CastReader, Code, OpenError, Problem};
use crate::play::index::MAX_PROBLEMS;

/// Writes `path` as a clean asciicast v2 text to `out`, in constant memory; returns the problems (at most
/// [`MAX_PROBLEMS`]), the total count, and the duration.
pub fn clean_cast(
    path: &Path,
    out: &mut impl Write,
) -> Result<(Vec<Problem>, u64, f64), OpenError> {
    let mut r = CastReader::open(path)?;
    let h = r.header().clone();
    let io = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut header = format!(
        "{{\"version\": 2, \"width\": {}, \"height\": {}",
        h.cols, h.rows
    );
    if let Some(t) = h.timestamp {
        header.push_str(&format!(", \"timestamp\": {t}"));
    }
    writeln!(out, "{header}}}").map_err(io)?;
    let mut problems = Vec::new();
    let mut last = 0.0;
    let mut line = Vec::with_capacity(64 << 10);
    while let Some(e) = r.next_event() {
        match e {
            Ok(e) => {
                last = e.time;
                let code = match &e.code {
                    Code::Output => "o",
                    Code::Input => "i",
                    Code::Marker => "m",
                    Code::Resize(..) => "r",
                    // v2 has no exit event; other codes are nothing a player shows.
                    Code::Exit | Code::Other(_) => continue,
                };
                line.clear();
                let _ = write!(line, "[{:.6}, \"{code}\", \"", e.time);
                crate::recording::cast::escape_str(&e.data, &mut line);
                line.extend_from_slice(b"\"]\n");
                out.write_all(&line).map_err(io)?;
            }
            Err(p) => {
                if problems.len() < MAX_PROBLEMS {
                    problems.push(p);
                }
            }
        }
    }
    // An empty event just after the last: a browser player shows the events before the time it seeks to,
    // so this lets it seek to (and open on) the screen after the last event.
    writeln!(out, "[{:.6}, \"o\", \"\"]", last + END_PAD).map_err(io)?;
    Ok((problems, r.problems(), last))
}

/// How far after the last event the feed's closing empty event is.
pub const END_PAD: f64 = 0.01;

/// One event on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEvent {
    /// Seconds since the recording's start (clamped to 0).
    pub t: f64,
    /// The event's `event` field.
    pub event: String,
    /// Its `code`, when there.
    pub code: Option<String>,
    /// A one-line summary of what it says.
    pub text: String,
}

/// Most events put on one timeline.
pub const MAX_EVENTS: usize = 5000;
/// Most bytes of an events file read.
pub const MAX_EVENTS_BYTES: u64 = 64 << 20;
/// Most characters of one summary.
const MAX_TEXT: usize = 200;

/// The events of `<sid>.events.ndjson` placed on the recording's timeline (`start` = the cast header's
/// Unix seconds), in time order; lines that are not JSON events are counted in the second value.
pub fn timeline(events: &Path, start: Option<i64>) -> (Vec<TimelineEvent>, u64) {
    let Ok(f) = std::fs::File::open(events) else {
        return (Vec::new(), 0);
    };
    let mut out = Vec::new();
    let mut skipped = 0u64;
    for line in BufReader::new(f.take(MAX_EVENTS_BYTES)).split(b'\n') {
        let Ok(line) = line else { break };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
            skipped += 1;
            continue;
        };
        let Some(event) = v["event"].as_str() else {
            skipped += 1;
            continue;
        };
        let at = v["time"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis() as f64 / 1000.0);
        let t = match (at, start) {
            (Some(at), Some(s)) => (at - s as f64).max(0.0),
            _ => 0.0,
        };
        let mut text = event.to_string();
        for k in [
            "command",
            "program",
            "path",
            "argv",
            "login",
            "kind",
            "reason",
            "exit_code",
            "exitCode",
        ] {
            match &v[k] {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => {
                    text.push_str(&format!(" {k}={s}"));
                }
                other => text.push_str(&format!(" {k}={other}")),
            }
        }
        if text.chars().count() > MAX_TEXT {
            text = text.chars().take(MAX_TEXT).collect::<String>() + "…";
        }
        out.push(TimelineEvent {
            t,
            event: event.to_string(),
            code: v["code"].as_str().map(str::to_string),
            text,
        });
        if out.len() >= MAX_EVENTS {
            break;
        }
    }
    out.sort_by(|a, b| a.t.total_cmp(&b.t));
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_v3_cast_becomes_clean_v2_with_its_problems() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.cast");
        std::fs::write(
            &p,
            "{\"version\": 3, \"term\": {\"cols\": 20, \"rows\": 5}, \"timestamp\": 100}\n[0.5, \"o\", \"a\\\"\"]\n{bad\n[0.5, \"o\", \"b\"]\n[0.1, \"x\", \"0\"]\n[0.2, \"o\"",
        )
        .unwrap();
        let mut out = Vec::new();
        let (problems, count, last) = clean_cast(&p, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"version\": 2, \"width\": 20, \"height\": 5, \"timestamp\": 100}\n[0.500000, \"o\", \"a\\\"\"]\n[1.000000, \"o\", \"b\"]\n[1.110000, \"o\", \"\"]\n"
        );
        assert_eq!(count, 2);
        assert_eq!(problems[0].line, 3);
        assert_eq!(problems[1].line, 6);
        assert_eq!(last, 1.1);
    }

    #[test]
    fn events_land_at_their_offset_from_the_start() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.events.ndjson");
        std::fs::write(
            &p,
            "{\"event\":\"exec\",\"time\":\"1970-01-01T00:01:52.500Z\",\"command\":\"ls\"}\nnope\n{\"event\":\"session.start\",\"time\":\"1970-01-01T00:01:40Z\"}\n",
        )
        .unwrap();
        let (ev, skipped) = timeline(&p, Some(100));
        assert_eq!(skipped, 1);
        assert_eq!(ev[0].event, "session.start");
        assert_eq!(ev[1].t, 12.5);
        assert_eq!(ev[1].text, "exec command=ls");
    }
}
