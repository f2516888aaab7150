//! The writing end of a disk buffer: reserve bytes under `max_size`, then send.
//!
//! Room is counted in bytes of records (header, source name and raw event), by a semaphore whose permits are the
//! free bytes. A reservation takes the bytes of the leading events it grants; sending hands the events to the
//! writer thread, and the bytes stay taken until the segment holding them is acknowledged and deleted. Reserving
//! before sending lets the fan-out give a batch to several sinks all-or-nothing, as with the memory buffer.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::segment::{payload_len, record_len, MAX_RECORD_LEN};
use super::shared::Shared;
use crate::ack::EventStatus;
use crate::buffer::WhenFull;
use crate::event::Event;

/// The writing end of a sink's disk buffer. Clone it for every source that feeds the sink; the sink sees the end
/// of its input when the last clone is dropped and everything sent has been read.
#[derive(Clone)]
pub struct DiskSender {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tx: mpsc::Sender<(Vec<Event>, Option<OwnedSemaphorePermit>)>,
}

/// Bytes reserved in a disk buffer for the first [`DiskReservation::granted`] events. Dropping it unused gives the
/// bytes back.
pub struct DiskReservation<'a> {
    sender: &'a DiskSender,
    permit: Option<OwnedSemaphorePermit>,
    granted: usize,
    bytes: u64,
    /// Room among the bytes in flight to the writer; released by the writer once they are durable.
    in_flight: Option<OwnedSemaphorePermit>,
    /// The buffer was full and its sink has stopped: nothing can be stored in this run.
    closed: bool,
}

/// The most bytes one reservation can hold (semaphore permits are taken as `u32`).
const MAX_RESERVATION: u64 = u32::MAX as u64;

impl DiskSender {
    /// The buffer's policy when full.
    pub fn when_full(&self) -> WhenFull {
        self.shared.when_full
    }

    /// The most bytes of segment files the buffer keeps.
    pub fn max_size(&self) -> u64 {
        self.shared.max_size
    }

    /// Reserves room for the leading `events`. A `block` buffer waits until they fit under `max_size` (a batch
    /// larger than `max_size` is granted its longest prefix that fits in an empty buffer, and at least one event);
    /// a `drop_newest` buffer grants the longest prefix that fits now, possibly none.
    pub async fn reserve(&self, events: &[Event]) -> DiskReservation<'_> {
        let in_flight = Arc::clone(&self.shared.in_flight)
            .acquire_many_owned(in_flight_need(events))
            .await
            .ok();
        let mut r = self.reserve_space(events).await;
        r.in_flight = in_flight;
        r
    }

    async fn reserve_space(&self, events: &[Event]) -> DiskReservation<'_> {
        match self.shared.when_full {
            WhenFull::Block => {
                let (n, bytes) = self.block_prefix(events);
                if n == 0 {
                    return self.reservation(None, 0, 0);
                }
                match Arc::clone(&self.shared.space)
                    .acquire_many_owned(bytes as u32)
                    .await
                {
                    Ok(permit) => self.reservation(Some(permit), n, bytes),
                    // The sink stopped (end of shutdown_timeout) while the buffer was full: no room will
                    // come back in this run.
                    Err(_) => DiskReservation {
                        closed: true,
                        ..self.reservation(None, 0, 0)
                    },
                }
            }
            WhenFull::DropNewest => self.grant_available(events),
        }
    }

    /// Reserves room without waiting. A `block` buffer returns `None` unless every event fits now (for a batch
    /// larger than `max_size`: the prefix [`Self::reserve`] would grant); a `drop_newest` buffer always answers,
    /// granting the longest prefix that fits now.
    pub fn try_reserve(&self, events: &[Event]) -> Option<DiskReservation<'_>> {
        let in_flight = Arc::clone(&self.shared.in_flight)
            .try_acquire_many_owned(in_flight_need(events))
            .ok();
        if in_flight.is_none() {
            // The writer is behind: a block buffer answers "no room now"; drop_newest grants nothing.
            return match self.shared.when_full {
                WhenFull::Block => None,
                WhenFull::DropNewest => Some(self.reservation(None, 0, 0)),
            };
        }
        let mut r = self.try_reserve_space(events)?;
        r.in_flight = in_flight;
        Some(r)
    }

    fn try_reserve_space(&self, events: &[Event]) -> Option<DiskReservation<'_>> {
        match self.shared.when_full {
            WhenFull::Block => {
                let (n, bytes) = self.block_prefix(events);
                if n == 0 {
                    return Some(self.reservation(None, 0, 0));
                }
                Arc::clone(&self.shared.space)
                    .try_acquire_many_owned(bytes as u32)
                    .ok()
                    .map(|p| self.reservation(Some(p), n, bytes))
            }
            WhenFull::DropNewest => Some(self.grant_available(events)),
        }
    }

    /// The prefix a blocking reservation waits for: what fits in an empty buffer, and at least one event (whose
    /// reservation is then capped at `max_size`).
    fn block_prefix(&self, events: &[Event]) -> (usize, u64) {
        let budget = self.shared.max_size.min(MAX_RESERVATION);
        let (n, bytes) = prefix(events, budget);
        if n == 0 && !events.is_empty() {
            return (1, (record_len(&events[0]) as u64).min(budget).max(1));
        }
        (n, bytes)
    }

    fn grant_available(&self, events: &[Event]) -> DiskReservation<'_> {
        if self.shared.space.is_closed() {
            return DiskReservation {
                closed: true,
                ..self.reservation(None, 0, 0)
            };
        }
        loop {
            let free = (self.shared.space.available_permits() as u64).min(MAX_RESERVATION);
            let (n, bytes) = prefix(events, free);
            if n == 0 {
                return self.reservation(None, 0, 0);
            }
            if let Ok(p) = Arc::clone(&self.shared.space).try_acquire_many_owned(bytes as u32) {
                return self.reservation(Some(p), n, bytes);
            }
        }
    }

    fn reservation(
        &self,
        permit: Option<OwnedSemaphorePermit>,
        granted: usize,
        bytes: u64,
    ) -> DiskReservation<'_> {
        DiskReservation {
            sender: self,
            permit,
            granted,
            bytes,
            in_flight: None,
            closed: false,
        }
    }
}

