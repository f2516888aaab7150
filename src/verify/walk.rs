//! The files under a directory `auditrail verify` is given: all of them, recursively, hidden names skipped,
//! sorted by path.
//!
//! Symbolic links are followed (an archive may well link to where older files were moved), but every directory
//! and every file is read at most once, known by its (device, inode): a link back to a directory already being
//! read (`a -> ..`, or `b -> a -> ..`) or a second link to one is noted and not entered again, so a cycle
//! cannot make the walk endless, and no event is fed twice (which would read as duplicates, i.e. tampering).
//! Nothing is lost by not following: what the link leads to is read once already. The walk keeps its own
//! stack of directories, so a deep tree cannot overflow the thread's stack.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// What a walk found.
pub(super) struct Walked {
    /// The files to read, sorted.
    pub files: Vec<PathBuf>,
    /// One message per link not followed again, naming it and what it leads to.
    pub skipped: Vec<String>,
}

/// Walks the directory `root`.
pub(super) fn files(root: &Path) -> anyhow::Result<Walked> {
    let id = |m: &std::fs::Metadata| (m.dev(), m.ino());
    let meta =
        std::fs::metadata(root).with_context(|| format!("{}: cannot read", root.display()))?;
    let mut dirs: HashMap<(u64, u64), PathBuf> = HashMap::from([(id(&meta), root.to_path_buf())]);
    let mut seen_files: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut out = Walked {
        files: Vec::new(),
        skipped: Vec::new(),
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("{}: cannot list", dir.display()))?;
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            let meta =
                std::fs::metadata(&p).with_context(|| format!("{}: cannot read", p.display()))?;
            if meta.is_dir() {
                if let Some(first) = dirs.get(&id(&meta)) {
                    out.skipped.push(format!(
                        "{}: leads to {}, which is read already (a symbolic link loop or a second link to it): not entered again",
                        p.display(),
                        first.display()
                    ));
                    continue;
                }
                dirs.insert(id(&meta), p.clone());
                stack.push(p);
            } else if meta.is_file() {
                if let Some(first) = seen_files.get(&id(&meta)) {
                    out.skipped.push(format!(
                        "{}: the same file as {}: read once",
                        p.display(),
                        first.display()
                    ));
                    continue;
                }
                seen_files.insert(id(&meta), p.clone());
                out.files.push(p);
            }
        }
    }
    out.files.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlink_loops_end_and_each_file_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("logs");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("one.ndjson"), "{}\n").unwrap();
        std::fs::write(root.join("sub/two.ndjson"), "{}\n").unwrap();
        symlink("..", root.join("sub/a")).unwrap();
        symlink("a", root.join("sub/b")).unwrap();
        symlink("one.ndjson", root.join("also-one.ndjson")).unwrap();
        let w = files(&root).unwrap();
        let names: Vec<_> = w
            .files
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().to_path_buf())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&PathBuf::from("sub/two.ndjson")));
        assert_eq!(w.skipped.len(), 3, "{:?}", w.skipped);
        assert!(w
            .skipped
            .iter()
            .any(|s| s.contains("sub/a: leads to") && s.contains("symbolic link loop")));
    }

    #[test]
    fn a_deep_tree_does_not_need_a_deep_stack() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = dir.path().to_path_buf();
        for _ in 0..200 {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("x.ndjson"), "{}\n").unwrap();
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || assert_eq!(files(dir.path()).unwrap().files.len(), 1))
            .unwrap()
            .join()
            .unwrap();
    }
}
