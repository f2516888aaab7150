//! The reading end of a disk buffer, owned by the sink.
//!
//! It takes events from the read-ahead thread, gives each `recv_many` call's events one [`AckBatch`], and
//! registers the batch with the acknowledgement task, which moves and persists the cursor as outcomes come back.
//! `recv_many` awaits only on a channel, so it is cancel-safe: a `select!` that drops it loses nothing.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::acks::{AckState, Control, PendingBatch};
use super::read_ahead::Entry;
use super::shared::Shared;
use crate::ack::{AckBatch, BatchOutcome};
use crate::event::Event;

/// The reading end of a sink's disk buffer.
pub struct DiskReceiver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: mpsc::Receiver<Vec<Entry>>,
    pub(crate) leftover: VecDeque<Entry>,
    pub(crate) acks: Arc<Mutex<AckState>>,
    pub(crate) outcome_tx: mpsc::UnboundedSender<BatchOutcome>,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    pub(crate) next_batch: u64,
}

impl DiskReceiver {
    /// Waits for at least one durable record and moves up to `limit` events into `out`, each with a finalizer
    /// of this call's acknowledgement batch; an `auditrail.dropped` report is added when `drop_newest` dropped
    /// events since the last report. Returns how many events were moved; 0 only when every [`super::DiskSender`]
    /// is dropped and everything written has been read.
    pub async fn recv_many(&mut self, out: &mut Vec<Event>, limit: usize) -> usize {
        let limit = limit.max(1);
        if self.leftover.is_empty() {
            match self.rx.recv().await {
                Some(batch) => self.leftover.extend(batch),
                None => return self.push_drop_report(out),
            }
        }
        while self.leftover.len() < limit {
            match self.rx.try_recv() {
                Ok(batch) => self.leftover.extend(batch),
                Err(_) => break,
            }
        }
        let n = self.leftover.len().min(limit);
        let id = self.next_batch;
        self.next_batch += 1;
        let batch = AckBatch::new(id, self.outcome_tx.clone());
        let mut end = None;
        out.reserve(n);
        for entry in self.leftover.drain(..n) {
            let mut event = entry.event;
            event.set_finalizer(batch.finalizer());
            end = Some(entry.end);
            out.push(event);
        }
        let end = end.expect("at least one entry");
        // Registered before the batch can report: its outcome is sent only once `batch` and every finalizer
        // made from it are gone.
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .push_back(PendingBatch {
                id,
                end,
                records: n as u64,
                status: None,
            });
        drop(batch);
        self.shared.sub_unread(n as u64);
        n + self.push_drop_report(out)
    }

    /// Waits until every acknowledgement received so far is persisted in the cursor and the segments it covers
    /// are deleted. (Without it, acknowledgements are persisted in the background within moments.)
    pub async fn flush_acks(&mut self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Records written but not yet handed to the sink.
    pub fn len(&self) -> usize {
        usize::try_from(self.shared.unread.load(Ordering::Acquire)).unwrap_or(usize::MAX)
    }

    /// Whether no record waits to be handed to the sink.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_drop_report(&self, out: &mut Vec<Event>) -> usize {
        match self.shared.drop_report() {
            Some(report) => {
                out.push(report);
                1
            }
            None => 0,
        }
    }
}

impl Drop for DiskReceiver {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
        // Senders waiting for space that only acknowledgements could free stop waiting.
        self.shared.space.close();
        self.shared.changed.notify_all();
        let waiting = self.shared.unread.load(Ordering::Acquire);
        if waiting > 0 {
            tracing::info!(
                sink = %self.shared.sink,
                records = waiting,
                "sink stopped with records in its disk buffer; they are sent after the next start"
            );
        }
    }
}
