//! The spool: events the recorder could not hand to the agent, kept under `<recordings>/spool/` until the next
//! `record` (or the agent at start) delivers them.
//!
//! The contract shared with the agent: files `spool/*.ndjson`, one complete event JSON object per line. A
//! writer holds `flock(LOCK_EX)` on its file for the whole session, so a drainer (which takes
//! `LOCK_EX|LOCK_NB` and skips a locked file) never takes a file that is still being written. Lines are
//! fdatasync'd as written: a spooled event is one the agent did not get, it must survive a crash. Files stay
//! under 16 MiB (a writer moves to a new file) and lines under 1 MiB. A drainer sends every complete line,
//! counts and skips damaged ones (not a JSON object, or a torn last line without `\n`), then unlinks.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

/// Largest spool file a writer makes and a drainer reads.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Longest spool line.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The spool file of one recorder, created on the first event that needs it.
pub struct SpoolWriter {
    dir: PathBuf,
    stem: String,
    file: Option<(File, u64)>,
    files_made: u32,
}

impl SpoolWriter {
    /// A writer into `dir` (`<recordings>/spool`), naming its files after `sid` and the pid.
    pub fn new(dir: PathBuf, sid: &str) -> SpoolWriter {
        SpoolWriter {
            dir,
            stem: format!("{sid}-{}", std::process::id()),
            file: None,
            files_made: 0,
        }
    }

    /// Appends one event line (ending in `\n`) and syncs it.
    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if line.len() > MAX_LINE_BYTES || line.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a spoolable event line",
            ));
        }
        if self
            .file
            .as_ref()
            .is_some_and(|(_, n)| n + line.len() as u64 > MAX_FILE_BYTES)
        {
            self.file = None;
        }
        if self.file.is_none() {
            auditrail_core::private_fs::create_dir_all(&self.dir)?;
            self.files_made += 1;
            let name = if self.files_made == 1 {
                format!("{}.ndjson", self.stem)
            } else {
                format!("{}-{}.ndjson", self.stem, self.files_made)
            };
            let f = auditrail_core::private_fs::open_options()
                .create(true)
                .append(true)
                .open(self.dir.join(name))?;
            rustix::fs::flock(&f, FlockOperation::LockExclusive)?;
            let len = f.metadata()?.len();
            self.file = Some((f, len));
        }
        let (f, n) = self.file.as_mut().expect("opened above");
        f.write_all(line)?;
        rustix::fs::fdatasync(&*f)?;
        *n += line.len() as u64;
        Ok(())
    }
}

/// What a drain did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Files delivered and removed.
    pub files: usize,
    /// Event lines sent.
    pub events: usize,
    /// Lines skipped as damaged (not a JSON object, too long, torn).
    pub damaged: usize,
    /// Files left for later (locked by a live writer, or not delivered in time).
    pub left: usize,
    /// What went wrong, one line per problem, naming the file.
    pub problems: Vec<String>,
}

/// Sends the complete events of every unlocked spool file in `dir` over `stream`, removing each file once
/// it is sent; stops at `deadline` (what is left waits for the next drainer).
pub fn drain(dir: &Path, stream: &mut UnixStream, deadline: Instant) -> Drained {
    let mut out = Drained::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    for path in files {
        if Instant::now() >= deadline {
            out.left += 1;
            continue;
        }
        match drain_file(&path, stream, deadline, &mut out) {
            Ok(true) => out.files += 1,
            Ok(false) => out.left += 1,
            Err(e) => {
                out.left += 1;
                out.problems
                    .push(format!("spool file {}: {e}", path.display()));
                // The connection may be broken: leave the rest for the next drainer.
                break;
            }
        }
    }
    out
}

/// `Ok(false)`: locked, skipped.
fn drain_file(
    path: &Path,
    stream: &mut UnixStream,
    deadline: Instant,
    out: &mut Drained,
) -> io::Result<bool> {
    let file = File::open(path)?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let size = file.metadata()?.len();
    if size > MAX_FILE_BYTES {
        out.problems.push(format!(
            "spool file {}: {size} bytes, over the {MAX_FILE_BYTES}-byte bound: only its first {MAX_FILE_BYTES} bytes are read",
            path.display()
        ));
    }
    let mut reader = io::BufReader::new(file.take(MAX_FILE_BYTES));
    let mut batch = Vec::with_capacity(64 << 10);
    let mut line = Vec::new();
    let mut number = 0usize;
    let mut damaged_here = 0usize;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        number += 1;
        let complete = line.last() == Some(&b'\n');
        if !complete {
            if line.len() > MAX_LINE_BYTES {
                // Too long: skip to the end of this line.
                let mut rest = Vec::new();
                reader.read_until(b'\n', &mut rest)?;
            }
            damaged_here += 1;
            out.problems.push(format!(
                "spool file {} line {number}: {}",
                path.display(),
                if line.len() > MAX_LINE_BYTES {
                    "longer than 1 MiB"
                } else {
                    "torn (no newline at the end)"
                }
            ));
            continue;
        }
        if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&line).is_err() {
            damaged_here += 1;
            out.problems.push(format!(
                "spool file {} line {number}: not a JSON object",
                path.display()
            ));
            continue;
        }
        batch.extend_from_slice(&line);
        out.events += 1;
        if batch.len() >= 64 << 10 {
            send(stream, &batch, deadline)?;
            batch.clear();
        }
    }
    send(stream, &batch, deadline)?;
    out.damaged += damaged_here;
    std::fs::remove_file(path)?;
    Ok(true)
}

fn send(stream: &mut UnixStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "out of time for the spool",
        ));
    }
    stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
    stream.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_locked_file_is_left_and_damage_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let mut w = SpoolWriter::new(spool.clone(), "live");
        w.append(b"{\"event\":\"a\"}\n").unwrap();
        std::fs::write(
            spool.join("old.ndjson"),
            b"{\"event\":\"b\"}\nnot json\n[1]\n{\"event\":\"c\"}\n{\"event\":\"torn\"",
        )
        .unwrap();
        let sock = dir.path().join("s");
        let listener = UnixListener::bind(&sock).unwrap();
        let mut client = UnixStream::connect(&sock).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let d = drain(&spool, &mut client, Instant::now() + Duration::from_secs(5));
        drop(client);
        let mut got = String::new();
        server.read_to_string(&mut got).unwrap();
        assert_eq!(got, "{\"event\":\"b\"}\n{\"event\":\"c\"}\n");
        assert_eq!(
            (d.files, d.events, d.damaged, d.left),
            (1, 2, 3, 1),
            "{d:?}"
        );
        assert!(!spool.join("old.ndjson").exists());
        assert_eq!(
            std::fs::read_dir(&spool).unwrap().count(),
            1,
            "the live file stays"
        );
    }
}
