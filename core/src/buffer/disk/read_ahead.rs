//! The read-ahead thread: reads durable records from the segments, in order, and turns them back into events.
//!
//! It follows the writer: it reads only up to the durable size the writer published, waits on the shared
//! condition variable when it has caught up, and moves to the next existing segment when one is sealed. Each
//! record is checked (CRC32C, layout) and rebuilt with [`Event::parse`] from its raw bytes, sharing one chunk of
//! memory per read (no copy per event) and one `Arc<str>` per source name, with the [`crate::Origin`] the record
//! carries, if any. Batches go to the [`super::DiskReceiver`] over a small bounded channel, so that what is read
//! ahead stays small. Damage met here in segments written before `open` was already counted by recovery and is
//! skipped silently; damage in this instance's own segments is counted and logged.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::cursor::Position;
use super::segment::{decode, segment_path, Decoded};
use super::shared::Shared;
use crate::event::Event;

/// Most bytes read at once.
const CHUNK: usize = 1 << 20;
/// Failed reads of one place before its segment's rest is skipped.
const MAX_READ_ERRORS: u32 = 5;

/// An event read back, and the position just after its record.
pub(crate) struct Entry {
    pub event: Event,
    pub end: Position,
}

pub(crate) struct ReadAhead {
    shared: Arc<Shared>,
    pos: Position,
    file: Option<(u64, File)>,
    tx: mpsc::Sender<Vec<Entry>>,
    /// Bytes the record at `pos` needs (when it did not fit in the last chunk).
    need: usize,
    sources: Vec<(Box<[u8]>, Arc<str>)>,
    errors: u32,
}

impl ReadAhead {
    pub(crate) fn new(
        shared: Arc<Shared>,
        start: Position,
        tx: mpsc::Sender<Vec<Entry>>,
    ) -> ReadAhead {
        ReadAhead {
            shared,
            pos: start,
            file: None,
            tx,
            need: 0,
            sources: Vec::new(),
            errors: 0,
        }
    }

    /// Runs until the receiver is gone, or the writer has stopped and everything is read.
    pub(crate) fn run(mut self) {
        loop {
            let Some(limit) = self.next_limit() else {
                return;
            };
            match self.read_chunk(limit) {
                Ok(entries) => {
                    self.errors = 0;
                    if !entries.is_empty() && self.tx.blocking_send(entries).is_err() {
                        return;
                    }
                }
                Err(e) => self.read_failed(e, limit),
            }
        }
    }

