//! `[sinks.NAME] type = "kafka"`: where the cluster is, which topic and key each event gets, compression and
//! batching, and librdkafka settings passed through. Keys follow Vector's kafka sink where it has them
//! (`bootstrap_servers`, `topic`, `key_field`, `compression`, `librdkafka_options`).
//!
//! `librdkafka_options` values are [`Secret`]s (`sasl.password`, `ssl.key.password` live there), so the whole
//! table is redacted wherever a config is printed; `"${VAR}"` takes a value from the environment.

use std::collections::BTreeMap;
use std::time::Duration;

use auditrail_core::units::{ByteSize, Interval};
use auditrail_core::Secret;
use serde::Deserialize;

use crate::template::Template;
use crate::SinkConfigError;

/// How record batches are compressed (librdkafka's `compression.type`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4 (default: cheap on CPU, and audit JSON compresses well).
    #[default]
    Lz4,
    /// zstd.
    Zstd,
}

impl Compression {
    /// librdkafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Settings of the Kafka sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The brokers to bootstrap from, `"host:port,host:port"`. Required.
    pub bootstrap_servers: String,
    /// The topic: fixed (`"audit"`) or a template with field placeholders and strftime on the event's time
    /// (`"audit.{event}"`); characters Kafka does not allow in a topic name (anything but letters, digits,
    /// `.`, `_`, `-`) become `_`, a missing field `_`. Required.
    pub topic: String,
    /// The top-level field whose value is the record key, so one session's events land in one partition, in
    /// order. Default `"sid"`; an event without it is keyed by its `uid`.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// `"none"`, `"gzip"`, `"snappy"`, `"lz4"` (default) or `"zstd"`.
    #[serde(default)]
    pub compression: Compression,
    /// How long librdkafka waits for more records before it sends a batch (`linger.ms`). Default `"5ms"`.
    #[serde(default = "default_linger")]
    pub linger: Interval,
    /// Most records in one batch (`batch.num.messages`). Default 10000.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// Most bytes in one batch (`batch.size`). Default `"1MiB"`.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: ByteSize,
    /// The largest record the sink sends (`message.max.bytes`, which must not exceed the topic's
    /// `max.message.bytes`); a larger event goes to the dead-letter file with reason `message_too_large`.
    /// Default `"1000000"` bytes, Kafka's own default.
    #[serde(default = "default_message_max_bytes")]
    pub message_max_bytes: ByteSize,
    /// How long librdkafka keeps trying one record (`message.timeout.ms`) before handing it back; the sink then
    /// sends it again, it is never dropped. Default `"5m"`.
    #[serde(default = "default_message_timeout")]
    pub message_timeout: Interval,
    /// Most events handed to librdkafka and awaiting their delivery report; the sink stops reading its buffer
    /// while this many wait, which bounds its memory when the cluster is away. Default 100000.
    #[serde(default = "default_max_in_flight_events")]
    pub max_in_flight_events: usize,
    /// Waits before events handed back are sent again, and between rebuilds of a producer that failed for
    /// good: exponential from this, with jitter. Default `"100ms"`.
    #[serde(default = "default_retry_initial_backoff")]
    pub retry_initial_backoff: Interval,
    /// The longest such wait. Default `"10s"`.
    #[serde(default = "default_retry_max_backoff")]
    pub retry_max_backoff: Interval,
    /// Further librdkafka settings, passed through as given, e.g. `"security.protocol" = "sasl_ssl"`,
    /// `"sasl.mechanism" = "SCRAM-SHA-512"`, `"sasl.username" = "agent"`,
    /// `"sasl.password" = "${KAFKA_PASSWORD}"`, `"ssl.ca.location" = "/etc/auditrail/kafka-ca.pem"`. Values are
    /// never logged. The settings this table has keys for, and `enable.idempotence` / `acks` (the delivery
    /// promise rests on them), cannot be set here.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, Secret>,
}

