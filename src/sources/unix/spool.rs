//! Draining spool directories: events a recorder could not hand to the agent (it was down) wait in
//! `spool/<anything>.ndjson`, one complete event per line. At source start and every `spool_scan_interval`, each
//! file is taken with `flock(LOCK_EX|LOCK_NB)` (a file still locked belongs to a live writer and is skipped
//! until a later scan), its complete lines go through the same validation and dead-lettering as lines from the
//! socket, and it is unlinked once every sink reading the source has its events (delivered, or held by a disk
//! buffer). A file whose events a sink did not take (shutdown cut the drain) stays and is drained again.
//!
//! Damage is counted, dead-lettered with `file:line`, logged, never fatal: a last line without `\n` (a torn
//! write), lines that are not event objects. Bounds: 16 MiB per file and 1 MiB per line (or the source's
//! `max_line_bytes`, if lower), at most [`MAX_FILES_PER_SCAN`] files per scan. A file over the size bound, or one
//! that is not a regular file with a single link (a symlink or hard link planted in the world-writable spool
//! to make root read someone else's file), is reported and renamed to `<file>.rejected`, never read.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::dead_letter::DeadLetterRecord;
use auditrail_core::shutdown::Shutdown;
use auditrail_core::{AckBatch, Event, Fanout};
use bytes::Bytes;

use crate::sources::ingest::{Ingest, Rejected};
use crate::sources::lines::{Line, LineSplitter};

/// Largest spool file read.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Longest spool line.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Files looked at per directory per scan; the rest wait for the next scan.
pub const MAX_FILES_PER_SCAN: usize = 1000;
/// How much of a torn line is kept in its dead-letter record.
const TORN_PREFIX: usize = 4096;

/// What drains a source's spool directories.
pub(super) struct Spool {
    pub(super) dirs: Vec<PathBuf>,
    pub(super) interval: Duration,
    pub(super) ingest: Arc<Ingest>,
}

/// A spool file opened, locked and read.
struct Taken {
    /// Holds the lock until dropped.
    _file: File,
    data: Vec<u8>,
    dev: u64,
    ino: u64,
    owner: u32,
}

enum Open {
    Taken(Taken),
    /// A writer holds it.
    Locked,
    /// Gone since the directory was listed.
    Gone,
    /// Not to be read: renamed aside.
    Reject(String),
}

impl Spool {
    fn counter(
        &self,
        name: &'static str,
        label: &'static str,
        value: &'static str,
    ) -> metrics::Counter {
        metrics::counter!(name, "source" => self.ingest.source().to_string(), label => value)
    }

