//! The splunk_hec source: Splunk's HTTP Event Collector protocol, so that another agent's `splunk_hec` sink, a
//! script with curl, or any shipper that speaks HEC can send audit events here.
//!
//! Endpoints (the `/1.0` forms too):
//! - `POST /services/collector/event` and `POST /services/collector`: JSON envelopes back to back, whitespace
//!   between them or not; each envelope's `event` is an audit event, kept byte for byte (see [`body`]).
//! - `POST /services/collector/raw`: one event per line; `host`, `source`, `sourcetype`, `index`, `time` from
//!   the query string. A channel is needed only with acknowledgements on.
//! - `GET|POST /services/collector/health`: `{"text":"HEC is healthy","code":17}`, without a token.
//! - `POST /services/collector/ack`: `{"acks":[0,1]}` → `{"acks":{"0":true,"1":false}}` (see [`acks`]).
//!
//! Authentication is `Authorization: Splunk <token>`, against each of `tokens` in constant time, on the
//! request head before a byte of the body is read: `{"text":"Token is required","code":2}` (401) without it,
//! `{"text":"Invalid authorization","code":3}` (401) for another scheme, `{"text":"Invalid token","code":4}`
//! (403) for an unknown token, `{"text":"Query string authorization is not enabled","code":16}` (400) for a
//! `?token=` (a token in a URL ends up in access logs). A channel (`X-Splunk-Request-Channel` or `?channel=`)
//! must be a GUID (`{"text":"Invalid data channel","code":11}`); with acknowledgements on it is required on
//! `/event`, `/raw` and `/ack` (`{"text":"Data channel is missing","code":10}`); `/ack` with acknowledgements
//! off is `{"text":"ACK is disabled","code":14}`.
//!
//! A body is taken whole or not at all (see [`body`]): the first bad envelope answers its code (5, 6, 12, 13
//! or 15, 400) with `invalid-event-number`, the request's good events do not enter the pipeline, the bad
//! envelope goes to the dead-letter file, and `auditrail_source_splunk_hec_requests_total{code}` counts it.
//! Over `max_body_bytes` on the wire or `max_decompressed_bytes` inflated: 413. A request over the client's
//! rate, or whose events find the `block` buffers full for `accept_timeout`, or past the ackId bound, is
//! answered `{"text":"Server is busy","code":9}` (503, `Retry-After`), which HEC clients retry. Success is
//! `{"text":"Success","code":0}`, with `"ackId":N` when acknowledgements are on; it is sent once every event
//! of the request is in every sink's buffer, and the ackId turns true once every sink has it.

pub mod acks;
pub mod body;
mod config;
mod faults;
pub mod protocol;

pub use config::{AckConfig, OtherEvents, SplunkHecSourceConfig};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrail_core::dead_letter::DeadLetterRecord;
use auditrail_core::{Fanout, Secret};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;

use super::http::{limit, serve};
use super::ingest::Ingest;
use super::{SourceContext, SourceError, SourceTask};
use protocol::Status;

/// The channel header.
pub const CHANNEL_HEADER: &str = "x-splunk-request-channel";
/// Largest `/ack` request body: a few hundred thousand ackIds.
const MAX_ACK_BODY: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Event,
    Raw,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Event => "event",
            Endpoint::Raw => "raw",
        }
    }
}

