//! Session cgroups on the cgroup v2 filesystem: `<mount>/<parent>/<sid>`, the parent `auditrail` unless
//! `[sessions] cgroup_parent` names another (one per agent when several run on a host).
//!
//! - Create: `mkdir` (the `auditrail` parent too, when missing), mode 0755 (the kernel's default for cgroup
//!   directories; only root writes to the control files).
//! - Join: write the pid to `cgroup.procs` (this moves the whole thread group; its future children are born in
//!   it).
//! - Id: the directory's inode number, which is the kernfs node id the kernel calls the cgroup id, the value
//!   `bpf_get_current_cgroup_id()` returns for a task in it (and what `stat -c %i` shows).
//! - Remove: `rmdir`, which the kernel refuses (`EBUSY`) while a process is still in it; the caller retries
//!   later, and [`CgroupRoot::sweep`] removes every empty session cgroup no live session owns (including those a
//!   previous agent left behind).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::mountinfo;
use super::sid;

/// `statfs(2)` `f_type` of a cgroup2 filesystem (`CGROUP2_SUPER_MAGIC`).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The default directory under the mount that holds the session cgroups.
pub const BASE_NAME: &str = "auditrail";

/// Why a cgroup operation failed, with the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 filesystem is mounted.
    #[error("no cgroup2 filesystem is mounted (none in /proc/self/mountinfo): session cgroups need cgroup v2 (mount it, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`, or boot with systemd.unified_cgroup_hierarchy=1)")]
    NotMounted,
    /// The configured root is not a cgroup2 filesystem.
    #[error("cgroup_root {path} is not a cgroup2 filesystem: set `cgroup_root = \"auto\"` or the mount point of cgroup2 (see /proc/self/mountinfo)")]
    NotCgroup2 {
        /// The configured path.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}{hint}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
        /// What to do, when the error says it.
        hint: &'static str,
    },
}

impl CgroupError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> CgroupError {
        let hint = match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => {
                " (creating and joining cgroups needs root: run the agent as root, as its systemd unit does)"
            }
            Some(libc::EROFS) => " (the cgroup2 filesystem is mounted read-only, as in most containers)",
            _ => "",
        };
        CgroupError::Io {
            op,
            path: path.to_path_buf(),
            source,
            hint,
        }
    }

    /// A short label for the `op` of `auditrail_sessions_cgroup_errors_total`.
    pub fn op(&self) -> &'static str {
        match self {
            CgroupError::NotMounted | CgroupError::NotCgroup2 { .. } => "discover",
            CgroupError::Io { op, .. } => op,
        }
    }
}

/// What `rmdir` of a session cgroup did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// It is gone (removed now or already).
    Gone,
    /// Processes are still in it: try again later.
    Busy,
}

/// The cgroup2 mount and the parent directory of the session cgroups under it.
#[derive(Debug, Clone)]
pub struct CgroupRoot {
    mount: PathBuf,
    base: PathBuf,
}

impl CgroupRoot {
    /// The cgroup2 mount found in `/proc/self/mountinfo` ([`mountinfo::pick`]), with the default parent.
    pub fn discover() -> Result<CgroupRoot, CgroupError> {
        let mount = mountinfo::discover()
            .map_err(|e| CgroupError::io("read", Path::new("/proc/self/mountinfo"), e))?
            .ok_or(CgroupError::NotMounted)?;
        CgroupRoot::at(&mount.mount_point)
    }

    /// The same mount with the session cgroups under `parent` (a name checked by [`sid::validate`]).
    pub fn with_parent(self, parent: &str) -> CgroupRoot {
        debug_assert!(sid::validate(parent).is_ok());
        CgroupRoot {
            base: self.mount.join(parent),
            mount: self.mount,
        }
    }

