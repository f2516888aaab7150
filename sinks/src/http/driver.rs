//! The driver loop every HTTP sink runs: buffer → batches → requests (at most `concurrency` in flight) → each
//! event's own outcome.
//!
//! A batch is sent when it holds `batch.max_events` events or `batch.max_bytes` bytes, when its oldest event
//! has waited `batch.timeout`, or at once when it holds events to retry. The sink's [`Protocol`] turns the
//! batch into a body (its request builder), sends it to one node (its service) and judges the answer: the
//! whole response first ([`Reply`]), then, for a 2xx, every event on its own ([`Outcome`]): a delivered one is
//! acknowledged upstream right away, a refused one goes to the dead-letter file with the server's reason, and
//! only the ones to retry go back to the front of the next batch. A protocol whose server confirms later (Splunk
//! HEC's indexer acknowledgements) hands back [`Classified::Later`]: the events wait for their confirmation
//! outside the request slots, at most [`Limits::max_awaiting`] of them, and come back delivered or to resend.
//!
//! A failed request (connection, timeout, 429, 5xx) puts its whole batch back. Any retry starts a backoff
//! (exponential with full jitter, `Retry-After` as a floor) during which no request is sent; a success ends it.
//! A request refused as a whole (400/413) is split to find the events the server refuses: at the event the
//! server names, when it names one, or in halves.
//!
//! With several endpoints ([`super::pool`]), each request goes to the next node in service; a request that fails
//! because its node failed (no connection, timeout, 5xx) takes that node out and is sent to the next node at
//! once, without a backoff; only when no node is left does the batch wait for the backoff (and for a node to
//! pass its health check).
//!
//! While the sink has not reached its server yet and has nothing to send, it probes it (the node's health
//! check, first [`PROBE_AFTER`] after start, then with the retry backoff), so that `/ready` does not wait for
//! the first event.
//!
//! Events held for retry count against the batch being filled, and events awaiting a confirmation against
//! `max_awaiting`, so when the server keeps refusing, the sink stops reading, its buffer fills, and
//! backpressure reaches the sources: nothing is dropped.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::buffer::BufferReceiver;
use auditrail_core::retry::Backoff;
use auditrail_core::{BoxError, Event, EventStatus, SinkContext};
use bytes::Bytes;
use metrics::{Counter, Gauge};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::pool::{Node, Pool};

/// How long after start an idle sink that has not reached its server yet probes it.
pub const PROBE_AFTER: Duration = Duration::from_millis(500);

/// Labels of `auditrail_sink_<kind>_requests_total{result}`.
pub const REQUEST_RESULTS: [&str; 6] = [
    "ok",
    "transient_error",
    "auth_error",
    "refused",
    "unexpected_status",
    "bad_response",
];

/// Dead-letter reason of a single event whose request the server refused as a whole (400/413).
pub const REASON_REQUEST_REFUSED: &str = "request_refused";

/// A future that is sent to a task.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The verdict on one whole response, before its events are looked at.
#[derive(Debug)]
pub enum Reply {
    /// 2xx: the response body, judged event by event by [`Protocol::classify`].
    Ok(Bytes),
    /// Send the same batch again later.
    Transient {
        /// What happened, for the log; starts with the node's URL.
        why: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
        /// The node itself failed (no connection, timeout, 5xx): take it out until a health check passes.
        node_down: bool,
    },
    /// The credentials are wrong or lack privileges: the batch is held.
    Auth {
        /// Status and the server's message.
        why: String,
    },
    /// The server refused the body as a whole (400/413, HEC data errors).
    Refused {
        /// The status.
        status: u16,
        /// The server's message.
        why: String,
        /// The event the server names as the bad one, by its place in the body, when it names one.
        at: Option<usize>,
    },
    /// Any other answer: probably a wrong endpoint or setting; held and retried, logged as an error.
    Unexpected {
        /// Status and the server's message, and what to change.
        why: String,
    },
}

/// What became of one event of a 2xx response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored: acknowledged upstream.
    Delivered,
    /// The server asked for this event again (per-item 429/5xx): resent after a backoff.
    Retry,
    /// Not confirmed in time: resent at once, without a backoff (duplicates possible).
    Resend,
    /// Refused for good: dead-lettered with the reason.
    Reject {
        /// Stable dead-letter label.
        reason: &'static str,
        /// The server's words.
        message: String,
    },
}

