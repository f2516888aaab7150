//! The driver loop: buffer → batches → bulk requests (at most `concurrency` in flight) → each event's own
//! outcome.
//!
//! A batch is sent when it holds `batch.max_events` events or `batch.max_bytes` bytes, when its oldest event
//! has waited `batch.timeout`, or at once when it holds events to retry. Every document of a response is
//! judged on its own ([`super::response`]): a delivered one (201, or 409 on `create`) is acknowledged
//! upstream right away, a refused one goes to the dead-letter file with the server's reason, and only the
//! ones to retry go back to the front of the next batch. A failed request (connection, timeout, 429, 5xx)
//! puts its whole batch back. Any retry starts a backoff (exponential with full jitter, `Retry-After` as a
//! floor) during which no request is sent; a success ends it.
//!
//! With several endpoints ([`super::pool`]), each request goes to the next node in service; a request that fails
//! because its node failed (no connection, timeout, 5xx) takes that node out and is sent to the next node at
//! once, without a backoff; only when no node is left does the batch wait for the backoff (and for a node to
//! pass its health check).
//!
//! While the sink has not reached its cluster yet and has nothing to send, it probes the cluster (`GET /`,
//! first [`PROBE_AFTER`] after start, then with the retry backoff), so that `/ready` does not wait for the
//! first event.
//!
//! Events held for retry count against the batch being filled, so when the cluster keeps refusing, the sink
//! stops reading, its buffer fills, and backpressure reaches the sources: nothing is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::buffer::BufferReceiver;
use auditrail_core::retry::Backoff;
use auditrail_core::{BoxError, Event, EventStatus, SinkContext};
use bytes::Bytes;
use metrics::{Counter, Gauge};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::config::ElasticsearchSinkConfig;
use super::encoder::Encoder;
use super::pool::Pool;
use super::response::{classify, ItemClass};
use super::service::BulkReply;

/// How long after start an idle sink that has not reached its cluster yet probes it (`GET /`).
pub const PROBE_AFTER: Duration = Duration::from_millis(500);

/// Labels of `auditrail_sink_bulk_requests_total{result}`.
pub const REQUEST_RESULTS: [&str; 6] = [
    "ok",
    "transient_error",
    "auth_error",
    "refused",
    "unexpected_status",
    "bad_response",
];

/// Dead-letter reason of a single event whose bulk request the server refused as a whole (400/413).
pub const REASON_REQUEST_REFUSED: &str = "request_refused";

