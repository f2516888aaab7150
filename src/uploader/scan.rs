//! Finding sessions in a recordings directory: `<sid>.raw`, `<sid>.cast`, `<sid>.events.ndjson`, grouped by
//! sid, with `<sid>.done` marking the session finished. A session without `.done` whose files have not
//! changed for `stale_after` is ready too (its recorder died), flagged incomplete.
//!
//! The listing never follows symlinks (`symlink_metadata`): a symlink or directory named like a recording is
//! kept as a file of the session, whose upload then fails with a clear error ("not a regular file") — so it
//! is counted and, after `max_attempts`, quarantined, rather than silently skipped or, worse, followed to
//! whatever it points at. Names that are not recordings (`spool/`, `quarantine/`, temporary files) are left
//! alone.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The recording files a session may have, in upload order.
pub const KINDS: [&str; 3] = ["raw", "cast", "events.ndjson"];

/// One file of a session as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its path.
    pub path: PathBuf,
    /// Its name (`<sid>.raw`).
    pub name: String,
    /// Size (0 for something that is not a regular file).
    pub size: u64,
    /// mtime, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Whether it is a regular file (not a symlink, directory, FIFO…).
    pub regular: bool,
}

/// A session found in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The directory.
    pub dir: PathBuf,
    /// Session id.
    pub sid: String,
    /// Its recording files, in [`KINDS`] order.
    pub files: Vec<Listed>,
    /// `<sid>.done`, when present.
    pub done: Option<Listed>,
    /// Ready to upload: `.done` exists, or nothing changed for `stale_after`.
    pub ready: bool,
    /// Ready without `.done`.
    pub incomplete: bool,
    /// When it ended (for the key's date): `.done`'s mtime, else the newest file's.
    pub ended_ns: i128,
}

impl Found {
    /// `<dir>/<sid>`, the session's key in the state file.
    pub fn id(&self) -> String {
        self.dir.join(&self.sid).to_string_lossy().into_owned()
    }
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

/// Splits `name` into (sid, kind) when it is a recording file or `.done`.
fn split(name: &str) -> Option<(&str, &str)> {
    for kind in KINDS.iter().copied().chain(["done"]) {
        if let Some(sid) = name.strip_suffix(kind).and_then(|s| s.strip_suffix('.')) {
            if crate::sessions::sid::validate(sid).is_ok() {
                return Some((sid, kind));
            }
        }
    }
    None
}

/// Lists the sessions in `dir` as of `now`. An unreadable directory is an error naming it.
pub fn scan(dir: &Path, stale_after: Duration, now: SystemTime) -> std::io::Result<Vec<Found>> {
    let now_ns = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    // sid → (recording files with their place in KINDS, `.done`).
    type Files = (Vec<(usize, Listed)>, Option<Listed>);
    let mut by_sid: BTreeMap<String, Files> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((sid, kind)) = split(name) else {
            continue;
        };
        let path = entry.path();
        // Gone between readdir and stat: the next scan sees what is there.
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let listed = Listed {
            name: name.to_string(),
            size: if m.is_file() { m.len() } else { 0 },
            mtime_ns: mtime_ns(&m),
            regular: m.file_type().is_file(),
            path,
        };
        let slot = by_sid.entry(sid.to_string()).or_default();
        if kind == "done" {
            slot.1 = Some(listed);
        } else {
            let order = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
            slot.0.push((order, listed));
        }
    }
    let stale_ns = stale_after.as_nanos() as i128;
    let mut out = Vec::new();
    for (sid, (mut files, done)) in by_sid {
        if files.is_empty() {
            // A `.done` alone: nothing to upload (already uploaded and deleted, or moved).
            continue;
        }
        files.sort_by_key(|(o, _)| *o);
        let files: Vec<Listed> = files.into_iter().map(|(_, l)| l).collect();
        let newest = files.iter().map(|f| f.mtime_ns).max().unwrap_or(0);
        let (ready, incomplete) = match &done {
            Some(_) => (true, false),
            None => {
                let stale = now_ns - newest >= stale_ns;
                (stale, stale)
            }
        };
        out.push(Found {
            dir: dir.to_path_buf(),
            ended_ns: done.as_ref().map_or(newest, |d| d.mtime_ns),
            sid,
            files,
            done,
            ready,
            incomplete,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_sid_and_marks_ready() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "a.raw",
            "a.cast",
            "a.events.ndjson",
            "a.done",
            "b.raw",
            "b.cast",
            "c.done",
            "x.tmp",
            "bad..raw",
        ] {
            std::fs::write(d.join(f), b"12345").unwrap();
        }
        std::fs::create_dir(d.join("spool")).unwrap();
        std::fs::create_dir(d.join("e.raw")).unwrap();
        let now = SystemTime::now();
        let found = scan(d, Duration::from_secs(3600), now).unwrap();
        let sids: Vec<&str> = found.iter().map(|f| f.sid.as_str()).collect();
        assert_eq!(sids, ["a", "b", "e"]);
        let a = &found[0];
        assert!(a.ready && !a.incomplete);
        let names: Vec<&str> = a.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.raw", "a.cast", "a.events.ndjson"]);
        assert_eq!(a.files[0].size, 5);
        assert!(!found[1].ready, "no .done and fresh: not yet");
        assert!(
            !found[2].files[0].regular,
            "a directory is listed, not followed or skipped"
        );
        // An hour later b is stale: ready, incomplete.
        let later = now + Duration::from_secs(3601);
        let found = scan(d, Duration::from_secs(3600), later).unwrap();
        assert!(found[1].ready && found[1].incomplete);
    }
}
