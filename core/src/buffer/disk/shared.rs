//! State shared by the ends and the workers of one disk buffer: which segments exist and how much of each is
//! durable, the space left under `max_size`, the counts behind `len()` and the gauges, and the metrics.
//!
//! The writer publishes durable data here (and wakes the reader); the acknowledgement task removes deleted
//! segments and gives their space back to the senders.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use metrics::{Counter, Gauge};
use tokio::sync::Semaphore;

use super::lock::DirLock;
use super::tails::ChainTails;
use crate::buffer::drops::Drops;
use crate::buffer::WhenFull;
use crate::event::Event;

/// Which segments exist, and where the writer is.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Segment id → bytes durable in it (the whole file for segments found at open).
    pub segments: BTreeMap<u64, u64>,
    /// Sum of `segments`' sizes.
    pub bytes: u64,
    /// The segment the writer appends to (its file is created with the first write).
    pub current: u64,
    /// The writer has stopped: every sender is gone and everything sent is durable (or given up).
    pub writer_done: bool,
}

impl State {
    /// The first segment after `id` the reader should go to: the next existing one, else the writer's.
    pub fn next_after(&self, id: u64) -> u64 {
        self.segments
            .range(id.saturating_add(1)..)
            .next()
            .map_or(self.current, |(&k, _)| k)
    }

    /// Sets the durable size of `id`, keeping `bytes` in step.
    pub fn set_size(&mut self, id: u64, size: u64) {
        let old = self.segments.insert(id, size).unwrap_or(0);
        self.bytes = self.bytes.saturating_sub(old) + size;
    }

    /// Forgets a deleted segment and returns its size.
    pub fn remove(&mut self, id: u64) -> u64 {
        let size = self.segments.remove(&id).unwrap_or(0);
        self.bytes = self.bytes.saturating_sub(size);
        size
    }
}

/// Most bytes of events waiting in memory for the writer; the writer syncs early once a quarter of this is
/// left, so the bound costs throughput only when the disk is slower than the source.
pub(crate) const MAX_IN_FLIGHT: u64 = 16 << 20;

/// The buffer's metrics, labelled with the sink.
pub(crate) struct Metrics {
    /// `auditrail_buffer_events`: records on disk not yet acknowledged by the sink.
    pub events: Gauge,
    /// `auditrail_buffer_bytes`: bytes of segment files.
    pub bytes: Gauge,
    /// `auditrail_buffer_corrupt_records_total`.
    pub corrupt: Counter,
    /// `auditrail_buffer_write_blocked`: 1 while segment writes fail (disk full, I/O error), else 0.
    pub write_blocked: Gauge,
}

/// Everything the parts of one disk buffer share.
pub(crate) struct Shared {
    /// The buffer directory.
    pub dir: PathBuf,
    /// The directory, opened for fsync after creating, renaming and deleting files.
    pub dir_handle: File,
    /// The sink's name (metrics label, log field).
    pub sink: Arc<str>,
    /// `max_size` in bytes.
    pub max_size: u64,
    /// `max_segment_size` in bytes.
    pub max_segment_size: u64,
    /// `fsync_interval`.
    pub fsync_interval: Duration,
    /// `when_full`.
    pub when_full: WhenFull,
    /// Segments and the writer's progress.
    pub state: Mutex<State>,
    /// Signalled when `state` changes or the receiver goes away.
    pub changed: Condvar,
    /// Free bytes under `max_size`, as permits.
    pub space: Arc<Semaphore>,
    /// Bytes sent to the writer and not yet durable, as permits out of [`MAX_IN_FLIGHT`]: bounds the memory a
    /// fast source can fill while the disk catches up.
    pub in_flight: Arc<Semaphore>,
    /// Bytes used beyond `max_size` (segments found at open, a reservation that grew); paid back before any
    /// permit is returned.
    debt: Mutex<u64>,
    /// Records sent (or found at open) and not yet handed to the sink.
    pub unread: AtomicU64,
    /// Records durable and not yet acknowledged by the sink.
    pub unacked: AtomicU64,
    /// Dropped events: counted, logged, reported in `auditrail.dropped`.
    drops: Drops,
    /// Set when the receiver is dropped, so that the reader thread stops.
    pub receiver_gone: AtomicBool,
    /// Segments from this id on were written by this instance (damage in older ones was counted at open).
    pub first_new_segment: u64,
    /// Records made durable by this instance (tests check that sources are acknowledged only after this).
    pub synced_records: AtomicU64,
    /// The metrics.
    pub metrics: Metrics,
    /// The chain tail of every stream this buffer holds or held, as far as it is durable: updated by the writer
    /// after each fsync, written to the tails file before acknowledged segments are deleted.
    pub tails: Mutex<ChainTails>,
    /// Held until every part of the buffer is gone.
    pub _lock: DirLock,
}