fn default_key_field() -> String {
    "sid".into()
}
fn default_linger() -> Interval {
    Interval(Duration::from_millis(5))
}
fn default_batch_max_events() -> usize {
    10_000
}
fn default_batch_max_bytes() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_message_max_bytes() -> ByteSize {
    ByteSize(1_000_000)
}
fn default_message_timeout() -> Interval {
    Interval(Duration::from_secs(300))
}
fn default_max_in_flight_events() -> usize {
    100_000
}
fn default_retry_initial_backoff() -> Interval {
    Interval(Duration::from_millis(100))
}
fn default_retry_max_backoff() -> Interval {
    Interval(Duration::from_secs(10))
}

/// librdkafka settings the sink owns: set from its own keys, or fixed for the delivery promise.
pub const OWNED_OPTIONS: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("linger.ms", "linger"),
    ("queue.buffering.max.ms", "linger"),
    ("batch.num.messages", "batch_max_events"),
    ("batch.size", "batch_max_bytes"),
    ("message.max.bytes", "message_max_bytes"),
    ("message.timeout.ms", "message_timeout"),
    ("delivery.timeout.ms", "message_timeout"),
    ("queue.buffering.max.messages", "max_in_flight_events"),
    (
        "enable.idempotence",
        "nothing: the sink is always idempotent",
    ),
    ("acks", "nothing: the sink always waits for acks=all"),
    (
        "request.required.acks",
        "nothing: the sink always waits for acks=all",
    ),
    (
        "delivery.report.only.error",
        "nothing: every event needs its report",
    ),
    ("transactional.id", "nothing: the sink is not transactional"),
];

/// Largest `max_in_flight_events` (librdkafka's own limit for `queue.buffering.max.messages`).
pub const MAX_IN_FLIGHT: usize = 2_147_483_647;

/// Whether a librdkafka setting named `key` holds a credential whose value must never be shown, even in an
/// error librdkafka makes of it.
pub fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "key", "token", "jaas", "credential"]
        .iter()
        .any(|w| k.contains(w))
}

fn err(field: &'static str, message: impl Into<String>) -> SinkConfigError {
    SinkConfigError {
        field,
        message: message.into(),
    }
}

