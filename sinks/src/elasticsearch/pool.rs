//! The nodes of the cluster (`endpoints`) are the shared [`crate::http::pool::Pool`] of HTTP sinks, each node
//! one [`Service`] checked with `GET /` (see [`Service::health`]).

pub use crate::http::pool::Node;

use super::service::Service;

/// The cluster's nodes.
pub type Pool = crate::http::pool::Pool<Service>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elasticsearch::ElasticsearchSinkConfig;
    use auditrail_core::status::ComponentStatus;
    use auditrail_core::status::{Kind, State};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::time::Duration;

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
