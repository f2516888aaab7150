//! File-source checkpoints: for each file (device + inode), the byte offset up to which every event was
//! acknowledged by every sink, the line number there, and a fingerprint of the file's first bytes.
//!
//! The fingerprint guards against inode reuse: a new file that got a deleted file's inode does not inherit its
//! offset. The file is replaced atomically (write, fsync, rename, fsync the directory), so a crash leaves the
//! old or the new checkpoint, never a torn one.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes of a file's head that make its fingerprint.
pub const FINGERPRINT_BYTES: u64 = 256;

/// Identity of a file on this host.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// Hash of the first `len` bytes of a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many bytes were hashed (less than [`FINGERPRINT_BYTES`] only for a file that was that short).
    pub len: u64,
    /// FNV-1a 64 of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    /// Fingerprints the head of `file`.
    pub fn of(file: &File) -> io::Result<Fingerprint> {
        Fingerprint::of_len(file, FINGERPRINT_BYTES)
    }

    /// Hashes the first `len` bytes (fewer if the file is shorter).
    pub fn of_len(file: &File, len: u64) -> io::Result<Fingerprint> {
        let mut buf = vec![0u8; len as usize];
        let mut n = 0;
        while n < buf.len() {
            match file.read_at(&mut buf[n..], n as u64)? {
                0 => break,
                k => n += k,
            }
        }
        Ok(Fingerprint {
            len: n as u64,
            hash: fnv1a(&buf[..n]),
        })
    }

    /// Whether `file` still starts with the bytes this fingerprint was taken of.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        Ok(Fingerprint::of_len(file, self.len)? == *self)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One file's acknowledged position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Device and inode.
    #[serde(flatten)]
    pub key: FileKey,
    /// The path it was last seen at (for people; identity is the key).
    pub path: PathBuf,
    /// Bytes acknowledged.
    pub offset: u64,
    /// Lines before `offset`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The head of the file.
    pub fingerprint: Fingerprint,
}

#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    files: Vec<Entry>,
}

/// Where a source's checkpoints live.
pub struct Checkpoints {
    path: PathBuf,
}

impl Checkpoints {
    /// The checkpoint file of source `name`.
    pub fn new(data_dir: &Path, name: &str) -> Checkpoints {
        Checkpoints {
            path: data_dir.join("checkpoints").join(format!("{name}.json")),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the checkpoints; a missing file means none. A damaged file is an error naming it.
    pub fn load(&self) -> Result<HashMap<FileKey, Entry>, String> {
        let mut text = String::new();
        match File::open(&self.path) {
            Ok(mut f) => f
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(format!("cannot open {}: {e}", self.path.display())),
        };
        let file: CheckpointFile = serde_json::from_str(&text)
            .map_err(|e| format!("{} is damaged ({e})", self.path.display()))?;
        if file.version != 1 {
            return Err(format!(
                "{} has version {}, this agent reads version 1",
                self.path.display(),
                file.version
            ));
        }
        Ok(file.files.into_iter().map(|e| (e.key, e)).collect())
    }

    /// Replaces the checkpoints atomically and durably.
    pub fn save(&self, entries: &[Entry]) -> io::Result<()> {
        let dir = self.path.parent().expect("checkpoint path has a directory");
        auditrail_core::private_fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&CheckpointFile {
            version: 1,
            files: entries.to_vec(),
        })
        .map_err(io::Error::other)?;
        let f = auditrail_core::private_fs::write_replacing(&tmp, &body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoints::new(dir.path(), "src");
        assert!(cp.load().unwrap().is_empty());
        let data = dir.path().join("a.log");
        std::fs::write(&data, b"hello\n").unwrap();
        let f = File::open(&data).unwrap();
        let fp = Fingerprint::of(&f).unwrap();
        assert_eq!(fp.len, 6);
        let e = Entry {
            key: FileKey { dev: 1, ino: 2 },
            path: data.clone(),
            offset: 6,
            line: Some(1),
            fingerprint: fp,
        };
        cp.save(std::slice::from_ref(&e)).unwrap();
        assert_eq!(cp.load().unwrap()[&e.key], e);
        std::fs::write(&data, b"hellO\nmore").unwrap();
        assert!(!fp.matches(&File::open(&data).unwrap()).unwrap());
        std::fs::write(&data, b"hello\nmore").unwrap();
        assert!(fp.matches(&File::open(&data).unwrap()).unwrap());
        std::fs::write(cp.path(), b"{not json").unwrap();
        assert!(cp.load().unwrap_err().contains("damaged"));
    }
}
