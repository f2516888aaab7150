//! The Sink trait: what every destination implements, and what it is given.
//!
//! A sink owns the reading end of its buffer and runs until that buffer is closed and empty. It reports each
//! event's outcome through [`crate::Event::finish`] whenever it knows it: at once (file), after a bulk response
//! item (Elasticsearch), after an indexer acknowledgement polled seconds later (Splunk HEC), after a delivery
//! report (Kafka) — in any order. An event it keeps for retry is simply not finished yet; one it can never
//! deliver goes to its dead-letter file and is finished as [`crate::EventStatus::Rejected`].

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use metrics::Counter;

use crate::buffer::BufferReceiver;
use crate::dead_letter::DeadLetter;

/// Any error a sink ends with; each sink has its own `thiserror` enum behind it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The future a running sink is.
pub type SinkFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>>;

/// What the pipeline gives a sink when it starts.
#[derive(Clone)]
pub struct SinkContext {
    /// The sink's name in the config (`[sinks.NAME]`), used in logs, metrics and file names.
    pub name: Arc<str>,
    /// The agent's `data_dir`.
    pub data_dir: PathBuf,
    /// Where permanently refused events go: `data_dir/dead-letter/<sink>.ndjson`.
    pub dead_letter: Arc<DeadLetter>,
    /// The sink's counters, registered up front so that they show zeros before the first event.
    pub metrics: SinkMetrics,
}

/// Counters every sink keeps, labelled with the sink's name.
#[derive(Clone)]
pub struct SinkMetrics {
    /// `auditrail_sink_events_total`: events delivered.
    pub events: Counter,
    /// `auditrail_sink_bytes_total`: bytes of delivered events.
    pub bytes: Counter,
    /// `auditrail_sink_errors_total`: failed attempts (each is retried or dead-lettered).
    pub errors: Counter,
    /// `auditrail_sink_retries_total`: attempts repeated after a transient error.
    pub retries: Counter,
    /// `auditrail_sink_rejected_total`: events refused for good and written to the dead-letter file.
    pub rejected: Counter,
}

impl SinkMetrics {
    /// Registers the counters of sink `name`.
    pub fn new(name: &str) -> SinkMetrics {
        let labels = [("sink", name.to_string())];
        let m = SinkMetrics {
            events: metrics::counter!("auditrail_sink_events_total", &labels),
            bytes: metrics::counter!("auditrail_sink_bytes_total", &labels),
            errors: metrics::counter!("auditrail_sink_errors_total", &labels),
            retries: metrics::counter!("auditrail_sink_retries_total", &labels),
            rejected: metrics::counter!("auditrail_sink_rejected_total", &labels),
        };
        for c in [&m.events, &m.bytes, &m.errors, &m.retries, &m.rejected] {
            c.increment(0);
        }
        m
    }
}

impl SinkContext {
    /// The context of sink `name` under `data_dir`.
    pub fn new(name: &str, data_dir: PathBuf) -> SinkContext {
        let dead_letter = Arc::new(DeadLetter::new(
            data_dir.join("dead-letter").join(format!("{name}.ndjson")),
        ));
        SinkContext {
            name: name.into(),
            data_dir,
            dead_letter,
            metrics: SinkMetrics::new(name),
        }
    }
}

/// A destination for events.
pub trait Sink: Send + 'static {
    /// Consumes events from `input` until it is closed and drained, finishing each event with its outcome.
    /// Returns an error only for a failure that stops the sink for good (its events are then redelivered by
    /// their sources after a restart, where the source can).
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> SinkFuture;
}
