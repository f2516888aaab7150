//! The agent's sessions socket: a recorder connects, sends one JSON line `{"sid":"..."}`, and the agent puts the
//! CALLER into the session's cgroup and replies `{"cgroup_id":N,"path":"..."}` (or `{"error":"why"}`). The
//! connection then stays open for the session's lifetime; when it closes (the session ended, or the recorder
//! died), the session leaves the registry and its cgroup is removed as soon as its last process is gone.
//!
//! The socket is world-connectable by default (`mode = 0666`) because every logged-in user's recorder needs it.
//! What makes that safe: the pid moved is the one the kernel reports for the connecting process
//! (`SO_PEERCRED`), never a number from the request, so a caller can only move itself, into a cgroup named by
//! a validated sid that no live session holds. Pid reuse between `connect` and the move is closed with a pidfd
//! of the peer (`SO_PEERPIDFD`, or `pidfd_open` checked against the peer's uid on older kernels): the move is
//! kept only if that very process is still alive after it. Everything a caller controls is bounded: the request
//! (4 KiB, 5 s), connections still handshaking (64, and 8 per uid), sessions (`max_sessions`, `max_per_uid`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use auditrail_core::shutdown::Shutdown;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::cgroup::{self, CgroupError, CgroupRoot, Removal};
use super::config::SessionsConfig;
use super::registry::{Registry, SessionEntry};
use super::{shared_dirs, sid};

/// Longest request line.
pub const MAX_REQUEST: usize = 4096;
/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections that have not been admitted yet, at most; and per uid, so that one user holding connections
/// open cannot keep everyone else's sessions out of their cgroups.
const MAX_HANDSHAKES: usize = 64;
const MAX_HANDSHAKES_PER_UID: usize = 8;
/// When the connection's own task retries the removal of its cgroup; the sweep does the rest.
const REMOVE_RETRIES: [Duration; 4] = [
    Duration::from_millis(20),
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(3),
];
/// `SO_PEERPIDFD` (Linux 6.5+; the same number on every architecture but sparc/mips/parisc/alpha).
const SO_PEERPIDFD: libc::c_int = 77;
const SYS_PIDFD_OPEN: libc::c_long = 434;
const SYS_PIDFD_SEND_SIGNAL: libc::c_long = 424;

/// The sessions socket could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    /// Binding or preparing the socket failed.
    #[error("[sessions]: cannot listen on {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The recordings directory could not be made.
    #[error("[sessions]: cannot prepare the recordings directory {path}: {source}")]
    Recordings {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A running sessions socket.
pub struct Sessions {
    /// The live sessions.
    pub registry: Arc<Registry>,
    /// The accept loop and sweep; ends after shutdown.
    pub task: tokio::task::JoinHandle<()>,
}

struct State {
    registry: Arc<Registry>,
    cgroups: Result<CgroupRoot, String>,
    handshakes: Arc<Semaphore>,
    handshakes_by_uid: std::sync::Mutex<std::collections::HashMap<u32, usize>>,
    errors: Counters,
}

/// One uid's handshake slot, given back on drop.
struct UidSlot<'a>(&'a State, u32);

