//! The disk buffer: a sink's buffer that survives kill -9 and power loss up to the last fsync.
//!
//! Events are appended to segment files (`<20-digit id>.seg`, one record each with a length and a CRC32C, see
//! `segment.rs`) by a writer thread that fsyncs in groups at most every `fsync_interval` and only then
//! acknowledges the sources (`writer.rs`). A read-ahead thread follows the durable end and rebuilds the events
//! (`read_ahead.rs`); the sink takes them from the [`DiskReceiver`] with one acknowledgement batch per call, and
//! an acknowledgement task persists the sink's acknowledged position in the cursor file, then deletes the segments
//! wholly before it (`acks.rs`, `cursor.rs`). Room is counted in bytes of segment files under `max_size`
//! (`sender.rs`). At [`open`], records after the cursor are replayed and damage is skipped, counted and reported,
//! and what a previous run left is fsynced once, since a file source may resume after it (`recovery.rs`);
//! [`inspect`] reports the same without changing anything. Records may carry their source position
//! ([`crate::Origin`]); [`for_each_origin`] reads those back for the file source at start.
//!
//! This module owns [`open`]: it wires those parts together and starts the two threads and the task.

mod acks;
mod config;
mod cursor;
mod error;
mod inspect;
mod lock;
mod read_ahead;
mod receiver;
mod records;
mod recovery;
mod segment;
mod sender;
mod shared;
mod tails;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

pub use crate::crash::BUFFER_POINTS as CRASH_POINTS;
pub use config::DiskBufferConfig;
pub use cursor::Position;
pub use error::DiskBufferError;
pub use inspect::{inspect, Inspection, SegmentInfo};
pub use receiver::DiskReceiver;
pub use records::{for_each_origin, for_each_record, Walked};
pub use recovery::Recovery;
pub use segment::{scan_segment, ScanReport, Tail, MAX_RECORD_LEN};
pub use sender::{DiskReservation, DiskSender};
pub use tails::{ChainTail, ChainTails, TailsFile};

use acks::AckState;
use lock::DirLock;
use read_ahead::ReadAhead;
use recovery::{analyze, Mode};
use shared::{Metrics, Shared, SharedInit, State};
use writer::Writer;

/// Batches the read-ahead thread may hold ready for the sink (each is one read of at most 1 MiB).
const READ_AHEAD_BATCHES: usize = 4;

