//! Rotating one component's dead-letter files and counting, exactly, the records rotation removes.
//!
//! `name.ndjson` → `name.ndjson.1` → … → `name.ndjson.<max_files - 1>`, which is removed. The records lost are
//! counted from the removed file itself (its lines), so the count is exact across restarts and whatever wrote
//! the file before.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// `path` with `.n` appended (`x.ndjson.3`); `n == 0` is `path` itself.
pub(crate) fn numbered(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The records (NDJSON lines, a torn last line included) in the file at `path`; 0 if there is none.
pub(crate) fn count_records(path: &Path) -> io::Result<u64> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; 64 << 10];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// Removes `path` after counting its records; a missing file is 0 records.
fn remove_counted(path: &Path) -> io::Result<u64> {
    let n = count_records(path)?;
    match std::fs::remove_file(path) {
        Ok(()) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Shifts the files of `path` up by one, removing the oldest kept one, and returns how many records it held.
/// The caller has closed `path` and opens a new one after.
pub(crate) fn rotate(path: &Path, max_files: u32) -> io::Result<u64> {
    let oldest = max_files.saturating_sub(1);
    let lost = remove_counted(&numbered(path, oldest))?;
    for n in (0..oldest).rev() {
        match std::fs::rename(numbered(path, n), numbered(path, n + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(lost)
}

/// Removes files numbered `max_files` and above (left by a larger `max_files` before), returning the records
/// they held.
pub(crate) fn prune_beyond(path: &Path, max_files: u32) -> io::Result<u64> {
    let mut lost = 0;
    let mut n = max_files.max(1);
    while numbered(path, n).exists() {
        lost += remove_counted(&numbered(path, n))?;
        n += 1;
    }
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        assert_eq!(count_records(&p).unwrap(), 0);
        std::fs::write(&p, b"").unwrap();
        assert_eq!(count_records(&p).unwrap(), 0);
        std::fs::write(&p, b"a\nb\n").unwrap();
        assert_eq!(count_records(&p).unwrap(), 2);
        std::fs::write(&p, b"a\nb\n{\"torn").unwrap();
        assert_eq!(count_records(&p).unwrap(), 3);
        assert_eq!(numbered(&p, 2), dir.path().join("x.2"));
    }
}