struct AppState {
    ingest: Arc<Ingest>,
    fanout: Fanout,
    tokens: Vec<Secret>,
    acks: Option<Arc<acks::Acks>>,
    metadata_key: Option<String>,
    other: OtherEvents,
    accept_timeout: Duration,
    body_read_timeout: Duration,
    max_body_bytes: usize,
    max_decompressed_bytes: usize,
    limiter: Arc<limit::ClientLimiter>,
    requests: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// Binds the listener, loads TLS, and returns the server task.
pub async fn build(
    config: SplunkHecSourceConfig,
    cx: SourceContext,
) -> Result<SourceTask, SourceError> {
    let (acceptor, listener) =
        super::http::bind(&cx.name, config.address, config.tls.as_ref()).await?;
    let limiter = Arc::new(limit::ClientLimiter::new(config.rate_limit));
    let acks = config
        .acknowledgements
        .enabled
        .then(|| acks::Acks::new(config.acknowledgements, Arc::clone(&cx.name)));
    let state = Arc::new(AppState {
        ingest: Arc::clone(&cx.ingest),
        fanout: cx.fanout,
        tokens: config.tokens.clone(),
        acks: acks.clone(),
        metadata_key: config.metadata_key.clone(),
        other: config.other_events,
        accept_timeout: config.accept_timeout.0,
        body_read_timeout: config.body_read_timeout.0,
        max_body_bytes: config.max_body_bytes.as_usize(),
        max_decompressed_bytes: config.max_decompressed_bytes.as_usize(),
        limiter: Arc::clone(&limiter),
        requests: AtomicU64::new(0),
        last_warning: Mutex::new(None),
    });
    let app = router(state);
    let name = cx.name;
    tracing::info!(source = %name, address = %config.address, tls = config.tls.is_some(), acknowledgements = config.acknowledgements.enabled, tokens = config.tokens.len(), "splunk_hec source listening on /services/collector");
    let limits = serve::Limits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout.0,
        idle_timeout: config.idle_timeout.0,
    };
    let pruner = acks.map(|a| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(a.prune_every());
            loop {
                tick.tick().await;
                a.prune();
            }
        })
    });
    let server = serve::run(
        name,
        listener,
        acceptor,
        app,
        limits,
        cx.shutdown,
        move || limiter.prune(),
    );
    Ok(Box::pin(async move {
        server.await;
        if let Some(p) = pruner {
            p.abort();
        }
    }))
}

fn router(state: Arc<AppState>) -> Router {
    let event = post(|s, c, r| handle(s, c, r, Endpoint::Event));
    let raw = post(|s, c, r| handle(s, c, r, Endpoint::Raw));
    Router::new()
        .route("/services/collector", event.clone())
        .route("/services/collector/event", event.clone())
        .route("/services/collector/event/1.0", event)
        .route("/services/collector/raw", raw.clone())
        .route("/services/collector/raw/1.0", raw)
        .route("/services/collector/health", get(health).post(health))
        .route("/services/collector/health/1.0", get(health).post(health))
        .route("/services/collector/ack", post(ack))
        .fallback(not_found)
        .with_state(state)
}

fn reply(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

fn count(endpoint: &'static str, s: Status) {
    metrics::counter!("auditrail_source_splunk_hec_requests_total", "endpoint" => endpoint, "code" => s.label())
        .increment(1);
}

fn answer(endpoint: &'static str, s: Status) -> Response {
    count(endpoint, s);
    reply(s.http, s.body())
}

/// An answer after which the connection is closed: its body was not read.
fn answer_and_close(endpoint: &'static str, s: Status) -> Response {
    let mut r = answer(endpoint, s);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    if s == protocol::SERVER_BUSY {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

async fn not_found() -> Response {
    reply(
        StatusCode::NOT_FOUND,
        r#"{"text":"The requested URL was not found on this server.","code":404}"#.into(),
    )
}

async fn health() -> Response {
    if faults::now().busy {
        return answer("health", protocol::UNHEALTHY_QUEUES_FULL);
    }
    answer("health", protocol::HEALTHY)
}

#[derive(Deserialize, Default)]
struct CommonQuery {
    channel: Option<String>,
    token: Option<String>,
}

/// Rate, token, then channel: everything the head can tell, before the body is read.
fn check_head(
    state: &AppState,
    peer: SocketAddr,
    parts: &Parts,
    endpoint: &'static str,
    need_channel: bool,
) -> Result<Option<String>, Box<Response>> {
    // (Boxed: a `Response` is large and the `Ok` path, the common one, should not carry its size.)
    if faults::now().busy {
        return Err(Box::new(answer_and_close(endpoint, protocol::SERVER_BUSY)));
    }
    if let Err(wait) = state.limiter.check(peer.ip()) {
        metrics::counter!("auditrail_source_splunk_hec_rate_limited_total").increment(1);
        let mut r = answer_and_close(endpoint, protocol::SERVER_BUSY);
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Err(Box::new(r));
    }
    let query: CommonQuery = Query::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    if !state.tokens.is_empty() {
        authorize(&parts.headers, &state.tokens, query.token.is_some())
            .map_err(|s| Box::new(answer_and_close(endpoint, s)))?;
    }
    let channel = parts
        .headers
        .get(CHANNEL_HEADER)
        .map(|v| v.to_str().map(str::to_string).unwrap_or_default())
        .or(query.channel);
    match channel {
        None if need_channel => Err(Box::new(answer_and_close(
            endpoint,
            protocol::CHANNEL_MISSING,
        ))),
        None => Ok(None),
        Some(c) if uuid::Uuid::try_parse(&c).is_err() => Err(Box::new(answer_and_close(
            endpoint,
            protocol::INVALID_CHANNEL,
        ))),
        Some(c) => Ok(Some(c.to_ascii_lowercase())),
    }
}

/// `Authorization: Splunk <token>` against every configured token, each in constant time, all of them
/// always compared (so the time does not tell which token, if any, was close).
fn authorize(headers: &HeaderMap, tokens: &[Secret], in_query: bool) -> Result<(), Status> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(if in_query {
            protocol::QUERY_STRING_AUTH_DISABLED
        } else {
            protocol::TOKEN_REQUIRED
        });
    };
    let v = value.as_bytes();
    let given = match v.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"Splunk ") => v[7..].trim_ascii(),
        _ => return Err(protocol::INVALID_AUTHORIZATION),
    };
    let ok = tokens
        .iter()
        .fold(false, |found, t| t.matches(given) | found);
    if ok {
        Ok(())
    } else {
        Err(protocol::INVALID_TOKEN)
    }
}

