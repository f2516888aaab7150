//! The accept loop of the http source, in place of `axum::serve`: it bounds what connections can cost.
//!
//! - At most `max_connections` are open; at the cap, and when `accept` fails for want of file descriptors,
//!   the connection that has waited longest without a complete request head is closed to make room (see
//!   [`super::conns`]), so silent or half-sent connections can never lock out a client that sends promptly.
//!   If every connection is busy serving a request, the new one is closed at once.
//! - A reaper closes connections over `header_read_timeout` (no complete head, TLS handshake included) or
//!   `idle_timeout` (kept alive with nothing to do); hyper also enforces the head timeout itself.
//! - With TLS the handshake runs in the connection's own task, under the same timeout.
//!
//! Every connection closed by the agent is counted in `auditrail_source_http_connections_shed_total` (by
//! `reason`), one refused with all connections busy in `auditrail_source_http_connections_refused_total`.
//! On shutdown the loop stops accepting and waits for the requests in flight (each bounded by its timeouts).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrail_core::shutdown::Shutdown;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::conns::{Conn, Conns, ShedReason};

/// Largest request head hyper buffers (request line and headers); hyper's own default is about 400 KiB.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// What the loop needs besides the listener.
#[derive(Clone, Copy)]
pub struct Limits {
    /// `max_connections`.
    pub max_connections: usize,
    /// `header_read_timeout` (TLS handshake plus request head).
    pub header_read_timeout: Duration,
    /// `idle_timeout`.
    pub idle_timeout: Duration,
}

struct Counters {
    source: Arc<str>,
    last_warning: std::sync::Mutex<Option<Instant>>,
    shed_since_warning: AtomicU64,
}

impl Counters {
    fn shed(&self, reason: ShedReason, n: u64) {
        if n == 0 {
            return;
        }
        metrics::counter!(
            "auditrail_source_http_connections_shed_total",
            "source" => self.source.to_string(),
            "reason" => reason.as_str()
        )
        .increment(n);
        tracing::debug!(source = %self.source, reason = reason.as_str(), count = n, "http connections closed by the agent");
        self.warn_now_and_then(reason, n);
    }

    /// A flood must not flood the log too: one warning per 10 s, with the count since the last one.
    fn warn_now_and_then(&self, reason: ShedReason, n: u64) {
        let total = self.shed_since_warning.fetch_add(n, Ordering::Relaxed) + n;
        let mut last = self.last_warning.lock().unwrap();
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return;
        }
        *last = Some(Instant::now());
        self.shed_since_warning.store(0, Ordering::Relaxed);
        tracing::warn!(
            source = %self.source,
            reason = reason.as_str(),
            closed = total,
            "closing http connections that send no complete request in time or crowd out others"
        );
    }
}

/// Serves `app` on `listener` until `shutdown`, then waits for the requests in flight.
pub async fn run(
    source: Arc<str>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    mut shutdown: Shutdown,
    prune: impl Fn() + Send + 'static,
) {
    let conns = Conns::new();
    let counters = Arc::new(Counters {
        source: Arc::clone(&source),
        last_warning: std::sync::Mutex::new(None),
        shed_since_warning: AtomicU64::new(0),
    });
    let graceful = GracefulShutdown::new();
    let reaper = tokio::spawn(reap(
        Arc::clone(&conns),
        Arc::clone(&counters),
        limits.header_read_timeout,
        limits.idle_timeout,
        prune,
    ));
    let gauge =
        metrics::gauge!("auditrail_source_http_connections", "source" => source.to_string());
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stop => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                if conns.len() >= limits.max_connections {
                    if conns.shed_oldest() {
                        counters.shed(ShedReason::Cap, 1);
                    } else {
                        metrics::counter!("auditrail_source_http_connections_refused_total", "source" => source.to_string()).increment(1);
                        tracing::debug!(source = %source, %peer, "every connection is busy: closing the new one");
                        continue;
                    }
                }
                let conn = conns.register();
                gauge.set(conns.len() as f64);
                let watcher = graceful.watcher();
                let app = app.clone();
                let tls = tls.clone();

                tokio::spawn(async move {
                    serve_connection(stream, peer, tls, app, conn, limits, watcher).await;
                });
            }
            Err(e) if is_out_of_descriptors(&e) => {
                // The connection stays in the backlog; make room by closing the longest-waiting idle one
                // instead of sleeping while a crowd of idle sockets keeps every descriptor.
                if conns.shed_oldest() {
                    counters.shed(ShedReason::Descriptors, 1);
                    let _ = tokio::time::timeout(Duration::from_millis(100), conns.closed()).await;
                } else {
                    tracing::warn!(source = %source, error = %e, "out of file descriptors and every connection is busy");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            // ECONNABORTED and friends concern one connection, not the listener.
            Err(e) => tracing::debug!(source = %source, error = %e, "accept failed"),
        }
    }
    drop(listener);
    reaper.abort();
    graceful.shutdown().await;
    gauge.set(0.0);
}

fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

async fn reap(
    conns: Arc<Conns>,
    counters: Arc<Counters>,
    header: Duration,
    idle: Duration,
    prune: impl Fn(),
) {
    let tick = (header.min(idle) / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = Instant::now();
    loop {
        interval.tick().await;
        let (h, i) = conns.shed_expired(header, idle);
        counters.shed(ShedReason::HeaderTimeout, h as u64);
        counters.shed(ShedReason::IdleTimeout, i as u64);
        if last_prune.elapsed() > Duration::from_secs(60) {
            prune();
            last_prune = Instant::now();
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    conn: Conn,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _ = stream.set_nodelay(true);
    // hyper starts its head timer whenever it waits for a head, idle keep-alive included: make it a backstop
    // behind the reaper, which tells a fresh connection from an idle one (and counts what it closes).
    let backstop = limits.header_read_timeout.max(limits.idle_timeout) + Duration::from_secs(1);
    let shed = Arc::clone(&conn.shed);
    let work = async {
        match tls {
            None => serve_io(stream, peer, app, &conn, backstop, watcher).await,
            Some(acceptor) => {
                match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls_stream)) => {
                        serve_io(tls_stream, peer, app, &conn, backstop, watcher).await
                    }
                    Ok(Err(e)) => {
                        metrics::counter!("auditrail_source_http_tls_handshake_failures_total")
                            .increment(1);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    // The reaper closes it too; this is the same deadline seen from inside.
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shed.notified() => {}
    }
    drop(conn);
}

async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    conn: &Conn,
    backstop: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let marker = conn.marker();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        // The head is complete: from now on this connection is serving, not waiting, and is never shed.
        let busy = marker.busy();
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = app.oneshot(req).await;
            drop(busy);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(backstop)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}
