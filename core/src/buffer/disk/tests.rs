//! Tests of the disk buffer as a whole: round trips, replay after reopen, recovery from damage, `max_size`,
//! a model-based property test with simulated crashes, and `inspect`.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tokio::sync::mpsc;

use super::cursor;
use super::segment::{decode, record_len, segment_path, Decoded};
use super::*;
use crate::ack::{AckBatch, BatchOutcome, EventStatus};
use crate::buffer::WhenFull;
use crate::event::Event;
use crate::units::{ByteSize, Interval};

fn ev(i: usize) -> Event {
    let mut e = Event::parse(
        Bytes::from(format!(
            r#"{{"event":"session.start","uid":"{i:08}","time":"2017-02-03T06:54:05.000Z","user":"alice@example.com","cmd":"a \u003c b"}}"#
        )),
        1 << 20,
    )
    .unwrap();
    e.set_source(Arc::from("teleport"));
    e
}

fn index(e: &Event) -> usize {
    e.uid().parse().unwrap()
}

fn cfg(max_segment_size: u64) -> DiskBufferConfig {
    DiskBufferConfig {
        max_size: ByteSize(1 << 30),
        when_full: WhenFull::Block,
        fsync_interval: Interval(Duration::from_millis(2)),
        max_segment_size: ByteSize(max_segment_size),
    }
}

/// Opens `dir`, waiting for a previous instance's threads to finish and release the lock.
async fn reopen(dir: &Path, config: &DiskBufferConfig) -> (DiskSender, DiskReceiver, Recovery) {
    for _ in 0..2000 {
        match open(dir, "t", config) {
            Err(DiskBufferError::Locked { .. }) => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            other => return other.unwrap(),
        }
    }
    panic!("the previous buffer never released {}", dir.display());
}

/// Sends `range` as one source batch reporting to `acks` under `id`.
async fn write(
    tx: &DiskSender,
    range: std::ops::Range<usize>,
    id: u64,
    acks: &mpsc::UnboundedSender<BatchOutcome>,
) {
    let batch = AckBatch::new(id, acks.clone());
    let events: Vec<Event> = range
        .map(|i| {
            let mut e = ev(i);
            e.set_finalizer(batch.finalizer());
            e
        })
        .collect();
    drop(batch);
    let r = tx.reserve(&events).await;
    assert_eq!(r.granted(), events.len());
    r.send(events);
}

/// Reads exactly `n` events (in calls of at most `limit`), failing after a generous timeout.
async fn read(rx: &mut DiskReceiver, n: usize, limit: usize) -> Vec<Vec<Event>> {
    let mut batches = Vec::new();
    let mut got = 0;
    while got < n {
        let mut out = Vec::new();
        let k = tokio::time::timeout(
            Duration::from_secs(10),
            rx.recv_many(&mut out, limit.min(n - got)),
        )
        .await
        .expect("events did not arrive");
        assert!(k > 0, "buffer closed after {got} of {n}");
        got += k;
        batches.push(out);
    }
    assert_eq!(got, n);
    batches
}

/// Whether a receive returns nothing within a short time.
async fn nothing_more(rx: &mut DiskReceiver) -> bool {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_millis(150), rx.recv_many(&mut out, 10))
        .await
        .is_err()
}

fn ack(batches: impl IntoIterator<Item = Vec<Event>>) {
    for b in batches {
        for e in b {
            e.finish(EventStatus::Delivered);
        }
    }
}

fn segments(dir: &Path) -> Vec<(u64, u64)> {
    super::segment::list_segments(dir)
        .unwrap()
        .into_iter()
        .collect()
}

/// Offsets of the records in a segment file.
fn record_offsets(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        match decode(&bytes[p..]) {
            Decoded::Record { len, .. } | Decoded::Corrupt { len, .. } => {
                out.push(p);
                p += len;
            }
            _ => break,
        }
    }
    out
}

