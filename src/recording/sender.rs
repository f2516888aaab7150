//! Delivery of the recorder's events to the agent's unix socket, off the session's hot path.
//!
//! A dead or slow agent must never block or break the user's session. So the session only puts event lines
//! in a bounded queue (never waiting: a full queue spools the line on the spot); one thread connects (a
//! non-blocking connect, bounded), writes with a write timeout, and spools what it cannot deliver. Before
//! the first event it drains older spool files to the agent, bounded in time. At the end of the session the
//! thread gets a bounded time to deliver; past it, the rest is spooled, never dropped.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::events::{EventLine, Identity};
use super::spool::{self, SpoolWriter};

/// Longest the recorder waits to connect to the agent.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest one write to the agent may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failed connect, events go straight to the spool for this long.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Time given to draining old spool files at start.
const DRAIN_TIME: Duration = Duration::from_secs(3);
/// Events waiting for the thread.
const QUEUE: usize = 1024;

/// The handle the session sends through.
pub struct Sender {
    tx: Option<SyncSender<Vec<u8>>>,
    spool: Arc<Mutex<Spool>>,
    spool_only: Arc<AtomicBool>,
    /// In a mutex only so that the handle is `Sync` (the recording thread sends through it too).
    done: Mutex<Receiver<()>>,
}

/// The spool writer, and whether a failure to spool was already reported.
struct Spool {
    writer: Option<SpoolWriter>,
    warned: bool,
}

impl Spool {
    fn put(&mut self, line: &[u8]) {
        let result = match &mut self.writer {
            Some(w) => w.append(line),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no recordings directory to spool into",
            )),
        };
        if let Err(e) = result {
            if !self.warned {
                self.warned = true;
                // The one place an event can be lost: say so where someone sees it (the user's terminal,
                // which may be in raw mode, hence the \r).
                eprintln!("\r\nauditrail: cannot deliver or spool audit events: {e}\r");
            }
        }
    }
}

impl Sender {
    /// Starts the delivery thread for `socket`, spooling into `spool_dir` (`None`: no usable recordings
    /// directory). Older spool files in `spool_dir` are drained first.
    pub fn start(socket: PathBuf, spool_dir: Option<PathBuf>, id: Identity) -> Sender {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let (done_tx, done) = mpsc::channel();
        let spool = Arc::new(Mutex::new(Spool {
            writer: spool_dir.clone().map(|d| SpoolWriter::new(d, &id.sid)),
            warned: false,
        }));
        let spool_only = Arc::new(AtomicBool::new(false));
        let (s, only) = (spool.clone(), spool_only.clone());
        let thread = std::thread::Builder::new()
            .name("auditrail-events".into())
            .spawn(move || {
                deliver(&socket, spool_dir.as_deref(), &id, rx, &s, &only);
                let _ = done_tx.send(());
            });
        if let Err(e) = thread {
            tracing::warn!(error = %e, "cannot start the event thread; events are spooled");
            spool_only.store(true, Ordering::SeqCst);
        }
        Sender {
            tx: Some(tx),
            spool,
            spool_only,
            done: Mutex::new(done),
        }
    }

    /// Hands one event line to delivery; never blocks on the agent.
    pub fn send(&self, line: Vec<u8>) {
        if self.spool_only.load(Ordering::SeqCst) {
            return self.spool_now(&line);
        }
        let Some(tx) = &self.tx else {
            return self.spool_now(&line);
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(line) | TrySendError::Disconnected(line)) => {
                self.spool_now(&line)
            }
        }
    }

    fn spool_now(&self, line: &[u8]) {
        self.spool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(line);
    }

    /// Ends delivery: waits up to `bound` for the queue to reach the agent, then spools what is left.
    pub fn finish(mut self, bound: Duration) {
        drop(self.tx.take());
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        match done.recv_timeout(bound) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
            Err(RecvTimeoutError::Timeout) => {
                // The agent is slow: everything not yet written goes to the spool; the write in progress has
                // its own timeout.
                self.spool_only.store(true, Ordering::SeqCst);
                let _ = done.recv_timeout(WRITE_TIMEOUT * 2);
            }
        }
    }
}

fn deliver(
    socket: &Path,
    spool_dir: Option<&Path>,
    id: &Identity,
    rx: Receiver<Vec<u8>>,
    spool: &Mutex<Spool>,
    spool_only: &AtomicBool,
) {
    let mut conn: Option<UnixStream> = None;
    let mut failed_at: Option<Instant> = None;
    if let Some(dir) = spool_dir.filter(|d| d.exists()) {
        if let Ok(mut s) = connect(socket, CONNECT_TIMEOUT) {
            let d = spool::drain(dir, &mut s, Instant::now() + DRAIN_TIME);
            if !d.problems.is_empty() {
                for p in &d.problems {
                    tracing::warn!(problem = %p, "spool drain");
                }
                let reason = format!(
                    "spool: {} damaged lines skipped, {} files left: {}",
                    d.damaged,
                    d.left,
                    d.problems.first().map_or("", String::as_str)
                );
                let line = EventLine::new("auditrail.recording", "AR1003W", id)
                    .field("kind", "error")
                    .field("reason", reason)
                    .field("spool_damaged_lines", d.damaged)
                    .line();
                let _ = s.write_all(&line);
            }
            conn = Some(s);
        }
    }
    for line in rx {
        if spool_only.load(Ordering::SeqCst) {
            lock(spool).put(&line);
            continue;
        }
        if conn.is_none() && failed_at.is_none_or(|t| t.elapsed() >= RETRY_AFTER) {
            match connect(socket, CONNECT_TIMEOUT) {
                Ok(s) => {
                    conn = Some(s);
                    failed_at = None;
                }
                Err(e) => {
                    tracing::debug!(socket = %socket.display(), error = %e, "agent unreachable; spooling");
                    failed_at = Some(Instant::now());
                }
            }
        }
        let sent = match &mut conn {
            Some(s) => s.write_all(&line).is_ok(),
            None => false,
        };
        if !sent {
            if conn.take().is_some() {
                failed_at = Some(Instant::now());
            }
            lock(spool).put(&line);
        }
    }
}

fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connects to the agent's socket at `path` within `timeout` ([`crate::unix_connect`]: a wedged agent's full
/// backlog makes a plain connect wait), then sets the write timeout.
pub fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let stream = crate::unix_connect::connect_before(path, Instant::now() + timeout)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok(stream)
}
