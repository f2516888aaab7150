//! The consumer thread: reads records, turns them into events, hands them to the fan-out, and commits per
//! partition what every sink has done; the rebalance callbacks that drain and commit a partition before it is
//! given up; librdkafka's statistics as the lag gauge.
//!
//! librdkafka's consumer is driven by `poll`, which also runs the rebalance callbacks; it must go on being
//! called while the sinks are slow (or the group would count this member dead after `max.poll.interval.ms`),
//! so it runs on a thread of its own that never blocks on the pipeline: a full buffer pauses every partition
//! (fetching stops, nothing piles up here) and polling goes on until there is room again.
//!
//! What is read is noted in its partition's [`Tracker`] at once; events get their acknowledgement batch (one
//! per partition per hand-over) when they are handed to the fan-out; a batch's outcome marks its offsets
//! done, or, when a sink could not keep an event (`Failed`), seeks the partition back to read it again. A
//! malformed record is dead-lettered with its topic, partition and offset and is done at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use auditrail_core::{AckBatch, BatchOutcome, Event, Fanout, InvalidEvent};
use bytes::Bytes;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::config::KafkaSourceConfig;
use super::offsets::Tracker;
use crate::sources::ingest::{Ingest, Rejected};

/// Most events handed to the fan-out at once.
const CHUNK: usize = 2_000;
/// How long one hand-over waits for room before the partitions are paused.
const SEND_WAIT: Duration = Duration::from_millis(50);
/// How long `poll` blocks when there is nothing else to do.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long a synchronous commit or committed-offset lookup may take.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the source waits at shutdown for its sinks to finish what it handed them.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(60);

/// A partition: (topic, partition).
type Key = (Arc<str>, i32);

/// An acknowledgement batch: whose offsets it carries.
struct Batch {
    key: Key,
    offsets: Vec<i64>,
}

/// What the loop and the rebalance callbacks share (both run on the consumer thread; the lock is never held
/// across `poll`).
pub struct State {
    trackers: HashMap<Key, Tracker>,
    batches: HashMap<u64, Batch>,
    next_batch: u64,
    acks_tx: mpsc::UnboundedSender<BatchOutcome>,
    acks: mpsc::UnboundedReceiver<BatchOutcome>,
    /// Read, not yet handed to the fan-out: (partition, offset, event, whether it has its batch already).
    pending: VecDeque<(Key, i64, Event, bool)>,
    /// Records read and not done, over all partitions.
    in_flight: usize,
    /// Partitions to read again from an offset (a sink failed an event).
    rewinds: Vec<(Key, i64)>,
    /// Whether every partition is paused (backpressure).
    paused: bool,
    topics: HashMap<String, Arc<str>>,
}

impl State {
    fn topic(&mut self, t: &str) -> Arc<str> {
        if let Some(a) = self.topics.get(t) {
            return a.clone();
        }
        let a: Arc<str> = t.into();
        self.topics.insert(t.to_string(), a.clone());
        a
    }

    /// Applies the batch outcomes that came in.
    fn take_acks(&mut self) {
        while let Ok(o) = self.acks.try_recv() {
            let Some(b) = self.batches.remove(&o.id) else {
                continue;
            };
            let Some(t) = self.trackers.get_mut(&b.key) else {
                continue;
            };
            if o.status.is_final() {
                for off in b.offsets {
                    if t.done(off) {
                        self.in_flight = self.in_flight.saturating_sub(1);
                    }
                }
            } else if let Some(&first) = b.offsets.iter().min() {
                self.rewinds.push((b.key, first));
            }
        }
    }

    /// Forgets a partition's records from `offset` on (they are read again).
    fn rewind(&mut self, key: &Key, offset: i64) {
        if let Some(t) = self.trackers.get_mut(key) {
            let open = t.rewind(offset);
            self.in_flight = self.in_flight.saturating_sub(open);
        }
        self.pending
            .retain(|(k, o, _, _)| !(k == key && *o >= offset));
    }

