//! The blocking half of the file source: finds files, follows them through rotation and truncation, reads
//! whole lines, and parses them into events.
//!
//! It runs on the blocking thread pool, one `poll` at a time, so parsing overlaps with the sinks' writing on
//! another core. It knows nothing of acknowledgements: it reports what it opened, read, saw truncated and
//! closed, and the async half (`mod.rs`) turns that into checkpoints. The last event of each read batch, and
//! every 64th event within it, carries an [`Origin`] (file, the stretch of it up to that event, end line), which
//! disk buffers keep; a file found again after a crash starts after what they all hold ([`super::resume`]) when
//! that is past its checkpoint.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrail_core::{Event, Origin};

use super::checkpoint::{Entry, FileKey, Fingerprint, FINGERPRINT_BYTES};
use super::config::{FileSourceConfig, ReadFrom};
use super::resume::ResumeHints;
use crate::sources::ingest::Ingest;
use crate::sources::lines::{Line, LineSplitter};

/// Bytes read from one file per read call.
const CHUNK: usize = 256 * 1024;
/// Most bytes read per poll across all files, so that batches reach the sinks steadily.
const POLL_BUDGET: usize = 1024 * 1024;
/// Events per stamped stretch within a read batch. A kill during a disk buffer's write can leave a batch in
/// the buffer in part; what follows its last stamp is read again after the restart, so stretches are short
/// (their [`Origin`] costs some 50 bytes in the buffer per this many events).
const STAMP_EVERY: usize = 64;

/// A file that was opened, and where reading starts.
#[derive(Debug)]
pub struct Opened {
    /// Identity.
    pub key: FileKey,
    /// Path it was found at.
    pub path: PathBuf,
    /// Start offset (checkpoint, end of file, or 0).
    pub offset: u64,
    /// Line number at `offset`, when known.
    pub line: Option<u64>,
    /// Its head.
    pub fingerprint: Fingerprint,
}

/// Complete lines read from one file in one poll.
pub struct ReadBatch {
    /// Identity.
    pub key: FileKey,
    /// Parsed events, in file order.
    pub events: Vec<Event>,
    /// Offset just after the last line included.
    pub end_offset: u64,
    /// Line number at `end_offset`, when known.
    pub end_line: Option<u64>,
    /// The head of the file (it can grow while the file is short).
    pub fingerprint: Fingerprint,
}

/// Everything one poll saw.
#[derive(Default)]
pub struct PollResult {
    /// Files opened.
    pub opened: Vec<Opened>,
    /// Lines read.
    pub batches: Vec<ReadBatch>,
    /// Files found shorter than what was read: reading restarted at 0.
    pub truncated: Vec<FileKey>,
    /// Files closed for good (rotated away or deleted, and fully read).
    pub closed: Vec<FileKey>,
    /// Whether any file had new data.
    pub progressed: bool,
}

struct Tracked {
    path: PathBuf,
    file: File,
    lines: LineSplitter,
    /// Read position in the file.
    read_pos: u64,
    fingerprint: Fingerprint,
    matched: bool,
    eof_since: Option<Instant>,
    /// Where the stretch of the next read batch with events starts: the end of the last one, so that lines
    /// without an event (invalid, blank) between them are covered.
    stamp_from: u64,
}

/// The tailer's state, owned by the source and lent to one blocking poll at a time.
pub struct Tailer {
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    read_from: ReadFrom,
    glob_interval: Duration,
    rotate_wait: Duration,
    max_line: usize,
    checkpoints: HashMap<FileKey, Entry>,
    files: HashMap<FileKey, Tracked>,
    /// Keys in a stable order, for round-robin reading.
    order: Vec<FileKey>,
    next: usize,
    last_glob: Option<Instant>,
    first_scan: bool,
    /// Most lines in one [`ReadBatch`]; see [`Tailer::set_max_batch`].
    max_batch: usize,
    /// What the sinks' disk buffers held at start, when every sink has one.
    resume: Option<ResumeHints>,
}

impl Tailer {
    /// A tailer for `config`, resuming from `checkpoints`.
    pub fn new(config: &FileSourceConfig, checkpoints: HashMap<FileKey, Entry>) -> Tailer {
        Tailer {
            include: config.include.clone(),
            exclude: config
                .exclude
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
            read_from: config.read_from,
            glob_interval: config.glob_interval.0,
            rotate_wait: config.rotate_wait.0,
            max_line: config.max_line_bytes.as_usize(),
            checkpoints,
            files: HashMap::new(),
            order: Vec::new(),
            next: 0,
            last_glob: None,
            first_scan: true,
            max_batch: usize::MAX,
            resume: None,
        }
    }