impl KafkaSinkConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), SinkConfigError> {
        if self.bootstrap_servers.trim().is_empty()
            || self
                .bootstrap_servers
                .split(',')
                .any(|b| b.trim().is_empty())
        {
            return Err(err(
                "bootstrap_servers",
                "expected a comma-separated list of brokers, e.g. \"kafka1:9092,kafka2:9092\"",
            ));
        }
        Template::parse(&self.topic).map_err(|m| err("topic", m))?;
        if self.key_field.is_empty() {
            return Err(err(
                "key_field",
                "expected a field name, e.g. \"sid\" (the default)",
            ));
        }
        if self.batch_max_events == 0 || self.batch_max_events > 1_000_000 {
            return Err(err("batch_max_events", "must be between 1 and 1000000"));
        }
        if self.batch_max_bytes.0 < 1024 || self.batch_max_bytes.0 > i32::MAX as u64 {
            return Err(err("batch_max_bytes", "must be between 1KiB and 2GiB"));
        }
        if self.message_max_bytes.0 < 1000 || self.message_max_bytes.0 > 1_000_000_000 {
            return Err(err(
                "message_max_bytes",
                "must be between 1000 and 1000000000 bytes (librdkafka's range)",
            ));
        }
        if self.max_in_flight_events == 0 || self.max_in_flight_events > MAX_IN_FLIGHT {
            return Err(err(
                "max_in_flight_events",
                format!("must be between 1 and {MAX_IN_FLIGHT}"),
            ));
        }
        if self.message_timeout.0 < Duration::from_secs(1) {
            return Err(err("message_timeout", "must be at least 1s"));
        }
        if self.linger.0 > Duration::from_secs(900) {
            return Err(err("linger", "must be at most 15m"));
        }
        if self.retry_initial_backoff.0.is_zero()
            || self.retry_max_backoff.0 < self.retry_initial_backoff.0
        {
            return Err(err(
                "retry_max_backoff",
                "retry_initial_backoff must be above 0 and retry_max_backoff at least as long",
            ));
        }
        for key in self.librdkafka_options.keys() {
            if let Some((_, owner)) = OWNED_OPTIONS.iter().find(|(k, _)| k == key) {
                return Err(SinkConfigError {
                    field: "librdkafka_options",
                    message: format!("{key:?} cannot be set here; it is set by {owner}"),
                });
            }
        }
        Ok(())
    }

    /// The librdkafka settings of the producer, the sink's own first, then the pass-through ones.
    pub fn client_settings(&self) -> Vec<(String, String)> {
        let mut s: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.bootstrap_servers.clone()),
            ("enable.idempotence".into(), "true".into()),
            ("acks".into(), "all".into()),
            ("compression.type".into(), self.compression.as_str().into()),
            ("linger.ms".into(), self.linger.0.as_millis().to_string()),
            (
                "batch.num.messages".into(),
                self.batch_max_events.to_string(),
            ),
            ("batch.size".into(), self.batch_max_bytes.0.to_string()),
            (
                "message.max.bytes".into(),
                self.message_max_bytes.0.to_string(),
            ),
            (
                "message.timeout.ms".into(),
                self.message_timeout.0.as_millis().to_string(),
            ),
            (
                "queue.buffering.max.messages".into(),
                self.max_in_flight_events.to_string(),
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

    fn parse(body: &str) -> Result<KafkaSinkConfig, String> {
        let c: KafkaSinkConfig = toml::from_str(body).map_err(|e| e.to_string())?;
        c.validate()
            .map_err(|e| format!("{}: {}", e.field, e.message))?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse("bootstrap_servers = \"k1:9092,k2:9092\"\ntopic = \"audit\"").unwrap();
        assert_eq!(c.key_field, "sid");
        assert_eq!(c.compression, Compression::Lz4);
        assert_eq!(c.linger.0, Duration::from_millis(5));
        assert_eq!(c.message_max_bytes.0, 1_000_000);
        assert_eq!(c.max_in_flight_events, 100_000);
        let s = c.client_settings();
        for want in [
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.type", "lz4"),
            ("linger.ms", "5"),
            ("bootstrap.servers", "k1:9092,k2:9092"),
        ] {
            assert!(
                s.iter().any(|(k, v)| k == want.0 && v == want.1),
                "{want:?} in {s:?}"
            );
        }
    }

    #[test]
    fn refuses_what_would_break_the_promise_or_is_owned() {
        let base = "bootstrap_servers = \"k:9092\"\ntopic = \"audit\"\n";
        for (opt, owner) in [
            ("enable.idempotence", "always idempotent"),
            ("acks", "acks=all"),
            ("linger.ms", "linger"),
            ("compression.type", "compression"),
        ] {
            let e = parse(&format!("{base}[librdkafka_options]\n\"{opt}\" = \"x\"")).unwrap_err();
            assert!(
                e.starts_with("librdkafka_options:") && e.contains(owner),
                "{e}"
            );
        }
        assert!(parse("bootstrap_servers = \"\"\ntopic = \"a\"")
            .unwrap_err()
            .starts_with("bootstrap_servers"));
        assert!(parse("bootstrap_servers = \"a:1,\"\ntopic = \"a\"")
            .unwrap_err()
            .starts_with("bootstrap_servers"));
        assert!(
            parse("bootstrap_servers = \"a:1\"\ntopic = \"audit.{event\"")
                .unwrap_err()
                .starts_with("topic")
        );
        assert!(parse(&format!("{base}max_in_flight_events = 0"))
            .unwrap_err()
            .starts_with("max_in_flight_events"));
        assert!(parse(&format!("{base}bogus = 1"))
            .unwrap_err()
            .contains("unknown field"));
    }

    #[test]
    fn pass_through_values_are_secrets() {
        let c = parse(
            "bootstrap_servers = \"k:9092\"\ntopic = \"audit\"\n[librdkafka_options]\n\"sasl.password\" = \"hunter2\"\n\"security.protocol\" = \"sasl_ssl\"",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(c
            .client_settings()
            .contains(&("sasl.password".into(), "hunter2".into())));
        assert!(is_sensitive("sasl.password") && is_sensitive("ssl.key.password"));
        assert!(!is_sensitive("security.protocol"));
    }
}
