//! The Kafka sink's loop: buffer → records → librdkafka → delivery reports → acks.
//!
//! Each event is handed to librdkafka as one record (its bytes exactly, keyed, with headers) and finished only
//! when its delivery report comes: `Delivered` once written with acks=all, dead-lettered when the cluster
//! refuses it for what it is (too large), and otherwise kept and sent again after a backoff — a timed-out or
//! purged record is never dropped. At most `max_in_flight_events` wait for their report; the buffer is not
//! read while they do, so a cluster that is away costs bounded memory and backpressure reaches the source.
//!
//! A fatal producer error (librdkafka's idempotence guarantees broken, e.g. an out-of-order sequence the
//! broker will not accept) makes the loop purge the producer, take back every record it held as failed, and
//! build a new producer (a new producer id, fresh sequences) that sends them again: logged, counted in
//! `auditrail_sink_kafka_producer_rebuilds_total`, never a hang.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::buffer::BufferReceiver;
use auditrail_core::retry::Backoff;
use auditrail_core::{BoxError, Event, EventStatus, SinkContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::config::KafkaSinkConfig;
use super::producer::{self, Built, Report};
use super::record::{parts, Topic};

/// Most events taken from the buffer at once.
const READ_CHUNK: usize = 10_000;
/// How long a producer being replaced gets to hand back what it held.
const PURGE_FLUSH: Duration = Duration::from_secs(5);
/// Wait before sending again after librdkafka's queue was full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// The sink's state between loop turns.
struct Driver {
    config: KafkaSinkConfig,
    cx: SinkContext,
    topic: Topic,
    built: Option<Built>,
    reports_tx: mpsc::UnboundedSender<Report>,
    wake: Arc<Notify>,
    /// Records handed to librdkafka and not yet reported on.
    outstanding: usize,
    /// Events to send again, oldest first, and when.
    retry: VecDeque<Event>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    in_contact: bool,
    rebuilds: metrics::Counter,
    in_flight: metrics::Gauge,
}

/// Runs the sink until `input` is closed and every event has its outcome.
pub async fn run(
    config: KafkaSinkConfig,
    mut input: BufferReceiver,
    cx: SinkContext,
) -> Result<(), BoxError> {
    let topic = Topic::parse(&config.topic)?;
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let wake = Arc::new(Notify::new());
    let name = cx.name.to_string();
    let rebuilds =
        metrics::counter!("auditrail_sink_kafka_producer_rebuilds_total", "sink" => name.clone());
    rebuilds.increment(0);
    let in_flight = metrics::gauge!("auditrail_sink_kafka_in_flight_events", "sink" => name);
    let backoff = Backoff::new(config.retry_initial_backoff.0, config.retry_max_backoff.0);
    let built = producer::build(&cx.name, &config, reports_tx.clone(), wake.clone())?;
    let mut d = Driver {
        config,
        cx,
        topic,
        built: Some(built),
        reports_tx,
        wake,
        outstanding: 0,
        retry: VecDeque::new(),
        retry_at: None,
        backoff,
        in_contact: false,
        rebuilds,
        in_flight,
    };
    d.probe();
    let mut incoming = Vec::with_capacity(READ_CHUNK);
    let mut input_open = true;
    loop {
        if d.fatal() {
            d.rebuild().await;
            continue;
        }
        if !d.retry.is_empty() && d.retry_at.is_none_or(|t| t <= Instant::now()) {
            d.retry_at = None;
            let again: Vec<Event> = d.retry.drain(..).collect();
            d.send_all(again);
        }
        if !input_open && d.outstanding == 0 && d.retry.is_empty() {
            break;
        }
        let room = d
            .config
            .max_in_flight_events
            .saturating_sub(d.outstanding)
            .min(READ_CHUNK);
        let read = input_open && room > 0 && d.retry.is_empty();
        let retry_at = d.retry_at;
        let wake = d.wake.clone();
        tokio::select! {
            biased;
            Some(r) = reports.recv() => {
                d.handle(r);
                // Reports come by the thousand; take what is there before looking at anything else.
                while let Ok(r) = reports.try_recv() {
                    d.handle(r);
                }
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {}
            n = input.recv_many(&mut incoming, room), if read => {
                if n == 0 {
                    input_open = false;
                } else {
                    d.send_all(std::mem::take(&mut incoming));
                    incoming.reserve(READ_CHUNK);
                }
            }
        }
        d.in_flight.set(d.outstanding as f64);
    }
    d.in_flight.set(0.0);
    if let Some(b) = d.built.take() {
        let _ = tokio::task::spawn_blocking(move || drop(b)).await;
    }
    Ok(())
}

impl Driver {
    fn fatal(&self) -> bool {
        self.built
            .as_ref()
            .is_none_or(|b| b.fatal.load(Ordering::Acquire))
    }

    /// Asks the cluster for its metadata once, in the background, so that an idle sink says whether it can
    /// reach its cluster.
    fn probe(&self) {
        let status = self.cx.status.clone();
        let name = self.cx.name.clone();
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            // A separate short-lived client: the metadata call blocks, and the producer's own may be busy.
            let mut cc = rdkafka::ClientConfig::new();
            for (k, v) in config.client_settings() {
                cc.set(k, v);
            }
            cc.set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg);
            let probe: Result<rdkafka::producer::BaseProducer, _> = cc.create();
            match probe.map(|p| p.client().fetch_metadata(None, Duration::from_secs(10))) {
                Ok(Ok(_)) => status.running(),
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(sink = %name, error = %e, "cannot reach the Kafka cluster yet; events wait in the buffer");
                    status.error(&format!("cannot reach the Kafka cluster: {e}"));
                }
            }
        });
    }

    /// Hands `events` to librdkafka, in order; what cannot be queued now waits in the retry queue.
    fn send_all(&mut self, events: Vec<Event>) {
        let mut events = events.into_iter();
        while let Some(event) = events.next() {
            if self.built.is_none() {
                self.retry.push_back(event);
                continue;
            }
            let topic = match self.topic.render(&event) {
                Ok(t) => t,
                Err(why) => {
                    let _ = self.cx.reject(vec![(event, "invalid_topic", why)]);
                    continue;
                }
            };
            let p = parts(&event, &self.config.key_field);
            let mut headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header {
                    key: "uid",
                    value: Some(event.uid_raw().as_bytes()),
                })
                .insert(Header {
                    key: "event",
                    value: Some(event.kind().as_bytes()),
                });
            if let Some(s) = &p.server_id {
                headers = headers.insert(Header {
                    key: "server_id",
                    value: Some(s.as_bytes()),
                });
            }
            let raw = event.raw().clone();
            let record =
                BaseRecord::<[u8], [u8], Box<Event>>::with_opaque_to(&topic, Box::new(event))
                    .key(p.key.as_bytes())
                    .payload(&raw[..])
                    .headers(headers);
            let sent = match &self.built {
                Some(b) => b
                    .producer
                    .send(record)
                    .map_err(|(e, record)| (e, *record.delivery_opaque)),
                None => Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::Fatal),
                    *record.delivery_opaque,
                )),
            };
            match sent {
                Ok(()) => self.outstanding += 1,
                Err((e, event)) => match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::QueueFull) => {
                        // librdkafka's queue (bytes) is full: wait for reports, then go on in order.
                        self.retry.push_back(event);
                        self.retry.extend(events.by_ref());
                        self.retry_at
                            .get_or_insert(Instant::now() + QUEUE_FULL_WAIT);
                    }
                    Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                        let message = format!(
                            "{} bytes with key and headers is over message_max_bytes ({}): {e}",
                            raw.len(),
                            self.config.message_max_bytes.0
                        );
                        let _ = self.cx.reject(vec![(event, "message_too_large", message)]);
                    }
                    Some(RDKafkaErrorCode::Fatal) => {
                        if let Some(b) = &self.built {
                            b.fatal.store(true, Ordering::Release);
                        }
                        self.failed(event, &e.to_string());
                    }
                    _ => self.failed(event, &e.to_string()),
                },
            }
        }
    }

    fn handle(&mut self, report: Report) {
        self.outstanding = self.outstanding.saturating_sub(1);
        match report {
            Report::Delivered(event, _partition) => {
                if !self.in_contact {
                    self.in_contact = true;
                    self.cx.status.running();
                }
                self.backoff.reset();
                self.cx.metrics.events.increment(1);
                self.cx.metrics.bytes.increment(event.raw().len() as u64);
                event.finish(EventStatus::Delivered);
            }
            Report::Refused(event, message) => {
                let _ = self.cx.reject(vec![(*event, "message_too_large", message)]);
            }
            Report::Failed(event, message) => self.failed(*event, &message),
        }
    }

    /// An event librdkafka gave back: counted, and sent again after a backoff.
    fn failed(&mut self, event: Event, message: &str) {
        self.cx.metrics.errors.increment(1);
        self.cx.metrics.retries.increment(1);
        if self.in_contact || self.retry.is_empty() {
            tracing::warn!(sink = %self.cx.name, error = message, "a record was not written; it is sent again");
            self.cx.status.error(message);
            self.in_contact = false;
        }
        self.retry.push_back(event);
        if self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff.next_delay(None));
        }
    }

    /// Replaces a producer that failed for good: what it held comes back as failed reports and is sent again
    /// by the new one.
    async fn rebuild(&mut self) {
        if let Some(old) = self.built.take() {
            let why = old
                .producer
                .client()
                .fatal_error()
                .map_or_else(|| "unknown".to_string(), |(c, s)| format!("{c:?}: {s}"));
            tracing::error!(sink = %self.cx.name, error = %why, outstanding = self.outstanding, "the Kafka producer failed for good; taking back its records and building a new producer");
            self.cx
                .status
                .error(&format!("producer failed for good: {why}"));
            self.in_contact = false;
            let _ = tokio::task::spawn_blocking(move || {
                old.producer
                    .purge(PurgeConfig::default().queue().inflight());
                let _ = old.producer.flush(PURGE_FLUSH);
                drop(old);
            })
            .await;
        }
        loop {
            match producer::build(
                &self.cx.name,
                &self.config,
                self.reports_tx.clone(),
                self.wake.clone(),
            ) {
                Ok(b) => {
                    self.built = Some(b);
                    self.rebuilds.increment(1);
                    tracing::warn!(sink = %self.cx.name, "built a new Kafka producer; records it held are sent again");
                    return;
                }
                Err(e) => {
                    let wait = self.backoff.next_delay(None);
                    tracing::error!(sink = %self.cx.name, error = %e, ?wait, "cannot build a Kafka producer; trying again");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