    fn new_batch(&mut self, key: Key, offsets: Vec<i64>) -> AckBatch {
        let id = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(id, Batch { key, offsets });
        AckBatch::new(id, self.acks_tx.clone())
    }
}

/// The source's counters and gauges.
#[derive(Clone)]
pub struct Metrics {
    commits_ok: metrics::Counter,
    commits_failed: metrics::Counter,
    assigns: metrics::Counter,
    revokes: metrics::Counter,
    rewinds: metrics::Counter,
    paused: metrics::Gauge,
    in_flight: metrics::Gauge,
}

impl Metrics {
    fn new(source: &str) -> Metrics {
        let s = source.to_string();
        let m = Metrics {
            commits_ok: metrics::counter!("auditrail_source_kafka_commits_total", "source" => s.clone(), "result" => "ok"),
            commits_failed: metrics::counter!("auditrail_source_kafka_commits_total", "source" => s.clone(), "result" => "error"),
            assigns: metrics::counter!("auditrail_source_kafka_rebalances_total", "source" => s.clone(), "kind" => "assign"),
            revokes: metrics::counter!("auditrail_source_kafka_rebalances_total", "source" => s.clone(), "kind" => "revoke"),
            rewinds: metrics::counter!("auditrail_source_kafka_rewinds_total", "source" => s.clone()),
            paused: metrics::gauge!("auditrail_source_kafka_paused", "source" => s.clone()),
            in_flight: metrics::gauge!("auditrail_source_kafka_in_flight_events", "source" => s),
        };
        for c in [
            &m.commits_ok,
            &m.commits_failed,
            &m.assigns,
            &m.revokes,
            &m.rewinds,
        ] {
            c.increment(0);
        }
        m
    }
}