impl<'a> UidSlot<'a> {
    fn take(state: &'a State, uid: u32) -> Option<UidSlot<'a>> {
        let mut m = state
            .handshakes_by_uid
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = m.entry(uid).or_insert(0);
        if *n >= MAX_HANDSHAKES_PER_UID {
            return None;
        }
        *n += 1;
        Some(UidSlot(state, uid))
    }
}

impl Drop for UidSlot<'_> {
    fn drop(&mut self) {
        let mut m = self
            .0
            .handshakes_by_uid
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

struct Counters;

impl Counters {
    fn cgroup_error(&self, e: &CgroupError) {
        metrics::counter!("auditrail_sessions_cgroup_errors_total", "op" => e.op()).increment(1);
    }
    fn refused(&self, reason: &'static str) {
        metrics::counter!("auditrail_sessions_refused_total", "reason" => reason).increment(1);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    sid: String,
}

/// Binds the socket (replacing a stale one), prepares the recordings directory, and starts serving.
/// `recordings` is the recordings directory (`[recording] dir`, or `<data_dir>/recordings`).
pub fn start(
    config: &SessionsConfig,
    data_dir: &Path,
    recordings: PathBuf,
    shutdown: Shutdown,
) -> Result<Sessions, SessionsError> {
    let path = config.socket_path(data_dir);
    let listen = |source| SessionsError::Listen {
        path: path.clone(),
        source,
    };
    shared_dirs::prepare_drop_dir(&recordings.join("spool"), data_dir).map_err(|source| {
        SessionsError::Recordings {
            path: recordings.clone(),
            source,
        }
    })?;
    crate::sources::unix::remove_stale(&path).map_err(listen)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        auditrail_core::private_fs::create_dir_all(dir).map_err(listen)?;
        shared_dirs::make_reachable(dir, data_dir, config.mode.0);
    }
    let listener = UnixListener::bind(&path).map_err(listen)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(config.mode.0))
        .map_err(listen)?;
    let cgroups = config.cgroups().map_err(|e| e.to_string());
    match &cgroups {
        Ok(root) => {
            tracing::info!(socket = %path.display(), cgroups = %root.base().display(), "sessions socket listening")
        }
        Err(e) => {
            tracing::warn!(socket = %path.display(), error = %e, "sessions socket listening without cgroups: every request is answered with this error, and sessions run without a cgroup")
        }
    }
    metrics::counter!("auditrail_sessions_cgroup_errors_total", "op" => "create").increment(0);
    let registry = Arc::new(Registry::new(config.max_sessions, config.max_per_uid));
    let state = Arc::new(State {
        registry: Arc::clone(&registry),
        cgroups,
        handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
        handshakes_by_uid: Default::default(),
        errors: Counters,
    });
    let sweep = config.sweep_interval.0;
    let task = tokio::spawn(run(listener, path, state, sweep, shutdown));
    Ok(Sessions { registry, task })
}

async fn run(
    listener: UnixListener,
    path: PathBuf,
    state: Arc<State>,
    sweep_every: Duration,
    mut shutdown: Shutdown,
) {
    let mut connections = tokio::task::JoinSet::new();
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = sweep.tick() => sweep_once(&state),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(handle(stream, Arc::clone(&state), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sessions socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
    while connections.join_next().await.is_some() {}
}

fn sweep_once(state: &State) {
    let Ok(root) = &state.cgroups else { return };
    let (removed, errors) = state
        .registry
        .sweep_with(|admitted| root.sweep(|sid| admitted(sid)));
    if removed > 0 {
        tracing::info!(
            removed,
            "removed empty session cgroups whose session is over"
        );
    }
    for e in errors {
        state.errors.cgroup_error(&e);
        tracing::warn!(error = %e, "sessions: cannot remove a finished session's cgroup; retried at the next sweep");
    }
}

async fn handle(mut stream: UnixStream, state: Arc<State>, mut shutdown: Shutdown) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "sessions socket: no peer credentials; closing");
            return;
        }
    };
    let (uid, pid) = (cred.uid(), cred.pid().unwrap_or(0));
    let permits = (
        Arc::clone(&state.handshakes).try_acquire_owned().ok(),
        UidSlot::take(&state, uid),
    );
    let (Some(_permit), Some(_uid_slot)) = permits else {
        state.errors.refused("busy");
        reply_error(
            &mut stream,
            "the agent is busy with other session requests (of this user or all users); try again",
        )
        .await;
        return;
    };
    // Taken before anything else, so that it names the process that connected.
    let pidfd = peer_pidfd(stream.as_raw_fd());
    let request = match read_request(&mut stream).await {
        Ok(r) => r,
        Err(message) => {
            state.errors.refused("bad_request");
            tracing::warn!(uid, pid, error = %message, "sessions socket: bad request");
            reply_error(&mut stream, &message).await;
            return;
        }
    };
    let joined = join(&state, &request.sid, uid, pid, pidfd);
    let entry = match joined {
        Ok(entry) => entry,
        Err(message) => {
            tracing::warn!(sid = %request.sid, uid, pid, error = %message, "session cgroup refused");
            reply_error(&mut stream, &message).await;
            return;
        }
    };
    drop((_permit, _uid_slot));
    let reply = serde_json::json!({"cgroup_id": entry.cgroup_id, "path": entry.cgroup_path});
    tracing::info!(sid = %entry.sid, uid, pid, cgroup_id = entry.cgroup_id, path = %entry.cgroup_path.display(), "session joined its cgroup");
    if stream
        .write_all(format!("{reply}\n").as_bytes())
        .await
        .is_ok()
    {
        // The session lasts as long as the connection; what the client sends from now on is ignored.
        let mut sink = [0u8; 256];
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                r = stream.read(&mut sink) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
            }
        }
    }
    drop(stream);
    state.registry.release(&entry.sid);
    tracing::info!(sid = %entry.sid, uid, pid, "session over");
    if shutdown.is_triggered() {
        return;
    }
    remove_when_empty(&state, &entry).await;
}

/// Tries to remove the session's cgroup a few times; lingering processes leave it to the sweep.
async fn remove_when_empty(state: &State, entry: &SessionEntry) {
    for delay in REMOVE_RETRIES {
        tokio::time::sleep(delay).await;
        let r = state.registry.sweep_with(|admitted| {
            if admitted(&entry.sid) {
                // The sid was taken again by a new session: it is that session's cgroup now.
                return Ok(Removal::Gone);
            }
            cgroup::remove(&entry.cgroup_path)
        });
        match r {
            Ok(Removal::Gone) => return,
            Ok(Removal::Busy) => {}
            Err(e) => {
                state.errors.cgroup_error(&e);
                tracing::warn!(sid = %entry.sid, error = %e, "cannot remove the session's cgroup; the sweep retries");
                return;
            }
        }
    }
    tracing::info!(sid = %entry.sid, path = %entry.cgroup_path.display(), "processes of the session are still in its cgroup; it is removed once they exit");
}

