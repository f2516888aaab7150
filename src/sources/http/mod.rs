//! The http source: `POST /v1/events` with a JSON object, a JSON array or NDJSON.
//!
//! Answers: 200 `{"accepted":N}` once every event is in the pipeline (in every sink's buffer); 400 with one
//! error per bad line or element while the good ones still go through; 401 without the configured bearer token;
//! 413 over `max_body_bytes`; 503 with `Retry-After` when a `block` buffer stays full for `accept_timeout`
//! (backpressure: the client should retry; events keep their `uid`, so a retry cannot duplicate where the sink
//! dedupes).

pub mod body;
mod config;

pub use config::HttpSourceConfig;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::Fanout;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;

use super::ingest::Ingest;
use super::{SourceContext, SourceError, SourceTask};

/// At most this many per-line errors are listed in a 400 answer; all are counted and dead-lettered.
const MAX_LISTED_ERRORS: usize = 100;

struct AppState {
    ingest: Arc<Ingest>,
    fanout: Fanout,
    token: Option<String>,
    accept_timeout: Duration,
    requests: AtomicU64,
}

/// Binds the listener and returns the server task.
pub async fn build(config: HttpSourceConfig, cx: SourceContext) -> Result<SourceTask, SourceError> {
    let listener = tokio::net::TcpListener::bind(config.address)
        .await
        .map_err(|error| SourceError::Listen {
            source_name: cx.name.to_string(),
            address: config.address.to_string(),
            error,
        })?;
    let state = Arc::new(AppState {
        ingest: Arc::clone(&cx.ingest),
        fanout: cx.fanout,
        token: config.token.clone(),
        accept_timeout: config.accept_timeout.0,
        requests: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v1/events", post(post_events))
        .layer(DefaultBodyLimit::max(config.max_body_bytes.as_usize()))
        .with_state(state);
    let name = cx.name;
    let mut shutdown = cx.shutdown;
    tracing::info!(source = %name, address = %config.address, "http source listening on POST /v1/events");
    Ok(Box::pin(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await;
        if let Err(e) = served {
            tracing::error!(source = %name, error = %e, "http source stopped with an error");
        }
    }))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let labels = [("status", status.as_u16().to_string())];
    metrics::counter!("auditrail_source_http_requests_total", &labels).increment(1);
    (status, Json(body)).into_response()
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = given.strip_prefix("Bearer ") else {
        return false;
    };
    // Constant time in the token's length, so the comparison does not tell how much of a guess was right.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn post_events(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if let Some(token) = &state.token {
        if !authorized(&headers, token) {
            let mut r = answer(
                StatusCode::UNAUTHORIZED,
                json!({"error": "missing or wrong bearer token"}),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            return answer(status, json!({"error": rejection.body_text()}));
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