    /// Lets files found from now on start after what every sink's disk buffer holds of them (see
    /// [`ResumeHints::resume_point`]) when that is past their checkpoint.
    pub fn with_resume(mut self, hints: ResumeHints) -> Tailer {
        self.resume = Some(hints);
        self
    }

    /// Caps the lines of one read batch at what the fan-out takes in one piece. A batch larger than that would
    /// be sent in pieces under one checkpoint, and a shutdown between pieces would leave it delivered in part:
    /// all of it read again after the restart. Capped, each piece has its own checkpoint.
    pub fn set_max_batch(&mut self, max: usize) {
        self.max_batch = max.max(1);
    }

    /// Discovers files when due, then reads what is new, up to a budget.
    pub fn poll(&mut self, ingest: &Ingest) -> PollResult {
        let mut out = PollResult::default();
        if self
            .last_glob
            .is_none_or(|t| t.elapsed() >= self.glob_interval)
        {
            self.discover(ingest, &mut out);
            self.last_glob = Some(Instant::now());
        }
        let mut budget = POLL_BUDGET;
        let n = self.order.len();
        for i in 0..n {
            if budget == 0 {
                break;
            }
            let key = self.order[(self.next + i) % n];
            let read = self.read_file(key, ingest, &mut out, &mut budget);
            if read > 0 {
                out.progressed = true;
            }
        }
        if n > 0 {
            self.next = (self.next + 1) % n;
        }
        self.close_finished(&mut out);
        out
    }

