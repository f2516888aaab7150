//! `auditrail play --web`: an HTTP server (axum) for the recordings directory: a page listing the
//! recordings, a player page per session (asciinema-player, embedded, with the session's events on a
//! timeline), and the data those pages fetch.
//!
//! Routes: `/` list · `/play/{sid}` player · `/api/recordings` list as JSON · `/api/cast/{sid}` the
//! recording as clean asciicast v2 (streamed) · `/api/events/{sid}` timeline JSON · `/api/problems/{sid}`
//! what is wrong with the file (`file:line: what`) · `/assets/{name}` scripts and styles. Everything else,
//! an unknown sid, a name with `..` or `/`, or a symlink out of the directory is a 404 page linking to the
//! list. Listens on loopback unless told otherwise; elsewhere only with a bearer token ([`auth`]).

pub mod assets;
pub mod auth;
pub mod feed;
pub mod pages;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::source::{self, Recording, Summary};
use super::PlayArgs;

/// Most recordings listed.
pub const MAX_LISTED: usize = 10_000;

/// What the handlers share.
struct App {
    dir: PathBuf,
    /// Summaries by sid, with the `.cast`'s size and mtime they were made from.
    summaries: Mutex<SummaryCache>,
    /// The problems the last `/api/cast` of each sid found.
    problems: Mutex<HashMap<String, Vec<String>>>,
}

type Shared = Arc<App>;

/// Summaries by sid, with the `.cast`'s size and mtime they were made from.
type SummaryCache = HashMap<String, (u64, Option<SystemTime>, Summary)>;

/// Serves until killed.
pub fn serve(args: &PlayArgs, dir: &Path) -> Result<(), String> {
    let addr: SocketAddr = args.address.parse().map_err(|e| {
        format!(
            "--address `{}` is not an address (IP:PORT): {e}",
            args.address
        )
    })?;
    let token = match &args.token_file {
        Some(p) => Some(auth::load_token(p)?),
        None => None,
    };
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(format!(
            "--address {addr} is not a loopback address: give --token-file so that only holders of the token see the recordings"
        ));
    }
    if !dir.is_dir() {
        return Err(format!(
            "the recordings directory {} does not exist",
            dir.display()
        ));
    }
    if let Some(n) = assets::not_built() {
        tracing::warn!("{n}");
    }
    let app = Arc::new(App {
        dir: dir.to_path_buf(),
        summaries: Mutex::new(HashMap::new()),
        problems: Mutex::new(HashMap::new()),
    });
    let router = router(app, token);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("auditrail-play")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        // The tests and scripts wait for this line to learn the port.
        eprintln!(
            "auditrail play: serving {} on http://{local}/",
            dir.display()
        );
        axum::serve(listener, router)
            .await
            .map_err(|e| format!("server: {e}"))
    })
}

fn router(app: Shared, token: Option<auditrail_core::Secret>) -> Router {
    Router::new()
        .route("/", get(list_page))
        .route("/play/{sid}", get(player_page))
        .route("/api/recordings", get(list_json))
        .route("/api/cast/{sid}", get(cast))
        .route("/api/events/{sid}", get(events))
        .route("/api/problems/{sid}", get(problems))
        .route("/assets/{name}", get(asset))
        .fallback(|| async { not_found("No such page.") })
        .layer(axum::middleware::from_fn(headers))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            auth::check,
        ))
        .with_state(app)
}

/// Headers on every answer: no sniffing, no referrer, and a policy allowing only this origin's scripts
/// (asciinema-player runs its terminal as WebAssembly, hence `wasm-unsafe-eval`).
async fn headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Html(pages::not_found(what))).into_response()
}

fn unknown(sid: &str) -> Response {
    not_found(&format!("There is no recording `{sid}` here."))
}

/// The recording `sid`, only inside the directory.
fn find(app: &App, sid: &str) -> Option<Recording> {
    source::in_dir(sid, &app.dir)
}

fn summary(app: &App, rec: &Recording) -> Summary {
    let meta = std::fs::metadata(&rec.cast).ok();
    let (len, mtime) = (
        meta.as_ref().map_or(0, |m| m.len()),
        meta.and_then(|m| m.modified().ok()),
    );
    if let Some((l, m, s)) = app
        .summaries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&rec.sid)
    {
        if *l == len && *m == mtime {
            return s.clone();
        }
    }
    let s = source::summarize(rec);
    let mut cache = app.summaries.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() > MAX_LISTED {
        cache.clear();
    }
    cache.insert(rec.sid.clone(), (len, mtime, s.clone()));
    s
}

