//! The memory buffer: a bounded queue of events in front of one sink.
//!
//! Room is counted in events by a semaphore; a sender first reserves room for a batch (waiting, or not, as the
//! caller and the `when_full` policy decide) and then sends it. Reserving before sending is what lets the fan-out
//! hand a batch to several sinks all-or-nothing, and the http source answer 503 without half-accepting a request.
//! Room is given back when the sink takes events out; what the sink then holds in flight is bounded by the sink's
//! own batching.

use std::sync::Arc;

use metrics::{Counter, Gauge};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::config::{MemoryBufferConfig, WhenFull};
use super::drops::Drops;
use crate::ack::EventStatus;
use crate::event::Event;

struct Shared {
    sink: Arc<str>,
    capacity: usize,
    room: Arc<Semaphore>,
    when_full: WhenFull,
    /// Drops not yet reported in an `auditrail.dropped` event.
    drops: Drops,
    fill: Gauge,
    discarded: Counter,
}

impl Shared {
    /// Counts and reports events that could not enter the buffer because its sink has stopped.
    fn discard(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.discarded.increment(n as u64);
        tracing::warn!(
            sink = %self.sink,
            events = n,
            "sink has stopped: events not buffered; their sources will read them again where they can (file), the rest are lost"
        );
    }

    fn update_fill(&self) {
        self.fill
            .set((self.capacity - self.room.available_permits().min(self.capacity)) as f64);
    }
}

/// Creates a memory buffer for `sink` and returns its two ends.
pub fn memory_buffer(sink: &str, config: &MemoryBufferConfig) -> (MemorySender, MemoryReceiver) {
    let capacity = config.max_events.max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    let labels = [("sink", sink.to_string())];
    metrics::gauge!("auditrail_buffer_max_events", &labels).set(capacity as f64);
    let shared = Arc::new(Shared {
        sink: sink.into(),
        capacity,
        room: Arc::new(Semaphore::new(capacity)),
        when_full: config.when_full,
        drops: Drops::new(sink),
        fill: metrics::gauge!("auditrail_buffer_events", &labels),
        discarded: metrics::counter!("auditrail_buffer_discarded_events_total", &labels),
    });
    shared.fill.set(0.0);
    shared.discarded.increment(0);
    (
        MemorySender {
            shared: Arc::clone(&shared),
            tx,
        },
        MemoryReceiver {
            rx,
            shared,
            leftover: Vec::new(),
        },
    )
}

/// The writing end of a sink's buffer. Clone it for every source that feeds the sink; the sink sees the end
/// of its input when the last clone is dropped.
#[derive(Clone)]
pub struct MemorySender {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Vec<Event>>,
}

/// Room reserved in a buffer for up to [`MemoryReservation::granted`] events. Dropping it unused gives the room back.
pub struct MemoryReservation<'a> {
    sender: &'a MemorySender,
    permit: Option<OwnedSemaphorePermit>,
    granted: usize,
    /// The sink is gone: whatever is sent is discarded (and counted).
    closed: bool,
}

impl MemorySender {
    /// The most events the buffer holds; a single reservation never asks for more.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// The buffer's policy when full.
    pub fn when_full(&self) -> WhenFull {
        self.shared.when_full
    }

    /// Reserves room for `n` events (at most [`Self::capacity`]). A `block` buffer waits until there is room; a
    /// `drop_newest` buffer grants what is free now, possibly nothing.
    pub async fn reserve(&self, n: usize) -> MemoryReservation<'_> {
        let n = n.min(self.shared.capacity);
        match self.shared.when_full {
            WhenFull::Block => {
                match Arc::clone(&self.shared.room)
                    .acquire_many_owned(n as u32)
                    .await
                {
                    Ok(permit) => self.reservation(Some(permit), n),
                    // The sink is gone (stopped at the end of shutdown_timeout).
                    Err(_) => self.closed_reservation(),
                }
            }
            WhenFull::DropNewest => self.grant_available(n),
        }
    }

    /// Reserves room for `n` events without waiting. A `block` buffer without room for all `n` returns `None`;
    /// a `drop_newest` buffer always answers, granting what is free.
    pub fn try_reserve(&self, n: usize) -> Option<MemoryReservation<'_>> {
        let n = n.min(self.shared.capacity);
        match self.shared.when_full {
            WhenFull::Block => match Arc::clone(&self.shared.room).try_acquire_many_owned(n as u32)
            {
                Ok(p) => Some(self.reservation(Some(p), n)),
                Err(tokio::sync::TryAcquireError::Closed) => Some(self.closed_reservation()),
                Err(tokio::sync::TryAcquireError::NoPermits) => None,
            },
            WhenFull::DropNewest => Some(self.grant_available(n)),
        }
    }

    fn grant_available(&self, n: usize) -> MemoryReservation<'_> {
        if self.shared.room.is_closed() {
            return self.closed_reservation();
        }
        loop {
            let k = self.shared.room.available_permits().min(n);
            if k == 0 {
                return self.reservation(None, 0);
            }
            if let Ok(p) = Arc::clone(&self.shared.room).try_acquire_many_owned(k as u32) {
                return self.reservation(Some(p), k);
            }
        }
    }

    fn reservation(
        &self,
        permit: Option<OwnedSemaphorePermit>,
        granted: usize,
    ) -> MemoryReservation<'_> {
        MemoryReservation {
            sender: self,
            permit,
            granted,
            closed: false,
        }
    }

    fn closed_reservation(&self) -> MemoryReservation<'_> {
        MemoryReservation {
            sender: self,
            permit: None,
            granted: 0,
            closed: true,
        }
    }
}

