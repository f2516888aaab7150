//! `[sources.NAME] type = "file"`: tail JSONL files matched by globs.

use std::time::Duration;

use auditrail_core::units::{ByteSize, Interval};
use serde::Deserialize;

/// Where to start in a file that has no checkpoint yet.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From the first byte (default).
    #[default]
    Beginning,
    /// From the current end; only what is appended from now on is read. Applies to files found when the agent
    /// starts; a file that appears later is always read from its beginning, since all of it is new.
    End,
}

/// Settings of the file source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Glob patterns of files to read, e.g. `["/var/lib/teleport/log/events/*.log"]`. Relative patterns are
    /// relative to the agent's working directory. Required.
    pub include: Vec<String>,
    /// Glob patterns of files to leave alone even when `include` matches them. Default none.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `"beginning"` (default) or `"end"`, for files without a checkpoint.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Longest accepted line; a longer one is dead-lettered (its first bytes) and skipped. Default `"1MiB"`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// How often the globs are evaluated again to find new files. Default `"1s"`.
    #[serde(default = "default_glob_interval")]
    pub glob_interval: Interval,
    /// How long to wait before looking again when every file is at its end. Default `"100ms"`.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Interval,
    /// How long a file that no longer matches the globs (rotated away, deleted) is kept open after its last
    /// byte was read, in case its writer still appends. Default `"10s"`.
    #[serde(default = "default_rotate_wait")]
    pub rotate_wait: Interval,
    /// Least time between the starts of two writes of `data_dir/checkpoints/<source>.json`. Acknowledged
    /// positions are written as soon as acknowledgements move them, one write (with its fsyncs) at a time:
    /// what is acknowledged while a write runs, or within this spacing after it started, goes into the next
    /// one. This bounds the writes of a source whose sinks acknowledge often (small batches) without letting
    /// positions wait for a timer. Default `"10ms"`; `"0s"` writes again as soon as the previous write is done.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: Interval,
}

fn default_max_line() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_glob_interval() -> Interval {
    Interval(Duration::from_secs(1))
}
fn default_poll_interval() -> Interval {
    Interval(Duration::from_millis(100))
}
fn default_rotate_wait() -> Interval {
    Interval(Duration::from_secs(10))
}
fn default_checkpoint_interval() -> Interval {
    Interval(Duration::from_millis(10))
}

impl FileSourceConfig {
    /// Checks the globs.
    pub fn validate(&self) -> Result<(), String> {
        if self.include.is_empty() {
            return Err("`include` is empty: expected at least one glob, e.g. include = [\"/var/log/teleport/*.log\"]".into());
        }
        for p in self.include.iter().chain(&self.exclude) {
            glob::Pattern::new(p).map_err(|e| format!("`{p}` is not a valid glob: {e}"))?;
        }
        if self.max_line_bytes.0 == 0 {
            return Err("`max_line_bytes` must be at least 1".into());
        }
        Ok(())
    }
}