/// The consumer's context: logging, statistics (lag) and the rebalance callbacks.
pub struct Context {
    source: Arc<str>,
    state: Arc<Mutex<State>>,
    drain_timeout: Duration,
    metrics: Metrics,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(source = %self.source, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(source = %self.source, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(source = %self.source, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(source = %self.source, facility = fac, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(source = %self.source, error = %error, reason, "Kafka client error");
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (&partition, p) in &t.partitions {
                if partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!("auditrail_source_kafka_lag", "source" => self.source.to_string(), "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        self.metrics.revokes.increment(1);
        let mut st = lock(&self.state);
        let keys: Vec<Key> = tpl
            .elements()
            .iter()
            .map(|e| (st.topic(e.topic()), e.partition()))
            .collect();
        // Stop fetching them; what was read and not handed over is left for their next owner.
        let _ = consumer.pause(tpl);
        st.pending.retain(|(k, _, _, _)| !keys.contains(k));
        if consumer.assignment_lost() {
            tracing::warn!(source = %self.source, partitions = keys.len(), "partitions lost (the group counted this member gone); their next owner reads again from the last commit");
        } else {
            // Wait, bounded, for what the sinks still have of them, then commit them, and only them.
            let deadline = Instant::now() + self.drain_timeout;
            loop {
                st.take_acks();
                let open: usize = keys
                    .iter()
                    .filter_map(|k| st.trackers.get(k))
                    .map(Tracker::in_flight)
                    .sum();
                if open == 0 || Instant::now() >= deadline {
                    if open > 0 {
                        tracing::warn!(source = %self.source, records = open, timeout = ?self.drain_timeout, "partitions given up with records still in flight; their next owner reads them again");
                    }
                    break;
                }
                drop(st);
                std::thread::sleep(Duration::from_millis(5));
                st = lock(&self.state);
            }
            commit(
                consumer,
                &mut st,
                Some(&keys),
                CommitMode::Sync,
                &self.metrics,
                &self.source,
            );
        }
        for k in &keys {
            if let Some(t) = st.trackers.remove(k) {
                st.in_flight = st.in_flight.saturating_sub(t.in_flight());
            }
        }
        st.batches.retain(|_, b| !keys.contains(&b.key));
        tracing::info!(source = %self.source, partitions = ?keys.iter().map(|(t, p)| format!("{t}/{p}")).collect::<Vec<_>>(), "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            if let Rebalance::Error(e) = rebalance {
                tracing::warn!(source = %self.source, error = %e, "rebalance error");
            }
            return;
        };
        self.metrics.assigns.increment(1);
        // Where the group is for each partition: the tracker never commits behind it.
        let committed = consumer
            .committed_offsets((*tpl).clone(), COMMIT_TIMEOUT)
            .ok();
        let mut st = lock(&self.state);
        let mut names = Vec::new();
        for e in tpl.elements() {
            let key = (st.topic(e.topic()), e.partition());
            let c = committed
                .as_ref()
                .and_then(|c| c.find_partition(e.topic(), e.partition()))
                .and_then(|p| match p.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            names.push(format!(
                "{}/{} from {}",
                key.0,
                key.1,
                c.map_or("the reset position".to_string(), |o| o.to_string())
            ));
            st.trackers.insert(key, Tracker::new(c));
        }
        // A partition's pause outlives its assignment in librdkafka: one paused when it was revoked (to stop
        // fetching it) would stay paused when it comes back.
        let _ = if st.paused {
            consumer.pause(tpl)
        } else {
            consumer.resume(tpl)
        };
        tracing::info!(source = %self.source, partitions = ?names, "partitions assigned");
    }
}

/// Commits the committable position of the partitions `only` (all when `None`).
fn commit(
    consumer: &BaseConsumer<Context>,
    st: &mut State,
    only: Option<&[Key]>,
    mode: CommitMode,
    m: &Metrics,
    source: &str,
) {
    let mut tpl = TopicPartitionList::new();
    let mut positions = Vec::new();
    for (k, t) in &st.trackers {
        if only.is_some_and(|o| !o.contains(k)) {
            continue;
        }
        if let Some(p) = t.committable() {
            let _ = tpl.add_partition_offset(&k.0, k.1, Offset::Offset(p));
            positions.push((k.clone(), p));
        }
    }
    if positions.is_empty() {
        return;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            m.commits_ok.increment(1);
            for (k, p) in positions {
                if let Some(t) = st.trackers.get_mut(&k) {
                    t.committed(p);
                }
            }
        }
        Err(e) => {
            m.commits_failed.increment(1);
            tracing::warn!(source, error = %e, "committing offsets failed; retried at the next commit");
        }
    }
}

/// Everything the consumer thread needs.
pub struct Running {
    /// The consumer.
    pub consumer: BaseConsumer<Context>,
    /// Shared with the context.
    pub state: Arc<Mutex<State>>,
    /// Metrics, shared with the context.
    pub metrics: Metrics,
}

/// Creates and subscribes the consumer.
pub fn start(source: &Arc<str>, config: &KafkaSourceConfig) -> Result<Running, String> {
    let mut cc = rdkafka::ClientConfig::new();
    let settings = config.client_settings();
    for (k, v) in &settings {
        cc.set(k, v);
    }
    cc.set_log_level(RDKafkaLogLevel::Warning);
    let (acks_tx, acks) = mpsc::unbounded_channel();
    let state = Arc::new(Mutex::new(State {
        trackers: HashMap::new(),
        batches: HashMap::new(),
        next_batch: 0,
        acks_tx,
        acks,
        pending: VecDeque::new(),
        in_flight: 0,
        rewinds: Vec::new(),
        paused: false,
        topics: HashMap::new(),
    }));
    let metrics = Metrics::new(source);
    let context = Context {
        source: source.clone(),
        state: state.clone(),
        drain_timeout: config.drain_timeout.0,
        metrics: metrics.clone(),
    };
    let consumer: BaseConsumer<Context> = cc
        .create_with_context(context)
        .map_err(|e| redact(&e.to_string(), &settings))?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
    Ok(Running {
        consumer,
        state,
        metrics,
    })
}

/// `text` with the value of every sensitive setting replaced.
fn redact(text: &str, settings: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (k, v) in settings {
        let k = k.to_ascii_lowercase();
        if ["password", "secret", "key", "token", "jaas"]
            .iter()
            .any(|w| k.contains(w))
            && !v.is_empty()
        {
            out = out.replace(v.as_str(), "<redacted>");
        }
    }
    out
}

/// The consumer thread's loop, until `stopping` says so; then the final drain and commit.
pub fn run(
    r: Running,
    config: KafkaSourceConfig,
    fanout: Fanout,
    ingest: Arc<Ingest>,
    runtime: tokio::runtime::Handle,
    stopping: impl Fn() -> bool,
) {
    let Running {
        consumer,
        state,
        metrics,
    } = r;
    let source = ingest.source().clone();
    let mut last_commit = Instant::now();
    let mut rejected = Vec::new();
    while !stopping() {
        let mut st = lock(&state);
        st.take_acks();
        for (key, offset) in std::mem::take(&mut st.rewinds) {
            if !st.trackers.contains_key(&key) {
                continue;
            }
            metrics.rewinds.increment(1);
            tracing::warn!(source = %source, topic = %key.0, partition = key.1, offset, "a sink could not keep events; reading the partition again from there");
            st.rewind(&key, offset);
            if let Err(e) = consumer.seek(&key.0, key.1, Offset::Offset(offset), COMMIT_TIMEOUT) {
                tracing::error!(source = %source, topic = %key.0, partition = key.1, error = %e, "cannot seek back; the records are read again after the next rebalance or restart");
            }
        }
        if last_commit.elapsed() >= config.commit_interval.0 {
            commit(
                &consumer,
                &mut st,
                None,
                CommitMode::Sync,
                &metrics,
                &source,
            );
            last_commit = Instant::now();
        }
        // Hand over what was read, one acknowledgement batch per partition.
        let n = st.pending.len().min(CHUNK);
        let mut meta: Vec<(Key, i64)> = Vec::with_capacity(n);
        let mut events = Vec::with_capacity(n);
        let mut batched = Vec::with_capacity(n);
        if n > 0 {
            let mut by_partition: HashMap<Key, Vec<i64>> = HashMap::new();
            let taken: Vec<(Key, i64, Event, bool)> = st.pending.drain(..n).collect();
            for (k, o, e, has) in taken {
                // An event given back by an earlier hand-over already has its batch.
                if !has {
                    by_partition.entry(k.clone()).or_default().push(o);
                }
                meta.push((k, o));
                events.push(e);
                batched.push(has);
            }
            let batches: HashMap<Key, AckBatch> = by_partition
                .into_iter()
                .map(|(k, offsets)| {
                    let b = st.new_batch(k.clone(), offsets);
                    (k, b)
                })
                .collect();
            for (((k, _), e), has) in meta.iter().zip(events.iter_mut()).zip(&batched) {
                if !has {
                    e.set_finalizer(batches[k].finalizer());
                }
            }
        }
        drop(st);
        if !events.is_empty() {
            if let Err(unsent) = runtime.block_on(fanout.send_timeout(events, SEND_WAIT)) {
                // The tail was not sent: back to the front, in order, keeping its batch.
                let mut st = lock(&state);
                let skip = meta.len() - unsent.len();
                for ((k, o), e) in meta.drain(skip..).zip(unsent).rev() {
                    st.pending.push_front((k, o, e, true));
                }
            }
        }
        // Backpressure: pause everything while the sinks have enough, resume below half of it.
        let mut st = lock(&state);
        let full = st.pending.len() >= CHUNK || st.in_flight >= config.max_in_flight_events;
        let relieved = st.pending.is_empty() && st.in_flight < config.max_in_flight_events / 2 + 1;
        if full && !st.paused {
            st.paused = true;
            if let Ok(a) = consumer.assignment() {
                let _ = consumer.pause(&a);
            }
            metrics.paused.set(1.0);
            tracing::debug!(source = %source, in_flight = st.in_flight, "paused every partition: the sinks are behind");
        } else if relieved && st.paused {
            st.paused = false;
            if let Ok(a) = consumer.assignment() {
                let _ = consumer.resume(&a);
            }
            metrics.paused.set(0.0);
            tracing::debug!(source = %source, "resumed every partition");
        }
        metrics.in_flight.set(st.in_flight as f64);
        let wait = if st.pending.is_empty() {
            POLL_WAIT
        } else {
            Duration::ZERO
        };
        drop(st);
        // Read: the first poll may wait, the rest take what is already fetched.
        let mut read = 0;
        let mut wait = wait;
        while read < CHUNK {
            match consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(source = %source, error = %e, "Kafka consumer error");
                    break;
                }
                Some(Ok(m)) => {
                    take(&m, &state, &ingest, &mut rejected);
                    read += 1;
                }
            }
            wait = Duration::ZERO;
        }
        if !rejected.is_empty() {
            ingest.reject(rejected.iter());
            rejected.clear();
        }
    }
    // Shutdown: what was not handed over is left for the next start; what was is waited for, then committed.
    {
        let mut st = lock(&state);
        st.pending.clear();
    }
    drop(fanout);
    let deadline = Instant::now() + SHUTDOWN_DRAIN;
    loop {
        let mut st = lock(&state);
        st.take_acks();
        if st.batches.is_empty() || Instant::now() >= deadline {
            commit(
                &consumer,
                &mut st,
                None,
                CommitMode::Sync,
                &metrics,
                &source,
            );
            break;
        }
        drop(st);
        // Keep the group membership alive while the sinks finish.
        let _ = consumer.poll(Duration::from_millis(10));
    }
    // Dropping the consumer leaves the group (its revoke callback finds nothing left to wait for).
    drop(consumer);
    tracing::info!(source = %source, "kafka source stopped");
}

/// One record: an event for the pending queue, or a dead letter (its offset done at once).
fn take(
    m: &BorrowedMessage<'_>,
    state: &Mutex<State>,
    ingest: &Ingest,
    rejected: &mut Vec<Rejected>,
) {
    let offset = m.offset();
    let mut st = lock(state);
    let key = (st.topic(m.topic()), m.partition());
    let Some(tracker) = st.trackers.get_mut(&key) else {
        // A record of a partition no longer assigned: its next owner reads it.
        return;
    };
    let open = tracker.read(offset);
    st.in_flight = st.in_flight.saturating_sub(open);
    let parsed = match m.payload() {
        None => Err((
            InvalidEvent::NotJson("the record has no value".into()),
            Bytes::new(),
        )),
        Some(v) if v.len() > ingest.max_line() => Err((
            InvalidEvent::TooLong {
                len: v.len(),
                max: ingest.max_line(),
            },
            Bytes::copy_from_slice(&v[..ingest.max_line().min(4096)]),
        )),
        Some(v) => {
            let raw = Bytes::copy_from_slice(v);
            ingest.parse(raw.clone()).map_err(|e| (e, raw))
        }
    };
    match parsed {
        Ok(e) => {
            ingest.count_totals(1, e.raw().len() as u64);
            ingest.observe(std::slice::from_ref(&e));
            st.in_flight += 1;
            st.pending.push_back((key, offset, e, false));
        }
        Err((error, raw)) => {
            rejected.push(Rejected {
                location: format!("kafka:{}/{}@{}", key.0, key.1, offset),
                error,
                raw,
            });
            if let Some(t) = st.trackers.get_mut(&key) {
                t.done(offset);
            }
        }
    }
}
