//! The http source: `POST /v1/events` with a JSON object, a JSON array or NDJSON.
//!
//! Answers: 200 `{"accepted":N}` once every event is in the pipeline (in every sink's buffer); 400 with one
//! error per bad line or element while the good ones still go through; 401 without the configured bearer token;
//! 408 when the body does not arrive within `body_read_timeout`; 413 over `max_body_bytes`; 429 with
//! `Retry-After` over the client's request rate; 503 with `Retry-After` when a `block` buffer stays full for
//! `accept_timeout` (backpressure: the client should retry; events keep their `uid`, so a retry cannot
//! duplicate where the sink dedupes).
//!
//! Rate, token and declared length are checked on the request head, before a byte of the body is read: a
//! refused request costs its headers only, and its connection is closed rather than drained.

pub mod body;
pub(crate) mod config;
mod conns;
pub(crate) mod limit;
pub(crate) mod serve;
pub(crate) mod tls;

pub use config::{HttpSourceConfig, RateLimitConfig, TlsConfig};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::{Fanout, Secret};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use super::ingest::Ingest;
use super::{SourceContext, SourceError, SourceTask};

/// At most this many per-line errors are listed in a 400 answer; all are counted and dead-lettered.
const MAX_LISTED_ERRORS: usize = 100;

struct AppState {
    ingest: Arc<Ingest>,
    fanout: Fanout,
    token: Option<Secret>,
    accept_timeout: Duration,
    body_read_timeout: Duration,
    max_body_bytes: usize,
    limiter: Arc<limit::ClientLimiter>,
    requests: AtomicU64,
}

/// Loads the TLS settings (when given) and binds `address`: the start of every HTTP-based source, whose errors
/// name the source.
pub(crate) async fn bind(
    source: &str,
    address: SocketAddr,
    tls: Option<&TlsConfig>,
) -> Result<(Option<tokio_rustls::TlsAcceptor>, tokio::net::TcpListener), SourceError> {
    let acceptor = match tls {
        None => None,
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            tls::server_config(t).map_err(|e| SourceError::State {
                source_name: source.to_string(),
                message: e.to_string(),
            })?,
        )),
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| SourceError::Listen {
            source_name: source.to_string(),
            address: address.to_string(),
            error,
        })?;
    Ok((acceptor, listener))
}

/// Binds the listener, loads TLS, and returns the server task.
pub async fn build(config: HttpSourceConfig, cx: SourceContext) -> Result<SourceTask, SourceError> {
    let (acceptor, listener) = bind(&cx.name, config.address, config.tls.as_ref()).await?;
    let limiter = Arc::new(limit::ClientLimiter::new(config.rate_limit));
    let state = Arc::new(AppState {
        ingest: Arc::clone(&cx.ingest),
        fanout: cx.fanout,
        token: config.token.clone(),
        accept_timeout: config.accept_timeout.0,
        body_read_timeout: config.body_read_timeout.0,
        max_body_bytes: config.max_body_bytes.as_usize(),
        limiter: Arc::clone(&limiter),
        requests: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v1/events", post(post_events))
        .with_state(state);
    let name = cx.name;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!(source = %name, address = %config.address, scheme, mtls = config.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()), "http source listening on POST /v1/events");
    let limits = serve::Limits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout.0,
        idle_timeout: config.idle_timeout.0,
    };
    Ok(Box::pin(serve::run(
        name,
        listener,
        acceptor,
        app,
        limits,
        cx.shutdown,
        move || limiter.prune(),
    )))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let labels = [("status", status.as_u16().to_string())];
    metrics::counter!("auditrail_source_http_requests_total", &labels).increment(1);
    (status, Json(body)).into_response()
}

fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| token.matches(given))
}

/// An answer after which the connection is closed: the body was not read, so the connection cannot carry
/// another request, and draining it would cost what refusing early saved.
fn answer_and_close(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = answer(status, body);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn post_events(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if let Err(wait) = state.limiter.check(peer.ip()) {
        metrics::counter!("auditrail_source_http_rate_limited_total").increment(1);
        tracing::debug!(%peer, "request over the client's rate limit");
        let mut r = answer_and_close(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "too many requests from this address; retry later"}),
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return r;
    }
    let (parts, body) = request.into_parts();
    if let Some(token) = &state.token {
        if !authorized(&parts.headers, token) {
            let mut r = answer_and_close(
                StatusCode::UNAUTHORIZED,
                json!({"error": "missing or wrong bearer token"}),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    let too_large = || {
        answer_and_close(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("request body is larger than max_body_bytes ({} bytes)", state.max_body_bytes)}),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return too_large();
    }
    let read = Limited::new(body, state.max_body_bytes).collect();
    let body = match tokio::time::timeout(state.body_read_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(),
        Ok(Err(e)) => {
            return answer_and_close(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("reading the request body failed: {e}")}),
            )
        }
        Err(_) => {
            tracing::debug!(%peer, "request body not received within body_read_timeout");
            return answer_and_close(
                StatusCode::REQUEST_TIMEOUT,
                json!({"error": "the request body did not arrive within body_read_timeout"}),
            );
        }
    };
    let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let location = format!("http request {n} from {peer}");
    let ingest = Arc::clone(&state.ingest);
    let parsed = match tokio::task::spawn_blocking(move || {
        let parsed = body::parse(body, &ingest, &location);
        ingest.reject(parsed.rejected.iter().map(|(_, r)| r));
        parsed
    })
    .await
    {
        Ok(p) => p,
        Err(e) => {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": format!("parsing failed: {e}")}),
            )
        }
    };
    let accepted = parsed.events.len();
    if accepted > 0 {
        let bytes = parsed.events.iter().map(|e| e.raw().len() as u64).sum();
        state.ingest.observe(&parsed.events);
        if let Err(unsent) = state
            .fanout
            .send_timeout(parsed.events, state.accept_timeout)
            .await
        {
            let sent = accepted - unsent.len();
            let mut r = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "buffers are full (backpressure); retry later", "accepted": sent, "not_accepted": unsent.len()}),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return r;
        }
        state.ingest.count_totals(accepted as u64, bytes);
    }
    if parsed.rejected.is_empty() {
        return answer(StatusCode::OK, json!({"accepted": accepted}));
    }
    let errors: Vec<_> = parsed
        .rejected
        .iter()
        .take(MAX_LISTED_ERRORS)
        .map(|(pos, r)| {
            let mut e = json!({"reason": r.error.reason(), "message": r.error.to_string()});
            match pos {
                body::Position::Line(l) => e["line"] = json!(l),
                body::Position::Index(i) => e["index"] = json!(i),
                body::Position::Body => {}
            }
            e
        })
        .collect();
    answer(
        StatusCode::BAD_REQUEST,
        json!({"accepted": accepted, "rejected": parsed.rejected.len(), "errors": errors}),
    )
}