/// Opens (creating if needed) the disk buffer of `sink` in `dir` (the caller passes `<data_dir>/buffers/<sink>`),
/// recovers what it holds and starts its writer and read-ahead threads and its acknowledgement task.
///
/// Must be called inside a tokio runtime. Records after the acknowledged position come first out of the
/// receiver; damage found is skipped and described in the returned [`Recovery`] (see
/// [`Recovery::error_event`]). Only a directory that cannot be created, locked or read is an error; a directory
/// still held by another buffer (or by one being dropped) gives [`DiskBufferError::Locked`].
pub fn open(
    dir: &Path,
    sink: &str,
    config: &DiskBufferConfig,
) -> Result<(DiskSender, DiskReceiver, Recovery), DiskBufferError> {
    let runtime =
        tokio::runtime::Handle::try_current().map_err(|_| DiskBufferError::NoRuntime {
            dir: dir.to_path_buf(),
        })?;
    crate::private_fs::create_dir_all(dir).map_err(|source| DiskBufferError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let lock = DirLock::acquire(dir)?;
    // What the chain needs to resume: the tails remembered for deleted segments and those of the records still
    // here (after a kill -9 that includes records written but not yet synced, which the page cache kept). Read
    // and stored before the repair below deletes the segments a crash left behind an acknowledgement.
    let (mut tails, tails_file) = tails::load(dir).map_err(|source| DiskBufferError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    records::for_each_record(dir, |_, raw| tails.observe_raw(raw))?;
    let dir_handle = File::open(dir).map_err(|source| DiskBufferError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    tails::store(dir, &dir_handle, &tails).map_err(|source| DiskBufferError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut analysis = analyze(dir, Mode::Repair)?;
    recovery::sync_recovered(dir, &dir_handle, &analysis.segments)?;
    if let TailsFile::Damaged(why) = &tails_file {
        analysis.recovery.messages.push(format!(
            "chain tails file {} is damaged ({why}): where the integrity chain stood in deleted segments is lost",
            tails::tails_path(dir).display()
        ));
    }
    analysis.recovery.chain_tails = tails.clone();
    analysis.recovery.tails_file = tails_file;

    let labels = [("sink", sink.to_string())];
    let metrics = Metrics {
        events: metrics::gauge!("auditrail_buffer_events", &labels),
        bytes: metrics::gauge!("auditrail_buffer_bytes", &labels),
        corrupt: metrics::counter!("auditrail_buffer_corrupt_records_total", &labels),
        write_blocked: metrics::gauge!("auditrail_buffer_write_blocked", &labels),
    };
    metrics.write_blocked.set(0.0);
    let max_bytes = metrics::gauge!("auditrail_buffer_max_bytes", &labels);
    metrics.events.set(0.0);
    metrics.bytes.set(0.0);
    metrics.corrupt.increment(0);
    max_bytes.set(0.0);

    let recovery = analysis.recovery;
    let bytes: u64 = analysis.segments.values().sum();
    let state = State {
        segments: analysis.segments,
        bytes,
        current: analysis.next_segment,
        writer_done: false,
    };
    let shared = Arc::new(Shared::new(SharedInit {
        dir: dir.to_path_buf(),
        dir_handle,
        sink: sink.into(),
        max_size: config.max_size.0,
        max_segment_size: config.max_segment_size.0,
        fsync_interval: config.fsync_interval.0,
        when_full: config.when_full,
        state,
        pending_records: recovery.pending_records,
        first_new_segment: analysis.next_segment,
        metrics,
        tails,
        lock,
    }));
    max_bytes.set(shared.max_size as f64);
    shared.metrics.bytes.set(bytes as f64);
    shared.metrics.events.set(recovery.pending_records as f64);
    shared.metrics.corrupt.increment(recovery.corrupt_records);
    log_recovery(sink, dir, &recovery);

    let (tx, rx) = std::sync::mpsc::channel();
    let writer = Writer::new(Arc::clone(&shared), rx);
    std::thread::Builder::new()
        .name("ar-disk-write".into())
        .spawn(move || writer.run())
        .map_err(|source| DiskBufferError::Spawn {
            dir: dir.to_path_buf(),
            what: "writer",
            source,
        })?;
    let (entries_tx, entries_rx) = mpsc::channel(READ_AHEAD_BATCHES);
    let reader = ReadAhead::new(Arc::clone(&shared), analysis.start, entries_tx);
    std::thread::Builder::new()
        .name("ar-disk-read".into())
        .spawn(move || reader.run())
        .map_err(|source| DiskBufferError::Spawn {
            dir: dir.to_path_buf(),
            what: "read-ahead",
            source,
        })?;
    let acks = Arc::new(Mutex::new(AckState::default()));
    let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    runtime.spawn(acks::run(
        Arc::clone(&shared),
        Arc::clone(&acks),
        outcome_rx,
        control_rx,
        analysis.cursor,
    ));
    let sender = DiskSender {
        shared: Arc::clone(&shared),
        tx,
    };
    let receiver = DiskReceiver {
        shared,
        rx: entries_rx,
        leftover: VecDeque::new(),
        acks,
        outcome_tx,
        control: control_tx,
        next_batch: 0,
    };
    Ok((sender, receiver, recovery))
}

fn log_recovery(sink: &str, dir: &Path, recovery: &Recovery) {
    for message in &recovery.messages {
        tracing::warn!(sink, dir = %dir.display(), "disk buffer damage: {message}");
    }
    if recovery.is_damaged() {
        tracing::warn!(
            sink,
            dir = %dir.display(),
            pending_records = recovery.pending_records,
            corrupt_records = recovery.corrupt_records,
            torn_tail_bytes = recovery.torn_tail_bytes,
            missing_segments = recovery.missing_segments,
            "disk buffer opened with damage skipped"
        );
    } else {
        tracing::info!(
            sink,
            dir = %dir.display(),
            pending_records = recovery.pending_records,
            "disk buffer opened"
        );
    }
}