/// The longest prefix of `events` whose records fit in `budget` bytes, and their size.
/// In-flight room a batch asks for: its record bytes, capped so that any batch can be admitted.
fn in_flight_need(events: &[Event]) -> u32 {
    let bytes: u64 = events.iter().map(|e| record_len(e) as u64).sum();
    bytes.clamp(1, super::shared::MAX_IN_FLIGHT) as u32
}

fn prefix(events: &[Event], budget: u64) -> (usize, u64) {
    let mut total = 0u64;
    for (i, e) in events.iter().enumerate() {
        let len = record_len(e) as u64;
        if total + len > budget {
            return (i, total);
        }
        total += len;
    }
    (events.len(), total)
}

impl DiskReservation<'_> {
    /// How many leading events this reservation may send.
    pub fn granted(&self) -> usize {
        self.granted
    }

    /// Appends the first [`Self::granted`] events. Events beyond are finished with [`EventStatus::Dropped`],
    /// counted in `auditrail_buffer_dropped_events_total` and reported later in an `auditrail.dropped` event (only
    /// a `drop_newest` buffer grants fewer than asked). An event too large for one record (over 64 MiB) is
    /// dropped the same way. The sources learn [`EventStatus::Delivered`] once the writer has fsynced the records.
    pub fn send(mut self, mut events: Vec<Event>) {
        let shared = Arc::clone(&self.sender.shared);
        if self.closed {
            // Left without an outcome (failed): a file source reads them again on the next start.
            tracing::warn!(
                sink = %shared.sink,
                events = events.len(),
                "disk buffer full and its sink stopped: events not stored; their sources will send them again where they can"
            );
            return;
        }
        if events.len() > self.granted {
            let dropped = events.split_off(self.granted);
            let n = dropped.len() as u64;
            for e in dropped {
                e.finish(EventStatus::Dropped);
            }
            shared.record_drops(n, "buffer full (when_full = drop_newest)");
        }
        if events.iter().any(|e| payload_len(e) > MAX_RECORD_LEN) {
            let (keep, too_large): (Vec<Event>, Vec<Event>) = events
                .into_iter()
                .partition(|e| payload_len(e) <= MAX_RECORD_LEN);
            events = keep;
            let n = too_large.len() as u64;
            for e in too_large {
                e.finish(EventStatus::Dropped);
            }
            shared.record_drops(n, "event larger than the 64 MiB record limit");
        }
        let permit = self.permit.take();
        if events.is_empty() {
            return; // the permit, if any, goes back as it drops
        }
        let actual: u64 = events.iter().map(|e| record_len(e) as u64).sum();
        if let Some(p) = permit {
            p.forget();
        }
        if actual < self.bytes {
            shared.release(self.bytes - actual);
        } else if actual > self.bytes {
            shared.add_debt(actual - self.bytes);
        }
        let n = events.len() as u64;
        shared.unread.fetch_add(n, Ordering::AcqRel);
        if let Err(mpsc::SendError((events, _))) =
            self.sender.tx.send((events, self.in_flight.take()))
        {
            // The writer is gone (only after a failure it could not recover from): the events are released
            // without an outcome, so their sources keep them.
            shared.release(actual);
            shared.sub_unread(n);
            tracing::error!(
                sink = %shared.sink,
                events = events.len(),
                "disk buffer writer has stopped: events not buffered, their sources will send them again"
            );
        }
    }
}