/// Reads the body within `body_read_timeout` and `limit` bytes.
async fn read_body(
    state: &AppState,
    parts: &Parts,
    body: axum::body::Body,
    limit: usize,
    endpoint: &'static str,
    peer: SocketAddr,
) -> Result<bytes::Bytes, Response> {
    let too_large = || {
        count(endpoint, protocol::INVALID_DATA_FORMAT);
        let mut r = reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            protocol::INVALID_DATA_FORMAT.body(),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(state.body_read_timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "reading a HEC request body failed");
            Err(answer_and_close(endpoint, protocol::INVALID_DATA_FORMAT))
        }
        Err(_) => {
            tracing::debug!(%peer, "HEC request body not received within body_read_timeout");
            count(endpoint, protocol::INVALID_DATA_FORMAT);
            let mut r = reply(
                StatusCode::REQUEST_TIMEOUT,
                protocol::INVALID_DATA_FORMAT.body(),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(r)
        }
    }
}

async fn handle(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    endpoint: Endpoint,
) -> Response {
    let ep = endpoint.as_str();
    let (parts, body) = request.into_parts();
    let channel = match check_head(&state, peer, &parts, ep, state.acks.is_some()) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let body = match read_body(&state, &parts, body, state.max_body_bytes, ep, peer).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let encoding = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let raw_query: body::RawQuery = match endpoint {
        Endpoint::Raw => Query::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default(),
        Endpoint::Event => body::RawQuery::default(),
    };
    let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let st = Arc::clone(&state);
    let max_inflated = state.max_decompressed_bytes;
    let parsed = tokio::task::spawn_blocking(move || {
        let body = body::inflate(body, encoding.as_deref(), max_inflated).map_err(Err)?;
        let opts = body::Options {
            metadata_key: st.metadata_key.as_deref(),
            other: st.other,
        };
        match endpoint {
            Endpoint::Event => body::parse_events(&body, &st.ingest, opts),
            Endpoint::Raw => body::parse_raw(&body, &raw_query, &st.ingest, opts),
        }
        .map_err(Ok)
    })
    .await;
    let parsed = match parsed {
        Ok(Ok(p)) => p,
        Ok(Err(Ok(refusal))) => return refused(&state, ep, n, peer, refusal),
        Ok(Err(Err(e))) => {
            tracing::debug!(%peer, error = %e, "HEC request body could not be decoded");
            let too_large = matches!(e, body::InflateError::TooLarge(_));
            count(ep, protocol::INVALID_DATA_FORMAT);
            let http = if too_large {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return reply(http, protocol::INVALID_DATA_FORMAT.body());
        }
        Err(e) => {
            tracing::error!(error = %e, "parsing a HEC body failed");
            return answer(ep, protocol::INTERNAL_ERROR);
        }
    };
    let mut events = parsed.events;
    let ack = match (&state.acks, &channel) {
        (Some(acks), Some(channel)) => match acks.begin(channel) {
            Ok((id, batch)) => {
                for e in &mut events {
                    e.set_finalizer(batch.finalizer());
                }
                Some(id)
            }
            Err(acks::Full) => {
                tracing::debug!("ackId bound reached: answering busy");
                let mut r = answer(ep, protocol::SERVER_BUSY);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        },
        _ => None,
    };
    let accepted = events.len() as u64;
    let bytes = events.iter().map(|e| e.raw().len() as u64).sum();
    if let Err(unsent) = state
        .fanout
        .send_timeout(events, state.accept_timeout)
        .await
    {
        metrics::counter!("auditrail_source_splunk_hec_busy_total", "source" => state.ingest.source().to_string()).increment(1);
        let sent = accepted - unsent.len() as u64;
        if sent > 0 {
            // Those stay in the pipeline; the client resends them with the rest (same uid).
            state.ingest.count_totals(sent, 0);
        }
        let mut r = answer(ep, protocol::SERVER_BUSY);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    state.ingest.count_totals(accepted, bytes);
    if parsed.wrapped > 0 {
        metrics::counter!("auditrail_source_splunk_hec_wrapped_total", "source" => state.ingest.source().to_string()).increment(parsed.wrapped);
    }
    count(ep, protocol::SUCCESS);
    match ack {
        Some(id) => reply(StatusCode::OK, protocol::success_with_ack(id)),
        None => reply(StatusCode::OK, protocol::SUCCESS.body()),
    }
}

/// Counts, logs (now and then) and dead-letters a refused body, and answers its code.
fn refused(
    state: &AppState,
    ep: &'static str,
    n: u64,
    peer: SocketAddr,
    r: body::Refusal,
) -> Response {
    count(ep, r.status);
    let location = match r.event {
        Some(i) => format!("hec request {n} from {peer} event {i}"),
        None => format!("hec request {n} from {peer}"),
    };
    let record = DeadLetterRecord::new(
        state.ingest.source(),
        location.clone(),
        r.status.label(),
        r.detail.clone(),
        &r.raw,
    );
    if let Err(e) = state.ingest.dead_letter().write(&[record]) {
        tracing::error!(source = %state.ingest.source(), error = %e, "cannot write the dead-letter file; the refused HEC request is counted but not kept");
    }
    let mut last = state.last_warning.lock().unwrap();
    if !last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
        *last = Some(Instant::now());
        tracing::warn!(source = %state.ingest.source(), %location, code = r.status.code, detail = %r.detail, "HEC request refused; none of its events were taken (counted in auditrail_source_splunk_hec_requests_total, kept in the dead-letter file)");
    }
    match r.event {
        Some(i) => reply(r.status.http, r.status.body_at(i)),
        None => reply(r.status.http, r.status.body()),
    }
}

#[derive(Deserialize)]
struct AckRequest {
    acks: Vec<u64>,
}

async fn ack(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Some(acks) = state.acks.clone() else {
        // Still authenticated first: an unauthenticated client learns nothing of the configuration.
        if let Err(r) = check_head(&state, peer, &parts, "ack", false) {
            return *r;
        }
        return answer("ack", protocol::ACK_DISABLED);
    };
    let channel = match check_head(&state, peer, &parts, "ack", true) {
        Ok(Some(c)) => c,
        Ok(None) => return answer_and_close("ack", protocol::CHANNEL_MISSING),
        Err(r) => return *r,
    };
    let body = match read_body(&state, &parts, body, MAX_ACK_BODY, "ack", peer).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(req) = serde_json::from_slice::<AckRequest>(&body) else {
        return answer("ack", protocol::INVALID_DATA_FORMAT);
    };
    let statuses = acks.status(&channel, &req.acks, faults::now().hold_acks);
    let mut out = String::with_capacity(10 + statuses.len() * 12);
    out.push_str(r#"{"acks":{"#);
    for (i, (id, done)) in statuses.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(r#""{id}":{done}"#));
    }
    out.push_str("}}");
    count("ack", protocol::SUCCESS);
    reply(StatusCode::OK, out)
}
