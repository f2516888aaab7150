//! The kafka source: a member of a consumer group reading audit events, one per record, from topics that
//! agents' `kafka` sinks write — the aggregator tier of DESIGN.md's "Modes".
//!
//! ```toml
//! [sources.fleet]
//! type = "kafka"
//! bootstrap_servers = "kafka1:9092,kafka2:9092"
//! group_id = "auditrail-aggregators"
//! topics = ["audit"]              # or ["^audit\\..*"]
//! ```
//!
//! - End to end: a partition's offset is committed only up to the highest offset below which every record is
//!   done by every sink ([`offsets`]); a malformed record (no value, not JSON, not an event, too large) is
//!   counted, dead-lettered as `kafka:TOPIC/PARTITION@OFFSET` and done, so it never stalls its partition.
//! - Rebalances ([`consumer`]): partitions given up stop fetching, wait up to `drain_timeout` for their
//!   in-flight records, are committed (only they, never behind a commit already made), then let go;
//!   partitions assigned resume from the group's committed offset.
//! - Backpressure pauses every partition (fetching stops, the group membership stays) instead of buffering.
//! - Relay: events are passed on byte for byte; with `[integrity]` on the aggregator, they are not chained
//!   again ([`super::SourceConfig::relays_chains`]): each keeps the chain its agent gave it, which `auditrail
//!   verify` checks end to end.
//! - Metrics: `auditrail_source_kafka_lag{source,topic,partition}` (from librdkafka's statistics every
//!   `lag_interval`), `auditrail_source_kafka_commits_total{source,result}`,
//!   `auditrail_source_kafka_rebalances_total{source,kind}`, `auditrail_source_kafka_rewinds_total{source}`,
//!   gauges `auditrail_source_kafka_paused{source}` and `auditrail_source_kafka_in_flight_events{source}`,
//!   besides every source's `auditrail_source_events_total` and `auditrail_source_invalid_total`.

mod config;
pub mod consumer;
pub mod offsets;

pub use config::{AutoOffsetReset, KafkaSourceConfig};

use super::{SourceContext, SourceError, SourceTask};

/// Creates the consumer, subscribes, and returns the task that runs it on a thread of its own.
pub fn build(config: KafkaSourceConfig, cx: SourceContext) -> Result<SourceTask, SourceError> {
    let running = consumer::start(&cx.name, &config).map_err(|message| SourceError::State {
        source_name: cx.name.to_string(),
        message: format!("cannot create the Kafka consumer: {message}"),
    })?;
    tracing::info!(source = %cx.name, topics = ?config.topics, group = %config.group_id, "kafka source subscribed");
    let runtime = tokio::runtime::Handle::current();
    let SourceContext {
        fanout,
        shutdown,
        ingest,
        ..
    } = cx;
    Ok(Box::pin(async move {
        let task = tokio::task::spawn_blocking(move || {
            consumer::run(running, config, fanout, ingest, runtime, || {
                shutdown.is_triggered()
            })
        });
        if let Err(e) = task.await {
            tracing::error!(error = %e, "the kafka source's thread failed");
        }
    }))
}
