//! One session's recording files: `<sid>.raw`, `<sid>.cast`, `<sid>.done`, their running SHA-256 digests,
//! and the disk bounds (`max_bytes`, `min_free_bytes`).
//!
//! Writes are buffered (large buffers: the hot path makes one `write(2)` per buffer, not per read); the
//! hashers see exactly the bytes handed to the files, so a digest's prefix is the file's prefix. A
//! checkpoint flushes both buffers, fdatasyncs both files, then clones the hasher states to get the digests
//! of the prefixes — the bytes an event vouches for are on disk before the event is sent. A cut (a bound
//! reached, or a write failing) stops recording for good: the files keep what was recorded, and `.done`
//! says `truncated`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::events::Digests;

/// Output between two free-space checks.
const FLOOR_CHECK_BYTES: u64 = 1 << 20;
/// Each file's write buffer.
const BUFFER: usize = 256 << 10;

/// Why recording stopped before the session did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The session's `max_bytes` was reached.
    MaxBytes,
    /// The file system's free space fell under `min_free_bytes`.
    DiskFloor,
    /// A write or sync failed.
    WriteError(String),
}

impl Cut {
    /// The `reason` of the cut event.
    pub fn reason(&self) -> String {
        match self {
            Cut::MaxBytes => "max_bytes".into(),
            Cut::DiskFloor => "disk_floor".into(),
            Cut::WriteError(e) => format!("write_error: {e}"),
        }
    }
}

/// A file with its hasher and byte count.
struct Tracked {
    file: BufWriter<File>,
    hash: Sha256,
    bytes: u64,
}

impl Tracked {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.hash.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        rustix::fs::fdatasync(self.file.get_ref())?;
        Ok(())
    }

    fn digest(&self) -> String {
        hex::encode(self.hash.clone().finalize())
    }
}

/// The recording of one session.
pub struct Store {
    dir: PathBuf,
    sid: String,
    raw: Tracked,
    cast: Tracked,
    max_bytes: u64,
    min_free_bytes: u64,
    next_floor_check: u64,
    /// Set once recording stopped.
    cut: Option<Cut>,
}

impl Store {
    /// Creates `<sid>.raw` and `<sid>.cast` (mode 0600, refusing existing files) in `dir`, creating `dir`
    /// (0700) when missing.
    pub fn create(dir: &Path, sid: &str, max_bytes: u64, min_free_bytes: u64) -> io::Result<Store> {
        if !dir.exists() {
            auditrail_core::private_fs::create_dir_all(dir)?;
        }
        let open = |ext: &str| -> io::Result<Tracked> {
            let path = dir.join(format!("{sid}.{ext}"));
            let file = auditrail_core::private_fs::open_options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            Ok(Tracked {
                file: BufWriter::with_capacity(BUFFER, file),
                hash: Sha256::new(),
                bytes: 0,
            })
        };
        let raw = open("raw")?;
        let cast = open("cast")?;
        Ok(Store {
            dir: dir.to_path_buf(),
            sid: sid.to_string(),
            raw,
            cast,
            max_bytes,
            min_free_bytes,
            next_floor_check: 0,
            cut: None,
        })
    }

    /// Whether recording still goes on.
    pub fn recording(&self) -> bool {
        self.cut.is_none()
    }

    /// Why recording stopped, if it did.
    pub fn cut_reason(&self) -> Option<&Cut> {
        self.cut.as_ref()
    }

    /// Bytes of `.raw` + `.cast` so far.
    pub fn total_bytes(&self) -> u64 {
        self.raw.bytes + self.cast.bytes
    }

    /// Writes the `.cast` header.
    pub fn header(&mut self, line: &[u8]) -> Option<Cut> {
        self.append(&[], line)
    }

    /// Records one chunk: `raw` bytes of output (may be empty, e.g. for a resize) and their `.cast` line(s).
    /// Returns the cut when this chunk ends recording (then nothing of the chunk is written: the bound is
    /// never exceeded).
    pub fn append(&mut self, raw: &[u8], cast: &[u8]) -> Option<Cut> {
        if self.cut.is_some() {
            return None;
        }
        let total = self.total_bytes();
        let add = (raw.len() + cast.len()) as u64;
        if total + add > self.max_bytes {
            return self.stop(Cut::MaxBytes);
        }
        if total + add >= self.next_floor_check {
            self.next_floor_check = total + add + FLOOR_CHECK_BYTES;
            if let Ok(v) = rustix::fs::statvfs(&self.dir) {
                let free = v.f_bavail.saturating_mul(v.f_frsize);
                if free < self.min_free_bytes.saturating_add(add) {
                    return self.stop(Cut::DiskFloor);
                }
            }
        }
        let result = self.raw.write(raw).and_then(|()| self.cast.write(cast));
        match result {
            Ok(()) => None,
            Err(e) => self.stop(Cut::WriteError(e.to_string())),
        }
    }