/// Writes `n` events, waits until they are durable, and closes the buffer.
async fn fill(dir: &Path, config: &DiskBufferConfig, n: usize) {
    let (tx, rx, _) = reopen(dir, config).await;
    let (acks, _keep) = mpsc::unbounded_channel();
    write(&tx, 0..n, 0, &acks).await;
    drop(tx);
    drop(rx);
    // The next open waits for the writer to have made everything durable.
    let (_tx, _rx, r) = reopen(dir, config).await;
    assert_eq!(r.pending_records, n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_acks_after_fsync_deletes_segments_and_keeps_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg(64 << 10);
    let (tx, mut rx, recovery) = reopen(dir.path(), &config).await;
    assert_eq!(recovery, Recovery::default());
    let (src_tx, mut src_rx) = mpsc::unbounded_channel();
    let total = 10_000;
    let mut cumulative = Vec::new();
    for (id, start) in (0..total).step_by(500).enumerate() {
        write(&tx, start..start + 500, id as u64, &src_tx).await;
        cumulative.push((start + 500) as u64);
    }
    let batches = read(&mut rx, total, 700).await;
    for (i, e) in batches.iter().flatten().enumerate() {
        assert_eq!(e.raw(), ev(i).raw(), "event {i}");
        assert_eq!(e.source(), Some("teleport"));
    }
    // Every source batch was acknowledged Delivered, each only once its records were fsynced.
    for _ in 0..cumulative.len() {
        let o = tokio::time::timeout(Duration::from_secs(5), src_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o.status, EventStatus::Delivered);
        let synced = tx.shared.synced_records.load(Ordering::Acquire);
        assert!(synced >= cumulative[o.id as usize], "acked before fsync");
    }
    let before = segments(dir.path());
    assert!(before.len() > 20, "{} segments", before.len());
    assert_eq!(rx.len(), 0);
    ack(batches);
    rx.flush_acks().await;
    let after = segments(dir.path());
    assert_eq!(after.len(), 1, "only the segment being written remains");
    assert_eq!(after[0].0, before.last().unwrap().0);
    drop(tx);
    drop(rx);
    let (_tx, mut rx, recovery) = reopen(dir.path(), &config).await;
    assert_eq!(recovery.pending_records, 0);
    assert!(!recovery.is_damaged());
    assert!(nothing_more(&mut rx).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_replays_what_the_sink_did_not_acknowledge() {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg(4 << 10);
    let (tx, mut rx, _) = reopen(dir.path(), &config).await;
    let (src, _keep) = mpsc::unbounded_channel();
    write(&tx, 0..1000, 0, &src).await;
    let batches = read(&mut rx, 1000, 100).await;
    drop(batches); // released without an outcome: failed, nothing acknowledged
    drop((tx, rx));

    let (tx, mut rx, recovery) = reopen(dir.path(), &config).await;
    assert_eq!(recovery.pending_records, 1000);
    assert_eq!(rx.len(), 1000);
    let mut batches = read(&mut rx, 1000, 100).await;
    let uids: Vec<usize> = batches.iter().flatten().map(index).collect();
    assert_eq!(uids, (0..1000).collect::<Vec<_>>());
    // Acknowledge the batches that hold (about) the first 400 events; calls return what is ready, so batch
    // sizes vary.
    let mut acked = 0;
    let mut keep = 0;
    while keep < batches.len() && (keep == 0 || acked + batches[keep].len() <= 400) {
        acked += batches[keep].len();
        keep += 1;
    }
    let rest = batches.split_off(keep);
    ack(batches);
    rx.flush_acks().await;
    drop(rest);
    drop((tx, rx));

    let (_tx, mut rx, recovery) = reopen(dir.path(), &config).await;
    assert_eq!(recovery.pending_records, 1000 - acked as u64);
    let batches = read(&mut rx, 1000 - acked, 1000).await;
    let uids: Vec<usize> = batches.iter().flatten().map(index).collect();
    assert_eq!(uids, (acked..1000).collect::<Vec<_>>());
    assert!(nothing_more(&mut rx).await);
}

/// An event's origin is stored with its record: it comes back with the event when read, and again when the
/// record is replayed after a restart; `for_each_origin` finds it without the buffer running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_are_kept_through_the_buffer_and_its_replay() {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg(4 << 10);
    let origin = |i: usize| crate::Origin {
        dev: 8,
        ino: 9,
        fingerprint_len: 256,
        fingerprint_hash: 10,
        start: 100 * i as u64,
        end: 100 * i as u64 + 100,
        end_line: Some(i as u64 + 1),
    };
    let (tx, mut rx, _) = reopen(dir.path(), &config).await;
    let events: Vec<Event> = (0..100)
        .map(|i| {
            let mut e = ev(i);
            if i % 10 == 9 {
                e.set_origin(Arc::new(origin(i)));
            }
            e
        })
        .collect();
    tx.reserve(&events).await.send(events);
    let check = |batches: &[Vec<Event>]| {
        for e in batches.iter().flatten() {
            let i = index(e);
            let want = (i % 10 == 9).then(|| origin(i));
            assert_eq!(e.origin().copied(), want, "event {i}");
        }
    };
    let batches = read(&mut rx, 100, 30).await;
    check(&batches);
    drop(batches); // not acknowledged: replayed after the restart
    drop((tx, rx));

    let (_tx, mut rx, recovery) = reopen(dir.path(), &config).await;
    assert_eq!(recovery.pending_records, 100);
    let mut seen = Vec::new();
    for_each_origin(dir.path(), |w| match w {
        Walked::Origin { source, origin } => {
            assert_eq!(source, "teleport");
            seen.push(*origin);
        }
        Walked::Damage => panic!("nothing is damaged"),
    })
    .unwrap();
    assert_eq!(
        seen,
        (0..10).map(|k| origin(10 * k + 9)).collect::<Vec<_>>()
    );
    check(&read(&mut rx, 100, 1000).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_truncated_and_complete_records_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg(64 << 20);
    fill(dir.path(), &config, 100).await;
    let segs = segments(dir.path());
    let (id, size) = *segs.last().unwrap();
    let path = segment_path(dir.path(), id);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(size - 5).unwrap();
    drop(f);

    let (_tx, mut rx, recovery) = reopen(dir.path(), &config).await;
    assert_eq!(recovery.pending_records, 99);
    assert_eq!(recovery.corrupt_records, 0);
    assert_eq!(recovery.torn_tail_bytes, record_len(&ev(0)) as u64 - 5);
    assert!(recovery.error_event("t").is_some());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        size - record_len(&ev(0)) as u64,
        "truncated to the last complete record"
    );
    let uids: Vec<usize> = read(&mut rx, 99, 1000)
        .await
        .iter()
        .flatten()
        .map(index)
        .collect();
    assert_eq!(uids, (0..99).collect::<Vec<_>>());
    assert!(nothing_more(&mut rx).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_record_and_garbage_header_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let per_segment = 10;
    let config = cfg((record_len(&ev(0)) * per_segment) as u64);
    fill(dir.path(), &config, 100).await;
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 10);
    // A flipped payload byte in the 3rd record of the 4th segment.
    let path = segment_path(dir.path(), segs[3].0);
    let offsets = record_offsets(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets[2] + 30] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    let (tx, mut rx, recovery) = reopen(dir.path(), &config).await;
    assert_eq!(recovery.corrupt_records, 1);
    assert_eq!(recovery.pending_records, 99);
    assert!(
        recovery.messages[0].contains(&segs[3].0.to_string()),
        "{:?}",
        recovery.messages
    );
    let uids: Vec<usize> = read(&mut rx, 99, 1000)
        .await
        .iter()
        .flatten()
        .map(index)
        .collect();
    let expected: Vec<usize> = (0..100).filter(|&i| i != 32).collect();
    assert_eq!(uids, expected);
    let event = recovery.error_event("t").unwrap();
    let v: serde_json::Value = serde_json::from_slice(event.raw()).unwrap();
    assert_eq!(v["event"], "auditrail.error");
    assert_eq!(v["code"], "AR0002E");
    assert_eq!(v["corrupt_records"], 1);
    drop((tx, rx));

    // An impossible length header in the 2nd record of the 6th segment: the rest of that segment is skipped.
    let path = segment_path(dir.path(), segs[5].0);
    let offsets = record_offsets(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets[1]..offsets[1] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (_tx, mut rx, recovery) = reopen(dir.path(), &config).await;
    assert_eq!(recovery.corrupt_records, 2);
    assert_eq!(recovery.pending_records, 99 - 9);
    assert!(recovery
        .messages
        .iter()
        .any(|m| m.contains("unreadable from byte") && m.contains(&segs[5].0.to_string())));
    let uids: Vec<usize> = read(&mut rx, 90, 1000)
        .await
        .iter()
        .flatten()
        .map(index)
        .collect();
    let expected: Vec<usize> = (0..100)
        .filter(|&i| i != 32 && !(51..60).contains(&i))
        .collect();
    assert_eq!(uids, expected);
    assert!(nothing_more(&mut rx).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_cursor_segment_and_damaged_cursor_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg((record_len(&ev(0)) * 10) as u64);
    fill(dir.path(), &config, 100).await;
    let segs = segments(dir.path());
    // The sink acknowledged two records of the 4th segment, which then vanished.
    let offsets = record_offsets(&segment_path(dir.path(), segs[3].0));
    let handle = std::fs::File::open(dir.path()).unwrap();
    cursor::write(
        dir.path(),
        &handle,
        Position {
            segment: segs[3].0,
            offset: offsets[2] as u64,
        },
    )
    .unwrap();
    std::fs::remove_file(segment_path(dir.path(), segs[3].0)).unwrap();

    let (tx, mut rx, recovery) = reopen(dir.path(), &config).await;
    assert_eq!(recovery.missing_segments, 1);
    assert_eq!(recovery.pending_records, 60);
    assert!(recovery.is_damaged());
    let uids: Vec<usize> = read(&mut rx, 60, 1000)
        .await
        .iter()
        .flatten()
        .map(index)
        .collect();
    assert_eq!(uids, (40..100).collect::<Vec<_>>());
    assert_eq!(
        segments(dir.path()).len(),
        6,
        "acknowledged segments deleted at open"
    );
    drop((tx, rx));

    std::fs::write(cursor::cursor_path(dir.path()), b"not a cursor").unwrap();
    let (_tx, mut rx, recovery) = reopen(dir.path(), &config).await;
    assert_eq!(recovery.pending_records, 60);
    assert!(
        recovery.messages.iter().any(|m| m.contains("cursor")),
        "{:?}",
        recovery.messages
    );
    let uids: Vec<usize> = read(&mut rx, 60, 1000)
        .await
        .iter()
        .flatten()
        .map(index)
        .collect();
    assert_eq!(uids, (40..100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_mode_waits_for_acknowledged_space() {
    let dir = tempfile::tempdir().unwrap();
    let rl = record_len(&ev(0)) as u64;
    let config = DiskBufferConfig {
        max_size: ByteSize(10 * rl),
        max_segment_size: ByteSize(3 * rl),
        ..cfg(0)
    };
    let (tx, mut rx, _) = reopen(dir.path(), &config).await;
    let events: Vec<Event> = (0..10).map(ev).collect();
    tx.try_reserve(&events).unwrap().send(events);
    assert!(tx.try_reserve(&[ev(10)]).is_none());
    let tx2 = tx.clone();
    let waiter = tokio::spawn(async move {
        let e = vec![ev(10), ev(11)];
        tx2.reserve(&e).await.send(e)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    let batches = read(&mut rx, 10, 100).await;
    assert!(
        tx.try_reserve(&[ev(10)]).is_none(),
        "reading alone frees nothing"
    );
    ack(batches);
    rx.flush_acks().await;
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    // 3 full segments were deleted: 9 records' worth of room came back, 2 of which the waiter took.
    let seven: Vec<Event> = (12..19).map(ev).collect();
    assert!(tx
        .try_reserve(&(12..20).map(ev).collect::<Vec<_>>())
        .is_none());
    tx.try_reserve(&seven).unwrap().send(seven);
    let uids: Vec<usize> = read(&mut rx, 9, 100)
        .await
        .iter()
        .flatten()
        .map(index)
        .collect();
    assert_eq!(uids, (10..19).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_sink_releases_senders_waiting_for_space() {
    let dir = tempfile::tempdir().unwrap();
    let rl = record_len(&ev(0)) as u64;
    let config = DiskBufferConfig {
        max_size: ByteSize(4 * rl),
        ..cfg(0)
    };
    let (tx, rx, _) = reopen(dir.path(), &config).await;
    let events: Vec<Event> = (0..4).map(ev).collect();
    tx.try_reserve(&events).unwrap().send(events);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    let batch = crate::ack::AckBatch::new(9, ack_tx);
    let mut late = ev(4);
    late.set_finalizer(batch.finalizer());
    drop(batch);
    let tx2 = tx.clone();
    let waiter = tokio::spawn(async move {
        let e = vec![late];
        tx2.reserve(&e).await.send(e)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "a full block buffer waits");
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    let outcome = ack_rx.recv().await.unwrap();
    assert_eq!(
        outcome.status,
        EventStatus::Failed,
        "not stored, so its source keeps it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_drops_counts_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let rl = record_len(&ev(0)) as u64;
    let config = DiskBufferConfig {
        max_size: ByteSize(5 * rl),
        when_full: WhenFull::DropNewest,
        ..cfg(1 << 20)
    };
    let (tx, mut rx, _) = reopen(dir.path(), &config).await;
    assert_eq!(tx.when_full(), WhenFull::DropNewest);
    let (src_tx, mut src_rx) = mpsc::unbounded_channel();
    let batch = AckBatch::new(1, src_tx);
    let events: Vec<Event> = (0..8)
        .map(|i| {
            let mut e = ev(i);
            e.set_finalizer(batch.finalizer());
            e
        })
        .collect();
    drop(batch);
    let r = tx.reserve(&events).await;
    assert_eq!(r.granted(), 5);
    r.send(events);
    let outcome = tokio::time::timeout(Duration::from_secs(5), src_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.status, EventStatus::Dropped);
    let mut out = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), rx.recv_many(&mut out, 100))
        .await
        .unwrap();
    // Five durable events may come in more than one call; the report comes with the first.
    assert!(n >= 2);
    let report = out
        .iter()
        .find(|e| e.kind() == "auditrail.dropped")
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(report.raw()).unwrap();
    assert_eq!(v["count"], 3);
    assert_eq!(v["sink"], "t");
    assert_eq!(v["code"], "AR0001W");
    let got = out
        .iter()
        .filter(|e| e.kind() != "auditrail.dropped")
        .count();
    let rest = read(&mut rx, 5 - got, 100).await;
    assert!(rest
        .iter()
        .flatten()
        .all(|e| e.kind() != "auditrail.dropped"));
    let r = tx.try_reserve(&[ev(9)]).unwrap();
    assert_eq!(r.granted(), 0, "still full until acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_reports_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let config = cfg((record_len(&ev(0)) * 10) as u64);
    fill(dir.path(), &config, 100).await;
    let segs = segments(dir.path());
    let handle = std::fs::File::open(dir.path()).unwrap();
    cursor::write(
        dir.path(),
        &handle,
        Position {
            segment: segs[1].0,
            offset: 0,
        },
    )
    .unwrap();
    // A corrupt record in the 3rd segment and a torn tail in the last.
    let path = segment_path(dir.path(), segs[2].0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let last = segment_path(dir.path(), segs.last().unwrap().0);
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let snapshot = |dir: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect()
    };
    let before = snapshot(dir.path());
    let report = inspect(dir.path()).unwrap();
    assert_eq!(before, snapshot(dir.path()), "inspect changed a file");
    assert_eq!(
        report.acked,
        Some(Position {
            segment: segs[1].0,
            offset: 0
        })
    );
    assert_eq!(
        report.segments.len(),
        9,
        "the first segment is before the cursor"
    );
    assert_eq!(report.segments[0].id, segs[1].0);
    assert_eq!(report.pending_records, 90 - 1 - 1);
    assert_eq!(report.damage.corrupt_records, 1);
    assert!(report.damage.torn_tail_bytes > 0);
    assert!(report.is_damaged());
    assert_eq!(
        report.total_bytes,
        report.segments.iter().map(|s| s.bytes).sum::<u64>()
    );
    let empty = inspect(&dir.path().join("never-created")).unwrap();
    assert_eq!(empty.pending_records, 0);
    assert!(empty.segments.is_empty());
}

#[tokio::test]
async fn open_names_the_directory_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = open(&file.join("sub"), "t", &cfg(1 << 20)).err().unwrap();
    assert!(matches!(err, DiskBufferError::CreateDir { .. }));
    assert!(err.to_string().contains("sub"), "{err}");
}

/// One step of the model-based test.
#[derive(Clone, Debug)]
enum Op {
    Write(usize),
    Read(usize),
    Ack,
    AckNoFlush,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..15).prop_map(Op::Write),
        3 => (1usize..15).prop_map(Op::Read),
        2 => Just(Op::Ack),
        1 => Just(Op::AckNoFlush),
        1 => Just(Op::Crash),
    ]
}

async fn run_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = DiskBufferConfig {
        fsync_interval: Interval(Duration::from_millis(1)),
        ..cfg((record_len(&ev(0)) * 7) as u64)
    };
    let (src_tx, mut src_rx) = mpsc::unbounded_channel();
    let (mut tx, mut rx, _) = reopen(dir.path(), &config).await;
    let mut written = 0usize;
    let mut writes = 0u64;
    // Events before `persisted` were acknowledged and flushed; before `acked`, acknowledged.
    let (mut persisted, mut acked) = (0usize, 0usize);
    let mut next_read: Option<usize> = Some(0);
    let mut window = (0usize, 0usize);
    let mut batches: VecDeque<(Vec<Event>, usize)> = VecDeque::new();

    async fn read_some(
        rx: &mut DiskReceiver,
        k: usize,
        next_read: &mut Option<usize>,
        window: (usize, usize),
        batches: &mut VecDeque<(Vec<Event>, usize)>,
    ) -> Result<(), TestCaseError> {
        let mut out = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), rx.recv_many(&mut out, k))
            .await
            .map_err(|_| TestCaseError::fail("a durable event never arrived"))?;
        prop_assert!(n > 0 && n <= k);
        let first = index(&out[0]);
        match *next_read {
            Some(expected) => prop_assert_eq!(first, expected, "order or loss"),
            None => prop_assert!(
                window.0 <= first && first <= window.1,
                "after a crash reading resumed at {} outside [{}, {}]",
                first,
                window.0,
                window.1
            ),
        }
        for (j, e) in out.iter().enumerate() {
            prop_assert_eq!(index(e), first + j, "not contiguous");
        }
        *next_read = Some(first + n);
        batches.push_back((out, first + n));
        Ok(())
    }

    for op in ops {
        match op {
            Op::Write(k) => {
                write(&tx, written..written + k, writes, &src_tx).await;
                writes += 1;
                written += k;
            }
            Op::Read(k) => {
                if written > next_read.unwrap_or(window.1) {
                    read_some(&mut rx, k, &mut next_read, window, &mut batches).await?;
                }
            }
            Op::Ack | Op::AckNoFlush => {
                if let Some((events, end)) = batches.pop_front() {
                    ack([events]);
                    acked = acked.max(end);
                    if matches!(op, Op::Ack) {
                        rx.flush_acks().await;
                        persisted = persisted.max(end);
                    }
                }
            }
            Op::Crash => {
                batches.clear();
                drop(tx);
                drop(rx);
                let (t, r, recovery) = reopen(dir.path(), &config).await;
                prop_assert!(!recovery.is_damaged(), "{:?}", recovery);
                prop_assert!(recovery.pending_records as usize <= written - persisted);
                prop_assert!(recovery.pending_records as usize >= written - acked);
                (tx, rx) = (t, r);
                window = (persisted, acked);
                next_read = None;
            }
        }
    }
    // Everything not acknowledged is still there, in order.
    while written > next_read.unwrap_or(window.1) {
        read_some(&mut rx, 50, &mut next_read, window, &mut batches).await?;
    }
    prop_assert!(next_read.unwrap_or(window.1) == written);
    drop(tx);
    drop(rx);
    drop(batches);
    let _ = reopen(dir.path(), &config).await;
    let mut outcomes = 0;
    while let Ok(o) = src_rx.try_recv() {
        prop_assert_eq!(o.status, EventStatus::Delivered);
        outcomes += 1;
    }
    prop_assert_eq!(outcomes, writes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn never_loses_nor_replays_acknowledged_events(ops in prop::collection::vec(op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_model(ops))?;
    }
}

/// Throughput of write + read + acknowledge with ~350-byte events. Run with
/// `cargo test -p auditrail-core --release -- --ignored disk_buffer_throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn disk_buffer_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let config = DiskBufferConfig {
        fsync_interval: Interval(Duration::from_millis(100)),
        ..DiskBufferConfig::default()
    };
    let (tx, mut rx, _) = reopen(dir.path(), &config).await;
    let pad = "x".repeat(200);
    let template: Vec<Event> = (0..1000)
        .map(|i| {
            let mut e = Event::parse(
                Bytes::from(format!(
                    r#"{{"event":"session.start","uid":"{i:08}","code":"T2000I","time":"2017-02-03T06:54:05.000Z","user":"alice@example.com","pad":"{pad}"}}"#
                )),
                1 << 20,
            )
            .unwrap();
            e.set_source(Arc::from("teleport"));
            e
        })
        .collect();
    println!("event size {} bytes", template[0].raw().len());
    let total = 1_000_000usize;
    let start = std::time::Instant::now();
    let producer = tokio::spawn(async move {
        for _ in 0..total / 1000 {
            let batch = template.clone();
            tx.reserve(&batch).await.send(batch);
        }
    });
    let mut got = 0;
    let mut out = Vec::with_capacity(2000);
    while got < total {
        out.clear();
        got += rx.recv_many(&mut out, 2000).await;
        for e in out.drain(..) {
            e.finish(EventStatus::Delivered);
        }
    }
    producer.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{total} events in {secs:.2}s: {:.0} events/s",
        total as f64 / secs
    );
}

/// Environment variable naming the directory of [`crash_child`].
const CRASH_DIR: &str = "AUDITRAIL_TEST_CRASH_DIR";

/// Runs in a child process started by [`abort_at_every_step_loses_nothing`]: writes, reads and acknowledges in
/// rounds, logging each step durably, until the crash hook aborts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn crash_child() {
    use std::io::Write as _;
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return; // run directly: nothing to do
    };
    let dir = PathBuf::from(dir);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
        .unwrap();
    let mut note = |what: &str, n: usize| {
        writeln!(log, "{what} {n}").unwrap();
        log.sync_data().unwrap();
    };
    let buffer = dir.join("buffer");
    let config = cfg((record_len(&ev(0)) * 7) as u64);
    let (tx, mut rx, _) = reopen(&buffer, &config).await;
    let (src_tx, mut src_rx) = mpsc::unbounded_channel();
    for round in 0..40usize {
        write(&tx, round * 10..round * 10 + 10, round as u64, &src_tx).await;
        let o = src_rx.recv().await.unwrap();
        assert_eq!(o.status, EventStatus::Delivered);
        note("delivered", round * 10 + 10);
        let batches = read(&mut rx, 10, 10).await;
        note("acking", round * 10 + 10);
        ack(batches);
        rx.flush_acks().await;
        note("persisted", round * 10 + 10);
    }
    note("done", 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_at_every_step_loses_nothing() {
    let exe = std::env::current_exe().unwrap();
    for point in super::CRASH_POINTS {
        for after in [1, 4] {
            let dir = tempfile::tempdir().unwrap();
            let status = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "buffer::disk::tests::crash_child",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env(CRASH_DIR, dir.path())
                .env("AUDITRAIL_CRASH_AT", point)
                .env("AUDITRAIL_CRASH_AFTER", after.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(
                !status.success(),
                "{point} x{after}: the child did not crash"
            );
            let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
            assert!(
                !log.contains("done"),
                "{point} x{after}: the hook never fired"
            );
            let last = |what: &str| {
                log.lines()
                    .filter_map(|l| l.strip_prefix(what))
                    .filter_map(|n| n.trim().parse::<usize>().ok())
                    .max()
                    .unwrap_or(0)
            };
            let (delivered, acking, persisted) =
                (last("delivered "), last("acking "), last("persisted "));
            let config = cfg((record_len(&ev(0)) * 7) as u64);
            let (_tx, mut rx, recovery) = reopen(&dir.path().join("buffer"), &config).await;
            assert!(!recovery.is_damaged(), "{point} x{after}: {recovery:?}");
            let pending = recovery.pending_records as usize;
            let uids: Vec<usize> = read(&mut rx, pending, 1000)
                .await
                .iter()
                .flatten()
                .map(index)
                .collect();
            assert!(nothing_more(&mut rx).await);
            let first = uids.first().copied().unwrap_or(acking);
            assert!(
                persisted <= first && first <= acking.max(persisted),
                "{point} x{after}: replay starts at {first}, persisted {persisted}, acking {acking}"
            );
            assert_eq!(
                uids,
                (first..first + pending).collect::<Vec<_>>(),
                "{point} x{after}: not contiguous"
            );
            assert!(
                first + pending >= delivered,
                "{point} x{after}: delivered events lost ({} < {delivered})",
                first + pending
            );
        }
    }
}
