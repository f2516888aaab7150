//! `[sources.NAME] type = "kafka"`: a consumer group member reading audit events from topics, one event per
//! record, committing only what every sink has. Keys follow Vector's kafka source where it has them
//! (`bootstrap_servers`, `group_id`, `topics`, `auto_offset_reset`, `librdkafka_options`).

use std::collections::BTreeMap;
use std::time::Duration;

use auditrail_core::units::{ByteSize, Interval};
use auditrail_core::Secret;
use serde::Deserialize;

/// Where a partition without a committed offset starts.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AutoOffsetReset {
    /// The oldest record kept (default: a new group reads the whole topic; nothing is skipped).
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// Settings of the kafka source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// The brokers to bootstrap from, `"host:port,host:port"`. Required.
    pub bootstrap_servers: String,
    /// The consumer group; every aggregator of one tier uses the same one, so they share the partitions.
    /// Required.
    pub group_id: String,
    /// The topics: names, or regular expressions starting with `^` (`"^audit\\..*"`), matched by librdkafka
    /// against the cluster's topics as they come and go. Required, at least one.
    pub topics: Vec<String>,
    /// `"earliest"` (default) or `"latest"`, for partitions the group has no offset for.
    #[serde(default)]
    pub auto_offset_reset: AutoOffsetReset,
    /// How long the group waits for a member that stopped heartbeating (`session.timeout.ms`). Default
    /// `"10s"`.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: Interval,
    /// How often delivered offsets are committed. Default `"1s"`.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: Interval,
    /// On a rebalance, how long the partitions given up wait for their sinks to finish what was read from them
    /// before their offsets are committed and they are let go (records still in flight then are read again by
    /// their next owner: duplicates, never loss). Default `"10s"`.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Interval,
    /// Most records read and not yet done by every sink; over it, every partition is paused until enough are
    /// done. Default 100000.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight_events: usize,
    /// Largest record value; a larger one is dead-lettered. Default `"1MiB"`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// How often librdkafka's statistics (consumer lag per partition) are gathered. Default `"5s"`.
    #[serde(default = "default_stats_interval")]
    pub lag_interval: Interval,
    /// Further librdkafka settings, passed through as given (SASL, TLS, fetch sizes); values are never
    /// logged. `group.id`, `bootstrap.servers`, `enable.auto.commit`, `enable.auto.offset.store` and
    /// `auto.offset.reset` cannot be set here.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, Secret>,
}

fn default_session_timeout() -> Interval {
    Interval(Duration::from_secs(10))
}
fn default_commit_interval() -> Interval {
    Interval(Duration::from_secs(1))
}
fn default_drain_timeout() -> Interval {
    Interval(Duration::from_secs(10))
}
fn default_max_in_flight() -> usize {
    100_000
}
fn default_max_line() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_stats_interval() -> Interval {
    Interval(Duration::from_secs(5))
}

/// Settings the source owns.
const OWNED: &[&str] = &[
    "group.id",
    "bootstrap.servers",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "session.timeout.ms",
    "statistics.interval.ms",
];

impl KafkaSourceConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.bootstrap_servers.trim().is_empty()
            || self
                .bootstrap_servers
                .split(',')
                .any(|b| b.trim().is_empty())
        {
            return Err("bootstrap_servers: expected a comma-separated list of brokers, e.g. \"kafka1:9092,kafka2:9092\"".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("group_id: expected the consumer group's name".into());
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err("topics: expected at least one topic name or ^regex".into());
        }
        if self.max_in_flight_events == 0 || self.max_in_flight_events > 10_000_000 {
            return Err("max_in_flight_events: must be between 1 and 10000000".into());
        }
        if self.commit_interval.0 < Duration::from_millis(10) {
            return Err("commit_interval: must be at least 10ms".into());
        }
        if self.session_timeout.0 < Duration::from_secs(1) {
            return Err("session_timeout: must be at least 1s".into());
        }
        if self.lag_interval.0 < Duration::from_millis(100) {
            return Err("lag_interval: must be at least 100ms".into());
        }
        if let Some(k) = self
            .librdkafka_options
            .keys()
            .find(|k| OWNED.contains(&k.as_str()))
        {
            return Err(format!(
                "librdkafka_options: {k:?} cannot be set here; the source sets it from its own keys"
            ));
        }
        Ok(())
    }

    /// The consumer's librdkafka settings.
    pub fn client_settings(&self) -> Vec<(String, String)> {
        let mut s: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.bootstrap_servers.clone()),
            ("group.id".into(), self.group_id.clone()),
            ("enable.auto.commit".into(), "false".into()),
            ("enable.auto.offset.store".into(), "false".into()),
            (
                "auto.offset.reset".into(),
                match self.auto_offset_reset {
                    AutoOffsetReset::Earliest => "earliest",
                    AutoOffsetReset::Latest => "latest",
                }
                .into(),
            ),
            (
                "session.timeout.ms".into(),
                self.session_timeout.0.as_millis().to_string(),
            ),
            (
                "statistics.interval.ms".into(),
                self.lag_interval.0.as_millis().to_string(),
            ),
        ];
        for (k, v) in &self.librdkafka_options {
            s.push((k.clone(), v.expose().to_string()));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<KafkaSourceConfig, String> {
        let c: KafkaSourceConfig = toml::from_str(body).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_and_refusals() {
        let base = "bootstrap_servers = \"k:9092\"\ngroup_id = \"agg\"\ntopics = [\"audit\", \"^audit\\\\..*\"]\n";
        let c = parse(base).unwrap();
        assert_eq!(c.auto_offset_reset, AutoOffsetReset::Earliest);
        assert_eq!(c.max_in_flight_events, 100_000);
        let s = c.client_settings();
        assert!(s.contains(&("enable.auto.commit".into(), "false".into())));
        assert!(s.contains(&("auto.offset.reset".into(), "earliest".into())));
        assert!(
            parse(&format!("{base}[librdkafka_options]\n\"group.id\" = \"x\""))
                .unwrap_err()
                .starts_with("librdkafka_options")
        );
        assert!(
            parse("bootstrap_servers = \"k:9092\"\ngroup_id = \"a\"\ntopics = []")
                .unwrap_err()
                .starts_with("topics")
        );
        assert!(parse(&format!("{base}nope = 1"))
            .unwrap_err()
            .contains("unknown field"));
        let c = parse(&format!(
            "{base}[librdkafka_options]\n\"sasl.password\" = \"hunter2\""
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
