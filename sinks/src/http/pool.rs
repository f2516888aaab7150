//! The nodes behind an HTTP sink (`endpoints`): which one the next request goes to, which are out of service,
//! and the health checks that put them back. The sink's contact with its server is reported from here too.
//!
//! - Round robin: each request takes the next node in service, so the load spreads over all of them.
//! - A node whose request fails (no connection, a timeout, a 5xx: [`super::Reply::Transient`]
//!   with `node_down`) is taken out of the rotation, logged, counted in
//!   `auditrail_sink_node_removals_total{sink,endpoint}`, and its `auditrail_sink_node_up{sink,endpoint}` gauge
//!   drops to 0. The request's batch goes to another node at once ([`super::driver`]); nothing is lost.
//! - A task checks a node that is out with its health check ([`Node::health`]: `GET /` for Elasticsearch,
//!   `/services/collector/health` for Splunk HEC), waiting the `retry` backoff (exponential,
//!   jittered, between `initial_backoff` and `max_backoff`) between checks; the node is back in the rotation
//!   once a check passes (see [`Node::health`]).
//! - When every node is out, requests wait for the first one to come back.
//! - With a single endpoint there is nowhere else to send: the node is never taken out, and the backed-off
//!   retry of the request itself is its health check, as before `endpoints` existed.
//!
//! Contact ([`ComponentStatus`], behind `/ready`): any 2xx answer (a bulk response, the template check, a
//! health check or the idle probe) is contact; every failed attempt is recorded as the sink's last error.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use auditrail_core::retry::Backoff;
use auditrail_core::status::ComponentStatus;
use metrics::{Counter, Gauge};
use tokio::sync::Notify;

use reqwest::{StatusCode, Url};

/// One endpoint of a sink, as the pool sees it.
pub trait Node: Clone + Send + Sync + 'static {
    /// The endpoint's base URL (never holds credentials).
    fn base(&self) -> &Url;
    /// The health check: `Ok(status)` when it passes (a 2xx, or a status that says the node is up but the
    /// credentials cannot use the check), `Err` with the reason otherwise.
    fn health(&self) -> impl std::future::Future<Output = Result<StatusCode, String>> + Send;
    /// The health check as a log line names it, e.g. "GET /".
    fn health_check(&self) -> &'static str;
}

/// One node and its place in the rotation.
struct Member<N> {
    service: N,
    up: AtomicBool,
    /// A health-check task is running for it.
    checking: AtomicBool,
    up_gauge: Gauge,
    removals: Counter,
}

/// See the module documentation.
pub struct Pool<N> {
    nodes: Vec<Member<N>>,
    next: AtomicUsize,
    /// Woken when a node comes back.
    back: Notify,
    sink: Arc<str>,
    status: ComponentStatus,
    /// Waits between health checks: `retry.initial_backoff` and `retry.max_backoff`.
    check_backoff: (Duration, Duration),
}

