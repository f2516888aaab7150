//! Blocking file I/O of the file sink: appends one batch to the files its events render to, all or nothing.
//!
//! A batch is grouped by path (keeping order within each file), appended, and fsynced as configured. If any
//! write or fsync fails, every file the batch touched is cut back to its length before the batch, so a retry
//! never leaves a partial line or writes the same event twice.
//!
//! An event whose path cannot be used for a reason that is the event's own is not retried: its path breaks
//! the template's rules (see [`super::template`]), or the OS refuses a path its fields made (too long for this
//! filesystem, a character it cannot hold, a field-named component colliding with a file or directory). The
//! batch reports it as refused, and the rest of the batch is written. Errors that are the disk's (full, I/O
//! error, read-only, permissions) fail the whole batch, which is retried.
//!
//! At most `max_open_files` files are open at once, a batch writing to more included: the least recently
//! written is synced (as configured) and closed to make room.
//!
//! After a crash, a disk buffer replays what the sink had written but whose acknowledgement the crash stopped
//! before the buffer's cursor moved. Those lines are already at the end of their files, so the first time this
//! process meets a file it keeps the lines of the file's last [`TAIL_CHECK`] bytes, and skips each event whose
//! exact bytes are one of them, until the first event that is not (what was delivered is a prefix of what is
//! replayed, in each file). Then the file is caught up and nothing more is compared. Skipping needs the bytes
//! to be identical, chain field included: the same record, not merely the same uid.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use auditrail_core::Event;

use super::config::{FileSinkConfig, Fsync};
use super::template::PathTemplate;

/// A failed batch: which file and what the OS said.
#[derive(Debug, thiserror::Error)]
#[error("{action} `{path}`: {source}")]
pub struct WriteError {
    /// What was being done.
    pub action: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

struct OpenFile {
    file: File,
    last_write: Instant,
    /// Written since its last fsync (with `fsync = "batch"`, it must be synced before it is closed).
    dirty: bool,
}

/// What [`Writer::write`] did with a batch.
#[derive(Debug, Default)]
pub struct Written {
    /// Bytes appended.
    pub bytes: u64,
    /// Events not written for a reason that is theirs, by index in the batch: the reason label and message.
    pub refused: Vec<(usize, &'static str, String)>,
}

/// Events of one batch bound for one file.
struct Group {
    path: PathBuf,
    /// Byte offset in `path` where field-derived text starts (its length when there is none).
    fields_from: usize,
    bytes: Vec<u8>,
    /// Indices in the batch of the events in `bytes`.
    events: Vec<usize>,
}

/// Dead-letter reason of an event the OS refused to write to the path its fields made.
pub const REASON_UNWRITABLE: &str = "path_unwritable";

/// The most bytes at the end of an existing file whose lines are compared with the first events written to it.
const TAIL_CHECK: u64 = 8 << 20;

/// The last lines of a file as it was when this process first met it, until an event is not among them.
struct Tail {
    bytes: Vec<u8>,
    /// Line ranges in `bytes` by a hash of their content.
    lines: HashMap<u64, Vec<(usize, usize)>>,
}

impl Tail {
    fn read(path: &Path) -> io::Result<Option<Tail>> {
        use std::os::unix::fs::FileExt;
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(None);
        }
        let start = len.saturating_sub(TAIL_CHECK);
        let mut bytes = vec![0u8; (len - start) as usize];
        file.read_exact_at(&mut bytes, start)?;
        let mut lines: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
        // From a cut start, the first piece is not a whole line.
        let mut at = if start == 0 {
            0
        } else {
            memchr::memchr(b'\n', &bytes).map_or(bytes.len(), |i| i + 1)
        };
        while let Some(nl) = memchr::memchr(b'\n', &bytes[at..]) {
            lines
                .entry(line_hash(&bytes[at..at + nl]))
                .or_default()
                .push((at, at + nl));
            at += nl + 1;
        }
        Ok(Some(Tail { bytes, lines }))
    }

