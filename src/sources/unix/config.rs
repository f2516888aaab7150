//! `[sources.NAME] type = "unix"`: NDJSON over a unix stream socket, and spool directories drained into it.

use std::path::PathBuf;

use auditrail_core::units::{ByteSize, Interval};
use serde::Deserialize;

use super::mode::{SocketGroup, SocketMode};

/// Settings of the unix source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixSourceConfig {
    /// Socket path. A stale socket left by a crash is replaced, a live one (another agent) is an error. Required.
    pub path: PathBuf,
    /// Longest accepted line. Default `"1MiB"`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// Mode of the socket. Default `"0600"`: only the agent's user may connect. `"0660"` with `group` lets that
    /// group's members send events, `"0666"` everyone (users' recorders): see docs/sessions.md for the trade-off.
    #[serde(default = "default_mode")]
    pub mode: SocketMode,
    /// Group of the socket (a name or a gid). Default: the agent's group.
    #[serde(default)]
    pub group: Option<SocketGroup>,
    /// Directories of spool files (`*.ndjson`, written by recorders while the agent was away) drained at start
    /// and every `spool_scan_interval`. Default none. The recording examples set `<data_dir>/recordings/spool`.
    #[serde(default)]
    pub spool_dirs: Vec<PathBuf>,
    /// How often the spool directories are scanned. Default `"30s"`.
    #[serde(default = "default_scan")]
    pub spool_scan_interval: Interval,
}

fn default_max_line() -> ByteSize {
    ByteSize(1 << 20)
}

fn default_mode() -> SocketMode {
    SocketMode(0o600)
}

fn default_scan() -> Interval {
    Interval(std::time::Duration::from_secs(30))
}

impl UnixSourceConfig {
    /// Checks limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_line_bytes.0 == 0 {
            return Err("`max_line_bytes` must be at least 1".into());
        }
        if self.spool_scan_interval.0.is_zero() {
            return Err("`spool_scan_interval` must be more than 0s".into());
        }
        if self.spool_dirs.iter().any(|d| d.as_os_str().is_empty()) {
            return Err("`spool_dirs` has an empty path".into());
        }
        Ok(())
    }
}