/// The events of a 2xx response, judged.
pub enum Classified {
    /// Each event's outcome, known now.
    Now(Vec<(Event, Outcome)>),
    /// Known later (an indexer acknowledgement): the future yields each event's outcome.
    Later(BoxFuture<Vec<(Event, Outcome)>>),
    /// The body does not say: the whole batch is sent again after a backoff.
    Unreadable {
        /// The batch.
        events: Vec<Event>,
        /// What is wrong with the body.
        why: String,
    },
}

/// A batch turned into a request body.
pub struct Built {
    /// The request body (compressed if configured).
    pub body: Vec<u8>,
    /// The events in the body, in body order.
    pub events: Vec<Event>,
    /// Events that cannot be sent at all, with the dead-letter reason and message.
    pub refused: Vec<(Event, &'static str, String)>,
}

/// What one HTTP sink does differently from the others: the request builder, the service and the response
/// classifier. Cloned into every request task.
pub trait Protocol: Clone + Send + Sync + 'static {
    /// One endpoint.
    type Node: Node;

    /// What a request is called in log lines ("bulk request").
    fn request_name(&self) -> &'static str;

    /// Turns a batch into one body (CPU work: run on the blocking pool).
    fn build(&mut self, events: Vec<Event>) -> Built;

    /// Sends `body` to `node` and judges the whole response.
    fn send(&self, node: &Self::Node, body: Bytes) -> impl Future<Output = Reply> + Send;

    /// Judges each event of a 2xx response `body` from `node`; item `i` is `events[i]`.
    fn classify(&self, node: &Self::Node, body: Bytes, events: Vec<Event>) -> Classified;

    /// The server refused the credentials; the batch is held. By default logged as an error each time.
    fn auth_failed(&self, sink: &str, endpoint: &str, why: &str) {
        tracing::error!(sink = %sink, error = %why, endpoint = %endpoint, "the server refuses our credentials; holding events and retrying (check `auth`)");
    }

    /// A request got a 2xx: the credentials work.
    fn auth_ok(&self) {}
}

/// The driver's counters, registered at zero: `auditrail_sink_<kind>_requests_total{sink,result}`,
/// `auditrail_sink_<kind>_request_bytes_total{sink}` and the gauge `auditrail_sink_<kind>_requests_in_flight{sink}`.
#[derive(Clone)]
pub struct RequestMetrics {
    requests: Vec<(&'static str, Counter)>,
    request_bytes: Counter,
    in_flight: Gauge,
}

impl RequestMetrics {
    /// Registers the counters of sink `name`; `kind` names the request ("bulk", "hec").
    pub fn new(name: &str, kind: &str) -> RequestMetrics {
        let requests = REQUEST_RESULTS
            .iter()
            .map(|r| {
                let c = metrics::counter!(format!("auditrail_sink_{kind}_requests_total"), "sink" => name.to_string(), "result" => *r);
                c.increment(0);
                (*r, c)
            })
            .collect();
        let request_bytes = metrics::counter!(format!("auditrail_sink_{kind}_request_bytes_total"), "sink" => name.to_string());
        request_bytes.increment(0);
        let in_flight = metrics::gauge!(format!("auditrail_sink_{kind}_requests_in_flight"), "sink" => name.to_string());
        in_flight.set(0.0);
        RequestMetrics {
            requests,
            request_bytes,
            in_flight,
        }
    }