impl<N: Node> Pool<N> {
    /// The pool of `services` (one per endpoint, at least one), all in service, for sink `sink`.
    pub fn new(
        services: Vec<N>,
        sink: Arc<str>,
        status: ComponentStatus,
        check_backoff: (Duration, Duration),
    ) -> Arc<Pool<N>> {
        assert!(!services.is_empty(), "a pool has at least one node");
        let nodes = services
            .into_iter()
            .map(|service| {
                let endpoint = service.base().to_string();
                let up_gauge = metrics::gauge!("auditrail_sink_node_up", "sink" => sink.to_string(), "endpoint" => endpoint.clone());
                up_gauge.set(1.0);
                let removals = metrics::counter!("auditrail_sink_node_removals_total", "sink" => sink.to_string(), "endpoint" => endpoint);
                removals.increment(0);
                Member {
                    service,
                    up: AtomicBool::new(true),
                    checking: AtomicBool::new(false),
                    up_gauge,
                    removals,
                }
            })
            .collect();
        Arc::new(Pool {
            nodes,
            next: AtomicUsize::new(0),
            back: Notify::new(),
            sink,
            status,
            check_backoff,
        })
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the pool is empty (never: [`Pool::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node's base URL, in config order.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.service.base().to_string())
            .collect()
    }

    /// The next node in service, round robin; `None` when every node is out.
    pub fn pick(&self) -> Option<(usize, N)> {
        let n = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.nodes[i].up.load(Ordering::Acquire))
            .map(|i| (i, self.nodes[i].service.clone()))
    }

    /// The next node in service, waiting for one to come back when every node is out.
    pub async fn node(&self) -> (usize, N) {
        loop {
            // Registered before looking, so that a node put back in between is not missed.
            let notified = self.back.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(picked) = self.pick() {
                return picked;
            }
            notified.await;
        }
    }

    /// Whether any node is in service.
    pub fn any_up(&self) -> bool {
        self.nodes.iter().any(|n| n.up.load(Ordering::Acquire))
    }

    /// Whether node `i` is in service.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].up.load(Ordering::Acquire)
    }

    /// A request succeeded: the sink is in contact with its cluster.
    pub fn succeeded(&self) {
        self.status.running();
    }

    /// A request failed in a way that says nothing about the node (429, a refused body, credentials).
    pub fn attempt_failed(&self, why: &str) {
        self.status.error(why);
    }

    /// Node `i` failed (no connection, timeout, 5xx). With several nodes it is taken out (if it was in) and
    /// checked until it answers again; returns whether it is out now.
    pub fn node_failed(self: &Arc<Self>, i: usize, why: &str) -> bool {
        self.status.error(why);
        if self.nodes.len() == 1 {
            return false;
        }
        let node = &self.nodes[i];
        if node.up.swap(false, Ordering::AcqRel) {
            node.up_gauge.set(0.0);
            node.removals.increment(1);
            let in_service = self
                .nodes
                .iter()
                .filter(|n| n.up.load(Ordering::Acquire))
                .count();
            tracing::warn!(sink = %self.sink, endpoint = %node.service.base(), error = %why, in_service, check = node.service.health_check(), "node taken out of the rotation; its requests go to the other nodes until a health check passes");
            if in_service == 0 {
                tracing::error!(sink = %self.sink, "every endpoint is out; holding events until one passes its health check");
            }
        }
        if !node.checking.swap(true, Ordering::AcqRel) {
            let (base, cap) = self.check_backoff;
            tokio::spawn(check(
                Arc::downgrade(self),
                i,
                node.service.clone(),
                Backoff::new(base, cap),
                base,
            ));
        }
        true
    }

    fn put_back(&self, i: usize, contact: bool) {
        let node = &self.nodes[i];
        // `checking` first: a failure reported in between then starts a new check rather than leaving the node
        // out with nobody checking it.
        node.checking.store(false, Ordering::Release);
        node.up.store(true, Ordering::Release);
        node.up_gauge.set(1.0);
        if contact {
            self.status.running();
        }
        tracing::info!(sink = %self.sink, endpoint = %node.service.base(), "node passed its health check; back in the rotation");
        self.back.notify_waiters();
    }

    /// The sink has not reached its server yet and has nothing to send: the health check of the next node, so
    /// that `/ready` does not wait for the first event. Returns whether it answered 2xx.
    pub async fn probe(self: Arc<Self>) -> bool {
        let Some((i, service)) = self.pick() else {
            return false;
        };
        match service.health().await {
            Ok(status) if status.is_success() => {
                self.succeeded();
                tracing::info!(sink = %self.sink, endpoint = %service.base(), "the server answers");
                true
            }
            Ok(status) => {
                let why = format!("{}: {} answered {status}: the credentials cannot use the health check; the sink counts as in contact after its first delivered request", service.base(), service.health_check());
                self.attempt_failed(&why);
                false
            }
            Err(why) => {
                tracing::warn!(sink = %self.sink, endpoint = %service.base(), error = %why, "cannot reach the server yet");
                if self.nodes.len() > 1 {
                    self.node_failed(i, &why);
                } else {
                    self.attempt_failed(&why);
                }
                false
            }
        }
    }
}

/// Checks node `i` until it passes, then puts it back; ends early when the sink is gone.
async fn check<N: Node>(
    pool: Weak<Pool<N>>,
    i: usize,
    service: N,
    mut backoff: Backoff,
    least: Duration,
) {
    loop {
        tokio::time::sleep(backoff.next_delay(None).max(least)).await;
        if pool.strong_count() == 0 {
            return;
        }
        let result = service.health().await;
        let Some(pool) = pool.upgrade() else { return };
        match result {
            Ok(status) => {
                if !status.is_success() {
                    tracing::warn!(sink = %pool.sink, endpoint = %service.base(), %status, check = service.health_check(), "health check answered {status}: the node is up, but the credentials cannot use the health check");
                }
                pool.put_back(i, status.is_success());
                return;
            }
            Err(why) => {
                tracing::debug!(sink = %pool.sink, endpoint = %service.base(), error = %why, "health check failed; the node stays out");
                pool.status.error(&why);
            }
        }
    }
}
