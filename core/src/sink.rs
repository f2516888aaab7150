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

use crate::ack::EventStatus;
use crate::buffer::BufferReceiver;
use crate::dead_letter::{DeadLetter, DeadLetterConfig, DeadLetterRecord};
use crate::event::Event;
use crate::status::{ComponentStatus, Kind};

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
    /// Its entry in the component registry behind `/ready`: a sink that talks to a server (see
    /// [`Sink::reports_contact`]) calls `running()` on each success and `error()` on each failed attempt.
    /// Detached (a registry of its own) unless the pipeline sets it.
    pub status: ComponentStatus,
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
    /// The context of sink `name` under `data_dir`, with the default dead-letter limits.
    pub fn new(name: &str, data_dir: PathBuf) -> SinkContext {
        SinkContext::with_dead_letter(name, data_dir, DeadLetterConfig::default())
    }

    /// The context of sink `name` under `data_dir`, its dead-letter files bounded by `limits`.
    pub fn with_dead_letter(
        name: &str,
        data_dir: PathBuf,
        limits: DeadLetterConfig,
    ) -> SinkContext {
        let dead_letter = Arc::new(DeadLetter::bounded(
            name,
            dead_letter_path(&data_dir, name),
            limits,
        ));
        SinkContext {
            name: name.into(),
            data_dir,
            dead_letter,
            metrics: SinkMetrics::new(name),
            status: ComponentStatus::detached(Kind::Sink, name),
        }
    }

    /// Handles events the destination refused for good (a mapping error, a 4xx): each goes to the sink's
    /// dead-letter file with `reason` (a stable label) and the destination's `message`, is counted in
    /// `auditrail_sink_rejected_total` and `auditrail_sink_dead_lettered_total{reason}`, and is finished as [`EventStatus::Rejected`] so its source moves on.
    /// If the dead-letter file cannot be written, the events are finished as failed instead — kept for
    /// redelivery, never dropped unrecorded — and the error is returned.
    pub fn reject(&self, rejected: Vec<(Event, &'static str, String)>) -> std::io::Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        let records: Vec<DeadLetterRecord<'_>> = rejected
            .iter()
            .map(|(e, reason, message)| {
                DeadLetterRecord::new(
                    &self.name,
                    format!("uid {}", e.uid()),
                    reason,
                    message.clone(),
                    e.raw(),
                )
            })
            .collect();
        if let Err(err) = self.dead_letter.write(&records) {
            tracing::error!(
                sink = %self.name,
                path = %self.dead_letter.path().display(),
                error = %err,
                events = rejected.len(),
                "cannot write the dead-letter file; refused events are kept for redelivery instead"
            );
            return Err(err);
        }
        drop(records);
        self.metrics.rejected.increment(rejected.len() as u64);
        for (_, reason, _) in &rejected {
            // By reason, beside the total: what an operator needs to know to fix the cause.
            metrics::counter!("auditrail_sink_dead_lettered_total", "sink" => self.name.to_string(), "reason" => *reason)
                .increment(1);
        }
        tracing::warn!(
            sink = %self.name,
            events = rejected.len(),
            reason = rejected[0].1,
            message = %rejected[0].2,
            dead_letter = %self.dead_letter.path().display(),
            "destination refused events for good; written to the dead-letter file"
        );
        for (e, _, _) in rejected {
            e.finish(EventStatus::Rejected);
        }
        Ok(())
    }
}

/// Where sink `name`'s dead letters go: `data_dir/dead-letter/<name>.ndjson`.
pub fn dead_letter_path(data_dir: &std::path::Path, name: &str) -> PathBuf {
    data_dir.join("dead-letter").join(format!("{name}.ndjson"))
}

/// A destination for events.
pub trait Sink: Send + 'static {
    /// Consumes events from `input` until it is closed and drained, finishing each event with its outcome.
    /// Returns an error only for a failure that stops the sink for good (its events are then redelivered by
    /// their sources after a restart, where the source can).
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> SinkFuture;

    /// Whether the sink reports its own contact with a server through [`SinkContext::status`]. `false` (the
    /// default) for local destinations (file, console, blackhole): the pipeline counts them in contact from the
    /// start, since a destination they cannot write stops them with an error. A sink that talks to a server
    /// returns `true`, and is not ready until it has reached it.
    fn reports_contact(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckBatch;
    use bytes::Bytes;

    fn ev(uid: &str) -> Event {
        Event::parse(
            Bytes::from(format!(
                r#"{{"event":"x","uid":"{uid}","time":"2017-02-03T06:54:05Z"}}"#
            )),
            1024,
        )
        .unwrap()
    }

    #[test]
    fn rejects_go_to_the_dead_letter_file_and_finish_as_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cx = SinkContext::new("es", dir.path().into());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let batch = AckBatch::new(1, tx);
        let mut e = ev("u1");
        e.set_finalizer(batch.finalizer());
        drop(batch);
        cx.reject(vec![(
            e,
            "mapping_error",
            "field [x] of type [text]".into(),
        )])
        .unwrap();
        assert_eq!(rx.try_recv().unwrap().status, EventStatus::Rejected);
        let text = std::fs::read_to_string(dir.path().join("dead-letter/es.ndjson")).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["component"], "es");
        assert_eq!(v["reason"], "mapping_error");
        assert_eq!(v["location"], "uid u1");
        assert!(v["raw"].as_str().unwrap().contains("\"uid\":\"u1\""));
    }

    #[test]
    fn an_unwritable_dead_letter_file_keeps_events_for_redelivery() {
        let dir = tempfile::tempdir().unwrap();
        // dead-letter/ is a regular file: the record cannot be written.
        std::fs::write(dir.path().join("dead-letter"), b"").unwrap();
        let cx = SinkContext::new("es", dir.path().into());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let batch = AckBatch::new(1, tx);
        let mut e = ev("u2");
        e.set_finalizer(batch.finalizer());
        drop(batch);
        assert!(cx.reject(vec![(e, "mapping_error", "x".into())]).is_err());
        assert_eq!(rx.try_recv().unwrap().status, EventStatus::Failed);
    }
}
