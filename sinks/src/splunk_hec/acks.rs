//! Indexer acknowledgement: each event request answered with an `ackId` waits here until Splunk says that id is
//! indexed; a poller per indexer asks `/services/collector/ack?channel=<guid>` about every pending id at once
//! (`{"acks":[..]}`, at most [`MAX_QUERY_IDS`] per query) every `ack_poll_interval`, on the same connection pool
//! and with the same cookies as the data, so that behind a load balancer the question reaches the indexer that
//! took the data.
//!
//! When half of `max_pending_events` waits on one indexer the poller asks at once instead (at most every
//! [`EAGER_GAP`]): the sink stops reading at that bound, so a fixed interval would cap its throughput at
//! `max_pending_events / ack_poll_interval` however fast the indexer confirms. A lightly loaded sink still asks
//! once per interval.
//!
//! - `true`: the request's events are delivered and acknowledged upstream.
//! - `false`: not yet; counted in `auditrail_sink_hec_acks_total{result="false"}` (a channel whose acks keep
//!   coming back false is the symptom of queries reaching the wrong indexer).
//! - No `true` within `ack_timeout`: the id is given up, counted (`result="timeout"`), and the events are sent
//!   again: duplicates possible, counted in `auditrail_sink_hec_resent_total`.
//! - HEC code 14 ("ACK is disabled") on a query, or an event answer without `ackId`: acknowledgements will never
//!   come for this token. The events count as delivered on their HTTP 200 (resending them would only
//!   duplicate), counted in `auditrail_sink_hec_unconfirmed_total`, and the sink logs once a minute which setting
//!   to change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use metrics::Counter;
use tokio::sync::{oneshot, Notify};

use super::response::{ack_request, parse_ack_answer, AckQueryError};
use super::service::Conn;
use super::EveryMinute;

/// Most ids asked about in one query.
pub const MAX_QUERY_IDS: usize = 10_000;

/// The least time between two queries of one indexer when many ids wait.
pub const EAGER_GAP: Duration = Duration::from_millis(10);

/// What became of one ackId.
#[derive(Debug, PartialEq, Eq)]
pub enum AckResult {
    /// Splunk says it is indexed.
    Indexed,
    /// Splunk will never say (acks disabled on the token): delivered on HTTP 200, with the reason.
    Unconfirmable(String),
    /// Not confirmed within `ack_timeout`.
    TimedOut,
}

/// The counters of the ack path.
#[derive(Clone)]
pub struct AckMetrics {
    /// `auditrail_sink_hec_acks_total{result="true"}`
    pub acked: Counter,
    /// `{result="false"}`: an id asked about and not indexed yet.
    pub not_yet: Counter,
    /// `{result="timeout"}`
    pub timeouts: Counter,
    /// `auditrail_sink_hec_resent_total`: events sent again because their ack did not come (possible duplicates).
    pub resent: Counter,
    /// `auditrail_sink_hec_unconfirmed_total`: events counted delivered without an ack (acks off on the token).
    pub unconfirmed: Counter,
    /// `auditrail_sink_hec_ack_queries_total{result="ok"|"error"}`
    pub queries_ok: Counter,
    /// See `queries_ok`.
    pub queries_failed: Counter,
}

impl AckMetrics {
    /// Registers the counters of sink `name` at zero.
    pub fn new(name: &str) -> AckMetrics {
        let c = |metric: &'static str, result: Option<&'static str>| {
            let c = match result {
                Some(r) => metrics::counter!(metric, "sink" => name.to_string(), "result" => r),
                None => metrics::counter!(metric, "sink" => name.to_string()),
            };
            c.increment(0);
            c
        };
        AckMetrics {
            acked: c("auditrail_sink_hec_acks_total", Some("true")),
            not_yet: c("auditrail_sink_hec_acks_total", Some("false")),
            timeouts: c("auditrail_sink_hec_acks_total", Some("timeout")),
            resent: c("auditrail_sink_hec_resent_total", None),
            unconfirmed: c("auditrail_sink_hec_unconfirmed_total", None),
            queries_ok: c("auditrail_sink_hec_ack_queries_total", Some("ok")),
            queries_failed: c("auditrail_sink_hec_ack_queries_total", Some("error")),
        }
    }
}

/// The pending ids of one indexer.
pub struct Acks {
    pending: Mutex<HashMap<u64, oneshot::Sender<AckResult>>>,
    wake: Arc<Notify>,
    /// Told when `eager_at` ids wait: the poller asks without waiting out its interval.
    eager: Arc<Notify>,
    eager_at: usize,
    poll_interval: Duration,
    timeout: Duration,
    metrics: AckMetrics,
    warn: Arc<EveryMinute>,
    sink: Arc<str>,
}