/// The sink's own counters, registered at zero.
#[derive(Clone)]
pub struct BulkMetrics {
    items: Vec<(&'static str, Counter)>,
    requests: Vec<(&'static str, Counter)>,
    request_bytes: Counter,
    in_flight: Gauge,
}

impl BulkMetrics {
    /// Registers the counters of sink `name`.
    pub fn new(name: &str) -> BulkMetrics {
        let items = ItemClass::LABELS
            .iter()
            .map(|r| {
                let c = metrics::counter!("auditrail_sink_bulk_items_total", "sink" => name.to_string(), "result" => *r);
                c.increment(0);
                (*r, c)
            })
            .collect();
        let requests = REQUEST_RESULTS
            .iter()
            .map(|r| {
                let c = metrics::counter!("auditrail_sink_bulk_requests_total", "sink" => name.to_string(), "result" => *r);
                c.increment(0);
                (*r, c)
            })
            .collect();
        let request_bytes = metrics::counter!("auditrail_sink_bulk_request_bytes_total", "sink" => name.to_string());
        request_bytes.increment(0);
        let in_flight =
            metrics::gauge!("auditrail_sink_bulk_requests_in_flight", "sink" => name.to_string());
        in_flight.set(0.0);
        BulkMetrics {
            items,
            requests,
            request_bytes,
            in_flight,
        }
    }

    fn item(&self, label: &str, n: u64) {
        if let Some((_, c)) = self.items.iter().find(|(l, _)| *l == label) {
            c.increment(n);
        }
    }

    fn request(&self, label: &str) {
        if let Some((_, c)) = self.requests.iter().find(|(l, _)| *l == label) {
            c.increment(1);
        }
    }
}

/// What a request task hands back to the driver.
struct BatchResult {
    /// Events to send again, in their original order.
    retry: Vec<Event>,
    /// `Some` when the cluster asked for a pause: start (or continue) the backoff, with its `Retry-After`.
    backoff: Option<Option<Duration>>,
}

/// Everything a request task needs, cloned into it.
#[derive(Clone)]
pub struct Deliver {
    /// The cluster's nodes.
    pub pool: Arc<Pool>,
    /// Batch → body.
    pub encoder: Encoder,
    /// The pipeline's context (metrics, dead letters).
    pub cx: SinkContext,
    /// The sink's own counters.
    pub metrics: BulkMetrics,
}

impl Deliver {
    /// Sends `events` as one bulk request (split further if the server refuses the request as a whole) and
    /// finishes every event whose outcome is known.
    async fn run(self, events: Vec<Event>) -> BatchResult {
        let mut retry = Vec::new();
        let mut backoff = None;
        let mut work = vec![events];
        while let Some(events) = work.pop() {
            let mut encoder = self.encoder.clone();
            let encoded = match tokio::task::spawn_blocking(move || encoder.encode(events)).await {
                Ok(e) => e,
                Err(e) => {
                    // Only a panic gets here; its events were dropped unfinished and count as failed.
                    tracing::error!(sink = %self.cx.name, error = %e, "encoding a batch failed");
                    continue;
                }
            };
            self.refuse(encoded.refused);
            let events = encoded.events;
            if events.is_empty() {
                continue;
            }
            self.metrics
                .request_bytes
                .increment(encoded.body.len() as u64);
            let body = Bytes::from(encoded.body);
            let m = &self.cx.metrics;
            // A failed node is taken out and the same body goes to the next node in service, each node at most
            // once; when none is left the batch is held for the backoff below.
            let mut tried = 0;
            let (reply, service) = loop {
                let (node, service) = self.pool.node().await;
                tried += 1;
                let reply = service.bulk(body.clone()).await;
                if let BulkReply::Transient {
                    why,
                    node_down: true,
                    ..
                } = &reply
                {
                    if self.pool.node_failed(node, why)
                        && self.pool.any_up()
                        && tried < self.pool.len()
                    {
                        self.metrics.request("transient_error");
                        m.errors.increment(1);
                        m.retries.increment(events.len() as u64);
                        tracing::warn!(sink = %self.cx.name, endpoint = %service.base(), error = %why, events = events.len(), "bulk request failed on this node; sending the batch to the next node now");
                        continue;
                    }
                }
                break (reply, service);
            };
            match reply {
                BulkReply::Ok(body) => match classify(&body, events.len()) {
                    Ok(classes) => {
                        self.pool.succeeded();
                        self.metrics.request("ok");
                        let mut rejected = Vec::new();
                        let (mut delivered, mut bytes) = (0u64, 0u64);
                        let mut retried = 0u64;
                        for (e, class) in events.into_iter().zip(classes) {
                            self.metrics.item(class.label(), 1);
                            match class {
                                ItemClass::Created | ItemClass::Duplicate => {
                                    delivered += 1;
                                    bytes += e.raw().len() as u64;
                                    e.finish(EventStatus::Delivered);
                                }
                                ItemClass::Retry(_) => {
                                    retried += 1;
                                    retry.push(e);
                                }
                                ItemClass::Reject { cause, message } => {
                                    rejected.push((e, cause.reason(), message));
                                }
                            }
                        }
                        m.events.increment(delivered);
                        m.bytes.increment(bytes);
                        if retried > 0 {
                            m.errors.increment(retried);
                            m.retries.increment(retried);
                            backoff = Some(backoff.flatten());
                            tracing::warn!(sink = %self.cx.name, events = retried, "the cluster asked to retry some documents (429/5xx); sending only those again after a backoff");
                        }
                        if !rejected.is_empty() {
                            m.errors.increment(rejected.len() as u64);
                            self.refuse(rejected);
                        }
                    }
                    Err(err) => {
                        self.pool.attempt_failed(&format!(
                            "{}: unreadable bulk response: {err}",
                            service.base()
                        ));
                        self.metrics.request("bad_response");
                        tracing::error!(sink = %self.cx.name, error = %err, events = events.len(), "cannot read the bulk response; sending the batch again (already indexed documents answer 409 and count once)");
                        self.hold(&mut retry, events, None, &mut backoff);
                    }
                },
                BulkReply::Transient {
                    why,
                    retry_after,
                    node_down,
                } => {
                    if !node_down {
                        self.pool.attempt_failed(&why);
                    }
                    self.metrics.request("transient_error");
                    tracing::warn!(sink = %self.cx.name, error = %why, events = events.len(), "bulk request failed; retrying the batch after a backoff");
                    self.hold(&mut retry, events, retry_after, &mut backoff);
                }
                BulkReply::Auth { why } => {
                    self.pool.attempt_failed(&why);
                    self.metrics.request("auth_error");
                    tracing::error!(sink = %self.cx.name, error = %why, endpoint = %service.base(), "the cluster refuses our credentials; holding events and retrying (check `auth`)");
                    self.hold(&mut retry, events, None, &mut backoff);
                }
                BulkReply::Unexpected { why } => {
                    self.pool.attempt_failed(&why);
                    self.metrics.request("unexpected_status");
                    tracing::error!(sink = %self.cx.name, error = %why, endpoint = %service.base(), "unexpected answer to a bulk request; holding events and retrying (is `endpoint` right?)");
                    self.hold(&mut retry, events, None, &mut backoff);
                }
                BulkReply::Refused { status, why } => {
                    self.metrics.request("refused");
                    m.errors.increment(1);
                    if events.len() == 1 {
                        let e = events.into_iter().next().expect("one event");
                        self.refuse(vec![(e, REASON_REQUEST_REFUSED, why)]);
                    } else {
                        tracing::warn!(sink = %self.cx.name, status, error = %why, events = events.len(), "the cluster refused a bulk request as a whole; splitting it to find the documents it refuses");
                        let mut first = events;
                        let second = first.split_off(first.len() / 2);
                        work.push(second);
                        work.push(first);
                    }
                }
            }
        }
        BatchResult { retry, backoff }
    }

    /// Keeps `events` for another attempt of the whole batch.
    fn hold(
        &self,
        retry: &mut Vec<Event>,
        events: Vec<Event>,
        retry_after: Option<Duration>,
        backoff: &mut Option<Option<Duration>>,
    ) {
        self.cx.metrics.errors.increment(1);
        self.cx.metrics.retries.increment(events.len() as u64);
        retry.extend(events);
        *backoff = Some(retry_after.or(backoff.flatten()));
    }

    fn refuse(&self, rejected: Vec<(Event, &'static str, String)>) {
        if rejected.is_empty() {
            return;
        }
        // On failure the events are finished as failed (redelivered by their source) and the error is logged
        // by `reject` itself.
        let _ = self.cx.reject(rejected);
    }
}

/// Batching limits and timing.
pub struct Limits {
    /// Most events per request.
    pub max_events: usize,
    /// Most event bytes per request.
    pub max_bytes: usize,
    /// Longest wait for a batch to fill.
    pub timeout: Duration,
    /// Most requests in flight.
    pub concurrency: usize,
    /// `retry.initial_backoff`: the least wait between two probes of a cluster not reached yet.
    pub initial_backoff: Duration,
}

impl Limits {
    /// The limits of `config`.
    pub fn of(config: &ElasticsearchSinkConfig) -> Limits {
        Limits {
            max_events: config.batch.max_events,
            max_bytes: config.batch.max_bytes.as_usize(),
            timeout: config.batch.timeout.0,
            concurrency: config.concurrency,
            initial_backoff: config.retry.initial_backoff.0,
        }
    }
}

/// Runs the sink until its input is closed and every event has an outcome.
pub async fn drive(
    mut input: BufferReceiver,
    deliver: Deliver,
    limits: Limits,
    mut backoff: Backoff,
) -> Result<(), BoxError> {
    let mut pending: VecDeque<Event> = VecDeque::new();
    let mut pending_bytes = 0usize;
    // Retried events at the front of `pending`: they are sent as soon as the backoff allows.
    let mut retries_waiting = 0usize;
    let mut oldest: Option<Instant> = None;
    let mut tasks: JoinSet<BatchResult> = JoinSet::new();
    let mut not_before = Instant::now();
    let mut input_open = true;
    let mut incoming = Vec::with_capacity(limits.max_events);
    // The idle probe of a cluster not reached yet (see the module documentation).
    let mut contacted = deliver.cx.status.entry().contacted;
    let mut probe: Option<JoinHandle<bool>> = None;
    let mut probe_at = Instant::now() + PROBE_AFTER;
    let mut probe_backoff = backoff.clone();
    loop {
        let now = Instant::now();
        while tasks.len() < limits.concurrency && !pending.is_empty() && now >= not_before {
            let full = pending.len() >= limits.max_events || pending_bytes >= limits.max_bytes;
            let due = oldest.is_some_and(|t| now.duration_since(t) >= limits.timeout);
            if !(full || due || retries_waiting > 0 || !input_open) {
                break;
            }
            let mut batch = Vec::with_capacity(pending.len().min(limits.max_events));
            let mut bytes = 0;
            while let Some(e) = pending.front() {
                let len = e.raw().len();
                if !batch.is_empty()
                    && (batch.len() >= limits.max_events || bytes + len > limits.max_bytes)
                {
                    break;
                }
                bytes += len;
                batch.push(pending.pop_front().expect("front exists"));
            }
            pending_bytes -= bytes;
            retries_waiting = retries_waiting.saturating_sub(batch.len());
            if pending.is_empty() {
                oldest = None;
            }
            deliver.metrics.in_flight.increment(1.0);
            tasks.spawn(deliver.clone().run(batch));
        }
        if !input_open && pending.is_empty() && tasks.is_empty() {
            if let Some(p) = probe.take() {
                p.abort();
            }
            return Ok(());
        }
        let idle = pending.is_empty() && tasks.is_empty() && input_open;
        let may_probe = !contacted && idle && probe.is_none();
        let room =
            input_open && pending.len() < limits.max_events && pending_bytes < limits.max_bytes;
        let wake = if pending.is_empty() || tasks.len() >= limits.concurrency {
            None
        } else if retries_waiting > 0
            || !input_open
            || pending.len() >= limits.max_events
            || pending_bytes >= limits.max_bytes
        {
            Some(not_before)
        } else {
            oldest.map(|t| (t + limits.timeout).max(not_before))
        };
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                deliver.metrics.in_flight.decrement(1.0);
                match done {
                    Ok(result) => {
                        match result.backoff {
                            Some(retry_after) => {
                                let wait = backoff.next_delay(retry_after);
                                not_before = not_before.max(Instant::now() + wait);
                            }
                            None => backoff.reset(),
                        }
                        if !result.retry.is_empty() {
                            retries_waiting += result.retry.len();
                            for e in result.retry.into_iter().rev() {
                                pending_bytes += e.raw().len();
                                pending.push_front(e);
                            }
                            oldest.get_or_insert_with(Instant::now);
                        }
                    }
                    // A request task panicked: its events were dropped unfinished, so their sources
                    // redeliver them. Say so and go on with the rest.
                    Err(e) => tracing::error!(sink = %deliver.cx.name, error = %e, "a bulk request task failed; its events will be redelivered by their sources"),
                }
            }
            n = input.recv_many(&mut incoming, limits.max_events - pending.len()), if room => {
                if n == 0 {
                    input_open = false;
                } else {
                    oldest.get_or_insert_with(Instant::now);
                    for e in incoming.drain(..) {
                        pending_bytes += e.raw().len();
                        pending.push_back(e);
                    }
                }
            }
            () = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
            () = tokio::time::sleep_until(probe_at), if may_probe => {
                contacted = deliver.cx.status.entry().contacted;
                if !contacted {
                    probe = Some(tokio::spawn(deliver.pool.clone().probe()));
                }
            }
            answered = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                probe = None;
                if answered.unwrap_or(false) {
                    contacted = true;
                } else {
                    let wait = probe_backoff.next_delay(None).max(limits.initial_backoff);
                    probe_at = Instant::now() + wait;
                }
            }
        }
    }
}
