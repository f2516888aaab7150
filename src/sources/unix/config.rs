//! `[sources.NAME] type = "unix"`: NDJSON over a unix stream socket.

use std::path::PathBuf;

use auditrail_core::units::ByteSize;
use serde::Deserialize;

/// Settings of the unix source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixSourceConfig {
    /// Socket path. Created with mode 0600 (only the agent's user may connect); a stale socket left by a crash
    /// is replaced, a live one (another agent) is an error. Required.
    pub path: PathBuf,
    /// Longest accepted line. Default `"1MiB"`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
}

fn default_max_line() -> ByteSize {
    ByteSize(1 << 20)
}

impl UnixSourceConfig {
    /// Checks limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_line_bytes.0 == 0 {
            return Err("`max_line_bytes` must be at least 1".into());
        }
        Ok(())
    }
}