    fn contains(&self, line: &[u8]) -> bool {
        self.lines
            .get(&line_hash(line))
            .is_some_and(|v| v.iter().any(|&(a, b)| &self.bytes[a..b] == line))
    }
}

fn line_hash(line: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    line.hash(&mut h);
    h.finish()
}

/// Open files and the template, owned by the sink and moved into a blocking task for each batch.
pub struct Writer {
    template: PathTemplate,
    fsync: Fsync,
    max_open: usize,
    idle: Duration,
    open: HashMap<PathBuf, OpenFile>,
    /// Reused grouping buffers.
    groups: Vec<Group>,
    /// Which of `groups` holds a path, for the current batch.
    group_of: HashMap<PathBuf, usize>,
    /// Events of the current batch refused for their path.
    refused: Vec<(usize, &'static str, String)>,
    /// Files met in this process: the tail still to compare with (`None` once caught up).
    tails: HashMap<PathBuf, Option<Tail>>,
    /// Events skipped by the last [`Writer::write`] because their line was already there.
    skipped: u64,
}

/// A file that does not end with a newline was cut off mid-write (the agent was killed, the machine lost
/// power). Those bytes were never acknowledged, so their event will be written again: remove them, so that
/// the file stays one complete event per line.
fn cut_torn_tail(file: &File, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut last = [0u8; 1];
    if len == 0 || (file.read_at(&mut last, len - 1)? == 1 && last[0] == b'\n') {
        return Ok(());
    }
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(end - start) as usize];
        file.read_exact_at(buf, start)?;
        if let Some(nl) = memchr::memrchr(b'\n', buf) {
            break start + nl as u64 + 1;
        }
        end = start;
    };
    tracing::warn!(path = %path.display(), bytes = len - keep, "removing a partial last line left by an interrupted write; its event is written again");
    file.set_len(keep)?;
    file.sync_data()
}

/// Whether a failure to open `g`'s file is the fault of its events' fields rather than of the disk: the
/// template has fields, and the OS refused the name (too long for this filesystem, a character it cannot
/// hold), or a component the fields named collides with an existing file (where a directory is wanted) or
/// directory (where the file is). A collision in the template's own directories is the disk's: retried.
fn events_fault(err: &WriteError, g: &Group) -> bool {
    if g.fields_from >= g.path.as_os_str().len() {
        return false;
    }
    match err.source.raw_os_error() {
        Some(libc::ENAMETOOLONG | libc::EINVAL | libc::EILSEQ) => true,
        Some(libc::ENOTDIR | libc::EISDIR | libc::EEXIST) => {
            collision_at(&g.path).is_some_and(|end| end > g.fields_from)
        }
        _ => false,
    }
}

