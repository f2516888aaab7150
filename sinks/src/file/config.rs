//! `[sinks.NAME] type = "file"`: NDJSON files whose path may depend on the event's time and fields.

use auditrail_core::units::Interval;
use serde::Deserialize;
use std::time::Duration;

use super::template::PathTemplate;
use crate::name_rules::UnsafeNames;
use crate::SinkConfigError;

/// When written events are forced to disk before they are acknowledged.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// fsync every file a batch touched, then acknowledge the batch (default): an acknowledged event survives
    /// power loss.
    #[default]
    Batch,
    /// Acknowledge after write(2): the OS decides when the data reaches the disk; a power loss can lose what
    /// was acknowledged in the last seconds.
    None,
}

/// Settings of the file sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Path template. `%Y`, `%m`, `%d`, `%H`… (strftime) take the event's `time` (UTC); `{field}` takes a
    /// top-level field of the event (`{event}`, `{user}`, `{cluster_name}`…), with `/` and NUL replaced by `_`,
    /// and `_` for a missing or empty field. Example: `"/var/log/audit/%Y-%m-%d/{event}.ndjson"`. Required.
    /// A path component holding field text is at most 240 bytes and never `.` or `..`; see `unsafe_path`.
    pub path: String,
    /// What happens to an event whose fields would make a path component longer than 240 bytes (or the path
    /// longer than 4000), or a `.` / `..` component: `"dead_letter"` (default: the event goes to the sink's
    /// dead-letter file with the reason, the rest of its batch is written) or `"rewrite"` (a long component is
    /// cut and suffixed with a hash of its full text, `.` / `..` become `_`).
    #[serde(default)]
    pub unsafe_path: UnsafeNames,
    /// `"batch"` (default) or `"none"`, see [`Fsync`].
    #[serde(default)]
    pub fsync: Fsync,
    /// Most events written per batch. Default 10000: larger batches fsync less often but hold more memory.
    #[serde(default = "default_batch")]
    pub batch_max_events: usize,
    /// Most files kept open at once; the least recently written is closed first. Default 64.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// A file not written for this long is closed. Default `"30s"`.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Interval,
}

fn default_batch() -> usize {
    10_000
}

fn default_max_open_files() -> usize {
    64
}

fn default_idle_timeout() -> Interval {
    Interval(Duration::from_secs(30))
}

impl FileSinkConfig {
    /// A config with defaults for everything but the path.
    pub fn with_path(path: impl Into<String>) -> FileSinkConfig {
        FileSinkConfig {
            path: path.into(),
            unsafe_path: UnsafeNames::default(),
            fsync: Fsync::default(),
            batch_max_events: default_batch(),
            max_open_files: default_max_open_files(),
            idle_timeout: default_idle_timeout(),
        }
    }

    /// Checks the template and the limits.
    pub fn validate(&self) -> Result<(), SinkConfigError> {
        PathTemplate::parse(&self.path).map_err(|message| SinkConfigError {
            field: "path",
            message,
        })?;
        if self.batch_max_events == 0 {
            return Err(SinkConfigError {
                field: "batch_max_events",
                message: "must be at least 1".into(),
            });
        }
        if self.max_open_files == 0 {
            return Err(SinkConfigError {
                field: "max_open_files",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}