    fn stop(&mut self, cut: Cut) -> Option<Cut> {
        // What was written before the cut is kept and synced; a failing file may lose its buffer, which the
        // digests then do not match (the event's byte counts say what was meant to be there).
        let _ = self.raw.sync();
        let _ = self.cast.sync();
        self.cut = Some(cut.clone());
        Some(cut)
    }

    /// Flushes and fdatasyncs both files and returns the digests of what they hold.
    pub fn checkpoint(&mut self) -> Result<Digests, Cut> {
        if self.cut.is_none() {
            if let Err(e) = self.raw.sync().and_then(|()| self.cast.sync()) {
                let cut = Cut::WriteError(e.to_string());
                self.stop(cut.clone());
                return Err(cut);
            }
        }
        Ok(self.digests())
    }

    /// The digests of the bytes handed to the files so far.
    pub fn digests(&self) -> Digests {
        Digests {
            raw_bytes: self.raw.bytes,
            raw_sha256: self.raw.digest(),
            cast_bytes: self.cast.bytes,
            cast_sha256: self.cast.digest(),
        }
    }

    /// Finishes the session: writes `trailer` (the cast's last events) when still recording, syncs both
    /// files, writes `<sid>.done` (tmp + rename, synced), and returns the final digests.
    pub fn finish(mut self, trailer: &[u8]) -> (Digests, Option<Cut>, io::Result<()>) {
        let _ = self.append(&[], trailer);
        let synced = self.raw.sync().and_then(|()| self.cast.sync());
        let d = self.digests();
        let done = synced.and_then(|()| self.write_done(&d));
        (d, self.cut, done)
    }

    fn write_done(&self, d: &Digests) -> io::Result<()> {
        let body = serde_json::json!({
            "sid": self.sid,
            "raw_bytes": d.raw_bytes,
            "raw_sha256": d.raw_sha256,
            "cast_bytes": d.cast_bytes,
            "cast_sha256": d.cast_sha256,
            "truncated": self.cut.is_some(),
        });
        let mut line = serde_json::to_vec(&body).expect("a JSON value serializes");
        line.push(b'\n');
        let tmp = self.dir.join(format!(".{}.done.tmp", self.sid));
        let f = auditrail_core::private_fs::write_replacing(&tmp, &line)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(format!("{}.done", self.sid)))?;
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_of_the_file_prefixes_and_the_bound_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path(), "s1", 10_000, 0).unwrap();
        assert_eq!(s.header(b"{\"version\": 2}\n"), None);
        assert_eq!(s.append(b"hello", b"[0.1, \"o\", \"hello\"]\n"), None);
        let d = s.checkpoint().unwrap();
        let raw = std::fs::read(dir.path().join("s1.raw")).unwrap();
        assert_eq!(raw, b"hello");
        assert_eq!(d.raw_sha256, hex::encode(Sha256::digest(&raw)));
        let cast = std::fs::read(dir.path().join("s1.cast")).unwrap();
        assert_eq!(d.cast_bytes as usize, cast.len());
        assert_eq!(d.cast_sha256, hex::encode(Sha256::digest(&cast)));
        let big = vec![b'x'; 6000];
        assert_eq!(s.append(&big, &big), Some(Cut::MaxBytes));
        assert!(!s.recording());
        assert_eq!(s.append(b"more", b"more"), None, "nothing after a cut");
        let (d, cut, done) = s.finish(b"");
        done.unwrap();
        assert_eq!(cut, Some(Cut::MaxBytes));
        assert_eq!(d.raw_bytes, 5);
        let done: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("s1.done")).unwrap()).unwrap();
        assert_eq!(done["truncated"], true);
        assert_eq!(done["raw_sha256"], d.raw_sha256.as_str());
        assert!(
            Store::create(dir.path(), "s1", 10_000, 0).is_err(),
            "never overwrites"
        );
    }
}
