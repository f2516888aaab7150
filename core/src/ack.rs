//! End-to-end acknowledgements: how a source learns that every sink is done with a batch of its events.
//!
//! A source groups the events it read together (a chunk of a file, one HTTP request) into an [`AckBatch`] and
//! gives each event a [`Finalizer`]. The fan-out clones events, one clone per sink; each clone carries its own
//! finalizer pointing at the same batch. A sink reports each event's outcome whenever it knows it — right after a
//! write, seconds later when Splunk's indexer acknowledges, out of order when Kafka's delivery reports arrive —
//! by calling [`crate::Event::finish`]. When the last clone of the last event of a batch is gone, the batch's
//! outcome (the worst of all its events') is sent to the source, which moves its checkpoint over complete batches
//! only. A clone dropped without an outcome (a crash of a sink task, a shutdown that ran out of time) counts as
//! failed: the source does not move past it, so the event is read again after a restart.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// The outcome of one event at one sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventStatus {
    /// The sink's destination has it (written, indexed, acknowledged) or a durable buffer holds it.
    Delivered = 0,
    /// Dropped on purpose by a `drop_newest` buffer; counted and reported by the buffer.
    Dropped = 1,
    /// Permanently refused by the destination and written to the dead-letter file with the reason.
    Rejected = 2,
    /// Not handled: the event must be read again (the default for an event released without an outcome).
    Failed = 3,
}

impl EventStatus {
    fn from_u8(v: u8) -> EventStatus {
        match v {
            0 => EventStatus::Delivered,
            1 => EventStatus::Dropped,
            2 => EventStatus::Rejected,
            _ => EventStatus::Failed,
        }
    }

    /// Whether the source may consider the event handled (it will never be redelivered).
    pub fn is_final(self) -> bool {
        self != EventStatus::Failed
    }
}

/// What a source receives when a batch completes: its id and the worst outcome of its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The id the source gave the batch.
    pub id: u64,
    /// [`EventStatus::Failed`] if any event copy failed, else the worst of the others.
    pub status: EventStatus,
}

struct BatchInner {
    id: u64,
    worst: AtomicU8,
    notify: mpsc::UnboundedSender<BatchOutcome>,
}

impl Drop for BatchInner {
    fn drop(&mut self) {
        let status = EventStatus::from_u8(self.worst.load(Ordering::Acquire));
        // A source that has stopped listening no longer needs the outcome.
        let _ = self.notify.send(BatchOutcome {
            id: self.id,
            status,
        });
    }
}

/// A group of events whose outcome a source waits for as one.
///
/// The batch reports when the `AckBatch` itself and every finalizer made from it are dropped. A batch from which
/// no finalizer was made (every event was invalid, or none was routed) reports `Delivered` at once.
pub struct AckBatch {
    inner: Arc<BatchInner>,
}

impl AckBatch {
    /// Starts a batch that reports to `notify` under `id`.
    pub fn new(id: u64, notify: mpsc::UnboundedSender<BatchOutcome>) -> AckBatch {
        AckBatch {
            inner: Arc::new(BatchInner {
                id,
                worst: AtomicU8::new(EventStatus::Delivered as u8),
                notify,
            }),
        }
    }

    /// A finalizer for one event of this batch.
    pub fn finalizer(&self) -> Finalizer {
        Finalizer {
            batch: Arc::clone(&self.inner),
            status: EventStatus::Failed,
        }
    }
}

/// One event copy's link to its batch. Cloning (when the fan-out copies an event) gives the copy its own pending
/// outcome.
pub struct Finalizer {
    batch: Arc<BatchInner>,
    status: EventStatus,
}

impl Clone for Finalizer {
    fn clone(&self) -> Finalizer {
        Finalizer {
            batch: Arc::clone(&self.batch),
            status: EventStatus::Failed,
        }
    }
}

impl Finalizer {
    /// Records this copy's outcome; it is reported when the finalizer is dropped.
    pub fn set_status(&mut self, status: EventStatus) {
        self.status = status;
    }
}

impl Drop for Finalizer {
    fn drop(&mut self) {
        self.batch
            .worst
            .fetch_max(self.status as u8, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_reports_worst_outcome_after_last_copy() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let batch = AckBatch::new(7, tx);
        let mut a = batch.finalizer();
        let mut b = a.clone();
        let c = batch.finalizer();
        drop(batch);
        a.set_status(EventStatus::Delivered);
        drop(a);
        assert!(rx.try_recv().is_err());
        b.set_status(EventStatus::Rejected);
        drop(b);
        assert!(rx.try_recv().is_err());
        drop(c); // never given an outcome: failed
        let out = rx.try_recv().unwrap();
        assert_eq!(out.id, 7);
        assert_eq!(out.status, EventStatus::Failed);
    }

    #[test]
    fn delivered_and_dropped_are_final() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let batch = AckBatch::new(1, tx);
        let mut a = batch.finalizer();
        let mut b = batch.finalizer();
        drop(batch);
        a.set_status(EventStatus::Dropped);
        b.set_status(EventStatus::Delivered);
        drop((a, b));
        let out = rx.try_recv().unwrap();
        assert_eq!(out.status, EventStatus::Dropped);
        assert!(out.status.is_final());
    }

    #[test]
    fn empty_batch_reports_delivered() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        drop(AckBatch::new(3, tx));
        assert_eq!(rx.try_recv().unwrap().status, EventStatus::Delivered);
    }
}
