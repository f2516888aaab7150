//! What the session-cgroup tests share: whether they may run (root, or told to fail without it) and where the
//! cgroup v2 hierarchy is mounted, read independently of the agent's own discovery.

use std::path::{Path, PathBuf};

/// True when running as root. Otherwise prints that `what` is not run and returns false, unless
/// `AUDITRAIL_REQUIRE_ROOT` is set (as CI does): then a missing root fails the test.
pub fn root_or_skip(what: &str) -> bool {
    root_or_skip_as(what, "AUDITRAIL_REQUIRE_ROOT")
}

/// [`root_or_skip`] with another switch: `require` set (as CI does), a missing root fails the test.
pub fn root_or_skip_as(what: &str, require: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    println!("not root: {what} not run");
    assert!(
        std::env::var_os(require).is_none(),
        "root is required ({require} is set) but missing"
    );
    false
}

/// The cgroup2 mount point, from /proc/self/mountinfo (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid host, as here).
pub fn cgroup2_mount() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split(' ').next()? == "cgroup2")
                .then(|| PathBuf::from(pre.split(' ').nth(4).unwrap()))
        })
        .collect();
    for p in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Some(m) = mounts.iter().find(|m| m.as_path() == Path::new(p)) {
            return m.clone();
        }
    }
    mounts
        .first()
        .cloned()
        .expect("a cgroup2 filesystem is mounted")
}

/// The parent of one test agent's session cgroups (`[sessions] cgroup_parent`): agents of tests that run at the
/// same time each sweep only their own parent, never each other's cgroups. Dropped, it removes the empty
/// cgroups left in it and itself (best effort: a populated one stays, as the kernel requires).
pub struct CgroupParent {
    name: String,
    path: PathBuf,
}

impl CgroupParent {
    /// `auditrail-it-<pid>-<tag>-<n>` under the cgroup2 mount (created by the agent, not here).
    pub fn new(tag: &str) -> CgroupParent {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("auditrail-it-{}-{tag}-{n}", std::process::id());
        CgroupParent {
            path: cgroup2_mount().join(&name),
            name,
        }
    }

    /// The directory name, for `cgroup_parent`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<mount>/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `cgroup_parent = "…"` line for a `[sessions]` table.
    pub fn toml(&self) -> String {
        format!("cgroup_parent = \"{}\"\n", self.name)
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}
