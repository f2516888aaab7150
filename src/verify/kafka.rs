//! Reading events back from a Kafka topic for `auditrail verify --kafka BROKERS --topic T`.
//!
//! Every partition of the topic is read from its beginning up to the high watermark it had when verify
//! started: records produced while verify runs are left for the next run, so a busy topic still gives a
//! finished answer. The partitions are assigned directly (no group membership, no rebalance) and no offset
//! is ever committed, so reading leaves no trace in the cluster and cannot move a real consumer group.
//!
//! Each record value is one event, verified as stored. Partitions interleave in any order: the verifier
//! orders a stream by `seq`, not by where it was stored. A record without a value (a tombstone, or a
//! producer's null) is counted as unreadable with its place, `kafka:TOPIC/PARTITION@OFFSET`.
//!
//! A cluster that does not answer, a missing topic, or a read that stops making progress is an input error
//! within a bounded time (see [`METADATA_TIMEOUT`] and [`STALL_TIMEOUT`]), never a hang.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use auditrail_core::integrity::verify::{Item, Verifier};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

/// How long the cluster has to describe the topic and its watermarks before verify gives up.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading may go without a single record or end-of-partition before verify gives up.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Records handed to the verifier at once (more when their values are small, see [`BATCH_BYTES`]).
const BATCH_RECORDS: usize = 5000;
/// Bytes of record values handed to the verifier at once.
const BATCH_BYTES: usize = 8 << 20;

/// Keeps the latest error librdkafka reported, so that a failure names its cause ("Connection refused",
/// "Name or service not known") and not only a timeout.
#[derive(Default)]
struct Context {
    last_error: Mutex<Option<String>>,
}

impl Context {
    fn remember(&self, what: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(what);
        }
    }

    /// `"; last error: …"`, or nothing when librdkafka reported none.
    fn last_error(&self) -> String {
        match self.last_error.lock().ok().and_then(|l| l.clone()) {
            Some(e) => format!("; last error: {e}"),
            None => String::new(),
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, _facility: &str, message: &str) {
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
        ) {
            self.remember(message.to_string());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // "N/N brokers are down" follows the connection error that says why; keep the why.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        self.remember(if reason.is_empty() {
            error.to_string()
        } else {
            reason.to_string()
        });
    }
}

impl ConsumerContext for Context {}

type Reader = BaseConsumer<Context>;

/// Reads every record of `topic` at `brokers` (a `host:port[,host:port…]` bootstrap list), up to each
/// partition's high watermark at the start, into `verifier`; returns how many records were read.
pub fn feed(verifier: &mut Verifier, brokers: &str, topic: &str) -> anyhow::Result<u64> {
    anyhow::ensure!(
        !brokers.trim().is_empty(),
        "--kafka: the broker list is empty (expected host:port[,host:port…])"
    );
    anyhow::ensure!(!topic.is_empty(), "--topic: the topic name is empty");
    let place = format!("Kafka topic {topic:?} at {brokers}");
    let consumer = connect(brokers).with_context(|| format!("cannot read {place}"))?;
    let ends = end_offsets(&consumer, topic).map_err(|e| explain(&consumer, &place, &e))?;
    read(verifier, &consumer, topic, &ends).map_err(|e| explain(&consumer, &place, &e))
}

/// The input error for a failed read: where, what failed, and the latest error librdkafka reported.
fn explain(consumer: &Reader, place: &str, e: &anyhow::Error) -> anyhow::Error {
    // Serve librdkafka's queued error events: they arrive through polling only.
    let _ = consumer.poll(Duration::from_millis(100));
    anyhow::anyhow!(
        "cannot read {place}: {e:#}{}",
        consumer.context().last_error()
    )
}

fn connect(brokers: &str) -> anyhow::Result<Reader> {
    // A group id of its own: nothing is committed under it, and it can never be a real group's.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let group = format!("auditrail-verify-{}-{nanos}", std::process::id());
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "auditrail-verify")
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false")
        .set("auto.offset.reset", "earliest")
        // End-of-partition events end the read of a partition whose last offsets hold no record (transaction
        // markers, compacted records): no record at high watermark − 1 would ever come.
        .set("enable.partition.eof", "true")
        .set_log_level(RDKafkaLogLevel::Error)
        .create_with_context(Context::default())
        .map_err(anyhow::Error::from)
}

/// Each partition of `topic` with the offset reading stops at: its high watermark now, or `None` for a
/// partition with nothing to read.
fn end_offsets(consumer: &Reader, topic: &str) -> anyhow::Result<Vec<(i32, Option<i64>)>> {
    let deadline = Instant::now() + METADATA_TIMEOUT;
    let partitions = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let metadata = consumer.fetch_metadata(Some(topic), left).map_err(|e| {
            anyhow::anyhow!(
                "no broker answered within {} s: {e}",
                METADATA_TIMEOUT.as_secs()
            )
        })?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            anyhow::bail!("the brokers did not describe the topic");
        };
        match t.error().map(RDKafkaErrorCode::from) {
            None => {}
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                anyhow::bail!("the topic does not exist")
            }
            Some(e) if Instant::now() >= deadline => {
                anyhow::bail!("the topic is not readable: {e}")
            }
            // A topic being created or changing leaders answers with a passing error.
            Some(_) => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        }
        anyhow::ensure!(!t.partitions().is_empty(), "the topic has no partitions");
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        break ids;
    };
    partitions
        .into_iter()
        .map(|p| {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            let (low, high) = consumer
                .fetch_watermarks(topic, p, left)
                .with_context(|| format!("cannot get the offsets of partition {p}"))?;
            Ok((p, (high > low).then_some(high)))
        })
        .collect()
}

