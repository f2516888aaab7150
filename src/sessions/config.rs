//! `[sessions]`: the agent's sessions socket, through which users' recorders get their session cgroup.

use std::path::{Path, PathBuf};

use auditrail_core::units::Interval;
use serde::Deserialize;

use crate::sources::unix::SocketMode;

/// `[sessions]` as written. Paths left out default under `data_dir` (see [`SessionsConfig::socket_path`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// The control socket. Default `<data_dir>/sessions.sock`.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Mode of the socket. Default `0666`: every logged-in user's recorder asks through it, and that is safe
    /// because a caller can only ever move itself (its pid comes from `SO_PEERCRED`, not from the request).
    #[serde(default = "default_mode")]
    pub mode: SocketMode,
    /// `"auto"` (default): the cgroup2 mount from /proc/self/mountinfo; or the path of a cgroup2 mount.
    #[serde(default = "default_root")]
    pub cgroup_root: String,
    /// The directory under the cgroup2 mount that holds this agent's session cgroups (`<mount>/<parent>/<sid>`):
    /// one name of `[A-Za-z0-9_-]`. Default `"auditrail"`. The sweep removes empty cgroups under it that no live
    /// session of this agent owns, so two agents on one host must not share a parent: give each its own.
    #[serde(default = "default_parent")]
    pub cgroup_parent: String,
    /// Most sessions at once (connections holding a cgroup). Default 4096.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Most sessions at once per uid. Default 64.
    #[serde(default = "default_max_per_uid")]
    pub max_per_uid: usize,
    /// How often empty session cgroups whose session is over are looked for and removed. Default `"10s"`.
    #[serde(default = "default_sweep")]
    pub sweep_interval: Interval,
}

fn default_mode() -> SocketMode {
    SocketMode(0o666)
}
fn default_root() -> String {
    "auto".into()
}
fn default_parent() -> String {
    super::cgroup::BASE_NAME.into()
}
fn default_max_sessions() -> usize {
    4096
}
fn default_max_per_uid() -> usize {
    64
}
fn default_sweep() -> Interval {
    Interval(std::time::Duration::from_secs(10))
}

impl SessionsConfig {
    /// The cgroup2 mount (`cgroup_root`) with the session cgroups under `cgroup_parent`.
    pub fn cgroups(&self) -> Result<super::cgroup::CgroupRoot, super::cgroup::CgroupError> {
        let root = match self.cgroup_root.as_str() {
            "auto" => super::cgroup::CgroupRoot::discover(),
            p => super::cgroup::CgroupRoot::at(Path::new(p)),
        };
        root.map(|r| r.with_parent(&self.cgroup_parent))
    }

    /// Checks what serde cannot: `(field, message)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_sessions == 0 {
            return Err(("max_sessions", "must be at least 1".into()));
        }
        if self.max_per_uid == 0 {
            return Err(("max_per_uid", "must be at least 1".into()));
        }
        if self.sweep_interval.0.is_zero() {
            return Err(("sweep_interval", "must be more than 0s".into()));
        }
        if let Err(e) = super::sid::validate(&self.cgroup_parent) {
            return Err((
                "cgroup_parent",
                format!(
                    "expected one directory name of [A-Za-z0-9_-] (1 to 128 characters), found {:?}: {e}",
                    self.cgroup_parent
                ),
            ));
        }
        if self.cgroup_root != "auto" && !Path::new(&self.cgroup_root).is_absolute() {
            return Err((
                "cgroup_root",
                format!(
                    "expected \"auto\" or an absolute path (a cgroup2 mount point), found {:?}",
                    self.cgroup_root
                ),
            ));
        }
        Ok(())
    }

    /// The socket path: `socket`, or `<data_dir>/sessions.sock`.
    pub fn socket_path(&self, data_dir: &Path) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| data_dir.join("sessions.sock"))
    }
}
