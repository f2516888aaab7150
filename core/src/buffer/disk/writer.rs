//! The writer thread: appends sent events to the current segment and makes them durable in groups.
//!
//! Records are encoded into one buffer and written with one `write` per group, followed by one `fdatasync`
//! (group commit), at most every `fsync_interval`: the first records after a quiet spell are synced at once,
//! later ones wait for the interval to pass. Only after the fsync covering an event does the writer finish it
//! with [`EventStatus::Delivered`] (writing to the disk buffer is the source's acknowledgement), and only then
//! does it publish the new durable end to the reader. A segment past `max_segment_size` is synced and sealed and
//! the next one is created with the next write. An I/O error never loses a record: the segment is cut back to its
//! durable length, the writer moves to a new segment and retries with backoff, holding the events (and so their
//! sources' acknowledgements) meanwhile.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::segment::{encode, record_len, segment_path};
use super::shared::{Shared, MAX_IN_FLIGHT};
use crate::ack::EventStatus;
use crate::crash::{self, CrashPoint};
use crate::event::Event;

/// Attempts at the last commit when every sender is gone before the writer gives up.
const CLOSING_ATTEMPTS: u32 = 3;

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<(Vec<Event>, Option<OwnedSemaphorePermit>)>,
    /// In-flight room of the batches in `pending`, given back once they are durable.
    in_flight: Vec<OwnedSemaphorePermit>,
    /// The open current segment, once created.
    file: Option<File>,
    /// Durable bytes in the current segment.
    committed: u64,
    /// The directory must be fsynced (a segment was created) before the next acknowledgement.
    dir_dirty: bool,
    /// Records encoded since the last commit.
    buf: Vec<u8>,
    /// The events whose records are in `buf`, in order.
    pending: Vec<Event>,
    last_sync: Option<Instant>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: Receiver<(Vec<Event>, Option<OwnedSemaphorePermit>)>,
    ) -> Writer {
        Writer {
            shared,
            rx,
            file: None,
            committed: 0,
            dir_dirty: false,
            buf: Vec::with_capacity(1 << 20),
            pending: Vec::new(),
            in_flight: Vec::new(),
            last_sync: None,
        }
    }

    /// Whether the next fsync may happen now.
    fn due(&self) -> bool {
        self.last_sync
            .is_none_or(|t| t.elapsed() >= self.shared.fsync_interval)
            || self.shared.in_flight.available_permits() < (MAX_IN_FLIGHT / 4) as usize
    }

    /// How long until the next fsync may happen.
    fn until_due(&self) -> Duration {
        match self.last_sync {
            Some(t) => (t + self.shared.fsync_interval).saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        }
    }

    /// Runs until every sender is dropped and everything sent is durable.
    pub(crate) fn run(mut self) {
        let mut closing = false;
        loop {
            if !closing {
                let first = if self.pending.is_empty() {
                    self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                } else {
                    self.rx.recv_timeout(self.until_due())
                };
                match first {
                    Ok(batch) => self.append(batch),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => closing = true,
                }
                // Take what is already queued, but never so long that the fsync is postponed past its time.
                while !closing && (self.pending.is_empty() || !self.due()) {
                    match self.rx.try_recv() {
                        Ok(batch) => self.append(batch),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => closing = true,
                    }
                }
            }
            if !self.pending.is_empty() && (closing || self.due()) {
                self.commit_retrying(closing);
            }
            if closing && self.pending.is_empty() {
                break;
            }
        }
        let mut st = self.shared.state();
        st.writer_done = true;
        drop(st);
        self.shared.changed.notify_all();
    }

    fn append(&mut self, (batch, in_flight): (Vec<Event>, Option<OwnedSemaphorePermit>)) {
        self.in_flight.extend(in_flight);
        for event in batch {
            let len = record_len(&event) as u64;
            let used = self.committed + self.buf.len() as u64;
            if used > 0 && used + len > self.shared.max_segment_size {
                if !self.buf.is_empty() {
                    self.commit_retrying(false);
                }
                self.roll();
            }
            encode(&event, &mut self.buf);
            self.pending.push(event);
        }
    }

    /// Seals the current segment; the next write creates the following one.
    fn roll(&mut self) {
        self.file = None;
        self.committed = 0;
        let mut st = self.shared.state();
        st.current += 1;
        drop(st);
        self.shared.changed.notify_all();
    }

    fn commit_retrying(&mut self, closing: bool) {
        let mut attempt = 0u32;
        loop {
            match self.commit() {
                Ok(()) => {
                    if attempt > 0 {
                        self.shared.metrics.write_blocked.set(0.0);
                        tracing::info!(sink = %self.shared.sink, attempts = attempt, "disk buffer writes succeed again");
                    }
                    return;
                }
                Err(e) => {
                    attempt += 1;
                    self.shared.metrics.write_blocked.set(1.0);
                    let st = self.shared.state();
                    let path = segment_path(&self.shared.dir, st.current);
                    drop(st);
                    tracing::error!(
                        sink = %self.shared.sink,
                        segment = %path.display(),
                        error = %e,
                        attempt,
                        events = self.pending.len(),
                        "disk buffer cannot write its segment; the events are held (their sources are not acknowledged) and the write is retried in a new segment"
                    );
                    if let Some(f) = self.file.take() {
                        // Cut what this failed group may have left, so that readers see only sound records.
                        let _ = f.set_len(self.committed);
                        self.roll();
                    }
                    if closing && attempt >= CLOSING_ATTEMPTS {
                        tracing::error!(
                            sink = %self.shared.sink,
                            events = self.pending.len(),
                            "disk buffer gives up writing at shutdown: these events were never acknowledged to their sources, which will send them again where they can"
                        );
                        self.shared.sub_unread(self.pending.len() as u64);
                        self.pending.clear();
                        self.in_flight.clear();
                        self.buf.clear();
                        return;
                    }
                    let backoff = Duration::from_millis(100u64 << attempt.min(6));
                    std::thread::sleep(backoff.min(Duration::from_secs(5)));
                }
            }
        }
    }

    fn open_segment(&mut self) -> io::Result<()> {
        let id = self.shared.state().current;
        let path = segment_path(&self.shared.dir, id);
        let file = match crate::private_fs::open_options()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    // Not ours: never append to a file this instance did not create.
                    self.roll();
                }
                return Err(e);
            }
        };
        self.shared.state().set_size(id, 0);
        self.file = Some(file);
        self.committed = 0;
        self.dir_dirty = true;
        tracing::debug!(sink = %self.shared.sink, segment = %path.display(), "disk buffer started a segment");
        Ok(())
    }

    /// Writes the group, fsyncs it, acknowledges the sources and publishes the records to the reader.
    fn commit(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            self.open_segment()?;
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(&self.buf)?;
        crash::point(CrashPoint::AfterWrite);
        file.sync_data()?;
        if self.dir_dirty {
            self.shared.dir_handle.sync_all()?;
            self.dir_dirty = false;
        }
        crash::point(CrashPoint::AfterFsync);
        // Before the sink can see these records (and so before their segment can be deleted), the chain tails
        // know them.
        self.shared
            .tails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe_group(&self.pending);
        self.committed += self.buf.len() as u64;
        self.buf.clear();
        self.last_sync = Some(Instant::now());
        let n = self.pending.len() as u64;
        self.shared
            .synced_records
            .fetch_add(n, std::sync::atomic::Ordering::AcqRel);
        for event in self.pending.drain(..) {
            event.finish(EventStatus::Delivered);
        }
        self.in_flight.clear();
        let mut st = self.shared.state();
        let id = st.current;
        st.set_size(id, self.committed);
        let bytes = st.bytes;
        drop(st);
        self.shared.changed.notify_all();
        self.shared.metrics.bytes.set(bytes as f64);
        self.shared.add_unacked(n as i64);
        Ok(())
    }
}