    /// Drains at once, then every interval, until shutdown. `fanout` is dropped when shutdown comes, so the
    /// buffers can close; a drain under way then waits for its outcome before deciding to unlink.
    pub(super) async fn run(self, fanout: Fanout, mut shutdown: Shutdown) {
        for reason in ["torn_line", "invalid"] {
            self.counter("auditrail_source_spool_damaged_total", "reason", reason)
                .increment(0);
        }
        let mut fanout = Some(fanout);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => {}
            }
            for dir in &self.dirs {
                for path in list(dir) {
                    if shutdown.is_triggered() {
                        break;
                    }
                    self.drain_file(&path, &mut fanout, &mut shutdown).await;
                }
            }
        }
    }

    async fn drain_file(&self, path: &Path, fanout: &mut Option<Fanout>, shutdown: &mut Shutdown) {
        let Some(out) = fanout.as_ref() else { return };
        let p = path.to_path_buf();
        let opened = tokio::task::spawn_blocking(move || open(&p))
            .await
            .unwrap_or_else(|e| Open::Reject(format!("reading it failed: {e}")));
        let taken = match opened {
            Open::Taken(t) => t,
            Open::Locked => {
                tracing::debug!(path = %path.display(), "spool file locked by its writer; left for a later scan");
                self.counter("auditrail_source_spool_files_total", "outcome", "locked")
                    .increment(1);
                return;
            }
            Open::Gone => return,
            Open::Reject(why) => {
                let aside = rejected_name(path);
                let moved = std::fs::rename(path, &aside);
                self.counter("auditrail_source_spool_files_total", "outcome", "rejected")
                    .increment(1);
                tracing::warn!(source = %self.ingest.source(), path = %path.display(), reason = %why, moved_to = %aside.display(), moved = moved.is_ok(), "spool file not read");
                return;
            }
        };
        let location = format!("spool {} (owner uid {})", path.display(), taken.owner);
        let (mut events, rejected, torn) = self.parse(&taken.data, &location);
        let damaged = rejected.len() as u64 + u64::from(torn.is_some());
        self.ingest.reject(&rejected);
        if !rejected.is_empty() {
            self.counter("auditrail_source_spool_damaged_total", "reason", "invalid")
                .increment(rejected.len() as u64);
        }
        if let Some((line, bytes)) = &torn {
            self.counter(
                "auditrail_source_spool_damaged_total",
                "reason",
                "torn_line",
            )
            .increment(1);
            let record = DeadLetterRecord::new(
                self.ingest.source(),
                format!("{location} line {line}"),
                "torn_line",
                format!(
                    "the last line has no newline (a torn write, {} bytes): skipped",
                    bytes.len()
                ),
                &bytes[..bytes.len().min(TORN_PREFIX)],
            );
            if let Err(e) = self.ingest.dead_letter().write(&[record]) {
                tracing::error!(source = %self.ingest.source(), error = %e, "cannot write the dead-letter file; the torn spool line is counted but not kept");
            }
        }
        let n = events.len();
        let delivered = if events.is_empty() {
            true
        } else {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let batch = AckBatch::new(0, tx);
            for e in &mut events {
                e.set_finalizer(batch.finalizer());
            }
            self.ingest.count(&events);
            out.send(events).await;
            drop(batch);
            let outcome = tokio::select! {
                o = rx.recv() => o,
                _ = shutdown.wait() => {
                    // Let the buffers close so the sinks can finish, then learn what became of the events.
                    fanout.take();
                    rx.recv().await
                }
            };
            outcome.is_some_and(|o| o.status.is_final())
        };
        if !delivered {
            self.counter("auditrail_source_spool_files_total", "outcome", "kept")
                .increment(1);
            tracing::warn!(source = %self.ingest.source(), path = %path.display(), events = n, "the sinks did not take every event of a spool file; it is kept and drained again (events may repeat, with the same uid)");
            return;
        }
        // Unlinked only if the name still is the file read (its owner may rename files in the sticky spool).
        let same = std::fs::symlink_metadata(path)
            .is_ok_and(|m| m.dev() == taken.dev && m.ino() == taken.ino);
        let removed = same && std::fs::remove_file(path).is_ok();
        self.counter("auditrail_source_spool_files_total", "outcome", "drained")
            .increment(1);
        if damaged > 0 {
            tracing::warn!(source = %self.ingest.source(), path = %path.display(), events = n, damaged, dead_letter = %self.ingest.dead_letter().path().display(), removed, "spool file drained with damaged lines (counted in auditrail_source_spool_damaged_total, kept in the dead-letter file)");
        } else {
            tracing::info!(source = %self.ingest.source(), path = %path.display(), events = n, removed, "spool file drained");
        }
    }

    /// Events, refused lines, and the torn last line (its number and bytes) if any.
    fn parse(
        &self,
        data: &[u8],
        location: &str,
    ) -> (Vec<Event>, Vec<Rejected>, Option<(u64, Bytes)>) {
        let max = self.ingest.max_line().min(MAX_LINE_BYTES);
        let data = Bytes::copy_from_slice(data);
        let end = memchr::memrchr(b'\n', &data).map_or(0, |p| p + 1);
        let mut lines: Vec<Line> = Vec::new();
        let mut splitter = LineSplitter::new(0, Some(0), max);
        splitter.feed(data.slice(..end), |l| lines.push(l));
        let complete = splitter.line().unwrap_or(0);
        let torn = (end < data.len()).then(|| (complete + 1, data.slice(end..)));
        let (mut events, mut rejected) = (Vec::new(), Vec::new());
        self.ingest.take_lines(
            lines,
            |n, _| format!("{location} line {}", n.unwrap_or(0)),
            &mut events,
            &mut rejected,
        );
        (events, rejected, torn)
    }
}

