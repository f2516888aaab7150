//! The uploader's state file, `<data_dir>/uploader/state.json`: per local file, the multipart upload in
//! progress (its upload id and the ETag of every part done) and the verified result; per session, whether
//! its event went out and its retention was applied, and its failures. It is what makes uploads resumable
//! and exactly-once across crashes: a part whose ETag is recorded is never sent again, a verified file
//! (same size and mtime) is never uploaded again.
//!
//! Written whole, atomically: a temporary file (mode 0600) written and fsynced, renamed over the old one,
//! the directory fsynced. What must be on disk before the next step (a new multipart upload's id before
//! its first part, a session's result before retention or quarantine touches its files) is saved at once
//! ([`StateFile::save`]); the rest (a part's ETag, a file verified) is saved at most every
//! [`SAVE_EVERY`] ([`StateFile::save_soon`], [`StateFile::flush`]): a crash then loses at most that much
//! progress, which costs a part sent again or a HEAD that finds the object already there, never an
//! object. Writing the whole file for every part and every file was O(files²) and one fsync each (a fifth
//! of the uploader's CPU on a thousand small files). A crash leaves either the old or the new state, never a mix. A state file that
//! cannot be read is an error at start, naming the file (it is never silently reset: that would re-upload
//! and, worse, forget which multipart uploads are ours).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The whole state.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Format version, 1.
    pub version: u32,
    /// By absolute local path.
    #[serde(default)]
    pub files: BTreeMap<String, FileState>,
    /// By `<dir>/<sid>`.
    #[serde(default)]
    pub sessions: BTreeMap<String, SessionState>,
}

/// One local file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FileState {
    /// The object key it goes to.
    pub key: String,
    /// A multipart upload in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<Multipart>,
    /// The last verified upload of this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
    /// ETag of the last object this uploader wrote at `key` (verified or not): an existing object with it is
    /// ours and may be replaced by a newer version of the file; any other content at the key is never
    /// overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub our_etag: Option<String>,
}

/// A multipart upload in progress.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Multipart {
    /// The store's upload id.
    pub id: String,
    /// Part size it was started with.
    pub part_size: u64,
    /// File size it was started for.
    pub size: u64,
    /// SHA-256 (hex) of the file it was started for (also in the object's metadata).
    pub sha256: String,
    /// ETag per part index; `None`: not done.
    pub parts: Vec<Option<String>>,
}

/// A verified upload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Verified {
    /// File size.
    pub size: u64,
    /// File mtime, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// SHA-256 (hex).
    pub sha256: String,
    /// The object's ETag.
    pub etag: String,
    /// When it was verified, RFC 3339.
    pub at: String,
}

/// One session.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SessionState {
    /// Failures of its own so far (towards `max_attempts`).
    #[serde(default)]
    pub attempts: u32,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Every object verified and the `session.upload` event handed to delivery, at this time (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_at: Option<i64>,
    /// Times it was uploaded again because a file changed after its upload.
    #[serde(default)]
    pub reuploads: u32,
    /// Moved to quarantine (here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
}

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("uploader state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a state file.
    #[error("uploader state file {path} is damaged ({source}); move it aside to start over (files already verified may then be uploaded again, as already-present objects)")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Longest time a change saved with [`StateFile::save_soon`] waits for its write.
pub const SAVE_EVERY: Duration = Duration::from_millis(500);

/// The state and where it lives.
pub struct StateFile {
    path: PathBuf,
    /// The state.
    pub state: State,
    /// Changed since the last write.
    dirty: bool,
    /// When it was last written.
    saved_at: Instant,
}

impl StateFile {
    /// Opens `<dir>/state.json` (creating `dir` 0700), or starts empty when there is none.
    pub fn open(dir: &Path) -> Result<StateFile, StateError> {
        let path = dir.join("state.json");
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        auditrail_core::private_fs::create_dir_all(dir).map_err(io)?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Damaged {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                version: 1,
                ..State::default()
            },
            Err(e) => return Err(io(e)),
        };
        Ok(StateFile {
            path,
            state,
            dirty: false,
            saved_at: Instant::now(),
        })
    }

    /// Notes a change whose loss a crash may cost (a part sent again, a HEAD repeated): written now if the
    /// last write is [`SAVE_EVERY`] old, else by the next [`StateFile::save_soon`] or [`StateFile::flush`].
    pub fn save_soon(&mut self) -> Result<(), StateError> {
        self.dirty = true;
        if self.saved_at.elapsed() >= SAVE_EVERY {
            self.save()
        } else {
            Ok(())
        }
    }

    /// Writes what [`StateFile::save_soon`] left, if anything.
    pub fn flush(&mut self) -> Result<(), StateError> {
        if self.dirty {
            self.save()
        } else {
            Ok(())
        }
    }

    /// Writes the state atomically (tmp + fsync + rename + fsync of the directory), now.
    pub fn save(&mut self) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(&self.state).expect("the state serializes");
        let tmp = self.path.with_extension("json.tmp");
        let mut f = auditrail_core::private_fs::write_replacing(&tmp, &bytes).map_err(io)?;
        f.flush().map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        self.dirty = false;
        self.saved_at = Instant::now();
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trips_atomically_and_privately() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("uploader");
        let mut s = StateFile::open(&d).unwrap();
        assert_eq!(s.state.version, 1);
        s.state.files.insert(
            "/r/a.raw".into(),
            FileState {
                key: "k".into(),
                upload: Some(Multipart {
                    id: "u1".into(),
                    part_size: 5 << 20,
                    size: 11 << 20,
                    sha256: "00".into(),
                    parts: vec![Some("\"e1\"".into()), None, None],
                }),
                verified: None,
                our_etag: None,
            },
        );
        s.save().unwrap();
        let mode = std::fs::metadata(d.join("state.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!d.join("state.json.tmp").exists());
        let again = StateFile::open(&d).unwrap();
        assert_eq!(again.state, s.state);
    }

    #[test]
    fn a_change_saved_soon_reaches_the_disk_by_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StateFile::open(dir.path()).unwrap();
        s.save().unwrap();
        s.state
            .sessions
            .insert("/r/s1".into(), SessionState::default());
        s.save_soon().unwrap();
        // Just saved: this change waits (a second change within SAVE_EVERY costs no write).
        assert!(StateFile::open(dir.path())
            .unwrap()
            .state
            .sessions
            .is_empty());
        s.flush().unwrap();
        assert_eq!(StateFile::open(dir.path()).unwrap().state, s.state);
        // Once SAVE_EVERY has passed, save_soon writes at once.
        s.state
            .sessions
            .insert("/r/s2".into(), SessionState::default());
        s.saved_at = Instant::now() - SAVE_EVERY;
        s.save_soon().unwrap();
        assert_eq!(StateFile::open(dir.path()).unwrap().state, s.state);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        let e = StateFile::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("state.json") && e.contains("damaged"), "{e}");
    }
}
