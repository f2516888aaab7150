//! One stream's chain in the running agent: numbering batches, sealing, and the state written before either
//! leaves.
//!
//! The fan-out of a source holds its [`StreamChain`] and, under its lock, numbers a batch ([`ChainGuard::chain`]),
//! reserves room in the buffers, writes the state ([`ChainGuard::commit`]) and hands the batch on, in that order,
//! so that the chain is in `seq` order in every buffer and the state on disk is never behind what a buffer got.
//! A batch that finds no room is un-numbered ([`ChainGuard::undo`]) and its numbers are given again later.
//!
//! A stream with a memory-buffered sink also follows which of its numbers are finished at every sink (each
//! numbered batch gets its own acknowledgement batch, see [`Tracker`]): events held in memory die with the
//! process, so a restart declares the numbers not known finished (`ChainState::acked` onwards), and a seal —
//! the promise that everything before it is in the store — is numbered only once everything before it is
//! finished ([`ChainGuard::settle`]). Such a stream is sealed by the sealer task, never inline after a batch,
//! so that this wait holds up the source only at a seal.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrics::Counter;
use tokio::sync::{mpsc, Mutex, MutexGuard, Notify};
use tokio::time::Instant;

use super::chain::{
    append_member_to, content_digest, link, member_prefix, write_member_with, Hash,
};
use super::ring::KeyRing;
use super::state::{ChainState, StateFile, SEAL_HISTORY};
use crate::ack::{AckBatch, BatchOutcome};
use crate::event::Event;

/// The most bytes a chain field has after its stream's prefix: up to 20 digits of `seq`, `,"prev":"`, 64 hex
/// digits, `","hash":"`, 64 hex digits, `"}`. (A comma before the field replaces nothing; the closing brace
/// after it replaces the event's own: one byte more in all.)
const MEMBER_TAIL_MAX: usize = 20 + 9 + 64 + 10 + 64 + 2;

/// Batches at least this long have their digests computed on all cores.
const PARALLEL_MIN: usize = 512;

/// The chain of one stream (one source of this node).
pub struct StreamChain {
    source: Arc<str>,
    inner: Mutex<Inner>,
    ring: Arc<KeyRing>,
    seal_events: u64,
    tracked: bool,
    closed: AtomicBool,
    closed_notify: Notify,
    metrics: ChainMetrics,
}

struct Inner {
    state: ChainState,
    file: StateFile,
    /// Events to number before anything else (a chain reset's announcement).
    pending: Vec<Event>,
    /// For a stream with a memory-buffered sink: which numbers are finished.
    tracker: Option<Tracker>,
}

/// Which numbered batches every sink has finished with: each batch numbered gets an acknowledgement batch of
/// the chain's own, whose outcome arrives when the last copy of its last event is released (delivered,
/// rejected, dropped — or failed, which a restart would not bring back either: the source reads it again under
/// a new seq). `ChainState::acked` moves over the finished prefix.
struct Tracker {
    tx: mpsc::UnboundedSender<BatchOutcome>,
    rx: mpsc::UnboundedReceiver<BatchOutcome>,
    next_id: u64,
    /// Numbered batches not yet known finished, oldest first: id, last seq, finished.
    outstanding: VecDeque<(u64, u64, bool)>,
}

impl Tracker {
    fn new() -> Tracker {
        let (tx, rx) = mpsc::unbounded_channel();
        Tracker {
            tx,
            rx,
            next_id: 0,
            outstanding: VecDeque::new(),
        }
    }

    fn apply(&mut self, id: u64) {
        if let Ok(i) = self.outstanding.binary_search_by_key(&id, |e| e.0) {
            self.outstanding[i].2 = true;
        }
    }

    /// Takes in the outcomes that arrived and returns the last seq of the finished prefix, if it moved.
    fn poll(&mut self) -> Option<u64> {
        while let Ok(o) = self.rx.try_recv() {
            self.apply(o.id);
        }
        let mut acked = None;
        while self.outstanding.front().is_some_and(|e| e.2) {
            acked = self.outstanding.pop_front().map(|e| e.1);
        }
        acked
    }

    /// Forgets batches numbered from id `first` on (their numbering was taken back).
    fn forget_from(&mut self, first: u64) {
        while self.outstanding.back().is_some_and(|e| e.0 >= first) {
            self.outstanding.pop_back();
        }
    }
}