impl Acks {
    /// The ack state of one indexer, whose poller asks through `conn` every `poll_interval`, or as soon as
    /// [`EAGER_GAP`] allows while `eager_at` ids or more wait.
    pub fn start(
        conn: Conn,
        poll_interval: Duration,
        eager_at: usize,
        timeout: Duration,
        metrics: AckMetrics,
        warn: Arc<EveryMinute>,
    ) -> Arc<Acks> {
        let acks = Arc::new(Acks {
            pending: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            eager: Arc::new(Notify::new()),
            eager_at: eager_at.max(1),
            poll_interval,
            timeout,
            metrics,
            warn,
            sink: conn.sink.clone(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(poll(Arc::downgrade(&acks), conn));
        }
        acks
    }

    /// How many ids wait.
    pub fn pending(&self) -> usize {
        self.pending.lock().expect("acks lock").len()
    }

    /// Waits for `id`'s answer, at most `ack_timeout`.
    pub async fn wait(self: Arc<Self>, id: u64) -> AckResult {
        let (tx, rx) = oneshot::channel();
        let waiting = {
            let mut p = self.pending.lock().expect("acks lock");
            if let Some(old) = p.insert(id, tx) {
                // The indexer gave out the same id twice on this channel (it restarted): the older request
                // cannot be told apart any more; it is resent.
                let _ = old.send(AckResult::TimedOut);
            }
            p.len()
        };
        self.wake.notify_one();
        if waiting >= self.eager_at {
            self.eager.notify_one();
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => AckResult::TimedOut,
            Err(_) => {
                self.pending.lock().expect("acks lock").remove(&id);
                self.metrics.timeouts.increment(1);
                tracing::warn!(sink = %self.sink, ack_id = id, timeout = ?self.timeout, "no indexer acknowledgement within ack_timeout; sending the request's events again (duplicates possible: dedupe on uid)");
                AckResult::TimedOut
            }
        }
    }

    /// Answers every pending id with `r` (acks disabled on the token).
    fn resolve_all(&self, why: &str) {
        let all: Vec<_> = self.pending.lock().expect("acks lock").drain().collect();
        for (_, tx) in all {
            let _ = tx.send(AckResult::Unconfirmable(why.to_string()));
        }
    }
}

/// Sleeps `interval`, or less once `eager` is told (never less than [`EAGER_GAP`]).
async fn pause(interval: Duration, eager: &Notify) {
    let start = tokio::time::Instant::now();
    tokio::select! {
        () = tokio::time::sleep(interval) => {}
        () = eager.notified() => tokio::time::sleep_until(start + EAGER_GAP.min(interval)).await,
    }
}

/// The poller of one indexer; ends when the sink is gone.
async fn poll(acks: Weak<Acks>, conn: Conn) {
    loop {
        let (interval, eager, ids) = {
            let Some(a) = acks.upgrade() else { return };
            let ids: Vec<u64> = {
                let p = a.pending.lock().expect("acks lock");
                p.keys().take(MAX_QUERY_IDS).copied().collect()
            };
            if ids.is_empty() {
                // Nothing to ask: sleep until an id is registered (or check now and then that the sink lives).
                let wake = a.wake.clone();
                let eager = a.eager.clone();
                let interval = a.poll_interval;
                drop(a);
                let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
                pause(interval, &eager).await;
                continue;
            }
            (a.poll_interval, a.eager.clone(), ids)
        };
        let answer = conn.ack_query(ack_request(&ids)).await;
        let Some(a) = acks.upgrade() else { return };
        match answer.and_then(|(status, body)| parse_ack_answer(conn.base.as_str(), status, &body))
        {
            Ok((yes, no)) => {
                a.metrics.queries_ok.increment(1);
                a.metrics.acked.increment(yes.len() as u64);
                a.metrics.not_yet.increment(no.len() as u64);
                let mut p = a.pending.lock().expect("acks lock");
                for id in yes {
                    if let Some(tx) = p.remove(&id) {
                        let _ = tx.send(AckResult::Indexed);
                    }
                }
            }
            Err(AckQueryError::Disabled(why)) => {
                a.metrics.queries_failed.increment(1);
                if a.warn.due() {
                    tracing::error!(sink = %a.sink, error = %why, "indexer acknowledgements cannot be had; events are counted delivered on HTTP 200");
                }
                a.resolve_all(&why);
            }
            Err(AckQueryError::Failed(why)) => {
                a.metrics.queries_failed.increment(1);
                tracing::warn!(sink = %a.sink, error = %why, pending = ids.len(), "ack query failed; asking again at the next poll");
            }
        }
        let still = a.pending();
        let eager_now = still >= a.eager_at;
        drop(a);
        if eager_now {
            // Many still wait: the next question goes out after the least gap, not the interval.
            tokio::time::sleep(EAGER_GAP.min(interval)).await;
        } else {
            pause(interval, &eager).await;
        }
    }
}
