//! `[sinks.NAME] type = "blackhole"`.

use serde::Deserialize;

/// Settings of the blackhole sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSinkConfig {
    /// Most events taken from the buffer at once. Default 10000.
    #[serde(default = "default_batch")]
    pub batch_max_events: usize,
}

fn default_batch() -> usize {
    10_000
}

impl Default for BlackholeSinkConfig {
    fn default() -> Self {
        BlackholeSinkConfig {
            batch_max_events: default_batch(),
        }
    }
}
