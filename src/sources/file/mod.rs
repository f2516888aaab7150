//! The file source: tails JSONL files and moves each file's checkpoint only over lines that every sink
//! acknowledged.
//!
//! [`tailer`] does the blocking reading and parsing; this file drives it, hands batches to the fan-out (waiting
//! when a `block` buffer is full, which is how backpressure stops the reading), collects batch outcomes, and
//! has checkpoints written as soon as they move ([`saver`]). A batch whose events were not all handled (a sink
//! stopped before acknowledging) holds its file's checkpoint where it is, so after a restart those lines are read
//! again: at least once.

mod checkpoint;
mod config;
pub mod resume;
mod saver;
mod tailer;

pub use checkpoint::{Checkpoints, Entry, FileKey, Fingerprint};
pub use config::{FileSourceConfig, ReadFrom};
pub use resume::ResumeHints;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::shutdown::Shutdown;
use auditrail_core::{AckBatch, BatchOutcome, EventStatus};
use tokio::sync::mpsc;

use super::{SourceContext, SourceError, SourceTask};
use saver::Saver;
use tailer::{PollResult, Tailer};

/// Polls read ahead of the one being sent: reading and parsing go on while the sinks (or the integrity chain)
/// take a batch, and a slow sender then takes several reads at once.
const READ_AHEAD: usize = 4;

/// Runs the tailer on a blocking thread, handing each poll's result to `reads` in order; waits `poll_interval`
/// when a poll found nothing new. Stops when `reads` is closed.
fn read_ahead(
    mut tailer: Tailer,
    ingest: Arc<super::ingest::Ingest>,
    poll_interval: Duration,
    reads: mpsc::Sender<PollResult>,
) {
    tokio::task::spawn_blocking(move || loop {
        let result = tailer.poll(&ingest);
        let progressed = result.progressed;
        if reads.blocking_send(result).is_err() {
            return;
        }
        if !progressed {
            std::thread::sleep(poll_interval);
            if reads.is_closed() {
                return;
            }
        }
    });
}

struct Pending {
    id: u64,
    end_offset: u64,
    end_line: Option<u64>,
    status: Option<EventStatus>,
}

/// Acknowledgement state of one file.
struct FileAcks {
    path: PathBuf,
    committed: u64,
    committed_line: Option<u64>,
    fingerprint: Fingerprint,
    pending: VecDeque<Pending>,
    closed: bool,
    stuck_reported: bool,
}

/// Builds the file source: loads its checkpoints (a damaged checkpoint file is an error, not a silent restart
/// from scratch). With `resume` (every sink of the source has a disk buffer), files start after what those
/// buffers hold when that is past their checkpoints.
pub fn build(
    config: FileSourceConfig,
    cx: SourceContext,
    resume: Option<ResumeHints>,
) -> Result<SourceTask, SourceError> {
    let checkpoints = Checkpoints::new(&cx.data_dir, &cx.name);
    let loaded = checkpoints.load().map_err(|message| SourceError::State {
        source_name: cx.name.to_string(),
        message: format!(
            "{message}; move it away to start over (files are then read as `read_from` says)"
        ),
    })?;
    let mut tailer = Tailer::new(&config, loaded);
    if let Some(hints) = resume {
        tailer = tailer.with_resume(hints);
    }
    let saver = Saver::new(checkpoints, config.checkpoint_interval.0);
    Ok(Box::pin(FileSource::new(config, cx, saver).run(tailer)))
}

struct FileSource {
    config: FileSourceConfig,
    cx: SourceContext,
    saver: Saver,
    files: HashMap<FileKey, FileAcks>,
    batches: HashMap<u64, FileKey>,
    next_id: u64,
    acks_tx: mpsc::UnboundedSender<BatchOutcome>,
    acks_rx: mpsc::UnboundedReceiver<BatchOutcome>,
    /// Positions moved since the last checkpoint write started.
    dirty: bool,
}

impl FileSource {
    fn new(config: FileSourceConfig, cx: SourceContext, saver: Saver) -> FileSource {
        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        FileSource {
            config,
            cx,
            saver,
            files: HashMap::new(),
            batches: HashMap::new(),
            next_id: 0,
            acks_tx,
            acks_rx,
            dirty: false,
        }
    }