async fn summaries(app: Shared) -> Result<Vec<Summary>, String> {
    tokio::task::spawn_blocking(move || {
        let recs = source::list(&app.dir, MAX_LISTED)
            .map_err(|e| format!("cannot list {}: {e}", app.dir.display()))?;
        let mut rows: Vec<Summary> = recs.iter().map(|r| summary(&app, r)).collect();
        rows.sort_by(|a, b| b.start.cmp(&a.start).then(a.sid.cmp(&b.sid)));
        Ok(rows)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

async fn list_page(State(app): State<Shared>) -> Response {
    let dir = app.dir.display().to_string();
    match summaries(app).await {
        Ok(rows) => Html(pages::list(&dir, &rows, assets::not_built().as_deref())).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn list_json(State(app): State<Shared>) -> Response {
    match summaries(app).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn player_page(State(app): State<Shared>, UrlPath(sid): UrlPath<String>) -> Response {
    let Some(rec) = find(&app, &sid) else {
        return unknown(&sid);
    };
    let app2 = app.clone();
    let rec2 = rec.clone();
    let s = tokio::task::spawn_blocking(move || summary(&app2, &rec2))
        .await
        .ok();
    let config = serde_json::json!({
        "sid": rec.sid,
        "castUrl": format!("/api/cast/{}", rec.sid),
        "eventsUrl": format!("/api/events/{}", rec.sid),
        "problemsUrl": format!("/api/problems/{}", rec.sid),
        "eventsFile": format!("{}.events.ndjson", rec.sid),
        "duration": s.as_ref().and_then(|s| s.duration),
        "notBuilt": assets::not_built(),
    });
    Html(pages::player(&rec.sid, &config)).into_response()
}

/// A writer that hands 64 KiB chunks to the response body, waiting while the client is slow.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 << 10 {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

async fn cast(State(app): State<Shared>, UrlPath(sid): UrlPath<String>) -> Response {
    let Some(rec) = find(&app, &sid) else {
        return unknown(&sid);
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(64 << 10),
        };
        let problems = match feed::clean_cast(&rec.cast, &mut w) {
            Ok((problems, count, _)) => {
                let mut out: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                if count > out.len() as u64 {
                    out.push(format!("… {} problems in all", count));
                }
                out
            }
            Err(e) => vec![e.to_string()],
        };
        let _ = std::io::Write::flush(&mut w);
        if !problems.is_empty() {
            tracing::warn!(sid = %rec.sid, problems = problems.len(), first = %problems[0], "damaged recording served");
        }
        let mut map = app2.problems.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_LISTED {
            map.clear();
        }
        map.insert(rec.sid.clone(), problems);
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(Ok::<_, std::convert::Infallible>))
    });
    (
        [(
            header::CONTENT_TYPE,
            "application/x-asciicast; charset=utf-8",
        )],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn events(State(app): State<Shared>, UrlPath(sid): UrlPath<String>) -> Response {
    let Some(rec) = find(&app, &sid) else {
        return unknown(&sid);
    };
    let out = tokio::task::spawn_blocking(move || {
        let start = super::cast::CastReader::open(&rec.cast)
            .ok()
            .and_then(|r| r.header().timestamp);
        rec.events
            .as_deref()
            .map(|e| feed::timeline(e, start).0)
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    axum::Json(out).into_response()
}

async fn problems(State(app): State<Shared>, UrlPath(sid): UrlPath<String>) -> Response {
    let Some(rec) = find(&app, &sid) else {
        return unknown(&sid);
    };
    let known = app
        .problems
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&rec.sid)
        .cloned();
    let list = match known {
        Some(l) => l,
        None => tokio::task::spawn_blocking(move || {
            match feed::clean_cast(&rec.cast, &mut std::io::sink()) {
                Ok((p, _, _)) => p.iter().map(|p| p.to_string()).collect(),
                Err(e) => vec![e.to_string()],
            }
        })
        .await
        .unwrap_or_default(),
    };
    axum::Json(list).into_response()
}

async fn asset(UrlPath(name): UrlPath<String>) -> Response {
    match assets::get(&name) {
        Some((&[], _)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            assets::not_built().unwrap_or_default(),
        )
            .into_response(),
        Some((body, ty)) => ([(header::CONTENT_TYPE, ty)], body).into_response(),
        None => not_found("No such asset."),
    }
}
