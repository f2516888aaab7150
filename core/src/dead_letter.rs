//! Dead-letter files: where input that cannot be accepted, or events a destination refuses for good, are kept
//! with the reason, so that nothing is lost silently and an operator can fix and replay them.
//!
//! One NDJSON file per component, appended to; each record names the component, where the data came from, the
//! reason label (as in the metrics), a human message, and the data itself (as text; invalid UTF-8 is replaced).
//!
//! The files are bounded ([`DeadLetterConfig`]): at `max_size` the file is rotated, `max_files` are kept, and
//! the records of the file rotation removes are counted in `auditrail_dead_letter_rotated_lost_total{component}`,
//! logged as a warning, and reported in an `auditrail.dead_letter_lost` event ([`DeadLetter::loss_report`]),
//! which the pipeline sends where the component's events go. Files are created `0600` and directories `0700`.

mod config;
mod rotation;

pub use config::{DeadLetterConfig, MIN_MAX_SIZE};

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use metrics::Counter;
use serde::Serialize;

use crate::event::Event;
use crate::private_fs;

/// The `event` of the report of dead-letter records lost by rotation.
pub const LOST_EVENT: &str = "auditrail.dead_letter_lost";
/// Its `code`.
pub const LOST_CODE: &str = "AR0006W";

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

/// An append-only, rotated dead-letter file, opened on first use.
pub struct DeadLetter {
    path: PathBuf,
    component: String,
    limits: DeadLetterConfig,
    file: Mutex<Option<Current>>,
    lost: Counter,
    lost_total: AtomicU64,
    unreported: AtomicU64,
}

/// The file being written and how many bytes it holds.
struct Current {
    file: File,
    size: u64,
}

impl DeadLetter {
    /// A dead-letter file at `path` (created with its directory when the first record comes) with the default
    /// limits; the component is named after the file (`es.ndjson` → `es`).
    pub fn new(path: PathBuf) -> DeadLetter {
        let component = path
            .file_name()
            .and_then(|n| n.to_str())
            .map_or("unknown", |n| n.strip_suffix(".ndjson").unwrap_or(n))
            .to_string();
        DeadLetter::bounded(&component, path, DeadLetterConfig::default())
    }

    /// A dead-letter file at `path` for `component`, rotated as `limits` say.
    pub fn bounded(component: &str, path: PathBuf, limits: DeadLetterConfig) -> DeadLetter {
        let lost = metrics::counter!("auditrail_dead_letter_rotated_lost_total", "component" => component.to_string());
        lost.increment(0);
        DeadLetter {
            path,
            component: component.to_string(),
            limits,
            file: Mutex::new(None),
            lost,
            lost_total: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
        }
    }

    /// Where the records go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits it rotates by.
    pub fn limits(&self) -> DeadLetterConfig {
        self.limits
    }

    /// Records removed by rotation since this handle was made (also in the metric).
    pub fn lost_total(&self) -> u64 {
        self.lost_total.load(Ordering::Acquire)
    }