    /// Waits until there is something to read at `pos` and returns the durable end of its segment.
    fn next_limit(&mut self) -> Option<u64> {
        let mut st = self.shared.state();
        loop {
            if self.shared.receiver_gone.load(Ordering::Acquire) || self.tx.is_closed() {
                return None;
            }
            if let Some(&size) = st.segments.get(&self.pos.segment) {
                if self.pos.offset < size {
                    return Some(size);
                }
            }
            if self.pos.segment < st.current {
                self.pos = Position {
                    segment: st.next_after(self.pos.segment),
                    offset: 0,
                };
                self.file = None;
                self.need = 0;
                continue;
            }
            if st.writer_done {
                return None;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, Duration::from_millis(500))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn read_chunk(&mut self, limit: u64) -> io::Result<Vec<Entry>> {
        let seg = self.pos.segment;
        let off = self.pos.offset;
        let avail = usize::try_from(limit - off).unwrap_or(usize::MAX);
        let want = avail.min(CHUNK.max(self.need));
        if self.file.as_ref().map(|(id, _)| *id) != Some(seg) {
            self.file = Some((seg, File::open(segment_path(&self.shared.dir, seg))?));
        }
        let (_, file) = self.file.as_mut().expect("opened above");
        file.seek(SeekFrom::Start(off))?;
        let mut buf = Vec::with_capacity(want);
        file.take(want as u64).read_to_end(&mut buf)?;
        let short = buf.len() < want;
        let bytes = Bytes::from(buf);
        let mut entries = Vec::new();
        let mut p = 0usize;
        self.need = 0;
        while p < bytes.len() {
            match decode(&bytes[p..]) {
                Decoded::Record {
                    source,
                    raw,
                    origin,
                    len,
                } => {
                    let raw = bytes.slice(p + raw.start..p + raw.end);
                    match Event::parse(raw, usize::MAX) {
                        Ok(mut event) => {
                            if !source.is_empty() {
                                let name =
                                    self.source_name(&bytes[p + source.start..p + source.end]);
                                event.set_source(name);
                            }
                            // A replayed event is the same event: it keeps what its source said of it.
                            if let Some(origin) = origin {
                                event.set_origin(Arc::new(origin));
                            }
                            entries.push(Entry {
                                event,
                                end: Position {
                                    segment: seg,
                                    offset: off + (p + len) as u64,
                                },
                            });
                        }
                        Err(e) => self.corrupt(seg, off + p as u64, &e.to_string()),
                    }
                    p += len;
                }
                Decoded::Corrupt { len, why } => {
                    self.corrupt(seg, off + p as u64, &format!("{why:?}"));
                    p += len;
                }
                Decoded::Incomplete { needed } => {
                    if !short && off + (p + needed) as u64 <= limit {
                        self.need = needed;
                        break;
                    }
                    self.damaged_rest(seg, off + p as u64, limit);
                    self.pos.offset = limit;
                    return Ok(entries);
                }
                Decoded::Impossible => {
                    self.damaged_rest(seg, off + p as u64, limit);
                    self.pos.offset = limit;
                    return Ok(entries);
                }
            }
        }
        self.pos.offset = off + p as u64;
        if short && self.pos.offset < limit {
            // The file is shorter than what was made durable in it: someone cut it.
            self.damaged_rest(seg, self.pos.offset, limit);
            self.pos.offset = limit;
        }
        Ok(entries)
    }

    fn read_failed(&mut self, e: io::Error, limit: u64) {
        self.errors += 1;
        self.file = None;
        let path = segment_path(&self.shared.dir, self.pos.segment);
        if e.kind() == io::ErrorKind::NotFound || self.errors >= MAX_READ_ERRORS {
            tracing::error!(
                sink = %self.shared.sink,
                segment = %path.display(),
                offset = self.pos.offset,
                error = %e,
                "disk buffer cannot read its segment: skipping the rest of it"
            );
            self.shared.metrics.corrupt.increment(1);
            self.pos.offset = limit;
            self.errors = 0;
            return;
        }
        tracing::warn!(
            sink = %self.shared.sink,
            segment = %path.display(),
            offset = self.pos.offset,
            error = %e,
            attempt = self.errors,
            "disk buffer read failed; retrying"
        );
        std::thread::sleep(Duration::from_millis(200 * u64::from(self.errors)));
    }

    fn corrupt(&self, seg: u64, offset: u64, why: &str) {
        if seg < self.shared.first_new_segment {
            return; // counted and reported when the buffer was opened
        }
        self.shared.metrics.corrupt.increment(1);
        self.shared.sub_unread(1);
        tracing::warn!(
            sink = %self.shared.sink,
            segment = %segment_path(&self.shared.dir, seg).display(),
            offset,
            reason = why,
            "disk buffer skipped a damaged record"
        );
    }

    fn damaged_rest(&self, seg: u64, offset: u64, limit: u64) {
        if seg < self.shared.first_new_segment {
            return;
        }
        self.shared.metrics.corrupt.increment(1);
        tracing::warn!(
            sink = %self.shared.sink,
            segment = %segment_path(&self.shared.dir, seg).display(),
            offset,
            bytes = limit - offset,
            "disk buffer skipped the unreadable rest of a segment"
        );
    }

    fn source_name(&mut self, bytes: &[u8]) -> Arc<str> {
        if let Some((_, name)) = self.sources.iter().find(|(b, _)| &**b == bytes) {
            return Arc::clone(name);
        }
        let name: Arc<str> = Arc::from(String::from_utf8_lossy(bytes).as_ref());
        if self.sources.len() >= 64 {
            self.sources.clear();
        }
        self.sources.push((bytes.into(), Arc::clone(&name)));
        name
    }
}