    fn request(&self, label: &str) {
        if let Some((_, c)) = self.requests.iter().find(|(l, _)| *l == label) {
            c.increment(1);
        }
    }
}

/// What a request task hands back to the driver.
pub struct BatchResult {
    /// Events to send again, in their original order.
    retry: Vec<Event>,
    /// Whether `retry` goes out after a backoff (`Some`, with the server's `Retry-After`) or at once.
    backoff: Option<Option<Duration>>,
    /// Outcomes known later, with how many events each covers.
    later: Vec<(usize, BoxFuture<BatchResult>)>,
    /// How many awaited events this result settles (for a result of a `later` future).
    settles: usize,
}

/// Everything a request task needs, cloned into it.
pub struct Deliver<P: Protocol> {
    /// The sink's nodes.
    pub pool: Arc<Pool<P::Node>>,
    /// Request builder, service and classifier.
    pub proto: P,
    /// The pipeline's context (metrics, dead letters).
    pub cx: SinkContext,
    /// The driver's counters.
    pub metrics: RequestMetrics,
}

impl<P: Protocol> Clone for Deliver<P> {
    fn clone(&self) -> Self {
        Deliver {
            pool: self.pool.clone(),
            proto: self.proto.clone(),
            cx: self.cx.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<P: Protocol> Deliver<P> {
    /// Sends `events` as one request (split further if the server refuses the request as a whole) and
    /// finishes every event whose outcome is known.
    async fn run(self, events: Vec<Event>) -> BatchResult {
        let mut result = BatchResult {
            retry: Vec::new(),
            backoff: None,
            later: Vec::new(),
            settles: 0,
        };
        let what = self.proto.request_name();
        let mut work = vec![events];
        while let Some(events) = work.pop() {
            let mut proto = self.proto.clone();
            let built = match tokio::task::spawn_blocking(move || proto.build(events)).await {
                Ok(b) => b,
                Err(e) => {
                    // Only a panic gets here; its events were dropped unfinished and count as failed.
                    tracing::error!(sink = %self.cx.name, error = %e, "encoding a batch failed");
                    continue;
                }
            };
            self.refuse(built.refused);
            let events = built.events;
            if events.is_empty() {
                continue;
            }
            self.metrics
                .request_bytes
                .increment(built.body.len() as u64);
            let body = Bytes::from(built.body);
            let m = &self.cx.metrics;
            // A failed node is taken out and the same body goes to the next node in service, each node at most
            // once; when none is left the batch is held for the backoff below.
            let mut tried = 0;
            let (reply, service) = loop {
                let (node, service) = self.pool.node().await;
                tried += 1;
                let reply = self.proto.send(&service, body.clone()).await;
                if let Reply::Transient {
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
                        tracing::warn!(sink = %self.cx.name, endpoint = %service.base(), error = %why, events = events.len(), "{what} failed on this node; sending the batch to the next node now");
                        continue;
                    }
                }
                break (reply, service);
            };
            match reply {
                Reply::Ok(body) => {
                    self.proto.auth_ok();
                    let sent = events.len();
                    match self.proto.classify(&service, body, events) {
                        Classified::Now(outcomes) => {
                            self.pool.succeeded();
                            self.metrics.request("ok");
                            self.settle(outcomes, &mut result);
                        }
                        Classified::Later(fut) => {
                            self.pool.succeeded();
                            self.metrics.request("ok");
                            let this = self.clone();
                            let later: BoxFuture<BatchResult> = Box::pin(async move {
                                let outcomes = fut.await;
                                let mut r = BatchResult {
                                    retry: Vec::new(),
                                    backoff: None,
                                    later: Vec::new(),
                                    settles: 0,
                                };
                                r.settles = sent;
                                this.settle(outcomes, &mut r);
                                r
                            });
                            result.later.push((sent, later));
                        }
                        Classified::Unreadable { events, why } => {
                            self.pool.attempt_failed(&format!(
                                "{}: unreadable response: {why}",
                                service.base()
                            ));
                            self.metrics.request("bad_response");
                            tracing::error!(sink = %self.cx.name, error = %why, events = events.len(), "cannot read the {what} response; sending the batch again");
                            self.hold(&mut result, events, None);
                        }
                    }
                }
                Reply::Transient {
                    why,
                    retry_after,
                    node_down,
                } => {
                    if !node_down {
                        self.pool.attempt_failed(&why);
                    }
                    self.metrics.request("transient_error");
                    tracing::warn!(sink = %self.cx.name, error = %why, events = events.len(), "{what} failed; retrying the batch after a backoff");
                    self.hold(&mut result, events, retry_after);
                }
                Reply::Auth { why } => {
                    self.pool.attempt_failed(&why);
                    self.metrics.request("auth_error");
                    self.proto
                        .auth_failed(&self.cx.name, service.base().as_str(), &why);
                    self.hold(&mut result, events, None);
                }
                Reply::Unexpected { why } => {
                    self.pool.attempt_failed(&why);
                    self.metrics.request("unexpected_status");
                    tracing::error!(sink = %self.cx.name, error = %why, endpoint = %service.base(), "unexpected answer to a {what}; holding events and retrying (is `endpoint` right?)");
                    self.hold(&mut result, events, None);
                }
                Reply::Refused { status, why, at } => {
                    self.metrics.request("refused");
                    m.errors.increment(1);
                    if events.len() == 1 {
                        let e = events.into_iter().next().expect("one event");
                        self.refuse(vec![(e, REASON_REQUEST_REFUSED, why)]);
                    } else if let Some(i) = at.filter(|&i| i < events.len()) {
                        // The server named the bad event: refuse it, send the others again (those before it
                        // may have been stored already; their uid lets searches dedupe).
                        tracing::warn!(sink = %self.cx.name, status, error = %why, events = events.len(), at = i, "the server refused a {what} because of one event; dead-lettering it and sending the others again");
                        let mut rest = events;
                        let bad = rest.remove(i);
                        self.refuse(vec![(bad, REASON_REQUEST_REFUSED, why)]);
                        work.push(rest);
                    } else {
                        tracing::warn!(sink = %self.cx.name, status, error = %why, events = events.len(), "the server refused a {what} as a whole; splitting it to find the events it refuses");
                        let mut first = events;
                        let second = first.split_off(first.len() / 2);
                        work.push(second);
                        work.push(first);
                    }
                }
            }
        }
        result
    }

    /// Finishes every event whose outcome is known and keeps the others for `result.retry`.
    fn settle(&self, outcomes: Vec<(Event, Outcome)>, result: &mut BatchResult) {
        let m = &self.cx.metrics;
        let mut rejected = Vec::new();
        let (mut delivered, mut bytes) = (0u64, 0u64);
        let (mut retried, mut resent) = (0u64, 0u64);
        for (e, outcome) in outcomes {
            match outcome {
                Outcome::Delivered => {
                    delivered += 1;
                    bytes += e.raw().len() as u64;
                    e.finish(EventStatus::Delivered);
                }
                Outcome::Retry => {
                    retried += 1;
                    result.retry.push(e);
                }
                Outcome::Resend => {
                    resent += 1;
                    result.retry.push(e);
                }
                Outcome::Reject { reason, message } => rejected.push((e, reason, message)),
            }
        }
        m.events.increment(delivered);
        m.bytes.increment(bytes);
        if retried > 0 {
            m.errors.increment(retried);
            m.retries.increment(retried);
            result.backoff = Some(result.backoff.flatten());
            tracing::warn!(sink = %self.cx.name, events = retried, "the server asked to retry some events (429/5xx); sending only those again after a backoff");
        }
        if resent > 0 {
            m.retries.increment(resent);
        }
        if !rejected.is_empty() {
            m.errors.increment(rejected.len() as u64);
            self.refuse(rejected);
        }
    }

    /// Keeps `events` for another attempt of the whole batch, after a backoff.
    fn hold(&self, result: &mut BatchResult, events: Vec<Event>, retry_after: Option<Duration>) {
        self.cx.metrics.errors.increment(1);
        self.cx.metrics.retries.increment(events.len() as u64);
        result.retry.extend(events);
        result.backoff = Some(retry_after.or(result.backoff.flatten()));
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
    /// `retry.initial_backoff`: the least wait between two probes of a server not reached yet.
    pub initial_backoff: Duration,
    /// Most events sent and awaiting a later confirmation ([`Classified::Later`]); the sink stops reading
    /// while this many wait.
    pub max_awaiting: usize,
}

/// The driver's queue: events read and not sent yet, retries first.
struct Queue {
    pending: VecDeque<Event>,
    bytes: usize,
    /// Retried events at the front of `pending`: they are sent as soon as the backoff allows.
    retries_waiting: usize,
    oldest: Option<Instant>,
    not_before: Instant,
    /// Events sent and awaiting a later confirmation.
    awaiting: usize,
}

impl Queue {
    /// Takes in what a request task or a confirmation handed back.
    fn absorb(
        &mut self,
        result: BatchResult,
        backoff: &mut Backoff,
        waiting: &mut JoinSet<BatchResult>,
    ) {
        match result.backoff {
            Some(retry_after) => {
                let wait = backoff.next_delay(retry_after);
                self.not_before = self.not_before.max(Instant::now() + wait);
            }
            None => backoff.reset(),
        }
        self.awaiting = self.awaiting.saturating_sub(result.settles);
        for (n, fut) in result.later {
            self.awaiting += n;
            waiting.spawn(fut);
        }
        if !result.retry.is_empty() {
            self.retries_waiting += result.retry.len();
            for e in result.retry.into_iter().rev() {
                self.bytes += e.raw().len();
                self.pending.push_front(e);
            }
            self.oldest.get_or_insert_with(Instant::now);
        }
    }
}

/// Runs the sink until its input is closed and every event has an outcome.
pub async fn drive<P: Protocol>(
    mut input: BufferReceiver,
    deliver: Deliver<P>,
    limits: Limits,
    mut backoff: Backoff,
) -> Result<(), BoxError> {
    let mut q = Queue {
        pending: VecDeque::new(),
        bytes: 0,
        retries_waiting: 0,
        oldest: None,
        not_before: Instant::now(),
        awaiting: 0,
    };
    let mut tasks: JoinSet<BatchResult> = JoinSet::new();
    let mut waiting: JoinSet<BatchResult> = JoinSet::new();
    let mut input_open = true;
    let mut incoming = Vec::with_capacity(limits.max_events);
    // The idle probe of a server not reached yet (see the module documentation).
    let mut contacted = deliver.cx.status.entry().contacted;
    let mut probe: Option<JoinHandle<bool>> = None;
    let mut probe_at = Instant::now() + PROBE_AFTER;
    let mut probe_backoff = backoff.clone();
    loop {
        let now = Instant::now();
        while tasks.len() < limits.concurrency && !q.pending.is_empty() && now >= q.not_before {
            let full = q.pending.len() >= limits.max_events || q.bytes >= limits.max_bytes;
            let due = q
                .oldest
                .is_some_and(|t| now.duration_since(t) >= limits.timeout);
            if !(full || due || q.retries_waiting > 0 || !input_open) {
                break;
            }
            let mut batch = Vec::with_capacity(q.pending.len().min(limits.max_events));
            let mut bytes = 0;
            while let Some(e) = q.pending.front() {
                let len = e.raw().len();
                if !batch.is_empty()
                    && (batch.len() >= limits.max_events || bytes + len > limits.max_bytes)
                {
                    break;
                }
                bytes += len;
                batch.push(q.pending.pop_front().expect("front exists"));
            }
            q.bytes -= bytes;
            q.retries_waiting = q.retries_waiting.saturating_sub(batch.len());
            if q.pending.is_empty() {
                q.oldest = None;
            }
            deliver.metrics.in_flight.increment(1.0);
            tasks.spawn(deliver.clone().run(batch));
        }
        if !input_open && q.pending.is_empty() && tasks.is_empty() && waiting.is_empty() {
            if let Some(p) = probe.take() {
                p.abort();
            }
            return Ok(());
        }
        let idle = q.pending.is_empty() && tasks.is_empty() && waiting.is_empty() && input_open;
        let may_probe = !contacted && idle && probe.is_none();
        let room = input_open
            && q.pending.len() < limits.max_events
            && q.bytes < limits.max_bytes
            && q.awaiting < limits.max_awaiting;
        let wake = if q.pending.is_empty() || tasks.len() >= limits.concurrency {
            None
        } else if q.retries_waiting > 0
            || !input_open
            || q.pending.len() >= limits.max_events
            || q.bytes >= limits.max_bytes
        {
            Some(q.not_before)
        } else {
            q.oldest.map(|t| (t + limits.timeout).max(q.not_before))
        };
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                deliver.metrics.in_flight.decrement(1.0);
                match done {
                    Ok(result) => q.absorb(result, &mut backoff, &mut waiting),
                    // A request task panicked: its events were dropped unfinished, so their sources
                    // redeliver them. Say so and go on with the rest.
                    Err(e) => tracing::error!(sink = %deliver.cx.name, error = %e, "a request task failed; its events will be redelivered by their sources"),
                }
            }
            Some(done) = waiting.join_next(), if !waiting.is_empty() => {
                match done {
                    Ok(result) => q.absorb(result, &mut backoff, &mut waiting),
                    Err(e) => {
                        // Its events were dropped unfinished (redelivered by their sources); the count of
                        // awaited events is unknown now, so start it over from what is still waiting.
                        tracing::error!(sink = %deliver.cx.name, error = %e, "a confirmation task failed; its events will be redelivered by their sources");
                        if waiting.is_empty() {
                            q.awaiting = 0;
                        }
                    }
                }
            }
            n = input.recv_many(&mut incoming, limits.max_events - q.pending.len()), if room => {
                if n == 0 {
                    input_open = false;
                } else {
                    q.oldest.get_or_insert_with(Instant::now);
                    for e in incoming.drain(..) {
                        q.bytes += e.raw().len();
                        q.pending.push_back(e);
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
