//! The Kafka sink: every event one record of an idempotent producer (`enable.idempotence=true`, `acks=all`),
//! acknowledged upstream only when its delivery report says it is written.
//!
//! ```toml
//! [sinks.kafka]
//! type = "kafka"
//! inputs = ["teleport"]
//! bootstrap_servers = "kafka1:9092,kafka2:9092"
//! topic = "audit"                 # or a template: "audit.{event}"
//! key_field = "sid"               # default; events without it are keyed by uid
//! compression = "lz4"             # default
//! [sinks.kafka.librdkafka_options]
//! "security.protocol" = "sasl_ssl"
//! "sasl.mechanism" = "SCRAM-SHA-512"
//! "sasl.username" = "agent"
//! "sasl.password" = "${KAFKA_PASSWORD}"
//! ```
//!
//! - The record: the event's bytes exactly as value; key = `key_field` (so one session stays in one partition,
//!   in order), falling back to `uid`; headers `uid`, `event`, `server_id` ([`record`]).
//! - Delivery reports in any order finish events one by one ([`sink`]); a record librdkafka gives up on
//!   (message timeout, purge) is sent again, never dropped; one over `message_max_bytes` goes to the
//!   dead-letter file with reason `message_too_large`; a fatal producer error rebuilds the producer.
//! - Metrics besides every sink's: `auditrail_sink_kafka_producer_rebuilds_total{sink}` and the gauge
//!   `auditrail_sink_kafka_in_flight_events{sink}`.

mod config;
mod producer;
pub mod record;
mod sink;
#[cfg(test)]
mod tests;

pub use config::{Compression, KafkaSinkConfig};

use auditrail_core::buffer::BufferReceiver;
use auditrail_core::{Sink, SinkContext, SinkFuture};

use crate::SinkConfigError;

/// See the module documentation.
pub struct KafkaSink {
    config: KafkaSinkConfig,
}

impl KafkaSink {
    /// A Kafka sink of `config` (validated).
    pub fn new(config: KafkaSinkConfig) -> Result<KafkaSink, SinkConfigError> {
        config.validate()?;
        Ok(KafkaSink { config })
    }
}

impl Sink for KafkaSink {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> SinkFuture {
        Box::pin(sink::run(self.config, input, cx))
    }

    fn reports_contact(&self) -> bool {
        true
    }
}