/// `*.ndjson` in `dir`, oldest name first, at most [`MAX_FILES_PER_SCAN`].
fn list(dir: &Path) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list the spool directory");
            }
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".ndjson") && !n.starts_with('.'))
        })
        .collect();
    files.sort();
    files.truncate(MAX_FILES_PER_SCAN);
    files
}

fn rejected_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".rejected");
    PathBuf::from(s)
}

fn open(path: &Path) -> Open {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Open::Gone,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Open::Reject("it is a symbolic link".into())
        }
        Err(e) => return Open::Reject(format!("cannot open it: {e}")),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Open::Reject(format!("cannot stat it: {e}")),
    };
    if !meta.file_type().is_file() {
        return Open::Reject("it is not a regular file".into());
    }
    if meta.nlink() != 1 {
        return Open::Reject(format!(
            "it has {} hard links (a spool file has one)",
            meta.nlink()
        ));
    }
    // SAFETY: a valid open fd.
    if unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } != 0
    {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => Open::Locked,
            _ => Open::Reject(format!("cannot lock it: {e}")),
        };
    }
    if meta.len() > MAX_FILE_BYTES {
        return Open::Reject(format!(
            "it is {} bytes, over the spool limit of {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    if let Err(e) = (&file).take(MAX_FILE_BYTES + 1).read_to_end(&mut data) {
        return Open::Reject(format!("cannot read it: {e}"));
    }
    if data.len() as u64 > MAX_FILE_BYTES {
        return Open::Reject(format!(
            "it grew over the spool limit of {MAX_FILE_BYTES} bytes while being read"
        ));
    }
    Open::Taken(Taken {
        dev: meta.dev(),
        ino: meta.ino(),
        owner: meta.uid(),
        _file: file,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_refuses_links_and_big_files_and_skips_locked_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("target"), b"secret\n").unwrap();
        std::os::unix::fs::symlink(d.join("target"), d.join("sym.ndjson")).unwrap();
        assert!(matches!(open(&d.join("sym.ndjson")), Open::Reject(w) if w.contains("symbolic")));
        std::fs::hard_link(d.join("target"), d.join("hard.ndjson")).unwrap();
        assert!(
            matches!(open(&d.join("hard.ndjson")), Open::Reject(w) if w.contains("hard links"))
        );
        let big = File::create(d.join("big.ndjson")).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert!(
            matches!(open(&d.join("big.ndjson")), Open::Reject(w) if w.contains("over the spool limit"))
        );
        std::fs::write(d.join("ok.ndjson"), b"{}\n").unwrap();
        let held = File::open(d.join("ok.ndjson")).unwrap();
        assert_eq!(
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&held), libc::LOCK_EX) },
            0
        );
        assert!(matches!(open(&d.join("ok.ndjson")), Open::Locked));
        drop(held);
        assert!(matches!(open(&d.join("ok.ndjson")), Open::Taken(t) if t.data == b"{}\n"));
        assert!(matches!(open(&d.join("gone.ndjson")), Open::Gone));
        assert_eq!(
            list(d).len(),
            4,
            "sym, hard, big, ok: `target` is not *.ndjson"
        );
    }

    #[test]
    fn parse_counts_torn_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool {
            dirs: vec![],
            interval: Duration::from_secs(1),
            ingest: Arc::new(Ingest::new("t", 1 << 20, dir.path())),
        };
        let good = r#"{"event":"x","uid":"a","time":"2017-02-03T06:54:05Z"}"#;
        let text = format!("{good}\nnot json\n\n{good}\n{{\"event\":\"torn");
        let (events, rejected, torn) = spool.parse(text.as_bytes(), "spool f");
        assert_eq!(events.len(), 2);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].location, "spool f line 2");
        let (line, bytes) = torn.unwrap();
        assert_eq!(line, 5);
        assert_eq!(&bytes[..], b"{\"event\":\"torn");
        let (events, rejected, torn) = spool.parse(b"", "spool f");
        assert!(events.is_empty() && rejected.is_empty() && torn.is_none());
    }
}