struct ChainMetrics {
    events: Counter,
    seals: Counter,
    seals_skipped: Counter,
    state_errors: Counter,
}

/// How to take a numbering back.
pub struct Undo {
    state: ChainState,
    raws: Vec<Bytes>,
    /// Pending events moved to the front of the batch, which go back to pending.
    pending: usize,
    /// The first tracker batch id this numbering took, if the stream is tracked.
    tracked_from: Option<u64>,
}

impl std::fmt::Debug for StreamChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamChain")
            .field("source", &self.source)
            .finish()
    }
}

impl StreamChain {
    /// The chain of `source`, resuming at `state`, written to `file`. `pending` events (e.g. a reset
    /// announcement) are numbered first. `track` follows which numbers every sink finished (for a stream with a
    /// memory-buffered sink).
    pub fn new(
        source: &str,
        state: ChainState,
        file: StateFile,
        ring: Arc<KeyRing>,
        seal_events: u64,
        pending: Vec<Event>,
        track: bool,
    ) -> StreamChain {
        let labels = [("source", source.to_string())];
        let metrics = ChainMetrics {
            events: metrics::counter!("auditrail_integrity_events_total", &labels),
            seals: metrics::counter!("auditrail_integrity_seals_total", &labels),
            seals_skipped: metrics::counter!("auditrail_integrity_seals_skipped_total", &labels),
            state_errors: metrics::counter!("auditrail_integrity_state_errors_total", &labels),
        };
        for c in [
            &metrics.events,
            &metrics.seals,
            &metrics.seals_skipped,
            &metrics.state_errors,
        ] {
            c.increment(0);
        }
        StreamChain {
            source: source.into(),
            inner: Mutex::new(Inner {
                state,
                file,
                pending,
                tracker: track.then(Tracker::new),
            }),
            ring,
            seal_events: seal_events.max(1),
            tracked: track,
            closed: AtomicBool::new(false),
            closed_notify: Notify::new(),
            metrics,
        }
    }

    /// The source this chain numbers.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Takes the chain's lock.
    pub async fn lock(&self) -> ChainGuard<'_> {
        ChainGuard {
            chain: self,
            inner: self.inner.lock().await,
            rewind: None,
        }
    }

    /// Takes the chain's lock if nobody holds it.
    pub fn try_lock(&self) -> Option<ChainGuard<'_>> {
        self.inner.try_lock().ok().map(|inner| ChainGuard {
            chain: self,
            inner,
            rewind: None,
        })
    }

    /// Marks the stream's source as gone (its last fan-out was dropped).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closed_notify.notify_waiters();
    }

    /// Waits until the source is gone.
    pub async fn closed(&self) {
        loop {
            let notified = self.closed_notify.notified();
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Whether the source is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Counts a seal that could not be queued in time.
    pub fn seal_skipped(&self) {
        self.metrics.seals_skipped.increment(1);
    }

    /// Whether the stream follows which numbers every sink finished (it has a memory-buffered sink).
    pub fn is_tracked(&self) -> bool {
        self.tracked
    }

    /// Whether the sealer must seal this stream after `seal_events` (a tracked stream is never sealed inline);
    /// false when the chain is busy.
    pub fn wants_seal(&self) -> bool {
        self.try_lock().is_some_and(|g| {
            g.inner.tracker.is_some() && g.inner.state.since_seal >= self.seal_events
        })
    }
}

/// The chain, locked.
pub struct ChainGuard<'a> {
    chain: &'a StreamChain,
    inner: MutexGuard<'a, Inner>,
    /// What to put back if the guard is dropped before its numbering is committed or undone (a send dropped
    /// while it waited for room, e.g. when its source stops).
    rewind: Option<Rewind>,
}

/// The chain as it was before the first numbering not yet committed or undone.
struct Rewind {
    /// The state then: numbers given to events that never left are given again, instead of showing as a gap
    /// before the next seal.
    state: ChainState,
    /// Copies of the pending events (a reset announcement) that numbering moved into a batch: they go back to
    /// pending rather than being lost with the batch.
    pending: Vec<Event>,
    /// The tracker's next batch id then: batches from it on are forgotten.
    tracked_from: u64,
}

