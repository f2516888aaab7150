//! Which files a recording is: a session id looked up in the recordings directory, or a path given, and the
//! summary (sid, user, server, start, duration) the web player's list shows.
//!
//! A session id is only ever turned into `<dir>/<sid>.<ext>` after the recorder's own check
//! ([`crate::recording::valid_sid`]: `[A-Za-z0-9_-]{1,128}`), so no id can name a file elsewhere; and files
//! of the directory are opened only when they are regular files inside it after symlinks are resolved.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::cast::{CastReader, OpenError};

/// The files of one recording.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The session id (the file stem).
    pub sid: String,
    /// `<sid>.cast`.
    pub cast: PathBuf,
    /// `<sid>.raw`, when there.
    pub raw: Option<PathBuf>,
    /// `<sid>.events.ndjson`, when there.
    pub events: Option<PathBuf>,
}

/// Why a recording cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// Not a session id, and no such file.
    #[error("`{0}` is neither a file nor a session id ([A-Za-z0-9_-]{{1,128}})")]
    NotASid(String),
    /// A valid id without its `.cast` in the directory.
    #[error("no recording `{sid}` in {dir} (no {sid}.cast there); `auditrail play --web --dir {dir}` lists them")]
    Unknown {
        /// The id.
        sid: String,
        /// The directory looked in.
        dir: String,
    },
}

/// `what` as a path to a `.cast` / `.raw` file, else as a session id in `dir`.
pub fn find(what: &str, dir: &Path) -> Result<Recording, FindError> {
    let as_path = Path::new(what);
    if (what.contains('/') || what.ends_with(".cast") || what.ends_with(".raw"))
        && as_path.is_file()
    {
        let stem = as_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("recording");
        let base = stem
            .strip_suffix(".cast")
            .or_else(|| stem.strip_suffix(".raw"))
            .unwrap_or(stem);
        let sibling = |ext: &str| {
            let p = as_path.with_file_name(format!("{base}.{ext}"));
            p.is_file().then_some(p)
        };
        let is_raw = what.ends_with(".raw");
        return Ok(Recording {
            sid: base.to_string(),
            cast: if is_raw {
                sibling("cast").unwrap_or_else(|| as_path.to_path_buf())
            } else {
                as_path.to_path_buf()
            },
            raw: if is_raw {
                Some(as_path.to_path_buf())
            } else {
                sibling("raw")
            },
            events: sibling("events.ndjson"),
        });
    }
    if !crate::recording::valid_sid(what) {
        return Err(FindError::NotASid(what.to_string()));
    }
    in_dir(what, dir).ok_or_else(|| FindError::Unknown {
        sid: what.to_string(),
        dir: dir.display().to_string(),
    })
}

/// The recording `sid` in `dir`, only if its `.cast` is a regular file that really is inside `dir`
/// (a symlink pointing out of it counts as absent).
pub fn in_dir(sid: &str, dir: &Path) -> Option<Recording> {
    if !crate::recording::valid_sid(sid) {
        return None;
    }
    let file = |ext: &str| inside(dir, &format!("{sid}.{ext}"));
    Some(Recording {
        sid: sid.to_string(),
        cast: file("cast")?,
        raw: file("raw"),
        events: file("events.ndjson"),
    })
}

/// `dir/name` when it is a regular file whose real path is inside `dir`'s real path.
pub fn inside(dir: &Path, name: &str) -> Option<PathBuf> {
    if name.contains('/') || name.starts_with('.') || name.contains('\0') {
        return None;
    }
    let root = dir.canonicalize().ok()?;
    let real = dir.join(name).canonicalize().ok()?;
    (real.parent() == Some(root.as_path()) && real.is_file()).then_some(real)
}

