//! Files and directories that hold the agent's state (buffers, checkpoints, chain state, dead letters): made
//! `0700` (directories) and `0600` (files) whatever the process umask is.
//!
//! These hold audit data and the chain's secrets-adjacent state; an agent started from a shell or a unit with a
//! permissive umask (`000`, `002`) must not leave them readable or writable by other users. The mode is given
//! at creation (`DirBuilderExt::mode`, `OpenOptionsExt::mode`, which the umask can only narrow), and files
//! replaced by rename get their mode from the temporary file, which [`write_replacing`] creates (or fixes) as
//! `0600`. Existing directories are left as the operator made them: the agent warns about a group- or
//! world-writable `data_dir` at start instead (see the pipeline).

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory the agent creates for its state.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the agent creates for its state.
pub const FILE_MODE: u32 = 0o600;

/// `mkdir -p` with [`DIR_MODE`] for every directory it creates.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// `OpenOptions` whose created file gets [`FILE_MODE`].
pub fn open_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates (or truncates) `path` with [`FILE_MODE`], writes `bytes` and returns the open file (not synced). A
/// file left by an earlier run with another mode (a temporary file of an older version) is set to
/// [`FILE_MODE`] first, so what is renamed over the real file is always private.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<File> {
    let mut f = open_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    make_private(&f)?;
    f.write_all(bytes)?;
    Ok(f)
}

/// Sets `f` to [`FILE_MODE`] unless it already is.
pub fn make_private(f: &File) -> io::Result<()> {
    if f.metadata()?.mode() & 0o7777 != FILE_MODE {
        f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// Whether `mode` lets the group or others write.
pub fn group_or_world_writable(mode: u32) -> bool {
    mode & 0o022 != 0
}

/// Runs `f` with the process umask set to `mask`, one such test at a time (the umask is process-wide).
#[cfg(test)]
pub(crate) fn with_umask<R>(mask: libc::mode_t, f: impl FnOnce() -> R) -> R {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: umask(2) cannot fail; the old mask is put back below.
    let old = unsafe { libc::umask(mask) };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    unsafe { libc::umask(old) };
    r.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_hold_under_a_permissive_umask() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        let f = deep.join("f");
        with_umask(0, || {
            create_dir_all(&deep).unwrap();
            drop(write_replacing(&f, b"x").unwrap());
            std::fs::set_permissions(&f, Permissions::from_mode(0o666)).unwrap();
            drop(write_replacing(&f, b"y").unwrap());
        });
        for d in ["a", "a/b", "a/b/c"] {
            let m = std::fs::metadata(dir.path().join(d)).unwrap().mode() & 0o7777;
            assert_eq!(m, DIR_MODE, "{d}");
        }
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, FILE_MODE);
        assert!(group_or_world_writable(0o777) && group_or_world_writable(0o720));
        assert!(!group_or_world_writable(0o755));
    }
}