    async fn run(mut self, mut tailer: Tailer) {
        let mut shutdown = self.cx.shutdown.clone();
        let max_batch = self.cx.fanout.max_batch();
        tailer.set_max_batch(max_batch);
        let (reads_tx, mut reads) = mpsc::channel(READ_AHEAD);
        read_ahead(
            tailer,
            Arc::clone(&self.cx.ingest),
            self.config.poll_interval.0,
            reads_tx,
        );
        // Read batches waiting to be sent, in order. A batch goes out whole, never split across two sends: a
        // shutdown between the pieces of a split batch would leave it delivered in part, and all of it would be
        // read again after the restart. (The tailer caps each read batch at `max_batch` lines so that one fits.)
        let mut queue: VecDeque<Vec<auditrail_core::Event>> = VecDeque::new();
        'read: loop {
            if queue.is_empty() {
                let mut first = None;
                if !self
                    .drive(async { first = reads.recv().await }, &mut shutdown)
                    .await
                {
                    break;
                }
                let Some(first) = first else {
                    tracing::error!(source = %self.cx.name, "file reader stopped; stopping this source");
                    break;
                };
                queue.extend(self.absorb(first));
            }
            // Whatever was read while the last batch went out goes out together: one pass through the fan-out
            // (and one chain state write) for many reads when the sinks are the slower side.
            let mut events = Vec::new();
            loop {
                if let Some(next) = queue.front() {
                    if !events.is_empty() && events.len() + next.len() > max_batch {
                        break;
                    }
                    let next = queue.pop_front().unwrap_or_default();
                    if events.is_empty() {
                        events = next;
                    } else {
                        events.extend(next);
                    }
                    continue;
                }
                if events.len() >= max_batch {
                    break;
                }
                match reads.try_recv() {
                    Ok(more) => queue.extend(self.absorb(more)),
                    Err(_) => break,
                }
            }
            if shutdown.is_triggered() {
                break;
            }
            if !events.is_empty() {
                let fanout = self.cx.fanout.clone();
                // Dropping an unfinished send on shutdown fails the events it still held: not checkpointed.
                if !self.drive(fanout.send(events), &mut shutdown).await {
                    break 'read;
                }
            }
            while let Ok(o) = self.acks_rx.try_recv() {
                self.on_outcome(o);
            }
            // A busy reader may never wait in `drive`: what the acknowledgements moved is written from here.
            self.save_soon();
        }
        // Reads not yet taken were never sent, so never checkpointed; closing the channel stops the reader. The
        // queued batches go too, now: their outcomes are what `finish` waits for.
        drop(queue);
        drop(reads);
        self.finish().await;
    }

    /// Drives `work` to completion while taking in acknowledgements and having the checkpoints they move
    /// written. Returns false, dropping `work`, if shutdown comes first.
    async fn drive(
        &mut self,
        work: impl std::future::Future<Output = ()>,
        shutdown: &mut Shutdown,
    ) -> bool {
        tokio::pin!(work);
        loop {
            // Dirty, nothing running, but the last write started less than `checkpoint_interval` ago.
            let wake = (self.dirty && !self.saver.busy())
                .then(|| self.saver.not_before())
                .flatten();
            tokio::select! {
                _ = &mut work => return true,
                Some(o) = self.acks_rx.recv() => {
                    self.on_outcome(o);
                    self.save_soon();
                }
                r = self.saver.finished(), if self.saver.busy() => {
                    self.on_saved(r);
                    self.save_soon();
                }
                _ = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {
                    self.save_soon();
                }
                _ = shutdown.wait() => return false,
            }
        }
    }

    /// Takes in what a poll saw and returns its batches' events to send, each event with its batch's finalizer.
    fn absorb(&mut self, result: PollResult) -> Vec<Vec<auditrail_core::Event>> {
        for o in result.opened {
            self.files.insert(
                o.key,
                FileAcks {
                    path: o.path,
                    committed: o.offset,
                    committed_line: o.line,
                    fingerprint: o.fingerprint,
                    pending: VecDeque::new(),
                    closed: false,
                    stuck_reported: false,
                },
            );
            self.dirty = true;
        }
        for key in result.truncated {
            if let Some(f) = self.files.get_mut(&key) {
                for p in f.pending.drain(..) {
                    self.batches.remove(&p.id);
                }
                f.committed = 0;
                f.committed_line = Some(0);
                self.dirty = true;
            }
        }
        let mut sends = Vec::new();
        for b in result.batches {
            let Some(f) = self.files.get_mut(&b.key) else {
                continue;
            };
            f.fingerprint = b.fingerprint;
            let id = self.next_id;
            self.next_id += 1;
            f.pending.push_back(Pending {
                id,
                end_offset: b.end_offset,
                end_line: b.end_line,
                status: None,
            });
            self.batches.insert(id, b.key);
            let batch = AckBatch::new(id, self.acks_tx.clone());
            let mut events = b.events;
            for e in &mut events {
                e.set_finalizer(batch.finalizer());
            }
            // An empty batch (only invalid or blank lines) completes as soon as `batch` is dropped here.
            drop(batch);
            if !events.is_empty() {
                sends.push(events);
            }
        }
        for key in result.closed {
            if let Some(f) = self.files.get_mut(&key) {
                f.closed = true;
            }
        }
        self.forget_closed();
        sends
    }

    fn on_outcome(&mut self, o: BatchOutcome) {
        let Some(key) = self.batches.remove(&o.id) else {
            return;
        };
        let Some(f) = self.files.get_mut(&key) else {
            return;
        };
        if let Some(p) = f.pending.iter_mut().find(|p| p.id == o.id) {
            p.status = Some(o.status);
        }
        while let Some(front) = f.pending.front() {
            match front.status {
                Some(s) if s.is_final() => {
                    f.committed = front.end_offset;
                    f.committed_line = front.end_line;
                    f.pending.pop_front();
                    self.dirty = true;
                }
                Some(_) => {
                    if !f.stuck_reported {
                        f.stuck_reported = true;
                        tracing::warn!(
                            source = %self.cx.name,
                            path = %f.path.display(),
                            offset = f.committed,
                            "events were not delivered by every sink; the checkpoint stays here and they are read again after a restart"
                        );
                    }
                    break;
                }
                None => break,
            }
        }
        self.forget_closed();
    }

    fn forget_closed(&mut self) {
        let before = self.files.len();
        self.files
            .retain(|_, f| !(f.closed && f.pending.is_empty()));
        if self.files.len() != before {
            self.dirty = true;
        }
    }

    /// Starts a checkpoint write of the current positions if they moved, no write is running and the last
    /// one started at least `checkpoint_interval` ago; otherwise the positions wait for the next chance (the
    /// end of the running write, or the end of the spacing), folding in whatever moves until then.
    fn save_soon(&mut self) {
        if self.dirty && !self.saver.busy() && self.saver.not_before().is_none() {
            let entries = self.entries();
            self.saver.start(entries);
            self.dirty = false;
        }
    }

    /// Takes in the result of a checkpoint write.
    fn on_saved(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            // What that write held is still to be written; the saver waits a moment before the next try.
            self.dirty = true;
            tracing::error!(
                source = %self.cx.name,
                path = %self.saver.path().display(),
                error = %e,
                "cannot write checkpoints; will retry (after a crash now, acknowledged lines would be read again)"
            );
        }
    }

    /// Every followed file's acknowledged position, in key order.
    fn entries(&self) -> Vec<Entry> {
        let mut entries: Vec<Entry> = self
            .files
            .iter()
            .map(|(key, f)| Entry {
                key: *key,
                path: f.path.clone(),
                offset: f.committed,
                line: f.committed_line,
                fingerprint: f.fingerprint,
            })
            .collect();
        entries.sort_by_key(|e| e.key);
        entries
    }

    /// After shutdown: stop feeding the sinks, wait for the outcome of what is in flight, write the last
    /// checkpoint. Sinks that run out of `shutdown_timeout` are stopped by the pipeline, which fails their events
    /// and so ends this wait too.
    async fn finish(mut self) {
        let fanout =
            std::mem::replace(&mut self.cx.fanout, auditrail_core::Fanout::new(Vec::new()));
        drop(fanout);
        let in_flight = |s: &FileSource| {
            s.files
                .values()
                .any(|f| f.pending.iter().any(|p| p.status.is_none()))
        };
        while in_flight(&self) {
            tokio::select! {
                o = self.acks_rx.recv() => match o {
                    Some(o) => {
                        self.on_outcome(o);
                        self.save_soon();
                    }
                    None => break,
                },
                r = self.saver.finished(), if self.saver.busy() => {
                    self.on_saved(r);
                    self.save_soon();
                }
            }
        }
        // The last write goes after the running one (never beside it), whatever the spacing.
        if self.saver.busy() {
            let r = self.saver.finished().await;
            self.on_saved(r);
        }
        if self.dirty {
            let entries = self.entries();
            self.saver.start(entries);
            if let Err(e) = self.saver.finished().await {
                tracing::error!(
                    source = %self.cx.name,
                    path = %self.saver.path().display(),
                    error = %e,
                    "cannot write the last checkpoints; lines acknowledged since the previous write are read again at the next start"
                );
                return;
            }
        }
        tracing::info!(source = %self.cx.name, "file source stopped; checkpoints written");
    }
}
