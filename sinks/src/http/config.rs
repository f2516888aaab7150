//! The `batch` and `retry` tables every HTTP sink shares: when a request is sent and how long to wait between
//! attempts. One definition, so the sinks agree on names, defaults and checks; a sink picks its own default
//! batch size in bytes (`MAX_MIB`), as its server prefers.

use auditrail_core::units::{ByteSize, Interval};
use serde::Deserialize;
use std::time::Duration;

/// `batch = { max_events = 1000, max_bytes = "<MAX_MIB>MiB", timeout = "1s" }`: a request is sent when any
/// limit is reached. `MAX_MIB` is the sink's default for `max_bytes`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig<const MAX_MIB: u64> {
    /// Most events in one request. Default 1000.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes of events (before any envelope and compression) in one request. Default: the sink's
    /// (Elasticsearch `"5MiB"`, Splunk HEC `"1MiB"`: smaller requests are confirmed sooner).
    #[serde(default = "default_max_bytes::<MAX_MIB>")]
    pub max_bytes: ByteSize,
    /// Longest an event waits for its batch to fill. Default `"1s"`.
    #[serde(default = "default_batch_timeout")]
    pub timeout: Interval,
}

impl<const MAX_MIB: u64> Default for BatchConfig<MAX_MIB> {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            max_bytes: default_max_bytes::<MAX_MIB>(),
            timeout: default_batch_timeout(),
        }
    }
}

/// `retry = { initial_backoff = "100ms", max_backoff = "30s" }`: waits between attempts after a transient
/// error (exponential with full jitter; a server's `Retry-After` is a floor).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First wait. Default `"100ms"`.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Interval,
    /// Longest wait. Default `"30s"`.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Interval,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_max_events() -> usize {
    1000
}
fn default_max_bytes<const MAX_MIB: u64>() -> ByteSize {
    ByteSize(MAX_MIB << 20)
}
fn default_batch_timeout() -> Interval {
    Interval(Duration::from_secs(1))
}
fn default_initial_backoff() -> Interval {
    Interval(Duration::from_millis(100))
}
fn default_max_backoff() -> Interval {
    Interval(Duration::from_secs(30))
}