impl MemoryReservation<'_> {
    /// How many events this reservation may send.
    pub fn granted(&self) -> usize {
        self.granted
    }

    /// Sends the first [`Self::granted`] events; any others are dropped (only a `drop_newest` buffer grants
    /// fewer than asked), counted, and reported later in an `auditrail.dropped` event.
    pub fn send(mut self, mut events: Vec<Event>) {
        let shared = &self.sender.shared;
        if self.closed {
            shared.discard(events.len());
            return;
        }
        if events.len() > self.granted {
            let dropped = events.split_off(self.granted);
            self.record_drops(dropped);
        }
        let Some(permit) = self.permit.take() else {
            return;
        };
        // The permits travel with the events and are given back by the receiver.
        permit.forget();
        let unused = self.granted - events.len();
        if unused > 0 {
            shared.room.add_permits(unused);
        }
        if events.is_empty() {
            return;
        }
        if let Err(mpsc::error::SendError(events)) = self.sender.tx.send(events) {
            // The sink is gone (only during shutdown): the events count as failed, so a file source reads
            // them again on the next start.
            shared.discard(events.len());
        }
        shared.update_fill();
    }

    fn record_drops(&self, dropped: Vec<Event>) {
        let n = dropped.len() as u64;
        for e in dropped {
            e.finish(EventStatus::Dropped);
        }
        self.sender
            .shared
            .drops
            .record(n, "buffer full (when_full = drop_newest)");
    }
}

/// The reading end of a sink's buffer, owned by the sink.
pub struct MemoryReceiver {
    rx: mpsc::UnboundedReceiver<Vec<Event>>,
    shared: Arc<Shared>,
    leftover: Vec<Event>,
}

impl MemoryReceiver {
    /// Waits for at least one event and moves up to `limit` into `out`. Returns how many were moved; 0 means
    /// every sender is gone and the buffer is empty: the sink should finish.
    pub async fn recv_many(&mut self, out: &mut Vec<Event>, limit: usize) -> usize {
        let limit = limit.max(1);
        let mut moved = 0;
        if !self.leftover.is_empty() {
            moved += self.take_leftover(out, limit);
        }
        if moved == 0 {
            match self.rx.recv().await {
                Some(batch) => moved += self.accept(batch, out, limit),
                None => return 0,
            }
        }
        while moved < limit {
            match self.rx.try_recv() {
                Ok(batch) => moved += self.accept(batch, out, limit - moved),
                Err(_) => break,
            }
        }
        if let Some(report) = self.shared.drops.report() {
            out.push(report);
            moved += 1;
        }
        moved
    }

