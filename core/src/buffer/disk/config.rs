//! The `buffer = { type = "disk", ... }` table of a sink: how many bytes may wait on disk, what happens when
//! that is full, how often appended records are made durable, and how large one segment file grows.

use std::time::Duration;

use serde::Deserialize;

use crate::buffer::WhenFull;
use crate::units::{ByteSize, Interval};

/// Settings of the disk buffer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiskBufferConfig {
    /// Most bytes of segment files on disk, records not yet acknowledged by the sink included. Space comes back
    /// when fully acknowledged segments are deleted. Default `"1GiB"`.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// What to do when `max_size` is reached. Default `"block"`.
    #[serde(default)]
    pub when_full: WhenFull,
    /// Longest time between two fsyncs of appended records (group commit); a source is acknowledged only once
    /// its events are fsynced. Default `"100ms"`.
    #[serde(default = "default_fsync_interval")]
    pub fsync_interval: Interval,
    /// Size past which the writer starts a new segment file. Default `"64MiB"`.
    #[serde(default = "default_max_segment_size")]
    pub max_segment_size: ByteSize,
}

fn default_max_size() -> ByteSize {
    ByteSize(1 << 30)
}

fn default_fsync_interval() -> Interval {
    Interval(Duration::from_millis(100))
}

fn default_max_segment_size() -> ByteSize {
    ByteSize(64 << 20)
}

impl Default for DiskBufferConfig {
    fn default() -> Self {
        DiskBufferConfig {
            max_size: default_max_size(),
            when_full: WhenFull::Block,
            fsync_interval: default_fsync_interval(),
            max_segment_size: default_max_segment_size(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrap {
        buffer: DiskBufferConfig,
    }

    fn parse(json: &str) -> Result<DiskBufferConfig, serde_json::Error> {
        serde_json::from_str::<Wrap>(json).map(|w| w.buffer)
    }

    #[test]
    fn defaults() {
        assert_eq!(
            parse(r#"{"buffer":{}}"#).unwrap(),
            DiskBufferConfig::default()
        );
        let d = DiskBufferConfig::default();
        assert_eq!(d.max_size, ByteSize(1 << 30));
        assert_eq!(d.fsync_interval, Interval(Duration::from_millis(100)));
        assert_eq!(d.max_segment_size, ByteSize(64 << 20));
        assert_eq!(d.when_full, WhenFull::Block);
    }

    #[test]
    fn explicit_values_and_unknown_keys() {
        let c = parse(
            r#"{"buffer":{"max_size":"10MiB","when_full":"drop_newest","fsync_interval":"1s","max_segment_size":4096}}"#,
        )
        .unwrap();
        assert_eq!(c.max_size, ByteSize(10 << 20));
        assert_eq!(c.when_full, WhenFull::DropNewest);
        assert_eq!(c.fsync_interval, Interval(Duration::from_secs(1)));
        assert_eq!(c.max_segment_size, ByteSize(4096));
        let err = parse(r#"{"buffer":{"max_sise":"1GiB"}}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_sise`"),
            "{err}"
        );
    }
}