async fn read_request(stream: &mut UnixStream) -> Result<Request, String> {
    let mut buf = Vec::with_capacity(256);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(nl) = memchr::memchr(b'\n', &buf) {
                buf.truncate(nl);
                return Ok(());
            }
            if buf.len() > MAX_REQUEST {
                return Err(format!(
                    "request longer than {MAX_REQUEST} bytes: expected one JSON line {{\"sid\":\"...\"}}"
                ));
            }
            match stream.read(&mut chunk).await {
                Ok(0) => return Err("connection closed before a complete request line".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    })
    .await;
    match read {
        Err(_) => Err(format!(
            "no complete request line within {}s: expected one JSON line {{\"sid\":\"...\"}}",
            REQUEST_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) if buf.len() > MAX_REQUEST => Err(format!(
            "request longer than {MAX_REQUEST} bytes: expected one JSON line {{\"sid\":\"...\"}}"
        )),
        Ok(Ok(())) => serde_json::from_slice::<Request>(&buf).map_err(|e| {
            format!("expected one JSON line {{\"sid\":\"...\"}} (and no other field): {e}")
        }),
    }
}

/// Admits the session and moves `pid` into its cgroup; on any failure, undoes what it did.
fn join(
    state: &State,
    sid: &str,
    uid: u32,
    pid: i32,
    pidfd: Option<OwnedFd>,
) -> Result<SessionEntry, String> {
    sid::validate(sid).map_err(|e| {
        state.errors.refused("invalid_sid");
        e.to_string()
    })?;
    let root = state.cgroups.as_ref().map_err(|e| {
        state.errors.refused("no_cgroups");
        e.clone()
    })?;
    if pid <= 0 {
        state.errors.refused("no_pid");
        return Err("the kernel reported no pid for the connecting process (a peer in another pid namespace?)".into());
    }
    let pid = pid as u32;
    state.registry.reserve(sid, uid).map_err(|e| {
        state.errors.refused(e.reason());
        e.to_string()
    })?;
    let fail = |message: String| {
        state.registry.release(sid);
        message
    };
    let cg_err = |e: CgroupError| {
        state.errors.cgroup_error(&e);
        e.to_string()
    };
    let pidfd = pidfd.or_else(|| pidfd_open(pid).filter(|_| proc_uid(pid) == Some(uid)));
    let alive = |fd: &Option<OwnedFd>| fd.as_ref().is_none_or(|fd| pidfd_alive(fd.as_raw_fd()));
    if !alive(&pidfd) {
        state.errors.refused("peer_gone");
        return Err(fail("the connecting process has exited".into()));
    }
    let (path, fresh) = root.create(sid).map_err(|e| fail(cg_err(e)))?;
    let undo = |message: String| {
        if fresh {
            let _ = cgroup::remove(&path);
        }
        fail(message)
    };
    if !fresh && cgroup::populated(&path).map_err(|e| undo(cg_err(e)))? {
        state.errors.refused("cgroup_in_use");
        return Err(undo(format!(
            "the cgroup {} of session {sid} exists and still has processes (an earlier session with this sid); use a new sid",
            path.display()
        )));
    }
    cgroup::move_pid(&path, pid).map_err(|e| undo(cg_err(e)))?;
    if !alive(&pidfd) {
        // The pid may have been reused by another process before the move: do not keep it as this session.
        state.errors.refused("peer_gone");
        return Err(undo(
            "the connecting process exited while it was being moved".into(),
        ));
    }
    let cgroup_id = cgroup::id(&path).map_err(|e| undo(cg_err(e)))?;
    let entry = SessionEntry {
        sid: sid.to_string(),
        cgroup_id,
        cgroup_path: path,
        pid,
        uid,
        started: SystemTime::now(),
    };
    state.registry.fill(entry.clone());
    Ok(entry)
}

async fn reply_error(stream: &mut UnixStream, message: &str) {
    let line = format!("{}\n", serde_json::json!({ "error": message }));
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes())).await;
}

/// The peer's pidfd from `SO_PEERPIDFD`, when the kernel has it.
fn peer_pidfd(fd: RawFd) -> Option<OwnedFd> {
    let mut pidfd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket fd and out-parameters of the size given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut pidfd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    // SAFETY: the kernel gave us a new fd that nothing else owns.
    (r == 0 && pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) })
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; a returned fd is ours.
    let r = unsafe { libc::syscall(SYS_PIDFD_OPEN, pid as libc::c_long, 0 as libc::c_long) };
    (r >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Whether the process of `pidfd` has not exited (signal 0 checks without sending anything).
fn pidfd_alive(pidfd: RawFd) -> bool {
    // SAFETY: plain syscall; a null siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            SYS_PIDFD_SEND_SIGNAL,
            pidfd as libc::c_long,
            0 as libc::c_long,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_long,
        )
    };
    // EPERM means it exists (the agent runs as root, so this does not happen in practice).
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn proc_uid(pid: u32) -> Option<u32> {
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}