/// The parts of [`Shared`] that `open` computes.
pub(crate) struct SharedInit {
    pub dir: PathBuf,
    pub dir_handle: File,
    pub sink: Arc<str>,
    pub max_size: u64,
    pub max_segment_size: u64,
    pub fsync_interval: Duration,
    pub when_full: WhenFull,
    pub state: State,
    pub pending_records: u64,
    pub first_new_segment: u64,
    pub metrics: Metrics,
    pub tails: ChainTails,
    pub lock: DirLock,
}

impl Shared {
    /// Builds the shared state; the space already used by existing segments is taken from `max_size`.
    pub fn new(init: SharedInit) -> Shared {
        let used = init.state.bytes;
        let max_permits = init.max_size.min(Semaphore::MAX_PERMITS as u64);
        let free = max_permits.saturating_sub(used);
        let debt = used.saturating_sub(max_permits);
        Shared {
            dir: init.dir,
            dir_handle: init.dir_handle,
            drops: Drops::new(&init.sink),
            sink: init.sink,
            max_size: max_permits,
            max_segment_size: init.max_segment_size.max(1),
            fsync_interval: init.fsync_interval,
            when_full: init.when_full,
            state: Mutex::new(init.state),
            changed: Condvar::new(),
            space: Arc::new(Semaphore::new(free as usize)),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize)),
            debt: Mutex::new(debt),
            unread: AtomicU64::new(init.pending_records),
            unacked: AtomicU64::new(init.pending_records),
            receiver_gone: AtomicBool::new(false),
            first_new_segment: init.first_new_segment,
            synced_records: AtomicU64::new(0),
            metrics: init.metrics,
            tails: Mutex::new(init.tails),
            _lock: init.lock,
        }
    }

    /// Locks the segment state (a panic elsewhere does not poison it for good).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `bytes` back to the senders, paying any debt first.
    pub fn release(&self, bytes: u64) {
        let mut debt = self.debt.lock().unwrap_or_else(|p| p.into_inner());
        let paid = (*debt).min(bytes);
        *debt -= paid;
        let rest = bytes - paid;
        if rest > 0 {
            self.space.add_permits(rest as usize);
        }
    }

    /// Records that `bytes` more than reserved were used.
    pub fn add_debt(&self, bytes: u64) {
        *self.debt.lock().unwrap_or_else(|p| p.into_inner()) += bytes;
    }

    /// Adds `n` (possibly negative) to the unacknowledged records and updates the gauge.
    pub fn add_unacked(&self, n: i64) {
        let now = if n >= 0 {
            self.unacked.fetch_add(n as u64, Ordering::AcqRel) + n as u64
        } else {
            let d = n.unsigned_abs();
            let prev = self
                .unacked
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_sub(d))
                })
                .unwrap_or(0);
            prev.saturating_sub(d)
        };
        self.metrics.events.set(now as f64);
    }

    /// Takes `n` records off the unread count.
    pub fn sub_unread(&self, n: u64) {
        let _ = self
            .unread
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// Counts dropped events and logs it (at most every 10 s).
    pub fn record_drops(&self, n: u64, why: &'static str) {
        self.drops.record(n, why);
    }

    /// A copy of the chain tails made durable so far.
    pub fn tails(&self) -> ChainTails {
        self.tails.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// An `auditrail.dropped` event for drops not yet reported, if any.
    pub fn drop_report(&self) -> Option<Event> {
        self.drops.report()
    }
}
