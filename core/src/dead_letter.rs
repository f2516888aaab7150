//! Dead-letter files: where input that cannot be accepted, or events a destination refuses for good, are kept
//! with the reason, so that nothing is lost silently and an operator can fix and replay them.
//!
//! One NDJSON file per component, appended to; each record names the component, where the data came from, the
//! reason label (as in the metrics), a human message, and the data itself (as text; invalid UTF-8 is replaced).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// Longest `raw` kept in a dead-letter record; longer data is cut and marked `raw_truncated`.
pub const MAX_RAW_BYTES: usize = 1 << 20;

/// One thing that could not be accepted or delivered.
#[derive(Debug, Serialize)]
pub struct DeadLetterRecord<'a> {
    /// When it was dead-lettered (RFC 3339, UTC).
    pub time: String,
    /// The source or sink that refused it.
    pub component: &'a str,
    /// Where it came from: `file:line`, an http request, a bulk item.
    pub location: String,
    /// Stable reason label.
    pub reason: &'a str,
    /// What was wrong, for a person.
    pub message: String,
    /// The data as received (lossy UTF-8, at most [`MAX_RAW_BYTES`]).
    pub raw: String,
    /// Whether `raw` was cut.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub raw_truncated: bool,
}

impl<'a> DeadLetterRecord<'a> {
    /// A record stamped now.
    pub fn new(
        component: &'a str,
        location: String,
        reason: &'a str,
        message: String,
        raw: &[u8],
    ) -> Self {
        let cut = raw.len() > MAX_RAW_BYTES;
        let raw = &raw[..raw.len().min(MAX_RAW_BYTES)];
        DeadLetterRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            component,
            location,
            reason,
            message,
            raw: String::from_utf8_lossy(raw).into_owned(),
            raw_truncated: cut,
        }
    }
}

/// An append-only dead-letter file, opened on first use.
pub struct DeadLetter {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl DeadLetter {
    /// A dead-letter file at `path` (created with its directory when the first record comes).
    pub fn new(path: PathBuf) -> DeadLetter {
        DeadLetter {
            path,
            file: Mutex::new(None),
        }
    }

    /// Where the records go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records and flushes them to the OS before returning.
    pub fn write(&self, records: &[DeadLetterRecord<'_>]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(records.len() * 256);
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            *guard = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        guard.as_mut().expect("opened above").write_all(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_ndjson_records() {
        let dir = std::env::temp_dir().join(format!("auditrail-dl-{}", std::process::id()));
        let dl = DeadLetter::new(dir.join("sub/x.ndjson"));
        dl.write(&[DeadLetterRecord::new(
            "src",
            "f.log:3".into(),
            "invalid_json",
            "bad".into(),
            b"{\xff",
        )])
        .unwrap();
        dl.write(&[DeadLetterRecord::new(
            "src",
            "f.log:4".into(),
            "too_long",
            "long".into(),
            &vec![b'a'; MAX_RAW_BYTES + 1],
        )])
        .unwrap();
        let text = std::fs::read_to_string(dl.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["location"], "f.log:3");
        assert_eq!(lines[0]["raw"], "{\u{fffd}");
        assert_eq!(lines[1]["raw_truncated"], true);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
