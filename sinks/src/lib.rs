//! `auditrail-sinks`: every destination auditrail writes to, one folder each.
//!
//! Adding a sink is one folder (`config.rs`, the sink itself, its tests) and one line in each `match` below.

use auditrail_core::Sink;
use serde::Deserialize;

pub mod blackhole;
pub mod console;
pub mod elasticsearch;
pub mod file;
pub mod http;
pub mod kafka;
pub mod name_rules;
pub mod splunk_hec;
pub mod template;

/// The type-specific part of a `[sinks.NAME]` table, chosen by its `type` key.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// NDJSON files on local disk.
    File(file::FileSinkConfig),
    /// Standard output, for trying things out.
    Console(console::ConsoleSinkConfig),
    /// Counts and discards, for benchmarks.
    Blackhole(blackhole::BlackholeSinkConfig),
    /// Elasticsearch or OpenSearch through the `_bulk` API.
    Elasticsearch(Box<elasticsearch::ElasticsearchSinkConfig>),
    /// Splunk's HTTP Event Collector, with indexer acknowledgements.
    SplunkHec(Box<splunk_hec::SplunkHecSinkConfig>),
    /// Kafka, with an idempotent producer.
    Kafka(Box<kafka::KafkaSinkConfig>),
}

/// The `type` names, for error messages.
pub const SINK_TYPES: &[&str] = &[
    "file",
    "console",
    "blackhole",
    "elasticsearch",
    "splunk_hec",
    "kafka",
];

/// A config problem found after parsing (e.g. a path template that does not parse).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SinkConfigError {
    /// The key inside the sink's table.
    pub field: &'static str,
    /// What is wrong and what is expected.
    pub message: String,
}

impl SinkConfig {
    /// The `type` of this sink.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::Console(_) => "console",
            SinkConfig::Blackhole(_) => "blackhole",
            SinkConfig::Elasticsearch(_) => "elasticsearch",
            SinkConfig::SplunkHec(_) => "splunk_hec",
            SinkConfig::Kafka(_) => "kafka",
        }
    }

    /// Checks what serde cannot (templates, ranges) without touching the outside world.
    pub fn validate(&self) -> Result<(), SinkConfigError> {
        match self {
            SinkConfig::File(c) => c.validate(),
            SinkConfig::Elasticsearch(c) => c.validate(),
            SinkConfig::SplunkHec(c) => c.validate(),
            SinkConfig::Kafka(c) => c.validate(),
            SinkConfig::Console(_) | SinkConfig::Blackhole(_) => Ok(()),
        }
    }

    /// Builds the sink.
    pub fn build(&self) -> Result<Box<dyn Sink>, SinkConfigError> {
        Ok(match self {
            SinkConfig::File(c) => Box::new(file::FileSink::new(c.clone())?),
            SinkConfig::Console(c) => Box::new(console::ConsoleSink::new(c.clone())),
            SinkConfig::Blackhole(c) => Box::new(blackhole::BlackholeSink::new(c.clone())),
            SinkConfig::Elasticsearch(c) => {
                Box::new(elasticsearch::ElasticsearchSink::new((**c).clone())?)
            }
            SinkConfig::SplunkHec(c) => Box::new(splunk_hec::SplunkHecSink::new((**c).clone())?),
            SinkConfig::Kafka(c) => Box::new(kafka::KafkaSink::new((**c).clone())?),
        })
    }
}
