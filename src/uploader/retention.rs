//! What happens to a session's local files: retention after every object is verified (`keep`, `delete`,
//! `move:DIR`), and quarantine after `max_attempts` failures of its own — the whole session (its recording
//! files and `.done`) moved to `<dir>/quarantine/<sid>/`, never deleted, so one bad recording never blocks the
//! others and nothing is lost (teleport#61538, #8173).

use std::path::{Path, PathBuf};

use super::config::AfterUpload;
use super::scan::KINDS;

/// The session's files present in `dir` (recordings, the players' seek index and `.done`). The index
/// (`<sid>.index`, written by the first `auditrail play`) is not uploaded — it is rebuilt from the `.cast` —
/// but holds screens of the session, so it goes wherever the recording goes, never left behind.
fn session_files(dir: &Path, sid: &str) -> Vec<PathBuf> {
    KINDS
        .iter()
        .copied()
        .chain([crate::play::index_file::EXTENSION, "done"])
        .map(|k| dir.join(format!("{sid}.{k}")))
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

/// Moves every file of the session into `to` (created 0700); the error names the file.
fn move_all(dir: &Path, sid: &str, to: &Path) -> Result<(), String> {
    auditrail_core::private_fs::create_dir_all(to)
        .map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    for p in session_files(dir, sid) {
        let name = p.file_name().expect("a file name");
        std::fs::rename(&p, to.join(name))
            .map_err(|e| format!("cannot move {} to {}: {e}", p.display(), to.display()))?;
    }
    Ok(())
}

/// Applies `after` to the session `sid` in `dir` (only ever called once it is verified). The `.done` goes
/// last, so a crash half-way leaves a session that is still recognised (and found verified in the state).
pub fn apply(after: &AfterUpload, dir: &Path, sid: &str) -> Result<(), String> {
    match after {
        AfterUpload::Keep => Ok(()),
        AfterUpload::Delete => {
            for p in session_files(dir, sid) {
                std::fs::remove_file(&p)
                    .map_err(|e| format!("cannot delete {}: {e}", p.display()))?;
            }
            Ok(())
        }
        AfterUpload::Move(to) => move_all(dir, sid, to),
    }
}

/// Moves the session aside into `<dir>/quarantine/<sid>/`; returns where.
pub fn quarantine(dir: &Path, sid: &str) -> Result<PathBuf, String> {
    let to = dir.join("quarantine").join(sid);
    move_all(dir, sid, &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_move_and_quarantine_take_the_whole_session() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "a.raw",
            "a.cast",
            "a.index",
            "a.done",
            "b.raw",
            "b.done",
            "c.raw",
            "c.events.ndjson",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        apply(&AfterUpload::Keep, d, "a").unwrap();
        assert!(d.join("a.raw").exists());
        apply(&AfterUpload::Delete, d, "a").unwrap();
        assert!(
            !d.join("a.raw").exists()
                && !d.join("a.done").exists()
                && !d.join("a.cast").exists()
                && !d.join("a.index").exists()
        );
        let to = d.join("uploaded");
        apply(&AfterUpload::Move(to.clone()), d, "b").unwrap();
        assert!(to.join("b.raw").exists() && to.join("b.done").exists());
        let q = quarantine(d, "c").unwrap();
        assert_eq!(q, d.join("quarantine/c"));
        assert!(q.join("c.raw").exists() && q.join("c.events.ndjson").exists());
        assert!(!d.join("c.raw").exists());
    }
}