    /// Appends records and hands them to the OS before returning, rotating the file whenever the next record
    /// would take it past `max_size` (a record larger than `max_size` goes alone in a file).
    pub fn write(&self, records: &[DeadLetterRecord<'_>]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(records.len() * 256);
        let mut ends = Vec::with_capacity(records.len());
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
            ends.push(buf.len());
        }
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.open_first()?);
        }
        let max = self.limits.max_size.0;
        // `size`: the current file's bytes, counting those of `buf[written..begin]` not yet written to it.
        let (mut written, mut begin) = (0usize, 0usize);
        let mut size = guard.as_ref().expect("opened above").size;
        for end in ends {
            let len = (end - begin) as u64;
            if size > 0 && size + len > max {
                // What comes before this record fits: write it, then start a new file with this record.
                let cur = guard.as_mut().expect("opened above");
                cur.file.write_all(&buf[written..begin])?;
                *guard = None;
                self.rotate()?;
                *guard = Some(self.open_current()?);
                written = begin;
                size = 0;
            }
            size += len;
            begin = end;
        }
        let cur = guard.as_mut().expect("opened above");
        cur.file.write_all(&buf[written..])?;
        cur.size = size;
        Ok(())
    }

    /// An `auditrail.dead_letter_lost` event for the records rotation removed and no report has named yet.
    pub fn loss_report(&self) -> Option<Event> {
        let count = self.take_unreported();
        (count > 0).then(|| self.loss_event(count))
    }

    /// The records rotation removed since the last call (or [`Self::loss_report`]).
    pub fn take_unreported(&self) -> u64 {
        self.unreported.swap(0, Ordering::AcqRel)
    }

    /// An `auditrail.dead_letter_lost` event saying `count` records of this component were lost by rotation.
    pub fn loss_event(&self, count: u64) -> Event {
        Event::internal(
            LOST_EVENT,
            LOST_CODE,
            &[
                ("component", self.component.as_str().into()),
                ("count", count.into()),
                (
                    "reason",
                    "dead-letter file removed by rotation ([dead_letter] max_size, max_files)"
                        .into(),
                ),
                ("path", self.path.display().to_string().into()),
            ],
        )
    }

    /// Opens the file at first use, removing files beyond `max_files` left by an earlier, larger setting.
    fn open_first(&self) -> io::Result<Current> {
        if let Some(dir) = self.path.parent() {
            private_fs::create_dir_all(dir)?;
        }
        let lost = rotation::prune_beyond(&self.path, self.limits.max_files)?;
        self.count_lost(lost, &rotation::numbered(&self.path, self.limits.max_files));
        self.open_current()
    }

    fn open_current(&self) -> io::Result<Current> {
        let file = private_fs::open_options()
            .create(true)
            .append(true)
            .open(&self.path)?;
        // A file an older version made with the umask's mode becomes private too.
        private_fs::make_private(&file)?;
        let size = file.metadata()?.len();
        Ok(Current { file, size })
    }

    fn rotate(&self) -> io::Result<()> {
        let removed = rotation::numbered(&self.path, self.limits.max_files.saturating_sub(1));
        let lost = rotation::rotate(&self.path, self.limits.max_files)?;
        self.count_lost(lost, &removed);
        Ok(())
    }

    fn count_lost(&self, lost: u64, removed: &Path) {
        if lost == 0 {
            return;
        }
        self.lost.increment(lost);
        let total = self.lost_total.fetch_add(lost, Ordering::AcqRel) + lost;
        self.unreported.fetch_add(lost, Ordering::AcqRel);
        tracing::warn!(
            component = %self.component,
            removed = %removed.display(),
            records = lost,
            lost_total = total,
            max_size = self.limits.max_size.0,
            max_files = self.limits.max_files,
            "dead-letter file rotated out: its records are lost (raise [dead_letter] max_size or max_files to keep more)"
        );
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

    fn record(i: usize, raw: &[u8]) -> DeadLetterRecord<'static> {
        let mut r = DeadLetterRecord::new("src", format!("{i:06}"), "x", "m".into(), raw);
        r.time = "2026-01-01T00:00:00.000Z".into();
        r
    }

    /// Every file of `path` kept by rotation, oldest first, with its lines.
    fn kept(path: &Path, max_files: u32) -> Vec<(PathBuf, Vec<String>)> {
        (0..max_files + 2)
            .rev()
            .map(|n| rotation::numbered(path, n))
            .filter(|p| p.exists())
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p, text.lines().map(String::from).collect())
            })
            .collect()
    }

    #[test]
    fn rotation_keeps_the_newest_records_and_counts_every_one_it_removes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl/src.ndjson");
        let limits = DeadLetterConfig {
            max_size: crate::units::ByteSize(4096),
            max_files: 3,
        };
        let line_len = serde_json::to_vec(&record(0, &[b'a'; 900])).unwrap().len() + 1;
        let per_file = 4096 / line_len;
        assert_eq!(per_file, 4, "records of {line_len} bytes: 4 to a file");
        let n = 103;
        let dl = DeadLetter::bounded("src", path.clone(), limits);
        crate::private_fs::with_umask(0, || {
            // One at a time, then in batches that straddle files.
            for i in 0..50 {
                dl.write(&[record(i, &[b'a'; 900])]).unwrap();
            }
            for chunk in (50..n).collect::<Vec<_>>().chunks(7) {
                let batch: Vec<_> = chunk.iter().map(|&i| record(i, &[b'a'; 900])).collect();
                dl.write(&batch).unwrap();
            }
        });
        let files = kept(&path, 3);
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(!rotation::numbered(&path, 3).exists());
        let kept_records: Vec<String> = files
            .iter()
            .flat_map(|(_, lines)| {
                lines.iter().map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["location"].as_str().unwrap().to_string()
                })
            })
            .collect();
        let lost = dl.lost_total();
        assert_eq!(
            kept_records.len() as u64 + lost,
            n as u64,
            "kept + lost == written"
        );
        // 103 records, 4 to a file: 26 files were started; the newest 3 are kept (4 + 4 + 3 records).
        assert_eq!(kept_records.len(), 11);
        assert_eq!(lost, 92);
        let expected: Vec<String> = (n - 11..n).map(|i| format!("{i:06}")).collect();
        assert_eq!(
            kept_records, expected,
            "the newest records are kept, in order"
        );
        for (p, _) in &files {
            let meta = std::fs::metadata(p).unwrap();
            assert!(
                meta.len() <= 4096,
                "{} holds {} bytes",
                p.display(),
                meta.len()
            );
            assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "{}", p.display());
        }
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o7777, 0o700);
        let report = dl.loss_report().expect("a report of the loss");
        let v: serde_json::Value = serde_json::from_slice(report.raw()).unwrap();
        assert_eq!(v["event"], LOST_EVENT);
        assert_eq!(v["component"], "src");
        assert_eq!(v["count"], 92);
        assert!(dl.loss_report().is_none(), "reported once");
    }

    #[test]
    fn a_record_larger_than_max_size_goes_alone_in_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.ndjson");
        let limits = DeadLetterConfig {
            max_size: crate::units::ByteSize(4096),
            max_files: 4,
        };
        let dl = DeadLetter::bounded("big", path.clone(), limits);
        dl.write(&[
            record(0, b"small"),
            record(1, &[b'b'; 10_000]),
            record(2, b"small"),
        ])
        .unwrap();
        let files = kept(&path, 4);
        let counts: Vec<usize> = files.iter().map(|(_, l)| l.len()).collect();
        assert_eq!(counts, [1, 1, 1], "{files:?}");
        assert!(files[1].1[0].contains("\"000001\""));
        assert_eq!(dl.lost_total(), 0);
    }

    #[test]
    fn a_smaller_max_files_removes_the_extra_files_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.ndjson");
        std::fs::write(&path, "{}\n").unwrap();
        std::fs::write(rotation::numbered(&path, 1), "{}\n{}\n").unwrap();
        std::fs::write(rotation::numbered(&path, 2), "{}\n{}\n{}\n").unwrap();
        let limits = DeadLetterConfig {
            max_size: crate::units::ByteSize(1 << 20),
            max_files: 2,
        };
        let dl = DeadLetter::bounded("s", path.clone(), limits);
        dl.write(&[record(0, b"x")]).unwrap();
        assert!(!rotation::numbered(&path, 2).exists());
        assert_eq!(dl.lost_total(), 3);
        assert_eq!(rotation::count_records(&path).unwrap(), 2);
    }

    #[test]
    fn one_file_kept_means_rotation_empties_it_and_counts_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.ndjson");
        let limits = DeadLetterConfig {
            max_size: crate::units::ByteSize(4096),
            max_files: 1,
        };
        let dl = DeadLetter::bounded("one", path.clone(), limits);
        for i in 0..10 {
            dl.write(&[record(i, &[b'a'; 900])]).unwrap();
        }
        // 4 to a file: two rotations removed 8 records, 2 are kept, and no numbered file exists.
        assert_eq!(rotation::count_records(&path).unwrap(), 2);
        assert_eq!(dl.lost_total(), 8);
        assert!(!rotation::numbered(&path, 1).exists());
    }
}