/// What the list of recordings shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Session id.
    pub sid: String,
    /// `user` of the session.start event, when the events file has it.
    pub user: Option<String>,
    /// `server_hostname` (or `server_id`) of the session.start event.
    pub server: Option<String>,
    /// Unix seconds from the cast header.
    pub start: Option<i64>,
    /// Seconds, from the last event.
    pub duration: Option<f64>,
    /// Columns × rows.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// Bytes of the `.cast`.
    pub bytes: u64,
    /// Why the header cannot be read, when it cannot.
    pub problem: Option<String>,
}

/// How much of an events file is searched for the `session.start` event.
const EVENTS_HEAD: u64 = 256 << 10;
/// How much of a v2 cast's tail is read for its last time.
const CAST_TAIL: u64 = 256 << 10;

/// The summary of a recording. v2 casts give their duration from the last lines; v3's intervals need the
/// whole file read (streamed).
pub fn summarize(rec: &Recording) -> Summary {
    let bytes = std::fs::metadata(&rec.cast).map(|m| m.len()).unwrap_or(0);
    let (user, server) = rec.events.as_deref().map(who).unwrap_or((None, None));
    let mut s = Summary {
        sid: rec.sid.clone(),
        user,
        server,
        start: None,
        duration: None,
        cols: 0,
        rows: 0,
        bytes,
        problem: None,
    };
    match CastReader::open(&rec.cast) {
        Ok(mut r) => {
            let h = r.header().clone();
            s.start = h.timestamp;
            s.cols = h.cols;
            s.rows = h.rows;
            s.duration = if h.version == 2 {
                last_time_v2(&rec.cast)
            } else {
                let mut last = 0.0;
                while let Some(e) = r.next_event() {
                    if let Ok(e) = e {
                        last = e.time;
                    }
                }
                Some(last)
            };
        }
        Err(OpenError::Header(p)) => s.problem = Some(p.to_string()),
        Err(e) => s.problem = Some(e.to_string()),
    }
    s
}

/// The time of the last readable event line of a v2 cast, from its tail.
pub fn last_time_v2(path: &Path) -> Option<f64> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = len.saturating_sub(CAST_TAIL);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut tail = Vec::new();
    f.take(CAST_TAIL).read_to_end(&mut tail).ok()?;
    tail.split(|&b| b == b'\n')
        .rev()
        .filter_map(|l| {
            serde_json::from_slice::<(f64, serde_json::Value, serde_json::Value)>(l).ok()
        })
        .map(|e| e.0)
        .find(|t| t.is_finite())
        .or(Some(0.0))
}

/// `user` and server of the first `session.start` in the head of an events file.
fn who(events: &Path) -> (Option<String>, Option<String>) {
    let Ok(f) = std::fs::File::open(events) else {
        return (None, None);
    };
    for line in BufReader::new(f.take(EVENTS_HEAD)).lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["event"] == "session.start" {
            let s = |k: &str| v[k].as_str().map(str::to_string);
            return (s("user"), s("server_hostname").or_else(|| s("server_id")));
        }
    }
    (None, None)
}

/// Every recording of `dir` (files `<sid>.cast` with a valid sid), newest first by start time.
pub fn list(dir: &Path, max: usize) -> std::io::Result<Vec<Recording>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(sid) = name.strip_suffix(".cast") else {
            continue;
        };
        if let Some(r) = in_dir(sid, dir) {
            out.push(r);
        }
        if out.len() >= max {
            break;
        }
    }
    out.sort_by(|a, b| a.sid.cmp(&b.sid));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_symlinks_never_leave_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.cast"), "{}").unwrap();
        std::fs::write(d.path().join("ok.cast"), "{}").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.cast"),
            d.path().join("out.cast"),
        )
        .unwrap();
        assert!(in_dir("ok", d.path()).is_some());
        assert!(in_dir("out", d.path()).is_none());
        assert!(in_dir("../x", d.path()).is_none());
        assert!(inside(d.path(), "..").is_none());
        assert!(inside(d.path(), "/etc/passwd").is_none());
        assert!(matches!(
            find("nope", d.path()),
            Err(FindError::Unknown { .. })
        ));
        assert!(matches!(find("a b", d.path()), Err(FindError::NotASid(_))));
    }
}
