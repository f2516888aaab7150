//! The recorder's side of the sessions socket: joining the session's own cgroup v2.
//!
//! PLACEHOLDER of the `rec` branch: the real implementation (asking the agent over its sessions socket, or
//! creating the cgroup directly as root) is helper C's and replaces this file at merge. The signature is the
//! shared contract's; this version always fails, so `session.start` says `cgroup_id: null` with the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cgroup the caller was moved into.
#[derive(Debug)]
pub struct JoinedCgroup {
    /// The cgroup's id (its inode number in the cgroup2 file system), as eBPF sees it.
    pub id: u64,
    /// The cgroup's directory.
    pub path: PathBuf,
}

/// Why the caller is not in a session cgroup.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// This build has no cgroup support.
    #[error("cgroups not built in this branch")]
    NotBuilt,
}

/// Keeps the session's cgroup alive for the session (the agent removes it when this is dropped).
#[derive(Debug)]
pub struct SessionCgroupGuard {
    _private: (),
}

/// Puts the calling process into the session's own cgroup v2 (asking the agent over `socket`; or, when the
/// caller is root and the agent is unreachable, creating it directly). The returned guard keeps the agent
/// connection open for the session's lifetime (the agent removes the cgroup when it closes).
pub fn join_session_cgroup(
    socket: &Path,
    sid: &str,
    timeout: Duration,
) -> Result<(JoinedCgroup, SessionCgroupGuard), JoinError> {
    let _ = (socket, sid, timeout);
    Err(JoinError::NotBuilt)
}