/// The end (byte offset) of the first component of `path` that exists as the wrong kind: a non-directory
/// where a directory is needed, or a directory where the file is.
fn collision_at(path: &Path) -> Option<usize> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let ends = memchr::memchr_iter(b'/', bytes)
        .filter(|&i| i > 0)
        .chain(std::iter::once(bytes.len()));
    for end in ends {
        let prefix = Path::new(std::ffi::OsStr::from_bytes(&bytes[..end]));
        match std::fs::metadata(prefix) {
            Ok(m) if end == bytes.len() => return m.is_dir().then_some(end),
            Ok(m) if !m.is_dir() => return Some(end),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

impl Writer {
    /// A writer for `config` (already validated).
    pub fn new(config: &FileSinkConfig) -> Result<Writer, String> {
        Ok(Writer {
            template: PathTemplate::parse(&config.path)?.policy(config.unsafe_path),
            fsync: config.fsync,
            max_open: config.max_open_files,
            idle: config.idle_timeout.0,
            open: HashMap::new(),
            groups: Vec::new(),
            group_of: HashMap::new(),
            refused: Vec::new(),
            tails: HashMap::new(),
            skipped: 0,
        })
    }

    /// How many events the last [`Self::write`] found already written (replayed after a crash) and skipped.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether `e` is already the next line of `path`'s tail (a replay); once one is not, the file is caught up.
    fn already_there(&mut self, path: &Path, e: &Event) -> bool {
        if !self.tails.contains_key(path)
            && !self.open.contains_key(path)
            && self.open.len() >= self.max_open
        {
            // Reading the tail takes a descriptor: make room first, as opening the file to write will. Between
            // batches every open file is synced already, so this cannot fail; if it did, the next write would.
            if let Err(err) = self.close_oldest() {
                tracing::warn!(error = %err, "cannot sync a file closed to stay within max_open_files");
            }
        }
        let tail = self
            .tails
            .entry(path.to_path_buf())
            .or_insert_with(|| match Tail::read(path) {
                Ok(t) => t,
                Err(err) => {
                    // Not comparing only means a replay may be written twice, as before.
                    tracing::warn!(path = %path.display(), error = %err, "cannot read the end of the file to skip replayed events");
                    None
                }
            });
        match tail {
            Some(t) if t.contains(e.raw()) => true,
            Some(_) => {
                *tail = None;
                false
            }
            None => false,
        }
    }

    /// Appends `events` (one line each); returns the bytes written and the events refused for their path.
    /// An error is the disk's: nothing of the batch is kept, and the whole batch should be retried.
    pub fn write(&mut self, events: &[Event]) -> Result<Written, WriteError> {
        self.group(events);
        let groups = std::mem::take(&mut self.groups);
        let result = self.write_groups(&groups);
        self.groups = groups;
        self.close_idle();
        result.map(|bytes| Written {
            bytes,
            refused: std::mem::take(&mut self.refused),
        })
    }

    fn group(&mut self, events: &[Event]) {
        self.skipped = 0;
        self.refused.clear();
        self.group_of.clear();
        for g in &mut self.groups {
            g.bytes.clear();
            g.events.clear();
        }
        if self.template.is_static() {
            // Every event goes to the same file: no rendering per event.
            if let Some(first) = events.first() {
                let (path, fields_from) = self
                    .template
                    .render_marked(first)
                    .expect("a static path was checked when the config was loaded");
                let mut skip = 0;
                while skip < events.len() && self.already_there(&path, &events[skip]) {
                    skip += 1;
                }
                self.skipped = skip as u64;
                let events = &events[skip..];
                self.groups.truncate(1);
                match self.groups.first_mut() {
                    Some(g) => {
                        g.path = path;
                        g.fields_from = fields_from;
                    }
                    None => self.groups.push(Group {
                        path,
                        fields_from,
                        bytes: Vec::new(),
                        events: Vec::new(),
                    }),
                }
                let buf = &mut self.groups[0].bytes;
                buf.reserve(events.iter().map(|e| e.raw().len() + 1).sum());
                for e in events {
                    buf.extend_from_slice(e.raw());
                    buf.push(b'\n');
                }
            }
            return;
        }
        let mut used = 0;
        for (n, e) in events.iter().enumerate() {
            let (path, fields_from) = match self.template.render_marked(e) {
                Ok(p) => p,
                Err(refused) => {
                    self.refused.push((n, refused.reason, refused.message));
                    continue;
                }
            };
            if self.tails.get(&path).is_none_or(|t| t.is_some()) && self.already_there(&path, e) {
                self.skipped += 1;
                continue;
            }
            let i = match self.group_of.get(&path) {
                Some(&i) => i,
                None => {
                    if used == self.groups.len() {
                        self.groups.push(Group {
                            path: path.clone(),
                            fields_from,
                            bytes: Vec::new(),
                            events: Vec::new(),
                        });
                    } else {
                        self.groups[used].path = path.clone();
                        self.groups[used].fields_from = fields_from;
                    }
                    self.group_of.insert(path, used);
                    used += 1;
                    used - 1
                }
            };
            let g = &mut self.groups[i];
            g.bytes.extend_from_slice(e.raw());
            g.bytes.push(b'\n');
            g.events.push(n);
        }
        self.groups.truncate(used);
    }

    fn write_groups(&mut self, groups: &[Group]) -> Result<u64, WriteError> {
        let mut before: Vec<(&Path, u64)> = Vec::with_capacity(groups.len());
        let mut written: Vec<&Path> = Vec::with_capacity(groups.len());
        let mut total = 0;
        let outcome = (|| {
            for g in groups {
                let path = &g.path;
                let f = match self.file(path) {
                    Ok(f) => f,
                    Err(err) if events_fault(&err, g) => {
                        tracing::debug!(path = %path.display(), error = %err.source, "a path made by event fields cannot be written; refusing its events");
                        let message = format!(
                            "{err}: the path made by the event's fields cannot be written here (expected a name this filesystem accepts, not colliding with an existing file or directory)"
                        );
                        for &n in &g.events {
                            self.refused.push((n, REASON_UNWRITABLE, message.clone()));
                        }
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                let len = f
                    .file
                    .metadata()
                    .map_err(|source| WriteError {
                        action: "reading the length of",
                        path: path.clone(),
                        source,
                    })?
                    .len();
                before.push((path, len));
                f.file.write_all(&g.bytes).map_err(|source| WriteError {
                    action: "writing to",
                    path: path.clone(),
                    source,
                })?;
                f.last_write = Instant::now();
                f.dirty = true;
                written.push(path);
                total += g.bytes.len() as u64;
            }
            if self.fsync == Fsync::Batch {
                // Files closed to make room were synced then; the others are still open.
                for path in &written {
                    if let Some(f) = self.open.get_mut(*path) {
                        f.file.sync_data().map_err(|source| WriteError {
                            action: "syncing",
                            path: path.to_path_buf(),
                            source,
                        })?;
                        f.dirty = false;
                    }
                }
            }
            Ok(total)
        })();
        if outcome.is_err() {
            self.refused.clear();
            for (path, len) in before {
                // Best effort: if even this fails the retry may duplicate lines, never lose them.
                match self.open.remove(path) {
                    Some(f) => {
                        let _ = f.file.set_len(len);
                    }
                    None => {
                        let _ = OpenOptions::new()
                            .write(true)
                            .open(path)
                            .and_then(|f| f.set_len(len));
                    }
                }
            }
        }
        outcome
    }

    fn file(&mut self, path: &Path) -> Result<&mut OpenFile, WriteError> {
        if !self.open.contains_key(path) {
            if self.open.len() >= self.max_open {
                self.close_oldest()?;
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // 0750 like the files' 0640: the operator's data, readable by an auditors' group, never by
                // everyone, whatever the agent's umask (field-named directories are made here too).
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o750)
                    .create(dir)
                    .map_err(|source| WriteError {
                        action: "creating the directory of",
                        path: path.to_path_buf(),
                        source,
                    })?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .mode(0o640)
                .open(path)
                .map_err(|source| WriteError {
                    action: "opening",
                    path: path.to_path_buf(),
                    source,
                })?;
            cut_torn_tail(&file, path).map_err(|source| WriteError {
                action: "checking the end of",
                path: path.to_path_buf(),
                source,
            })?;
            self.open.insert(
                path.to_path_buf(),
                OpenFile {
                    file,
                    last_write: Instant::now(),
                    dirty: false,
                },
            );
        }
        Ok(self.open.get_mut(path).expect("inserted above"))
    }

    /// Closes the least recently written file, syncing it first if this batch wrote to it (with
    /// `fsync = "batch"`): an error then fails the batch, as a failed sync at its end would.
    fn close_oldest(&mut self) -> Result<(), WriteError> {
        let Some(oldest) = self
            .open
            .iter()
            .min_by_key(|(_, f)| f.last_write)
            .map(|(p, _)| p.clone())
        else {
            return Ok(());
        };
        let f = self.open.remove(&oldest).expect("found above");
        if f.dirty && self.fsync == Fsync::Batch {
            f.file.sync_data().map_err(|source| WriteError {
                action: "syncing",
                path: oldest,
                source,
            })?;
        }
        Ok(())
    }

    fn close_idle(&mut self) {
        let idle = self.idle;
        self.open.retain(|_, f| f.last_write.elapsed() < idle);
        // A file met once is caught up for good: keep only the tails still to compare.
        if self.tails.len() > self.max_open {
            self.tails.retain(|_, t| t.is_some());
        }
    }

    /// How many files are open now (at most `max_open_files`).
    #[cfg(test)]
    pub fn open_files(&self) -> usize {
        self.open.len()
    }

    /// Closes every file (data was already fsynced per batch as configured).
    pub fn close_all(&mut self) {
        self.open.clear();
    }
}
