//! Directories and sockets the agent (root) shares with users' recorders.
//!
//! Everything else the agent keeps is private (`data_dir` 0700, files 0600: see docs/files-on-disk.md). A
//! recorder runs as the logged-in user and must reach three things: the sessions socket, the unix source's
//! socket, and the recordings directory with its `spool/`. So:
//!
//! - **Drop directories** (the recordings directory and its `spool/`) are created `1733` when missing: anyone may
//!   create a file there (`-wx` for others), nobody but root may list them (no `r`: users do not learn each
//!   other's session ids), and the sticky bit keeps users from deleting or renaming each other's files. A
//!   directory that already exists is left as the operator made it; a world-writable one without the sticky bit
//!   is warned about (anyone could delete anyone's recording or spool).
//! - **Reaching them**: a socket or drop directory under `data_dir` is unreachable while `data_dir` is 0700, so
//!   the agent adds the search bit (`x`, not `r` or `w`, for group and others) to `data_dir` and every
//!   directory between it and the shared path. Search alone lets them open a name they already know;
//!   every file of the agent's own is 0600, so nothing else becomes readable. Directories above `data_dir`
//!   (or on a path outside it) are not changed; when they block the way, a warning says which one.

use std::fs::Permissions;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of a drop directory the agent creates.
pub const DROP_DIR_MODE: u32 = 0o1733;

/// Creates `dir` and, when missing, its parent, with [`DROP_DIR_MODE`]; makes the way to them reachable from
/// `data_dir` for everyone ([`make_reachable`]).
pub fn prepare_drop_dir(dir: &Path, data_dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        if parent.exists() {
            make_reachable(parent, data_dir, 0o666);
        } else {
            if let Some(grand) = parent.parent().filter(|p| !p.as_os_str().is_empty()) {
                auditrail_core::private_fs::create_dir_all(grand)?;
                make_reachable(grand, data_dir, 0o666);
            }
            create_drop_dir(parent)?;
        }
    }
    create_drop_dir(dir)
}

fn create_drop_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // Set explicitly: the umask would have cleared the bits others need.
            std::fs::set_permissions(dir, Permissions::from_mode(DROP_DIR_MODE))?;
            tracing::info!(dir = %dir.display(), mode = "1733", "created a shared drop directory for recorders");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let m = std::fs::metadata(dir)?;
            if !m.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the path exists and is not a directory",
                ));
            }
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                tracing::warn!(dir = %dir.display(), mode = %format!("{mode:04o}"), "a shared drop directory is world-writable without the sticky bit: any user can delete or replace other users' recordings and spooled events; make it 1733 (chmod 1733 {})", dir.display());
            } else if mode & 0o003 != 0o003 {
                tracing::warn!(dir = %dir.display(), mode = %format!("{mode:04o}"), "users' recorders cannot create files in this directory (mode lacks -wx for others); recordings or spooled events of non-root sessions will fail; make it 1733 if that is not intended");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Adds the search bit (for group and others) to `dir` and each of its ancestors down from `data_dir`, when
/// `mode` shares the socket or directory with anyone and `dir` is `data_dir` or below it; above it (or outside
/// it) only warns when a directory blocks the way. Others get it even for a group-only socket: the directories'
/// group is rarely the socket's, and search alone reveals nothing (the socket's own mode admits or refuses).
pub fn make_reachable(dir: &Path, data_dir: &Path, mode: u32) {
    if mode & 0o066 == 0 {
        return;
    }
    let need = 0o011;
    let inside = dir.starts_with(data_dir);
    for d in dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
        let ours = inside && d.starts_with(data_dir);
        let Ok(m) = std::fs::metadata(d) else {
            continue;
        };
        let cur = m.permissions().mode() & 0o7777;
        if cur & need == need {
            continue;
        }
        if ours {
            match std::fs::set_permissions(d, Permissions::from_mode(cur | need)) {
                Ok(()) => {
                    tracing::info!(dir = %d.display(), from = %format!("{cur:04o}"), to = %format!("{:04o}", cur | need), "added the search bit so users' recorders can reach the sessions socket, the events socket or the recordings directory (names only: nothing becomes listable or readable)")
                }
                Err(e) => {
                    tracing::warn!(dir = %d.display(), error = %e, "cannot add the search bit users' recorders need to reach a shared socket or directory")
                }
            }
        } else {
            tracing::warn!(dir = %d.display(), mode = %format!("{cur:04o}"), "users cannot pass this directory to reach a socket or directory shared with recorders (it lacks the search bit x); recorders run as users will not reach it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_dirs_are_1733_and_the_way_is_searchable_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        auditrail_core::private_fs::create_dir_all(&data).unwrap();
        let spool = data.join("recordings/spool");
        prepare_drop_dir(&spool, &data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&spool), 0o1733);
        assert_eq!(mode(&data.join("recordings")), 0o1733);
        assert_eq!(mode(&data), 0o711, "data_dir gains search, nothing else");
        // A second start changes nothing.
        prepare_drop_dir(&spool, &data).unwrap();
        assert_eq!(mode(&data), 0o711);
        // A group-only socket too: the directories' group is not the socket's.
        let sub = dir.path().join("data2/run");
        auditrail_core::private_fs::create_dir_all(&sub).unwrap();
        make_reachable(&sub, &dir.path().join("data2"), 0o660);
        assert_eq!(mode(&sub), 0o711);
        assert_eq!(mode(&dir.path().join("data2")), 0o711);
        // A private socket changes nothing.
        let sub3 = dir.path().join("data3");
        auditrail_core::private_fs::create_dir_all(&sub3).unwrap();
        make_reachable(&sub3, &sub3, 0o600);
        assert_eq!(mode(&sub3), 0o700);
    }
}