    /// `mount`, after checking that it is a cgroup2 filesystem (the default parent).
    pub fn at(mount: &Path) -> Result<CgroupRoot, CgroupError> {
        let c = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()).map_err(|_| {
            CgroupError::NotCgroup2 {
                path: mount.to_path_buf(),
            }
        })?;
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(CgroupError::io("statfs", mount, io::Error::last_os_error()));
        }
        if st.f_type as i64 != CGROUP2_SUPER_MAGIC {
            return Err(CgroupError::NotCgroup2 {
                path: mount.to_path_buf(),
            });
        }
        Ok(CgroupRoot {
            mount: mount.to_path_buf(),
            base: mount.join(BASE_NAME),
        })
    }

    /// The cgroup2 mount point.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// `<mount>/<parent>`.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// `<mount>/<parent>/<sid>` (the sid must be valid: see [`sid::validate`]).
    pub fn path_of(&self, sid: &str) -> PathBuf {
        debug_assert!(sid::validate(sid).is_ok());
        self.base.join(sid)
    }

    /// Creates the session's cgroup. `Ok(false)` when it already existed (left by an earlier session of that
    /// sid or an earlier agent; the caller decides whether it may be reused).
    pub fn create(&self, sid: &str) -> Result<(PathBuf, bool), CgroupError> {
        let mut b = std::fs::DirBuilder::new();
        b.mode(0o755);
        match b.create(&self.base) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io("create", &self.base, e)),
        }
        let path = self.path_of(sid);
        match b.create(&path) {
            Ok(()) => Ok((path, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((path, false)),
            Err(e) => Err(CgroupError::io("create", &path, e)),
        }
    }

    /// Removes every empty session cgroup under the parent for which `keep(sid)` is false; returns how many
    /// were removed. Populated ones and names that are not sids are left alone. Errors are returned per cgroup.
    pub fn sweep(&self, keep: impl Fn(&str) -> bool) -> (usize, Vec<CgroupError>) {
        let mut removed = 0;
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(&self.base) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (0, errors),
            Err(e) => return (0, vec![CgroupError::io("list", &self.base, e)]),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if sid::validate(name).is_err() || keep(name) {
                continue;
            }
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            match remove(&entry.path()) {
                Ok(Removal::Gone) => removed += 1,
                Ok(Removal::Busy) => {}
                Err(e) => errors.push(e),
            }
        }
        (removed, errors)
    }
}

/// The cgroup id of the cgroup at `path`: its inode number.
pub fn id(path: &Path) -> Result<u64, CgroupError> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| CgroupError::io("stat", path, e))
}

/// Moves process `pid` (all its threads) into the cgroup at `path`.
pub fn move_pid(path: &Path, pid: u32) -> Result<(), CgroupError> {
    let procs = path.join("cgroup.procs");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .and_then(|mut f| io::Write::write_all(&mut f, format!("{pid}\n").as_bytes()))
        .map_err(|e| CgroupError::io("join", &procs, e))
}

/// Whether a process is in the cgroup at `path` or below (`populated 1` in `cgroup.events`).
pub fn populated(path: &Path) -> Result<bool, CgroupError> {
    let events = path.join("cgroup.events");
    let text = std::fs::read_to_string(&events).map_err(|e| CgroupError::io("read", &events, e))?;
    Ok(text.lines().any(|l| l.trim() == "populated 1"))
}

/// `rmdir` of a cgroup: [`Removal::Busy`] while processes are in it.
pub fn remove(path: &Path) -> Result<Removal, CgroupError> {
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(Removal::Gone),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Removal::Gone),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(Removal::Busy),
        Err(e) => Err(CgroupError::io("remove", path, e)),
    }
}

/// The cgroup v2 path (relative to the mount) of the calling process, from the `0::` line of
/// `/proc/self/cgroup`.
pub fn own_cgroup() -> io::Result<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup v2 line (0::) in /proc/self/cgroup",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_or_skip() -> Option<CgroupRoot> {
        if unsafe { libc::geteuid() } != 0 {
            println!("not root: cgroup test not run");
            return None;
        }
        match CgroupRoot::discover() {
            Ok(r) => Some(r),
            Err(e) => {
                println!("no usable cgroup2 ({e}): cgroup test not run");
                None
            }
        }
    }

    #[test]
    fn a_non_cgroup_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = CgroupRoot::at(dir.path()).unwrap_err();
        assert!(matches!(e, CgroupError::NotCgroup2 { .. }), "{e}");
        assert!(e.to_string().contains("is not a cgroup2 filesystem"), "{e}");
    }

    #[test]
    fn create_join_id_remove() {
        let Some(root) = root_or_skip() else { return };
        let sid = format!("unit-test-{}", std::process::id());
        let (path, fresh) = root.create(&sid).unwrap();
        assert!(fresh);
        assert_eq!(root.create(&sid).unwrap(), (path.clone(), false));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        move_pid(&path, child.id()).unwrap();
        let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
        assert!(cg.contains(&format!("0::/{BASE_NAME}/{sid}")), "{cg}");
        let out = std::process::Command::new("stat")
            .args(["-c", "%i"])
            .arg(&path)
            .output()
            .unwrap();
        let ino: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(id(&path).unwrap(), ino);
        assert!(populated(&path).unwrap());
        assert_eq!(remove(&path).unwrap(), Removal::Busy);
        assert_eq!(root.sweep(|s| s != sid).1.len(), 0);
        assert!(path.exists(), "the sweep leaves a populated cgroup");
        child.kill().unwrap();
        child.wait().unwrap();
        // The kernel updates `populated` shortly after the exit.
        for _ in 0..200 {
            if !populated(&path).unwrap() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let (n, errors) = root.sweep(|s| s != sid);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(n, 1);
        assert!(!path.exists());
        assert_eq!(remove(&path).unwrap(), Removal::Gone);
    }
}