    /// How many events wait in the buffer.
    pub fn len(&self) -> usize {
        self.shared.capacity
            - self
                .shared
                .room
                .available_permits()
                .min(self.shared.capacity)
            + self.leftover.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn accept(&mut self, mut batch: Vec<Event>, out: &mut Vec<Event>, limit: usize) -> usize {
        self.shared.room.add_permits(batch.len());
        self.shared.update_fill();
        if batch.len() > limit {
            let rest = batch.split_off(limit);
            self.leftover.extend(rest);
        }
        let n = batch.len();
        out.append(&mut batch);
        n
    }

    fn take_leftover(&mut self, out: &mut Vec<Event>, limit: usize) -> usize {
        let n = self.leftover.len().min(limit);
        out.extend(self.leftover.drain(..n));
        n
    }
}

impl Drop for MemoryReceiver {
    fn drop(&mut self) {
        // Senders waiting for room wake up and discard instead of waiting forever.
        self.shared.room.close();
        let mut n = self.leftover.len();
        self.rx.close();
        while let Ok(batch) = self.rx.try_recv() {
            n += batch.len();
        }
        self.shared.discard(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckBatch;
    use bytes::Bytes;

    fn ev(i: usize) -> Event {
        Event::parse(
            Bytes::from(format!(
                r#"{{"event":"x","uid":"{i}","time":"2017-02-03T06:54:05Z"}}"#
            )),
            1024,
        )
        .unwrap()
    }

    fn cfg(max: usize, when_full: WhenFull) -> MemoryBufferConfig {
        MemoryBufferConfig {
            max_events: max,
            when_full,
        }
    }

    #[tokio::test]
    async fn block_buffer_refuses_without_room_and_frees_on_receive() {
        let (tx, mut rx) = memory_buffer("t", &cfg(3, WhenFull::Block));
        tx.try_reserve(2).unwrap().send(vec![ev(1), ev(2)]);
        assert!(tx.try_reserve(2).is_none());
        tx.try_reserve(1).unwrap().send(vec![ev(3)]);
        let mut out = Vec::new();
        assert_eq!(rx.recv_many(&mut out, 2).await, 2);
        assert!(tx.try_reserve(2).is_some());
        assert_eq!(rx.recv_many(&mut out, 10).await, 1);
        drop(tx);
        assert_eq!(rx.recv_many(&mut out, 10).await, 0);
        let uids: Vec<_> = out.iter().map(|e| e.uid().into_owned()).collect();
        assert_eq!(uids, ["1", "2", "3"]);
    }

    #[tokio::test]
    async fn blocked_reserve_waits_for_room() {
        let (tx, mut rx) = memory_buffer("t", &cfg(1, WhenFull::Block));
        tx.reserve(1).await.send(vec![ev(1)]);
        let tx2 = tx.clone();
        let waiter = tokio::spawn(async move { tx2.reserve(1).await.send(vec![ev(2)]) });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let mut out = Vec::new();
        rx.recv_many(&mut out, 1).await;
        waiter.await.unwrap();
        rx.recv_many(&mut out, 1).await;
        assert_eq!(out.len(), 2);
    }

    #[tokio::test]
    async fn drop_newest_counts_drops_and_reports_them_when_room_returns() {
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let batch = AckBatch::new(1, ack_tx);
        let (tx, mut rx) = memory_buffer("t", &cfg(2, WhenFull::DropNewest));
        let mut events: Vec<Event> = (0..5).map(ev).collect();
        for e in &mut events {
            e.set_finalizer(batch.finalizer());
        }
        drop(batch);
        let r = tx.try_reserve(5).unwrap();
        assert_eq!(r.granted(), 2);
        r.send(events);
        let mut out = Vec::new();
        assert_eq!(rx.recv_many(&mut out, 10).await, 3);
        assert_eq!(out[2].kind(), "auditrail.dropped");
        let v: serde_json::Value = serde_json::from_slice(out[2].raw()).unwrap();
        assert_eq!(v["count"], 3);
        assert_eq!(v["sink"], "t");
        tx.try_reserve(1).unwrap().send(vec![ev(9)]);
        let mut more = Vec::new();
        assert_eq!(
            rx.recv_many(&mut more, 10).await,
            1,
            "drops are reported once"
        );
        for e in out {
            e.finish(EventStatus::Delivered);
        }
        let outcome = ack_rx.try_recv().unwrap();
        assert_eq!(outcome.status, EventStatus::Dropped);
    }

    #[tokio::test]
    async fn a_stopped_sink_releases_waiting_senders() {
        let (tx, rx) = memory_buffer("t", &cfg(1, WhenFull::Block));
        tx.reserve(1).await.send(vec![ev(1)]);
        let tx2 = tx.clone();
        let waiter = tokio::spawn(async move { tx2.reserve(1).await.send(vec![ev(2)]) });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(rx);
        waiter.await.unwrap();
        assert!(
            tx.try_reserve(1).is_some(),
            "a closed buffer answers at once, discarding"
        );
    }

    #[tokio::test]
    async fn leftover_is_served_first() {
        let (tx, mut rx) = memory_buffer("t", &cfg(10, WhenFull::Block));
        tx.try_reserve(5).unwrap().send((0..5).map(ev).collect());
        let mut out = Vec::new();
        assert_eq!(rx.recv_many(&mut out, 3).await, 3);
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.recv_many(&mut out, 3).await, 2);
        assert_eq!(out[4].uid(), "4");
    }
}