    fn discover(&mut self, ingest: &Ingest, out: &mut PollResult) {
        for t in self.files.values_mut() {
            t.matched = false;
        }
        let include = self.include.clone();
        for pattern in &include {
            let paths = match glob::glob(pattern) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(source = %ingest.source(), pattern = %pattern, error = %e, "invalid glob");
                    continue;
                }
            };
            for entry in paths {
                let path = match entry {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(source = %ingest.source(), error = %e, "cannot read a directory while matching globs");
                        continue;
                    }
                };
                if self.exclude.iter().any(|p| p.matches_path(&path)) {
                    continue;
                }
                let meta = match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    Err(e) => {
                        if e.kind() != io::ErrorKind::NotFound {
                            tracing::warn!(source = %ingest.source(), path = %path.display(), error = %e, "cannot stat file");
                        }
                        continue;
                    }
                };
                let key = FileKey {
                    dev: meta.dev(),
                    ino: meta.ino(),
                };
                if let Some(t) = self.files.get_mut(&key) {
                    t.matched = true;
                    if t.path != path {
                        tracing::info!(source = %ingest.source(), from = %t.path.display(), to = %path.display(), "file renamed");
                        t.path = path;
                    }
                    continue;
                }
                match self.open(key, &path, meta.len(), ingest.source()) {
                    Ok(opened) => {
                        tracing::info!(source = %ingest.source(), path = %path.display(), offset = opened.offset, "following file");
                        out.opened.push(opened);
                    }
                    Err(e) => {
                        tracing::warn!(source = %ingest.source(), path = %path.display(), error = %e, "cannot open file; will try again")
                    }
                }
            }
        }
        self.first_scan = false;
    }

    fn open(&mut self, key: FileKey, path: &Path, len: u64, source: &str) -> io::Result<Opened> {
        let file = File::open(path)?;
        let fingerprint = Fingerprint::of(&file)?;
        let resume = match self.checkpoints.remove(&key) {
            Some(cp) if cp.offset <= len && cp.fingerprint.matches(&file)? => {
                Some((cp.offset, cp.line))
            }
            _ => None,
        };
        let (offset, line) = match resume {
            Some(r) => r,
            None if self.first_scan && self.read_from == ReadFrom::End => (len, None),
            None => (0, Some(0)),
        };
        // What the buffers held was read before this start; a file opened again later (closed, then its inode
        // reused) has nothing to do with it.
        let hint = self.resume.as_mut().and_then(|hints| {
            let point =
                hints.resume_point(key, offset, len, &|fp| fp.matches(&file).unwrap_or(false));
            hints.forget(key);
            point
        });
        let (offset, line) = match hint {
            Some((at, at_line)) => {
                tracing::info!(
                    source,
                    path = %path.display(),
                    checkpoint = offset,
                    offset = at,
                    "resuming after what every sink's disk buffer holds of this file"
                );
                (at, at_line)
            }
            None => (offset, line),
        };
        self.files.insert(
            key,
            Tracked {
                path: path.to_path_buf(),
                file,
                lines: LineSplitter::new(offset, line, self.max_line),
                read_pos: offset,
                fingerprint,
                matched: true,
                eof_since: None,
                stamp_from: offset,
            },
        );
        self.order.push(key);
        Ok(Opened {
            key,
            path: path.to_path_buf(),
            offset,
            line,
            fingerprint,
        })
    }

    /// Reads from one file; returns bytes read.
    fn read_file(
        &mut self,
        key: FileKey,
        ingest: &Ingest,
        out: &mut PollResult,
        budget: &mut usize,
    ) -> usize {
        let Some(t) = self.files.get_mut(&key) else {
            return 0;
        };
        let len = match t.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                tracing::warn!(source = %ingest.source(), path = %t.path.display(), error = %e, "cannot stat open file");
                return 0;
            }
        };
        if len < t.read_pos {
            tracing::warn!(source = %ingest.source(), path = %t.path.display(), was = t.read_pos, now = len, "file truncated; reading it again from the start");
            t.lines = LineSplitter::new(0, Some(0), self.max_line);
            t.read_pos = 0;
            t.stamp_from = 0;
            out.truncated.push(key);
        }
        if len == t.read_pos {
            t.eof_since.get_or_insert_with(Instant::now);
            return 0;
        }
        t.eof_since = None;
        let mut lines = Vec::new();
        let mut rejected = Vec::new();
        let mut total = 0;
        while *budget > 0 {
            let want = CHUNK.min(*budget);
            let mut buf = t.lines.buffer(want);
            let before = buf.len();
            buf.resize(before + want, 0);
            let n = match read_at_full(&t.file, &mut buf[before..], t.read_pos) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(source = %ingest.source(), path = %t.path.display(), error = %e, "read failed; will retry");
                    0
                }
            };
            buf.truncate(before + n);
            t.read_pos += n as u64;
            total += n;
            *budget = budget.saturating_sub(n);
            t.lines.feed(buf.freeze(), |line| lines.push(line));
            if n < want {
                break;
            }
        }
        if t.fingerprint.len < FINGERPRINT_BYTES {
            if let Ok(fp) = Fingerprint::of(&t.file) {
                t.fingerprint = fp;
            }
        }
        if total > 0 {
            let path = &t.path;
            // Each piece of at most `max_batch` lines ends where the next one starts; the last where the last
            // complete line ends (the bytes of a line still incomplete are not checkpointed).
            let end = (t.lines.offset(), t.lines.line());
            let mut pieces = Vec::new();
            if lines.len() <= self.max_batch {
                pieces.push((lines, end.0, end.1));
            } else {
                let mut rest = lines.into_iter().peekable();
                loop {
                    let piece: Vec<Line> = rest.by_ref().take(self.max_batch).collect();
                    match rest.peek().map(Line::position) {
                        Some((start, number)) => pieces.push((piece, start, number.map(|n| n - 1))),
                        None => {
                            pieces.push((piece, end.0, end.1));
                            break;
                        }
                    }
                }
            }
            for (lines, end_offset, end_line) in pieces {
                let mut events = Vec::new();
                let starts: Vec<(u64, Option<u64>)> = lines.iter().map(Line::position).collect();
                let mut made = Vec::with_capacity(lines.len());
                ingest.take_lines_noting(
                    lines,
                    |n, off| location(path, n, off),
                    &mut events,
                    &mut rejected,
                    Some(&mut made),
                );
                ingest.count(&events);
                let stamp = |start: u64, end: u64, end_line: Option<u64>| {
                    Arc::new(Origin {
                        dev: key.dev,
                        ino: key.ino,
                        fingerprint_len: t.fingerprint.len,
                        fingerprint_hash: t.fingerprint.hash,
                        start,
                        end,
                        end_line,
                    })
                };
                // Every STAMP_EVERY-th event ends a stretch at the start of the next line, and the last event
                // ends the batch's (trailing invalid lines included). A batch without events is never sent, so
                // the next stamped stretch covers it too.
                let mut from = t.stamp_from;
                let last = events.len();
                let mut index = 0;
                for (i, made) in made.iter().enumerate() {
                    if !*made {
                        continue;
                    }
                    index += 1;
                    if index == last {
                        events[index - 1].set_origin(stamp(from, end_offset, end_line));
                        from = end_offset;
                    } else if index % STAMP_EVERY == 0 {
                        let (next, number) = starts[i + 1];
                        events[index - 1].set_origin(stamp(from, next, number.map(|n| n - 1)));
                        from = next;
                    }
                }
                t.stamp_from = from;
                out.batches.push(ReadBatch {
                    key,
                    events,
                    end_offset,
                    end_line,
                    fingerprint: t.fingerprint,
                });
            }
            ingest.reject(&rejected);
        }
        total
    }

    fn close_finished(&mut self, out: &mut PollResult) {
        let wait = self.rotate_wait;
        let done: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(_, t)| !t.matched && t.eof_since.is_some_and(|s| s.elapsed() >= wait))
            .map(|(k, _)| *k)
            .collect();
        for key in done {
            if let Some(t) = self.files.remove(&key) {
                tracing::info!(path = %t.path.display(), "file no longer matched and fully read; closing it");
            }
            self.order.retain(|k| *k != key);
            out.closed.push(key);
        }
        if self.next >= self.order.len() {
            self.next = 0;
        }
    }
}

