//! The directory lock: one open buffer per directory, across processes and within one.
//!
//! `open` takes an exclusive, non-blocking `flock` on `<dir>/lock`. The lock lives as long as the buffer's shared
//! state, so it is released only when the writer, the reader and the acknowledgement task have all finished:
//! reopening a directory never races the previous instance's last writes.

use std::fs::File;
use std::path::Path;

use super::error::DiskBufferError;

/// Name of the lock file in the buffer directory.
pub(crate) const LOCK_FILE: &str = "lock";

/// Holds the lock on a buffer directory until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir`, or says who holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, DiskBufferError> {
        let path = dir.join(LOCK_FILE);
        let file = crate::private_fs::open_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| DiskBufferError::Lock {
                path: path.clone(),
                source,
            })?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::WouldBlock {
                    return Err(DiskBufferError::Locked {
                        dir: dir.to_path_buf(),
                    });
                }
                return Err(DiskBufferError::Lock { path, source: err });
            }
        }
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        #[cfg(unix)]
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(DiskBufferError::Locked { .. })
        ));
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