/// Record values of one batch, copied out of librdkafka's buffers so that polling can go on.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    records: Vec<(std::ops::Range<usize>, String)>,
}

impl Batch {
    fn push(&mut self, value: &[u8], label: String) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.records.push((start..self.bytes.len(), label));
    }

    fn full(&self) -> bool {
        self.records.len() >= BATCH_RECORDS || self.bytes.len() >= BATCH_BYTES
    }

    fn flush(&mut self, verifier: &mut Verifier) {
        if self.records.is_empty() {
            return;
        }
        let items: Vec<Item<'_>> = self
            .records
            .iter()
            .map(|(range, label)| Item {
                text: &self.bytes[range.clone()],
                source: label,
                line: 0,
            })
            .collect();
        verifier.feed_items(&items);
        self.bytes.clear();
        self.records.clear();
    }
}

fn read(
    verifier: &mut Verifier,
    consumer: &Reader,
    topic: &str,
    ends: &[(i32, Option<i64>)],
) -> anyhow::Result<u64> {
    // Partitions still being read, with the offset they end at.
    let mut pending: Vec<(i32, i64)> = ends
        .iter()
        .filter_map(|&(p, end)| end.map(|e| (p, e)))
        .collect();
    if pending.is_empty() {
        return Ok(0);
    }
    let mut assignment = TopicPartitionList::new();
    for &(p, _) in &pending {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .context("cannot build the partition assignment")?;
    }
    consumer
        .assign(&assignment)
        .context("cannot assign the partitions")?;

    let mut batch = Batch::default();
    let mut read = 0u64;
    let mut progress = Instant::now();
    while !pending.is_empty() {
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            if progress.elapsed() >= STALL_TIMEOUT {
                batch.flush(verifier);
                let left: Vec<String> = pending.iter().map(|(p, _)| p.to_string()).collect();
                anyhow::bail!(
                    "no record came for {} s; partitions not read to their end: {}",
                    STALL_TIMEOUT.as_secs(),
                    left.join(", ")
                );
            }
            continue;
        };
        progress = Instant::now();
        let finished = match polled {
            Ok(msg) => {
                let (p, offset) = (msg.partition(), msg.offset());
                let Some(&(_, end)) = pending.iter().find(|(q, _)| *q == p) else {
                    // A partition already read to its end; fetching it stops with the pause below.
                    continue;
                };
                if offset < end {
                    read += 1;
                    let label = format!("kafka:{topic}/{p}@{offset}");
                    match msg.payload() {
                        Some(value) => batch.push(value, label),
                        None => verifier.note_unreadable(&label, 0, "the record has no value"),
                    }
                    if batch.full() {
                        batch.flush(verifier);
                    }
                }
                (offset + 1 >= end).then_some(p)
            }
            // The partition's end now, at or past where it ended at the start.
            Err(KafkaError::PartitionEOF(p)) => Some(p),
            Err(e) => {
                // librdkafka retries by itself; a failure that lasts shows as a stall, with this as its cause.
                consumer.context().remember(e.to_string());
                None
            }
        };
        if let Some(p) = finished {
            if let Some(i) = pending.iter().position(|(q, _)| *q == p) {
                pending.swap_remove(i);
                let mut done = TopicPartitionList::new();
                done.add_partition(topic, p);
                let _ = consumer.pause(&done);
            }
        }
    }
    batch.flush(verifier);
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_kept_and_the_all_brokers_down_summary_is_not() {
        let c = Context::default();
        assert_eq!(c.last_error(), "");
        c.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused",
        );
        c.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        c.log(RDKafkaLogLevel::Info, "CONNECT", "connecting");
        assert_eq!(
            c.last_error(),
            "; last error: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
        );
    }

    #[test]
    fn batches_fill_by_records_or_by_bytes() {
        let mut b = Batch::default();
        for i in 0..BATCH_RECORDS - 1 {
            b.push(b"{}", format!("kafka:t/0@{i}"));
        }
        assert!(!b.full());
        b.push(b"{}", "kafka:t/0@last".into());
        assert!(b.full());
        let mut b = Batch::default();
        b.push(&vec![b' '; BATCH_BYTES], "kafka:t/0@0".into());
        assert!(b.full());
        assert_eq!(b.records[0].0, 0..BATCH_BYTES);
    }

    #[test]
    fn an_empty_broker_list_or_topic_is_refused_before_any_connection() {
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("auditrail.pub");
        auditrail_core::integrity::keys::keygen(&dir.path().join("auditrail.key"), &public)
            .unwrap();
        let mut v = Verifier::new(auditrail_core::integrity::keys::load_public(&public).unwrap());
        let e = feed(&mut v, " ", "audit").unwrap_err().to_string();
        assert!(e.contains("--kafka: the broker list is empty"), "{e}");
        let e = feed(&mut v, "127.0.0.1:9092", "").unwrap_err().to_string();
        assert!(e.contains("--topic: the topic name is empty"), "{e}");
    }
}
