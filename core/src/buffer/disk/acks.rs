//! Sink acknowledgements: from batch outcomes to a durable cursor and deleted segments.
//!
//! Every `recv_many` call hands out one [`crate::AckBatch`] and registers it here with the position after its
//! last record. Outcomes come back in any order on an unbounded channel; the acknowledged position moves over the
//! contiguous run of batches whose outcome is final, and stops for good (until a restart) at a `Failed` batch, so
//! that its records are read again after a restart. A task persists the position as soon as it moves (while one
//! cursor write is in progress, later acknowledgements coalesce into the next), then deletes the segments wholly
//! before it and gives their bytes back to the senders. The order — cursor durable, then unlink — is what keeps a
//! crash between any two steps from losing an unacknowledged record.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::cursor::{self, Position};
use super::segment::segment_path;
use super::shared::Shared;
use super::tails;
use crate::ack::{BatchOutcome, EventStatus};
use crate::crash::{self, CrashPoint};

/// How long to wait before retrying a cursor write that failed.
const RETRY: Duration = Duration::from_secs(1);

/// One `recv_many` batch waiting for its outcome.
#[derive(Debug)]
pub(crate) struct PendingBatch {
    pub id: u64,
    pub end: Position,
    pub records: u64,
    pub status: Option<EventStatus>,
}

/// Batches handed to the sink, oldest first, and how far they are acknowledged.
#[derive(Debug, Default)]
pub(crate) struct AckState {
    pub pending: VecDeque<PendingBatch>,
    pub acked: Option<Position>,
    stuck: bool,
}

impl AckState {
    fn apply(&mut self, outcome: BatchOutcome) {
        let Some(front) = self.pending.front() else {
            return;
        };
        let Some(i) = outcome.id.checked_sub(front.id) else {
            return;
        };
        if let Some(b) = self.pending.get_mut(i as usize) {
            b.status = Some(outcome.status);
        }
    }

    /// Moves over final batches; returns how many records that acknowledged.
    fn advance(&mut self, shared: &Shared) -> u64 {
        let mut records = 0;
        while let Some(front) = self.pending.front() {
            match front.status {
                Some(s) if s.is_final() => {
                    let b = self.pending.pop_front().expect("front exists");
                    self.acked = Some(b.end);
                    records += b.records;
                }
                Some(_) => {
                    if !self.stuck {
                        self.stuck = true;
                        tracing::warn!(
                            sink = %shared.sink,
                            records = front.records,
                            position = %front.end,
                            "the sink released a batch from its disk buffer without handling it: the buffer keeps it and everything after it, and sends them again after a restart"
                        );
                    }
                    break;
                }
                None => break,
            }
        }
        records
    }
}

/// Requests to the acknowledgement task.
pub(crate) enum Control {
    /// Persist every outcome received so far, then answer.
    Flush(oneshot::Sender<()>),
}

/// The acknowledgement task. Ends when the receiver is dropped, after persisting what was acknowledged.
pub(crate) async fn run(
    shared: Arc<Shared>,
    state: Arc<Mutex<AckState>>,
    mut outcomes: mpsc::UnboundedReceiver<BatchOutcome>,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut persisted: Option<Position>,
) {
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let mut reply = None;
        let mut closing = false;
        let mut outcome = None;
        tokio::select! {
            biased;
            c = control.recv() => match c {
                Some(Control::Flush(r)) => reply = Some(r),
                None => closing = true,
            },
            o = outcomes.recv() => match o {
                Some(o) => outcome = Some(o),
                None => closing = true,
            },
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {}
        }
        let acked = {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(o) = outcome {
                st.apply(o);
            }
            while let Ok(o) = outcomes.try_recv() {
                st.apply(o);
            }
            let records = st.advance(&shared);
            if records > 0 {
                shared.add_unacked(-(records as i64));
            }
            st.acked
        };
        if let Some(pos) = acked.filter(|p| Some(*p) > persisted) {
            let sh = Arc::clone(&shared);
            match tokio::task::spawn_blocking(move || persist(&sh, pos)).await {
                Ok(Ok(())) => {
                    persisted = Some(pos);
                    retry_at = None;
                }
                Ok(Err(e)) => {
                    tracing::warn!(
                        sink = %shared.sink,
                        cursor = %cursor::cursor_path(&shared.dir).display(),
                        position = %pos,
                        error = %e,
                        "disk buffer cannot persist its acknowledged position; retrying (acknowledged records may be sent again after a restart)"
                    );
                    retry_at = Some(tokio::time::Instant::now() + RETRY);
                }
                Err(e) => {
                    tracing::warn!(sink = %shared.sink, error = %e, "disk buffer cursor write was interrupted");
                    retry_at = Some(tokio::time::Instant::now() + RETRY);
                }
            }
        }
        if let Some(r) = reply {
            let _ = r.send(());
        }
        if closing {
            return;
        }
    }
}

/// The acknowledged position as stored: past the end of a sealed segment it becomes the start of the next one,
/// so that the sealed segment can be deleted.
fn normalize(shared: &Shared, mut pos: Position) -> Position {
    let st = shared.state();
    while pos.segment < st.current {
        match st.segments.get(&pos.segment) {
            Some(&size) if pos.offset < size => break,
            None if pos.offset > 0 => break,
            _ => {
                pos = Position {
                    segment: st.next_after(pos.segment),
                    offset: 0,
                }
            }
        }
    }
    pos
}

/// Writes the cursor durably, then the chain tails, then deletes the segments wholly before it and frees their
/// bytes.
fn persist(shared: &Shared, pos: Position) -> io::Result<()> {
    crash::point(CrashPoint::AfterAck);
    let pos = normalize(shared, pos);
    cursor::write(&shared.dir, &shared.dir_handle, pos)?;
    let doomed: Vec<u64> = shared
        .state()
        .segments
        .range(..pos.segment)
        .map(|(&id, _)| id)
        .collect();
    if doomed.is_empty() {
        return Ok(());
    }
    crash::point(CrashPoint::BeforeUnlink);
    // The doomed segments may hold the newest record of a stream: what the chain resumes after. Every record in
    // them is durable, so the tails made durable so far cover them.
    tails::store(&shared.dir, &shared.dir_handle, &shared.tails())?;
    crash::point(CrashPoint::AfterTailsWrite);
    let mut freed = 0;
    for id in doomed {
        let path = segment_path(&shared.dir, id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(
                    sink = %shared.sink,
                    segment = %path.display(),
                    error = %e,
                    "disk buffer cannot delete an acknowledged segment; it is deleted at the next start"
                );
                continue;
            }
        }
        freed += shared.state().remove(id);
        tracing::debug!(sink = %shared.sink, segment = %path.display(), "disk buffer deleted an acknowledged segment");
    }
    crash::point(CrashPoint::AfterUnlink);
    shared.release(freed);
    let bytes = shared.state().bytes;
    shared.metrics.bytes.set(bytes as f64);
    Ok(())
}