fn read_at_full(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], pos + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Deliver what was read; the error comes back on the next read.
            Err(_) if n > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn location(path: &Path, number: Option<u64>, offset: u64) -> String {
    match number {
        Some(l) => format!("{}:{l}", path.display()),
        None => format!("{} (byte offset {offset})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn config(dir: &Path) -> FileSourceConfig {
        toml::from_str(&format!(
            "include = [\"{}/*.log\"]\nmax_line_bytes = 200\nrotate_wait = \"0s\"\nglob_interval = \"0s\"",
            dir.display()
        ))
        .unwrap()
    }

    fn line(i: usize) -> String {
        format!("{{\"event\":\"x\",\"uid\":\"{i}\",\"time\":\"2017-02-03T06:54:05Z\"}}\n")
    }

    fn uids(r: &PollResult) -> Vec<String> {
        r.batches
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.uid().into_owned()))
            .collect()
    }

    #[test]
    fn reads_whole_lines_only_and_resumes_partial_ones() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Ingest::new("t", 200, dir.path());
        let path = dir.path().join("a.log");
        let mut f = File::create(&path).unwrap();
        f.write_all(format!("{}{}", line(1), &line(2)[..10]).as_bytes())
            .unwrap();
        let mut t = Tailer::new(&config(dir.path()), HashMap::new());
        let r = t.poll(&ingest);
        assert_eq!(r.opened.len(), 1);
        assert_eq!(uids(&r), ["1"]);
        assert_eq!(r.batches[0].end_offset, line(1).len() as u64);
        f.write_all(&line(2).as_bytes()[10..]).unwrap();
        let r = t.poll(&ingest);
        assert_eq!(uids(&r), ["2"]);
        assert_eq!(
            r.batches[0].end_offset,
            (line(1).len() + line(2).len()) as u64
        );
        assert_eq!(r.batches[0].end_line, Some(2));
    }

    #[test]
    fn a_read_is_cut_into_batches_of_at_most_max_batch_lines_each_with_its_own_end() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Ingest::new("t", 200, dir.path());
        let path = dir.path().join("a.log");
        // Lines 1-7, the 4th not JSON, then half of line 8.
        let mut text = String::new();
        let mut ends = vec![0u64];
        for i in 1..=7 {
            text.push_str(&if i == 4 {
                "not json\n".to_string()
            } else {
                line(i)
            });
            ends.push(text.len() as u64);
        }
        text.push_str(&line(8)[..10]);
        std::fs::write(&path, &text).unwrap();
        let mut t = Tailer::new(&config(dir.path()), HashMap::new());
        t.set_max_batch(3);
        let r = t.poll(&ingest);
        let got: Vec<(Vec<String>, u64, Option<u64>)> = r
            .batches
            .iter()
            .map(|b| {
                (
                    b.events.iter().map(|e| e.uid().into_owned()).collect(),
                    b.end_offset,
                    b.end_line,
                )
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            [
                (s(&["1", "2", "3"]), ends[3], Some(3)),
                (s(&["5", "6"]), ends[6], Some(6)),
                (s(&["7"]), ends[7], Some(7)),
            ]
        );
    }

    #[test]
    fn over_long_and_invalid_lines_are_dead_lettered_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Ingest::new("t", 200, dir.path());
        let path = dir.path().join("a.log");
        let long = format!(
            "{{\"event\":\"x\",\"pad\":\"{}\"}}\n",
            "p".repeat(300 * 1024)
        );
        std::fs::write(&path, format!("{}{long}not json\n{}", line(1), line(2))).unwrap();
        let mut t = Tailer::new(&config(dir.path()), HashMap::new());
        let mut got = Vec::new();
        for _ in 0..4 {
            got.extend(uids(&t.poll(&ingest)));
        }
        assert_eq!(got, ["1", "2"]);
        let dl = std::fs::read_to_string(dir.path().join("dead-letter/sources/t.ndjson")).unwrap();
        let records: Vec<serde_json::Value> = dl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["reason"], "too_long");
        assert_eq!(records[0]["location"], format!("{}:2", path.display()));
        assert_eq!(records[1]["reason"], "invalid_json");
        assert_eq!(records[1]["location"], format!("{}:3", path.display()));
    }

    #[test]
    fn follows_rotation_by_rename_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Ingest::new("t", 200, dir.path());
        let path = dir.path().join("a.log");
        std::fs::write(&path, line(1)).unwrap();
        let mut t = Tailer::new(&config(dir.path()), HashMap::new());
        assert_eq!(uids(&t.poll(&ingest)), ["1"]);
        // Rename away, keep writing the old file, create a new one at the path.
        std::fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("a.log.1"))
            .unwrap()
            .write_all(line(2).as_bytes())
            .unwrap();
        std::fs::write(&path, line(3)).unwrap();
        let mut got = Vec::new();
        let mut closed = 0;
        for _ in 0..3 {
            let r = t.poll(&ingest);
            got.extend(uids(&r));
            closed += r.closed.len();
        }
        got.sort();
        assert_eq!(got, ["2", "3"]);
        assert_eq!(closed, 1, "the rotated file is closed once read");
        // Truncate the new file, then write again.
        std::fs::write(&path, "").unwrap();
        let r = t.poll(&ingest);
        assert_eq!(r.truncated.len(), 1);
        std::fs::write(&path, line(5)).unwrap();
        assert_eq!(uids(&t.poll(&ingest)), ["5"]);
    }

    #[test]
    fn resumes_from_checkpoint_unless_the_file_changed() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Ingest::new("t", 200, dir.path());
        let path = dir.path().join("a.log");
        std::fs::write(&path, format!("{}{}", line(1), line(2))).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let key = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        let fp = Fingerprint::of(&File::open(&path).unwrap()).unwrap();
        let entry = Entry {
            key,
            path: path.clone(),
            offset: line(1).len() as u64,
            line: Some(1),
            fingerprint: fp,
        };
        let mut t = Tailer::new(&config(dir.path()), HashMap::from([(key, entry.clone())]));
        assert_eq!(uids(&t.poll(&ingest)), ["2"]);
        let other = Entry {
            fingerprint: Fingerprint { len: 3, hash: 1 },
            ..entry
        };
        let mut t = Tailer::new(&config(dir.path()), HashMap::from([(key, other)]));
        assert_eq!(
            uids(&t.poll(&ingest)),
            ["1", "2"],
            "a different head means a different file"
        );
    }

    /// An origin's stretch and end line.
    type Stretch = (u64, u64, Option<u64>);

    fn origins(r: &PollResult) -> Vec<Option<Stretch>> {
        r.batches
            .iter()
            .flat_map(|b| b.events.iter())
            .map(|e| e.origin().map(|o| (o.start, o.end, o.end_line)))
            .collect()
    }

    #[test]
    fn the_last_event_of_each_batch_says_which_stretch_of_which_file_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Ingest::new("t", 200, dir.path());
        let path = dir.path().join("a.log");
        // Lines 1-3, then two invalid lines (a batch of their own, without events), then lines 6-7.
        let mut text = String::new();
        let mut ends = vec![0u64];
        for i in 1..=7 {
            text.push_str(&if i == 4 || i == 5 {
                "not json\n".to_string()
            } else {
                line(i)
            });
            ends.push(text.len() as u64);
        }
        std::fs::write(&path, &text).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let mut t = Tailer::new(&config(dir.path()), HashMap::new());
        t.set_max_batch(3);
        let r = t.poll(&ingest);
        assert_eq!(
            origins(&r),
            [
                None,
                None,
                Some((0, ends[3], Some(3))),
                // The batch of lines 4-6 has one event; its stretch starts where the last one ended.
                Some((ends[3], ends[6], Some(6))),
                Some((ends[6], ends[7], Some(7))),
            ]
        );
        let o = r.batches[0].events[2].origin().copied().unwrap();
        let fp = Fingerprint::of(&File::open(&path).unwrap()).unwrap();
        assert_eq!((o.dev, o.ino), (meta.dev(), meta.ino()));
        assert_eq!((o.fingerprint_len, o.fingerprint_hash), (fp.len, fp.hash));
    }

    #[test]
    fn long_batches_are_stamped_every_64_events_so_a_batch_cut_short_in_a_buffer_costs_little() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Ingest::new("t", 200, dir.path());
        // Lines 1-140, the 10th not JSON: 139 events.
        let mut text = String::new();
        let mut ends = vec![0u64];
        for i in 1..=140 {
            text.push_str(&if i == 10 {
                "not json\n".to_string()
            } else {
                line(i)
            });
            ends.push(text.len() as u64);
        }
        std::fs::write(dir.path().join("a.log"), &text).unwrap();
        let mut t = Tailer::new(&config(dir.path()), HashMap::new());
        let r = t.poll(&ingest);
        assert_eq!(r.batches.len(), 1);
        let stamped: Vec<(usize, Stretch)> = origins(&r)
            .into_iter()
            .enumerate()
            .filter_map(|(i, o)| Some((i, o?)))
            .collect();
        assert_eq!(
            stamped,
            [
                // The 64th event is line 65; its stretch ends where line 66 starts.
                (63, (0, ends[65], Some(65))),
                (127, (ends[65], ends[129], Some(129))),
                (138, (ends[129], ends[140], Some(140))),
            ]
        );
    }

    #[test]
    fn resumes_after_what_the_buffers_hold_when_that_is_past_the_checkpoint() {
        use crate::sources::file::resume::{ResumeHints, SinkHeld};
        let dir = tempfile::tempdir().unwrap();
        let ingest = Ingest::new("t", 200, dir.path());
        let path = dir.path().join("a.log");
        let text: String = (1..=4).map(line).collect();
        std::fs::write(&path, &text).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let key = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        let fp = Fingerprint::of(&File::open(&path).unwrap()).unwrap();
        let end = |n: usize| (1..=n).map(|i| line(i).len() as u64).sum::<u64>();
        let checkpoint = Entry {
            key,
            path: path.clone(),
            offset: end(1),
            line: Some(1),
            fingerprint: fp,
        };
        let held = |fingerprint_hash: u64| {
            let mut h = SinkHeld::default();
            for (from, to) in [(0, 1), (1, 3)] {
                h.add(&Origin {
                    dev: key.dev,
                    ino: key.ino,
                    fingerprint_len: fp.len,
                    fingerprint_hash,
                    start: end(from),
                    end: end(to),
                    end_line: Some(to as u64),
                });
            }
            h
        };
        let start = |hints: ResumeHints| {
            let mut t = Tailer::new(
                &config(dir.path()),
                HashMap::from([(key, checkpoint.clone())]),
            )
            .with_resume(hints);
            let r = t.poll(&ingest);
            (r.opened[0].offset, r.opened[0].line, uids(&r))
        };
        assert_eq!(
            start(ResumeHints::new(vec![held(fp.hash)])),
            (end(3), Some(3), vec!["4".to_string()])
        );
        // Stretches of another head (another file that had this inode): not this file's; the checkpoint alone.
        assert_eq!(start(ResumeHints::new(vec![held(fp.hash ^ 1)])).1, Some(1));
        // A second sink that holds nothing of the file: the checkpoint alone.
        assert_eq!(
            start(ResumeHints::new(vec![held(fp.hash), SinkHeld::default()])),
            (
                end(1),
                Some(1),
                vec!["2", "3", "4"].into_iter().map(String::from).collect()
            )
        );
    }

    #[test]
    fn read_from_end_skips_existing_content_of_files_found_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Ingest::new("t", 200, dir.path());
        std::fs::write(dir.path().join("a.log"), line(1)).unwrap();
        let mut cfg = config(dir.path());
        cfg.read_from = ReadFrom::End;
        let mut t = Tailer::new(&cfg, HashMap::new());
        assert!(uids(&t.poll(&ingest)).is_empty());
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("a.log"))
            .unwrap()
            .write_all(line(2).as_bytes())
            .unwrap();
        std::fs::write(dir.path().join("b.log"), line(3)).unwrap();
        let mut got = uids(&t.poll(&ingest));
        got.sort();
        assert_eq!(
            got,
            ["2", "3"],
            "a file appearing later is read from its beginning"
        );
    }
}
