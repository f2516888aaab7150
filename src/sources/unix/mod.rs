//! The unix source: NDJSON over a unix stream socket, one event per line, for local producers (a login hook,
//! `auditrail record`). Backpressure is the socket itself: while a `block` buffer is full the connection is not
//! read, so the writer's `write` blocks or gets `EAGAIN`. Bad lines are counted and dead-lettered with their
//! connection and line number (and the peer's uid and pid, from `SO_PEERCRED`); they never close the connection.
//!
//! The socket is `0600` unless `mode`/`group` say otherwise (users' recorders need `0666`, or `0660` with a
//! group: docs/sessions.md). `spool_dirs` are drained into the same pipeline ([`spool`]).

mod config;
mod mode;
mod spool;

pub use config::UnixSourceConfig;
pub use mode::{SocketGroup, SocketMode};

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};

use super::ingest::Ingest;
use super::lines::LineSplitter;
use super::{SourceContext, SourceError, SourceTask};
use auditrail_core::{Event, Fanout};

const READ_CHUNK: usize = 64 * 1024;

/// Creates the socket and returns the accept loop.
pub fn build(config: UnixSourceConfig, cx: SourceContext) -> Result<SourceTask, SourceError> {
    let listen_err = |error: std::io::Error| SourceError::Listen {
        source_name: cx.name.to_string(),
        address: config.path.display().to_string(),
        error,
    };
    remove_stale(&config.path).map_err(listen_err)?;
    if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(listen_err)?;
    }
    for dir in &config.spool_dirs {
        crate::sessions::shared_dirs::prepare_drop_dir(dir, &cx.data_dir).map_err(|e| {
            SourceError::State {
                source_name: cx.name.to_string(),
                message: format!("spool directory {}: {e}", dir.display()),
            }
        })?;
    }
    let listener = UnixListener::bind(&config.path).map_err(listen_err)?;
    if let Err(e) = mode::apply(&config.path, config.mode, config.group.as_ref()) {
        let _ = std::fs::remove_file(&config.path);
        return Err(listen_err(std::io::Error::new(
            e.kind(),
            format!(
                "setting mode {} / group {:?}: {e}",
                config.mode, config.group
            ),
        )));
    }
    if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::sessions::shared_dirs::make_reachable(dir, &cx.data_dir, config.mode.0);
    }
    tracing::info!(source = %cx.name, path = %config.path.display(), mode = %config.mode, "unix source listening");
    let path = config.path.clone();
    let spool = (!config.spool_dirs.is_empty()).then(|| spool::Spool {
        dirs: config.spool_dirs.clone(),
        interval: config.spool_scan_interval.0,
        ingest: Arc::clone(&cx.ingest),
    });
    let spool_task = spool.map(|s| s.run(cx.fanout.clone(), cx.shutdown.clone()));
    Ok(Box::pin(async move {
        let accept = accept_loop(listener, path, cx);
        match spool_task {
            Some(spool) => {
                tokio::join!(accept, spool);
            }
            None => accept.await,
        }
    }))
}

async fn accept_loop(listener: UnixListener, path: std::path::PathBuf, cx: SourceContext) {
    let mut shutdown = cx.shutdown.clone();
    let mut connections = tokio::task::JoinSet::new();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    n += 1;
                    let peer = stream.peer_cred().map_or_else(|_| String::new(), |c| format!(" (uid {} pid {})", c.uid(), c.pid().unwrap_or(0)));
                    let conn = Connection { ingest: Arc::clone(&cx.ingest), fanout: cx.fanout.clone(), location: format!("unix {} connection {n}", path.display()), peer };
                    let shutdown = cx.shutdown.clone();
                    connections.spawn(conn.run(stream, shutdown));
                }
                Err(e) => tracing::warn!(source = %cx.name, error = %e, "accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
    while connections.join_next().await.is_some() {}
}

/// Removes a socket file nobody listens on; refuses to touch anything else.
pub(crate) fn remove_stale(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process is listening on this socket",
                ));
            }
            std::fs::remove_file(path)
        }
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; refusing to replace it",
        )),
    }
}

struct Connection {
    ingest: Arc<Ingest>,
    fanout: Fanout,
    location: String,
    /// ` (uid U pid P)` of the writer, for dead-letter records.
    peer: String,
}

impl Connection {
    async fn run(self, mut stream: UnixStream, mut shutdown: auditrail_core::shutdown::Shutdown) {
        let mut lines = LineSplitter::new(0, Some(0), self.ingest.max_line());
        loop {
            let mut buf = lines.buffer(READ_CHUNK);
            let read = tokio::select! {
                _ = shutdown.wait() => return,
                r = stream.read_buf(&mut buf) => r,
            };
            match read {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(location = %self.location, error = %e, "read failed; closing the connection");
                    return;
                }
            }
            let mut events: Vec<Event> = Vec::new();
            let mut rejected = Vec::new();
            lines.feed(buf.freeze(), |line| {
                self.ingest
                    .take_line(line, &|n, _| self.at(n), &mut events, &mut rejected)
            });
            self.ingest.reject(&rejected);
            if events.is_empty() {
                continue;
            }
            self.ingest.count(&events);
            // Not cut short by shutdown: these bytes were read from the socket and have no other way back. The
            // send ends when the buffer takes them or, once shutdown_timeout stops the sink, discards and
            // counts them.
            self.fanout.send(events).await;
        }
    }

    fn at(&self, number: Option<u64>) -> String {
        format!(
            "{} line {}{}",
            self.location,
            number.unwrap_or(0),
            self.peer
        )
    }
}
