//! The two ends of a sink's buffer as the rest of auditrail sees them, whatever the buffer's kind.
//!
//! Room is asked for with the events themselves, since a memory buffer counts events and a disk buffer counts
//! bytes; what is granted is always a number of leading events.

use super::disk::{DiskReceiver, DiskReservation, DiskSender};
use super::memory::{MemoryReceiver, MemoryReservation, MemorySender};
use super::WhenFull;
use crate::event::Event;

/// The writing end of a sink's buffer. Clone it for every source that feeds the sink; the sink sees the end
/// of its input when the last clone is dropped.
#[derive(Clone)]
pub enum BufferSender {
    /// A bounded in-memory queue.
    Memory(MemorySender),
    /// Segment files on disk.
    Disk(DiskSender),
}

/// Room reserved in a buffer for the first [`Reservation::granted`] events. Dropping it unused gives the room
/// back.
pub enum Reservation<'a> {
    /// In a memory buffer.
    Memory(MemoryReservation<'a>),
    /// In a disk buffer.
    Disk(DiskReservation<'a>),
}

/// The reading end of a sink's buffer, owned by the sink.
pub enum BufferReceiver {
    /// A bounded in-memory queue.
    Memory(MemoryReceiver),
    /// Segment files on disk.
    Disk(DiskReceiver),
}

impl BufferSender {
    /// The most events one reservation can be granted.
    pub fn max_batch(&self) -> usize {
        match self {
            BufferSender::Memory(m) => m.capacity(),
            // Bounded in bytes, not events: batches are as the source made them.
            BufferSender::Disk(_) => usize::MAX,
        }
    }

    /// The buffer's policy when full.
    pub fn when_full(&self) -> WhenFull {
        match self {
            BufferSender::Memory(m) => m.when_full(),
            BufferSender::Disk(d) => d.when_full(),
        }
    }

    /// Reserves room for `events` (at most [`Self::max_batch`] of them). A `block` buffer waits until they
    /// fit; a `drop_newest` buffer grants the leading events that fit now, possibly none.
    pub async fn reserve(&self, events: &[Event]) -> Reservation<'_> {
        match self {
            BufferSender::Memory(m) => Reservation::Memory(m.reserve(events.len()).await),
            BufferSender::Disk(d) => Reservation::Disk(d.reserve(events).await),
        }
    }

    /// Reserves room without waiting. A `block` buffer without room for all of `events` returns `None`; a
    /// `drop_newest` buffer always answers, granting what fits.
    pub fn try_reserve(&self, events: &[Event]) -> Option<Reservation<'_>> {
        match self {
            BufferSender::Memory(m) => m.try_reserve(events.len()).map(Reservation::Memory),
            BufferSender::Disk(d) => d.try_reserve(events).map(Reservation::Disk),
        }
    }

    /// Sends `events` if they fit now, else gives them back.
    pub fn try_send(&self, events: Vec<Event>) -> Result<(), Vec<Event>> {
        match self.try_reserve(&events) {
            Some(r) => {
                r.send(events);
                Ok(())
            }
            None => Err(events),
        }
    }
}

impl Reservation<'_> {
    /// How many leading events this reservation may send.
    pub fn granted(&self) -> usize {
        match self {
            Reservation::Memory(r) => r.granted(),
            Reservation::Disk(r) => r.granted(),
        }
    }

    /// Sends the granted events; any others are dropped (only `drop_newest` grants fewer than asked), counted,
    /// and reported in an `auditrail.dropped` event.
    pub fn send(self, events: Vec<Event>) {
        match self {
            Reservation::Memory(r) => r.send(events),
            Reservation::Disk(r) => r.send(events),
        }
    }
}

impl BufferReceiver {
    /// Waits for at least one event and moves up to `limit` into `out`. Returns how many were moved; 0 means
    /// every sender is gone and the buffer is empty: the sink should finish.
    pub async fn recv_many(&mut self, out: &mut Vec<Event>, limit: usize) -> usize {
        match self {
            BufferReceiver::Memory(m) => m.recv_many(out, limit).await,
            BufferReceiver::Disk(d) => d.recv_many(out, limit).await,
        }
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        match self {
            BufferReceiver::Memory(m) => m.len(),
            BufferReceiver::Disk(d) => d.len(),
        }
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<MemorySender> for BufferSender {
    fn from(m: MemorySender) -> Self {
        BufferSender::Memory(m)
    }
}

impl From<MemoryReceiver> for BufferReceiver {
    fn from(m: MemoryReceiver) -> Self {
        BufferReceiver::Memory(m)
    }
}