impl Drop for ChainGuard<'_> {
    fn drop(&mut self) {
        if let Some(Rewind {
            state,
            mut pending,
            tracked_from,
        }) = self.rewind.take()
        {
            if let Some(t) = self.inner.tracker.as_mut() {
                t.forget_from(tracked_from);
            }
            if state != self.inner.state {
                tracing::info!(
                    source = %self.chain.source,
                    numbered = self.inner.state.seq,
                    back_to = state.seq,
                    "numbers given to events that were not handed on are taken back"
                );
                self.inner.state = state;
            }
            if !pending.is_empty() {
                pending.append(&mut self.inner.pending);
                self.inner.pending = pending;
            }
        }
    }
}

impl ChainGuard<'_> {
    /// Where the chain stands.
    pub fn state(&self) -> &ChainState {
        &self.inner.state
    }

    /// Numbers `events` (after any pending ones, which are moved to their front): each gets the next seq, the
    /// previous hash and its own, appended as its last member. Only the in-memory state moves; [`Self::commit`]
    /// writes it, [`Self::undo`] takes it back.
    pub fn chain(&mut self, events: &mut Vec<Event>) -> Undo {
        let pending = self.inner.pending.len();
        let before = self.inner.state.clone();
        let tracked_from = self.inner.tracker.as_ref().map(|t| t.next_id);
        let rewind = self.rewind.get_or_insert_with(|| Rewind {
            state: before.clone(),
            pending: Vec::new(),
            tracked_from: tracked_from.unwrap_or(0),
        });
        if pending > 0 {
            rewind.pending.extend(self.inner.pending.iter().cloned());
            let mut all = std::mem::take(&mut self.inner.pending);
            all.append(events);
            *events = all;
        }
        let digests = digests(events);
        let state = &mut self.inner.state;
        let prefix = member_prefix(&state.stream);
        // One allocation for the whole batch's new bytes, instead of one per event: each event keeps a slice.
        // Sized exactly for the longest field, so that it never grows (a grown buffer would copy the batch and
        // keep twice its size alive as long as any of its events).
        let room: usize = events
            .iter()
            .map(|e| e.raw().len() + prefix.len() + MEMBER_TAIL_MAX + 1)
            .sum();
        let mut arena = Vec::with_capacity(room);
        let mut ends = Vec::with_capacity(events.len());
        for (e, digest) in events.iter().zip(digests) {
            let seq = state.seq + 1;
            let hash = link(&state.stream, seq, &state.hash, &digest);
            append_member_to(
                e.raw(),
                |out| write_member_with(&prefix, seq, &state.hash, &hash, out),
                &mut arena,
            );
            ends.push(arena.len());
            state.seq = seq;
            state.hash = hash;
            state.since_seal += 1;
        }
        debug_assert!(arena.len() <= room, "the batch buffer was sized too small");
        let last = state.seq;
        if let (Some(t), false) = (self.inner.tracker.as_mut(), events.is_empty()) {
            let id = t.next_id;
            t.next_id += 1;
            t.outstanding.push_back((id, last, false));
            let batch = AckBatch::new(id, t.tx.clone());
            for e in events.iter_mut() {
                e.set_chain_finalizer(batch.finalizer());
            }
        }
        let arena = Bytes::from(arena);
        let mut start = 0;
        // The bytes replaced are kept for an undo: moved, not copied or counted again.
        let raws = events
            .iter_mut()
            .zip(ends)
            .map(|(e, end)| {
                let old = e.replace_raw(arena.slice(start..end));
                start = end;
                old
            })
            .collect();
        Undo {
            state: before,
            raws,
            pending,
            tracked_from,
        }
    }

    /// Takes back a numbering that was not handed on: the state returns to what it was, the events to their
    /// bytes before [`Self::chain`], and pending events moved into `events` back to pending.
    pub fn undo(&mut self, events: &mut Vec<Event>, undo: Undo) {
        self.inner.state = undo.state;
        if let (Some(t), Some(first)) = (self.inner.tracker.as_mut(), undo.tracked_from) {
            t.forget_from(first);
        }
        if let Some(rewind) = self.rewind.as_mut() {
            if rewind.state == self.inner.state {
                self.rewind = None;
            } else {
                // Undos come last first: the copies this numbering added are the last ones.
                let keep = rewind.pending.len().saturating_sub(undo.pending);
                rewind.pending.truncate(keep);
            }
        }
        for (e, raw) in events.iter_mut().zip(undo.raws) {
            e.restore_raw(raw);
            // Released as failed, for a batch the tracker no longer knows: ignored.
            drop(e.take_chain_finalizer());
        }
        let mut pending: Vec<Event> = events.drain(..undo.pending.min(events.len())).collect();
        pending.append(&mut self.inner.pending);
        self.inner.pending = pending;
    }

    /// Writes the state durably. It must be on disk before the numbered events reach a buffer; if it cannot be
    /// written, this keeps trying (the source waits: backpressure) rather than hand on numbers that a restart
    /// could give again.
    pub async fn commit(&mut self, numbered: usize) {
        let mut delay = Duration::from_millis(100);
        while !self.try_commit(numbered) {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Writes the state once; on failure logs and counts it and returns false (the caller takes the batch back).
    pub fn try_commit(&mut self, numbered: usize) -> bool {
        self.poll_acks();
        let inner = &mut *self.inner;
        match inner.file.write(&inner.state) {
            Ok(()) => {
                self.rewind = None;
                self.chain.metrics.events.increment(numbered as u64);
                true
            }
            Err(e) => {
                self.chain.metrics.state_errors.increment(1);
                tracing::error!(
                    source = %self.chain.source,
                    path = %inner.file.path().display(),
                    error = %e,
                    "cannot write the integrity chain state; the batch waits or goes back to its source"
                );
                false
            }
        }
    }

    /// Whether `seal_events` events were numbered since the last seal and the stream is sealed inline (after
    /// the batch); a tracked stream is sealed by the sealer instead ([`StreamChain::wants_seal`]).
    pub fn seal_due(&self) -> bool {
        self.inner.tracker.is_none() && self.inner.state.since_seal >= self.chain.seal_events
    }

    /// Whether the stream follows which numbers are finished (it has a memory-buffered sink).
    pub fn tracked(&self) -> bool {
        self.inner.tracker.is_some()
    }

    /// Takes in the outcomes that arrived: `ChainState::acked` moves over the finished prefix.
    fn poll_acks(&mut self) {
        if let Some(acked) = self.inner.tracker.as_mut().and_then(Tracker::poll) {
            let state = &mut self.inner.state;
            state.acked = state.acked.max(acked);
        }
    }

    /// Waits, until `deadline`, for every number given so far to be finished at every sink; true when it is (at
    /// once for an untracked stream). The chain stays locked meanwhile: nothing new is numbered.
    pub async fn settle(&mut self, deadline: Instant) -> bool {
        loop {
            self.poll_acks();
            if self.inner.tracker.is_none() || self.inner.state.acked >= self.inner.state.seq {
                return true;
            }
            let t = self.inner.tracker.as_mut().expect("tracked");
            match tokio::time::timeout_at(deadline, t.rx.recv()).await {
                Ok(Some(o)) => t.apply(o.id),
                // The tracker holds a sender: the channel never closes.
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// Makes the stream's next seal, numbered as an event of the stream (after any pending announcement, which it
    /// then covers). Hand it on like any batch: reserve, [`Self::commit`], deliver — or [`Self::undo`] it.
    pub fn seal(&mut self) -> (Vec<Event>, Undo) {
        let before = self.inner.state.clone();
        let mut events = Vec::new();
        let mut undo = self.chain(&mut events); // numbers pending events, if any
        let state = &self.inner.state;
        let seal =
            self.chain
                .ring
                .seal(&state.stream, state.last_seal() + 1, state.seq, state.hash);
        let mut event = Event::parse(Bytes::from(seal.to_event()), usize::MAX)
            .expect("seal events are well formed");
        event.set_source(self.chain.source.clone());
        let mut one = vec![event];
        let seal_undo = self.chain(&mut one);
        events.append(&mut one);
        undo.raws.extend(seal_undo.raws);
        undo.state = before;
        let state = &mut self.inner.state;
        state.seals.push(state.seq);
        if state.seals.len() > SEAL_HISTORY {
            state.seals.remove(0);
        }
        state.since_seal = 0;
        self.chain.metrics.seals.increment(1);
        (events, undo)
    }
}

/// The content digest of each event, on all cores for large batches.
fn digests(events: &[Event]) -> Vec<Hash> {
    let one = |e: &Event, scratch: &mut Vec<u8>| -> Hash {
        if let Some(d) = e.digest() {
            return *d;
        }
        content_digest(e.raw(), scratch).unwrap_or_else(|err| {
            // Events were validated at their source, so this takes input deeper than the canonical form allows;
            // the event still gets a place in the chain, and the verifier reports it as altered.
            tracing::warn!(error = %err, uid = %e.uid(), "event has no canonical form; its chain hash cannot be verified");
            [0xff; 32]
        })
    };
    // Asked once: on Linux the answer reads cgroup files.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads =
        *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let missing = events.iter().filter(|e| e.digest().is_none()).count();
    if missing < PARALLEL_MIN || threads < 2 {
        let mut scratch = Vec::with_capacity(1024);
        return events.iter().map(|e| one(e, &mut scratch)).collect();
    }
    let per = events.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = events
            .chunks(per)
            .skip(1)
            .map(|part| {
                s.spawn(move || {
                    let mut scratch = Vec::with_capacity(1024);
                    part.iter()
                        .map(|e| one(e, &mut scratch))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut scratch = Vec::with_capacity(1024);
        let mut out: Vec<Hash> = events[..per.min(events.len())]
            .iter()
            .map(|e| one(e, &mut scratch))
            .collect();
        for p in parts {
            out.extend(p.join().expect("digest threads do not panic"));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{memory_buffer, MemoryBufferConfig, WhenFull};
    use crate::integrity::chain::{read_field, GENESIS};
    use crate::integrity::keys::EpochKey;
    use crate::integrity::seal::Seal;
    use crate::Fanout;

    fn ev(i: usize) -> Event {
        Event::parse(
            Bytes::from(format!(
                r#"{{"event":"x","uid":"{i}","time":"2017-02-03T06:54:05Z","cmd":"a \u003c b"}}"#
            )),
            1024,
        )
        .unwrap()
    }

    fn chain(dir: &std::path::Path, seal_events: u64, pending: Vec<Event>) -> Arc<StreamChain> {
        chain_with(dir, seal_events, pending, false)
    }

    fn chain_with(
        dir: &std::path::Path,
        seal_events: u64,
        pending: Vec<Event>,
        track: bool,
    ) -> Arc<StreamChain> {
        let (file, _) = StateFile::open(&dir.join("s.chain")).unwrap();
        let ring = Arc::new(KeyRing::new(EpochKey::generate(), &dir.join("k.key")));
        Arc::new(StreamChain::new(
            "s",
            ChainState::new("n/s".into()),
            file,
            ring,
            seal_events,
            pending,
            track,
        ))
    }

    fn stored(dir: &std::path::Path) -> ChainState {
        match StateFile::open(&dir.join("s.chain")).unwrap().1 {
            crate::integrity::state::Loaded::Found(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_tracked_stream_seals_only_what_every_sink_finished() {
        let dir = tempfile::tempdir().unwrap();
        let c = chain_with(dir.path(), 3, Vec::new(), true);
        let (tx, mut rx) = block_buffer(100);
        let (f, sealer) = Fanout::chained(vec![tx], c.clone());
        f.send((0..5).map(ev).collect()).await;
        // Past seal_events, but never sealed inline: the sealer does it, once the sinks are done.
        assert!(c.wants_seal());
        let mut held = Vec::new();
        rx.recv_many(&mut held, 100).await;
        assert_eq!(held.len(), 5, "no seal was made after the batch");
        assert!(
            sealer.seal(Duration::from_millis(50)).await.is_err(),
            "a seal over events still in memory would promise what a crash can take away"
        );
        assert_eq!(stored(dir.path()).acked, 0);
        // Finishing them (in any order) lets the seal through.
        let last = held.pop().unwrap();
        for e in held.drain(..) {
            e.finish(crate::EventStatus::Delivered);
        }
        last.finish(crate::EventStatus::Rejected);
        sealer.seal(Duration::from_secs(1)).await.unwrap();
        let s = stored(dir.path());
        assert_eq!((s.seq, s.acked, s.seals.clone()), (6, 5, vec![6]));
        let mut out = Vec::new();
        rx.recv_many(&mut out, 10).await;
        let seal = Seal::from_event(out[0].raw()).unwrap().unwrap();
        assert_eq!((seal.from, seal.to), (1, 5));
        // Once the seal is finished too, settling writes that everything is.
        drop(out);
        assert!(sealer.settle(Duration::from_secs(1)).await);
        assert_eq!(stored(dir.path()).acked, 6);
    }

    #[tokio::test]
    async fn a_numbering_taken_back_is_forgotten_by_the_tracker() {
        let dir = tempfile::tempdir().unwrap();
        let c = chain_with(dir.path(), 1000, Vec::new(), true);
        let (tx, mut rx) = block_buffer(2);
        let (f, sealer) = Fanout::chained(vec![tx], c.clone());
        f.send(vec![ev(1), ev(2)]).await;
        let waited =
            tokio::time::timeout(Duration::from_millis(50), f.send(vec![ev(3), ev(4)])).await;
        assert!(waited.is_err(), "the buffer is full");
        let mut out = Vec::new();
        rx.recv_many(&mut out, 10).await;
        drop(out); // released without an outcome: finished, as far as a restart goes
        assert!(sealer.settle(Duration::from_secs(1)).await);
        let s = stored(dir.path());
        assert_eq!((s.seq, s.acked), (2, 2), "numbers 3 and 4 were taken back");
    }

    /// A memory buffer of `max_events` that blocks when full.
    fn block_buffer(
        max_events: usize,
    ) -> (crate::buffer::BufferSender, crate::buffer::BufferReceiver) {
        memory_buffer(
            "a",
            &MemoryBufferConfig {
                max_events,
                when_full: WhenFull::Block,
            },
        )
    }

    /// Checks that `events` form an unbroken chain from seq 1 and returns them as (seq, is_seal).
    fn check_chain(events: &[Event]) -> Vec<(u64, bool)> {
        let mut prev = GENESIS;
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        for (n, e) in events.iter().enumerate() {
            let f = read_field(e.raw()).unwrap();
            assert_eq!(f.seq, n as u64 + 1);
            assert_eq!(f.prev, prev, "seq {} links to its predecessor", f.seq);
            let d = content_digest(e.raw(), &mut scratch).unwrap();
            assert_eq!(f.hash, link(&f.stream, f.seq, &f.prev, &d), "seq {}", f.seq);
            prev = f.hash;
            out.push((f.seq, e.kind() == "auditrail.seal"));
        }
        out
    }

    #[tokio::test]
    async fn batches_are_chained_sealed_and_the_state_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let c = chain(dir.path(), 5, Vec::new());
        let (tx, mut rx) = block_buffer(10_000);
        let (f, sealer) = Fanout::chained(vec![tx], c.clone());
        f.send((0..3).map(ev).collect()).await;
        f.send((3..1203).map(ev).collect()).await; // large enough to digest on all cores
        sealer.seal(Duration::from_secs(1)).await.unwrap();
        drop((f, sealer));
        assert!(c.is_closed());
        let mut out = Vec::new();
        while rx.recv_many(&mut out, 10_000).await > 0 {}
        let seqs = check_chain(&out);
        // 3 events; 1200 events, then a seal (due after the batch); the timer's seal (idle, empty range).
        assert_eq!(seqs.len(), 1205);
        let seals: Vec<u64> = seqs.iter().filter(|s| s.1).map(|s| s.0).collect();
        assert_eq!(seals, vec![1204, 1205]);
        let first = Seal::from_event(out[1203].raw()).unwrap().unwrap();
        assert_eq!((first.from, first.to), (1, 1203));
        assert!(first.signature_ok());
        assert_eq!(first.last_hash, read_field(out[1202].raw()).unwrap().hash);
        let idle = Seal::from_event(out[1204].raw()).unwrap().unwrap();
        assert_eq!((idle.from, idle.to), (1205, 1204));
        // The original bytes are kept, the field is appended last.
        assert!(out[0].raw().starts_with(br#"{"event":"x","uid":"0","time":"2017-02-03T06:54:05Z","cmd":"a \u003c b","auditrail.integrity":{"#));
        let (_, loaded) = StateFile::open(&dir.path().join("s.chain")).unwrap();
        match loaded {
            crate::integrity::state::Loaded::Found(s) => {
                assert_eq!(s.seq, 1205);
                assert_eq!(s.seals, vec![1204, 1205]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_seal_due_after_a_batch_shares_its_state_write() {
        let dir = tempfile::tempdir().unwrap();
        let c = chain(dir.path(), 5, Vec::new());
        let (tx, mut rx) = block_buffer(100);
        let (f, _sealer) = Fanout::chained(vec![tx], c.clone());
        let before = c.lock().await.inner.file.generation();
        f.send((0..10).map(ev).collect()).await;
        let after = c.lock().await.inner.file.generation();
        assert_eq!(after - before, 1, "the batch and its seal are written once");
        let mut out = Vec::new();
        rx.recv_many(&mut out, 100).await;
        let seqs = check_chain(&out);
        assert_eq!(seqs.len(), 11);
        assert_eq!(seqs.last(), Some(&(11, true)));
        let seal = Seal::from_event(out[10].raw()).unwrap().unwrap();
        assert_eq!((seal.from, seal.to), (1, 10));
    }

    #[tokio::test]
    async fn a_send_dropped_while_waiting_for_room_leaves_no_gap() {
        let dir = tempfile::tempdir().unwrap();
        let c = chain(dir.path(), 1000, Vec::new());
        let (tx, mut rx) = block_buffer(2);
        let (f, sealer) = Fanout::chained(vec![tx], c.clone());
        f.send(vec![ev(1), ev(2)]).await;
        // The buffer is full: this send numbers its events, waits for room, and is given up (as a source that
        // stops does with its send).
        let waited =
            tokio::time::timeout(Duration::from_millis(50), f.send(vec![ev(3), ev(4)])).await;
        assert!(waited.is_err());
        let mut out = Vec::new();
        rx.recv_many(&mut out, 10).await;
        sealer.seal(Duration::from_secs(1)).await.unwrap();
        rx.recv_many(&mut out, 10).await;
        // 1, 2, then the seal as 3: not 5 after two numbers that never left.
        assert_eq!(check_chain(&out), vec![(1, false), (2, false), (3, true)]);
        let seal = Seal::from_event(out[2].raw()).unwrap().unwrap();
        assert_eq!((seal.from, seal.to), (1, 2));
    }

    #[tokio::test]
    async fn a_dropped_send_gives_back_the_announcement_it_carried() {
        let dir = tempfile::tempdir().unwrap();
        let reset = Event::internal("auditrail.integrity_reset", "AR0004W", &[]);
        let c = chain(dir.path(), 1000, vec![reset]);
        let (tx, mut rx) = block_buffer(2);
        // The buffer is full before the first send, so the send that numbers the announcement has to wait.
        tx.try_send(vec![ev(100), ev(101)]).unwrap();
        let (f, _sealer) = Fanout::chained(vec![tx], c.clone());
        let waited = tokio::time::timeout(Duration::from_millis(50), f.send(vec![ev(1)])).await;
        assert!(waited.is_err());
        let mut out = Vec::new();
        rx.recv_many(&mut out, 10).await;
        assert_eq!(out.len(), 2, "only the two events put in first");
        out.clear();
        f.send(vec![ev(2)]).await;
        rx.recv_many(&mut out, 10).await;
        let kinds: Vec<String> = out.iter().map(|e| e.kind().into_owned()).collect();
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert!(
            kinds.iter().any(|k| k == "auditrail.integrity_reset"),
            "the announcement is not lost with the send that carried it: {kinds:?}"
        );
        assert_eq!(check_chain(&out), vec![(1, false), (2, false)]);
    }

    #[tokio::test]
    async fn a_batch_that_is_not_sent_gives_its_numbers_back() {
        let dir = tempfile::tempdir().unwrap();
        let reset = Event::internal("auditrail.integrity_reset", "AR0004W", &[]);
        let c = chain(dir.path(), 1000, vec![reset]);
        let (tx, mut rx) = block_buffer(4);
        let (f, _sealer) = Fanout::chained(vec![tx], c.clone());
        f.send(vec![ev(1)]).await; // the pending announcement goes first: 2 events
        let back = f.try_send(vec![ev(2), ev(3), ev(4)]).unwrap_err();
        assert_eq!(back.len(), 3, "the announcement went out already");
        assert!(back
            .iter()
            .all(|e| !e.raw().windows(9).any(|w| w == b"integrity")));
        assert!(f
            .send_timeout(back, Duration::from_millis(20))
            .await
            .is_err());
        assert_eq!(
            c.lock().await.state().seq,
            2,
            "nothing numbered stays taken"
        );
        let mut out = Vec::new();
        rx.recv_many(&mut out, 10).await;
        f.send(vec![ev(5), ev(6)]).await;
        rx.recv_many(&mut out, 10).await;
        let seqs = check_chain(&out);
        assert_eq!(seqs.len(), 4);
        assert_eq!(out[0].kind(), "auditrail.integrity_reset");
    }
}
