//! The agent's HTTP API: `/metrics` (Prometheus text), `/health` and `/ready`.
//!
//! - `/health`: 200 `{"status":"ok"}` as long as the process serves HTTP (liveness); a component that failed
//!   for good (an ebpf source on a host without privilege or BTF) is named under `"failed"` with its error.
//! - `/ready`: 200 when every source is running and every sink has made contact with its destination at least
//!   once (and has not stopped), else 503; the body names each component's state either way (readiness, for a
//!   load balancer, systemd's `ExecStartPost` or a dashboard). The rule and the states are those of
//!   [`auditrail_core::status`]:
//!
//! ```json
//! {"status":"not_ready",
//!  "sources":{"teleport":{"state":"running","last_error":null}},
//!  "sinks":{"es":{"state":"starting","contacted":false,"last_error":"http://10.0.0.5:9200/: error sending request: connection refused"}}}
//! ```

use std::net::SocketAddr;

use auditrail_core::shutdown::Shutdown;
use auditrail_core::status::{Entry, Registry};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::OnceLock;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder for the `metrics` facade. Call once, before any component registers a
/// metric; later calls are no-ops.
pub fn install_recorder() {
    PROMETHEUS.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("no other metrics recorder is installed")
    });
}

/// Binds `address` and serves the API until shutdown; `/ready` reads `components`.
pub async fn serve(
    address: SocketAddr,
    mut shutdown: Shutdown,
    components: Registry,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(components);
    tracing::info!(%address, "api listening: /metrics, /health, /ready");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
    }))
}

async fn metrics() -> impl IntoResponse {
    match PROMETHEUS.get() {
        Some(h) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics recorder not installed\n".to_string(),
        ),
    }
}

async fn health(State(components): State<Registry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        health_body(&components),
    )
}

/// The `/health` body: `{"status":"ok"}`, plus `"failed"` naming each source and sink that stopped for good
/// with its error (the process is alive either way: a failed ebpf source leaves the rest running).
pub fn health_body(components: &Registry) -> String {
    let snap = components.snapshot();
    let failed: serde_json::Map<String, serde_json::Value> = snap
        .sources
        .iter()
        .map(|(n, e)| (format!("source {n}"), e))
        .chain(snap.sinks.iter().map(|(n, e)| (format!("sink {n}"), e)))
        .filter(|(_, e)| e.state == auditrail_core::status::State::Failed)
        .map(|(n, e)| (n, e.last_error.clone().into()))
        .collect();
    if failed.is_empty() {
        return "{\"status\":\"ok\"}\n".into();
    }
    format!(
        "{}\n",
        serde_json::json!({"status": "ok", "failed": failed})
    )
}

fn entry_json(e: &Entry, with_contact: bool) -> serde_json::Value {
    let mut v = serde_json::json!({ "state": e.state.as_str(), "last_error": e.last_error });
    if with_contact {
        v["contacted"] = e.contacted.into();
    }
    v
}

/// The `/ready` answer for `components` now: status and JSON body.
pub fn readiness(components: &Registry) -> (StatusCode, String) {
    let snap = components.snapshot();
    let ready = snap.ready();
    let sources: serde_json::Map<String, serde_json::Value> = snap
        .sources
        .iter()
        .map(|(name, e)| (name.clone(), entry_json(e, false)))
        .collect();
    let sinks: serde_json::Map<String, serde_json::Value> = snap
        .sinks
        .iter()
        .map(|(name, e)| (name.clone(), entry_json(e, true)))
        .collect();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "sources": sources,
        "sinks": sinks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{body}\n"))
}

async fn ready(State(components): State<Registry>) -> impl IntoResponse {
    let (status, body) = readiness(&components);
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_answers_name_every_component() {
        let r = Registry::new();
        let src = r.source("teleport");
        let sink = r.sink("es");
        let (status, body) = readiness(&r);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "not_ready");
        assert_eq!(v["sources"]["teleport"]["state"], "starting");
        assert_eq!(v["sinks"]["es"]["contacted"], false);
        src.running();
        sink.error("http://127.0.0.1:1/: connection refused");
        let v: serde_json::Value = serde_json::from_str(&readiness(&r).1).unwrap();
        assert_eq!(v["status"], "not_ready");
        assert_eq!(
            v["sinks"]["es"]["last_error"],
            "http://127.0.0.1:1/: connection refused"
        );
        sink.running();
        let (status, body) = readiness(&r);
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ready");
        assert_eq!(v["sinks"]["es"]["state"], "running");
        assert_eq!(
            v["sources"]["teleport"]["last_error"],
            serde_json::Value::Null
        );
    }
}
