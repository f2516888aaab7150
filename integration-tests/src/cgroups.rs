//! What the session-cgroup tests share: whether they may run (root, or told to fail without it) and where the
//! cgroup v2 hierarchy is mounted, read independently of the agent's own discovery.

use std::path::{Path, PathBuf};

/// True when running as root. Otherwise prints that `what` is not run and returns false, unless
/// `AUDITRAIL_REQUIRE_ROOT` is set (as CI does): then a missing root fails the test.
pub fn root_or_skip(what: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    println!("not root: {what} not run");
    assert!(
        std::env::var_os("AUDITRAIL_REQUIRE_ROOT").is_none(),
        "root is required but missing"
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
