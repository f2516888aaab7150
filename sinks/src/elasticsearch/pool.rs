//! The nodes of the cluster (`endpoints`): which one the next request goes to, which are out of service, and
//! the health checks that put them back. The sink's contact with its cluster is reported from here too.
//!
//! - Round robin: each request takes the next node in service, so the load spreads over all of them.
//! - A node whose request fails (no connection, a timeout, a 5xx: [`super::service::BulkReply::Transient`]
//!   with `node_down`) is taken out of the rotation, logged, counted in
//!   `auditrail_sink_node_removals_total{sink,endpoint}`, and its `auditrail_sink_node_up{sink,endpoint}` gauge
//!   drops to 0. The request's batch goes to another node at once ([`super::sink`]); nothing is lost, and a
//!   document the failed node had indexed already is answered 409 and counted once.
//! - A task checks a node that is out with `GET /` of its endpoint, waiting the `retry` backoff (exponential,
//!   jittered, between `initial_backoff` and `max_backoff`) between checks; the node is back in the rotation
//!   once a check passes (2xx, or 401/403: see [`Service::health`]).
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

use super::service::Service;

/// One node and its place in the rotation.
struct Node {
    service: Service,
    up: AtomicBool,
    /// A health-check task is running for it.
    checking: AtomicBool,
    up_gauge: Gauge,
    removals: Counter,
}

/// See the module documentation.
pub struct Pool {
    nodes: Vec<Node>,
    next: AtomicUsize,
    /// Woken when a node comes back.
    back: Notify,
    sink: Arc<str>,
    status: ComponentStatus,
    /// Waits between health checks: `retry.initial_backoff` and `retry.max_backoff`.
    check_backoff: (Duration, Duration),
}

impl Pool {
    /// The pool of `services` (one per endpoint, at least one), all in service, for sink `sink`.
    pub fn new(
        services: Vec<Service>,
        sink: Arc<str>,
        status: ComponentStatus,
        check_backoff: (Duration, Duration),
    ) -> Arc<Pool> {
        assert!(!services.is_empty(), "a pool has at least one node");
        let nodes = services
            .into_iter()
            .map(|service| {
                let endpoint = service.base().to_string();
                let up_gauge = metrics::gauge!("auditrail_sink_node_up", "sink" => sink.to_string(), "endpoint" => endpoint.clone());
                up_gauge.set(1.0);
                let removals = metrics::counter!("auditrail_sink_node_removals_total", "sink" => sink.to_string(), "endpoint" => endpoint);
                removals.increment(0);
                Node {
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
    pub fn pick(&self) -> Option<(usize, Service)> {
        let n = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.nodes[i].up.load(Ordering::Acquire))
            .map(|i| (i, self.nodes[i].service.clone()))
    }

    /// The next node in service, waiting for one to come back when every node is out.
    pub async fn node(&self) -> (usize, Service) {
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
            tracing::warn!(sink = %self.sink, endpoint = %node.service.base(), error = %why, in_service, "node taken out of the rotation; its requests go to the other nodes until a health check (GET /) passes");
            if in_service == 0 {
                tracing::error!(sink = %self.sink, "every node of the cluster is out; holding events until one passes its health check");
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

    /// The sink has not reached its cluster yet and has nothing to send: `GET /` of the next node, so that
    /// `/ready` does not wait for the first event. Returns whether it answered 2xx.
    pub async fn probe(self: Arc<Self>) -> bool {
        let Some((i, service)) = self.pick() else {
            return false;
        };
        match service.health().await {
            Ok(status) if status.is_success() => {
                self.succeeded();
                tracing::info!(sink = %self.sink, endpoint = %service.base(), "the cluster answers");
                true
            }
            Ok(status) => {
                let why = format!("{}: GET / answered {status}: the credentials cannot check the cluster (Elasticsearch's `monitor` privilege); the sink counts as in contact after its first delivered request", service.base());
                self.attempt_failed(&why);
                false
            }
            Err(why) => {
                tracing::warn!(sink = %self.sink, endpoint = %service.base(), error = %why, "cannot reach the cluster yet");
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
async fn check(
    pool: Weak<Pool>,
    i: usize,
    service: Service,
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
                    tracing::warn!(sink = %pool.sink, endpoint = %service.base(), %status, "health check answered {status}: the node is up, but the credentials lack Elasticsearch's `monitor` privilege for GET /");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elasticsearch::ElasticsearchSinkConfig;
    use auditrail_core::status::{Kind, State};
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn pool(endpoints: &[String]) -> (Arc<Pool>, ComponentStatus) {
        let mut c = ElasticsearchSinkConfig::with_endpoint("http://x");
        c.endpoint = None;
        c.endpoints = endpoints.to_vec();
        let status = ComponentStatus::detached(Kind::Sink, "es");
        let p = Pool::new(
            Service::nodes(&c).unwrap(),
            "es".into(),
            status.clone(),
            (Duration::from_millis(5), Duration::from_millis(20)),
        );
        (p, status)
    }

    /// A port nobody listens on.
    fn closed_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Answers `GET /` with 200 on `listener`, as long as it lives.
    fn serve_ok(listener: TcpListener) {
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { return };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
            }
        });
    }

    #[tokio::test]
    async fn round_robin_skips_nodes_out_until_their_health_check_passes() {
        let up = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = format!("http://127.0.0.1:{}", up.local_addr().unwrap().port());
        serve_ok(up);
        let dead_port = closed_port();
        let b = format!("http://127.0.0.1:{dead_port}");
        let (p, status) = pool(&[a.clone(), b.clone()]);
        let picks: Vec<usize> = (0..4).map(|_| p.pick().unwrap().0).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
        assert!(p.node_failed(1, "connection refused"));
        assert!(!p.is_up(1));
        assert_eq!(
            status.entry().last_error.as_deref(),
            Some("connection refused")
        );
        assert!((0..4).all(|_| p.pick().unwrap().0 == 0));
        // Nobody on b's port: it stays out, however long.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!p.is_up(1));
        // Something answers there now: the next check puts it back.
        let back = TcpListener::bind(("127.0.0.1", dead_port)).unwrap();
        serve_ok(back);
        tokio::time::timeout(Duration::from_secs(10), async {
            while !p.is_up(1) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("b back after its health check");
        assert_eq!(status.entry().state, State::Running);
        let picks: std::collections::HashSet<usize> = (0..4).map(|_| p.pick().unwrap().0).collect();
        assert_eq!(picks.len(), 2);
    }

    #[tokio::test]
    async fn when_every_node_is_out_requests_wait_for_the_first_back() {
        let port = closed_port();
        let (p, _) = pool(&[
            format!("http://127.0.0.1:{port}"),
            format!("http://127.0.0.1:{}", closed_port()),
        ]);
        p.node_failed(0, "down");
        p.node_failed(1, "down");
        assert!(p.pick().is_none());
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.node().await.0 }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        serve_ok(TcpListener::bind(("127.0.0.1", port)).unwrap());
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("a node came back")
            .unwrap();
        assert_eq!(got, 0);
    }

    #[tokio::test]
    async fn a_single_node_is_never_taken_out() {
        let (p, status) = pool(&[format!("http://127.0.0.1:{}", closed_port())]);
        assert!(!p.node_failed(0, "connection refused"));
        assert!(p.is_up(0));
        assert_eq!(p.pick().unwrap().0, 0);
        assert_eq!(status.entry().state, State::Starting);
        assert!(!p.clone().probe().await);
        assert!(status.entry().last_error.unwrap().contains("127.0.0.1"));
    }
}
