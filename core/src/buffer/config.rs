//! The `buffer` table of a sink: how many events may wait for it and what happens when that is full.

use serde::Deserialize;

/// What a full buffer does with a new event.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: backpressure reaches the sources (the file source stops reading, the http source answers
    /// 503 with Retry-After, the unix source stops reading its sockets). The default: nothing is lost.
    #[default]
    Block,
    /// Drop the new event, count it in `auditrail_buffer_dropped_events_total` and report the count in an
    /// `auditrail.dropped` event as soon as there is room again.
    DropNewest,
}

/// A sink's buffer, as written in TOML: `buffer = { type = "memory", max_events = 10000, when_full = "block" }`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BufferConfig {
    /// Bounded in-memory queue.
    Memory(MemoryBufferConfig),
    /// Append-only segment files under `data_dir/buffers/<sink>/`: survives kill -9 and power loss up to the
    /// last fsync.
    Disk(super::disk::DiskBufferConfig),
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig::Memory(MemoryBufferConfig::default())
    }
}

impl BufferConfig {
    /// The policy when full.
    pub fn when_full(&self) -> WhenFull {
        match self {
            BufferConfig::Memory(m) => m.when_full,
            BufferConfig::Disk(d) => d.when_full,
        }
    }
}

/// Settings of the memory buffer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemoryBufferConfig {
    /// How many events may wait for the sink. Default 10000: at ~300 bytes an event, about 3 MB.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// What to do when `max_events` are waiting. Default `"block"`.
    #[serde(default)]
    pub when_full: WhenFull,
}

fn default_max_events() -> usize {
    10_000
}

impl Default for MemoryBufferConfig {
    fn default() -> Self {
        MemoryBufferConfig {
            max_events: default_max_events(),
            when_full: WhenFull::Block,
        }
    }
}
