//! The recorded session's loop: the program in a PTY, the user's terminal on the other side, and every output
//! chunk going to the terminal first and then to the recording.
//!
//! One thread, one `poll(2)` over the signal pipe, the PTY master and stdin, moves the bytes: each master
//! read (a few KiB: the kernel's line discipline hands out no more) is written to the user's terminal at
//! once, so the program's side and the terminal's side of the recorder keep moving together (gathering 64 KiB
//! before writing made the two PTY hops take turns: 0.44 of no recorder against 0.75 now, benches/RESULTS.md).
//! A second thread hashes, encodes and writes the recording, fed in batches of up to 64 KiB, so recording
//! adds no latency to what the user sees. Keystrokes go to the program through a bounded
//! buffer (the master is non-blocking), so a program that does not read its input never wedges the loop.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use super::cast::CastEncoder;
use super::config::WhenFull;
use super::events::{Digests, EventLine, Identity};
use super::pty::{self, Pty};
use super::sender::Sender;
use super::store::{Cut, Store};
use super::terminal::{self, RawMode, Signals};

/// Size of one read from the master or stdin.
const CHUNK: usize = 64 << 10;
/// Keystrokes waiting for the program; stdin is not read while this is full.
const MAX_PENDING_INPUT: usize = 256 << 10;

/// Limits and switches of the recording.
pub struct Limits {
    /// Output between checkpoints.
    pub checkpoint_bytes: u64,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// What a cut does.
    pub when_full: WhenFull,
    /// Record `"i"` events.
    pub record_input: bool,
}

/// The recording side of the session: files, encoder, checkpoints, cuts.
pub struct Recorder<'a> {
    store: Option<Store>,
    encoder: CastEncoder,
    start: Instant,
    sender: &'a Sender,
    id: &'a Identity,
    limits: Limits,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    checkpointed: u64,
    scratch: Vec<u8>,
    /// Set when a cut asks for the session to end.
    pub terminate: Option<Cut>,
}

impl<'a> Recorder<'a> {
    /// A recorder writing into `store` (none: the recordings directory is unusable).
    pub fn new(
        store: Option<Store>,
        encoder: CastEncoder,
        sender: &'a Sender,
        id: &'a Identity,
        limits: Limits,
    ) -> Recorder<'a> {
        let now = Instant::now();
        Recorder {
            store,
            encoder,
            start: now,
            sender,
            id,
            limits,
            since_checkpoint: 0,
            last_checkpoint: now,
            checkpointed: 0,
            scratch: Vec::with_capacity(CHUNK * 2),
            terminate: None,
        }
    }

    /// Writes the `.cast` header line.
    pub fn header(&mut self, line: &[u8]) {
        if let Some(store) = &mut self.store {
            if let Some(cut) = store.header(line) {
                self.on_cut(cut);
            }
        }
    }

    fn recording(&mut self) -> Option<&mut Store> {
        self.store.as_mut().filter(|s| s.recording())
    }

    /// The instant event times count from.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one chunk of output, read at `at`.
    pub fn output(&mut self, at: Duration, data: &[u8]) {
        if self.recording().is_none() {
            return;
        }
        self.scratch.clear();
        self.encoder.output(at, data, &mut self.scratch);
        let store = self.store.as_mut().expect("checked above");
        if let Some(cut) = store.append(data, &self.scratch) {
            return self.on_cut(cut);
        }
        self.since_checkpoint += data.len() as u64;
        if self.since_checkpoint >= self.limits.checkpoint_bytes {
            self.checkpoint();
        }
    }

    /// Records keystrokes, when asked to.
    pub fn input(&mut self, at: Duration, data: &[u8]) {
        if !self.limits.record_input || self.recording().is_none() {
            return;
        }
        self.scratch.clear();
        self.encoder.input(at, data, &mut self.scratch);
        let store = self.store.as_mut().expect("checked above");
        if let Some(cut) = store.append(&[], &self.scratch) {
            self.on_cut(cut);
        }
    }

    /// Records a new window size.
    pub fn resize(&mut self, at: Duration, width: u16, height: u16) {
        if self.recording().is_none() {
            return;
        }
        self.scratch.clear();
        self.encoder.resize(at, width, height, &mut self.scratch);
        let store = self.store.as_mut().expect("checked above");
        if let Some(cut) = store.append(&[], &self.scratch) {
            self.on_cut(cut);
        }
    }

    /// How long until the next time-based checkpoint.
    pub fn until_checkpoint(&self) -> Duration {
        self.limits
            .checkpoint_interval
            .saturating_sub(self.last_checkpoint.elapsed())
    }

    /// A time-based checkpoint, when due and something new was recorded.
    pub fn tick(&mut self) {
        if self.last_checkpoint.elapsed() >= self.limits.checkpoint_interval {
            let new = self
                .store
                .as_ref()
                .is_some_and(|s| s.recording() && s.total_bytes() > self.checkpointed);
            if new {
                self.checkpoint();
            } else {
                self.last_checkpoint = Instant::now();
            }
        }
    }

    fn checkpoint(&mut self) {
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        let Some(store) = self.store.as_mut() else {
            return;
        };
        match store.checkpoint() {
            Ok(d) => {
                self.checkpointed = store.total_bytes();
                self.sender.send(
                    EventLine::new("auditrail.recording", "AR1001I", self.id)
                        .field("kind", "checkpoint")
                        .digests(&d)
                        .line(),
                );
            }
            Err(cut) => self.on_cut(cut),
        }
    }

    fn on_cut(&mut self, cut: Cut) {
        let d = self.store.as_ref().map(Store::digests).unwrap_or_default();
        // Not a warning on stderr: that is the user's terminal; the cut event is the record.
        tracing::debug!(sid = %self.id.sid, reason = %cut.reason(), "recording cut");
        self.sender.send(
            EventLine::new("auditrail.recording", "AR1002W", self.id)
                .field("kind", "cut")
                .digests(&d)
                .field("reason", cut.reason())
                .field("action", self.limits.when_full.as_str())
                .line(),
        );
        if self.limits.when_full == WhenFull::Terminate {
            self.terminate = Some(cut);
        }
    }

    /// Ends the recording: the cast's trailer, `.done`; returns the digests and why it was truncated.
    pub fn finish(mut self, exit_code: i32) -> (Digests, Option<String>) {
        let Some(store) = self.store.take() else {
            return (empty_digests(), Some("recording_unavailable".into()));
        };
        let at = self.start.elapsed();
        self.scratch.clear();
        self.encoder.finish(at, exit_code, &mut self.scratch);
        let (d, cut, done) = store.finish(&self.scratch);
        if let Err(e) = done {
            self.sender.send(
                EventLine::new("auditrail.recording", "AR1003W", self.id)
                    .field("kind", "error")
                    .field("reason", format!("cannot finish the recording: {e}"))
                    .line(),
            );
        }
        (d, cut.map(|c| c.reason()))
    }
}

/// The digests of nothing.
pub fn empty_digests() -> Digests {
    use sha2::Digest;
    let empty = hex::encode(sha2::Sha256::digest(b""));
    Digests {
        raw_bytes: 0,
        raw_sha256: empty.clone(),
        cast_bytes: 0,
        cast_sha256: empty,
    }
}

/// The exit status as a shell reports it: the code, or 128 + the signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Writes all of `data` to stdout without std's line buffering (output must reach the user now).
fn write_stdout(data: &[u8]) -> io::Result<()> {
    let out = rustix::stdio::stdout();
    let mut rest = data;
    while !rest.is_empty() {
        match rustix::io::write(out, rest) {
            Ok(n) => rest = &rest[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let mut fds = [PollFd::new(&out, PollFlags::OUT)];
                let _ = rustix::event::poll(&mut fds, None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A program started in a PTY, with what the loop needs.
pub struct Running {
    /// The master side.
    pub pty: Pty,
    /// The program.
    pub child: Child,
    /// The user's terminal in raw mode (restored when dropped).
    pub raw: Option<RawMode>,
    /// The signal pipe.
    pub signals: Signals,
}

/// Starts `cmd` in a PTY sized as the user's terminal; puts the user's terminal in raw mode.
pub fn start(cmd: Command, signals: Signals) -> io::Result<(Running, u16, u16)> {
    let size = terminal::window_size();
    let (raw, settings) = match RawMode::enter() {
        Some((g, t)) => (Some(g), Some(t)),
        None => (None, None),
    };
    let (pty, slave) = pty::open(size, settings.as_ref())?;
    let child = pty::spawn(cmd, slave)?;
    Ok((
        Running {
            pty,
            child,
            raw,
            signals,
        },
        size.ws_col,
        size.ws_row,
    ))
}

/// What the loop hands to the recording thread, in order.
enum Msg {
    Output(Duration, Vec<u8>),
    Input(Duration, Vec<u8>),
    Resize(Duration, u16, u16),
}

/// Chunks in flight to the recording thread (64 KiB each): the program is slowed down only when recording
/// falls this far behind.
const IN_FLIGHT: usize = 64;

/// The end of a session: exit code, output bytes, final digests, why the recording is truncated.
pub struct Outcome {
    /// The program's exit code.
    pub exit: io::Result<i32>,
    /// Output bytes the session produced (recorded or not).
    pub bytes_written: u64,
    /// The recording's final digests.
    pub digests: Digests,
    /// Why recording stopped early, if it did.
    pub truncated: Option<String>,
}

/// Runs the session until the program ends. The loop itself only moves bytes (master → user's terminal,
/// stdin → master); hashing, encoding and writing happen on a second thread, fed in order through a
/// bounded channel, so the two cores share the work and the program is never waiting on a checkpoint's
/// fdatasync.
pub fn run(r: &mut Running, mut rec: Recorder<'_>) -> Outcome {
    let start = rec.start();
    let recording = std::sync::atomic::AtomicBool::new(rec.recording().is_some());
    let record_input = rec.limits.record_input;
    let cut_to_terminate: std::sync::Mutex<Option<Cut>> = std::sync::Mutex::new(None);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(IN_FLIGHT);
    let mut bytes_written = 0u64;
    let (exit, (digests, truncated)) = std::thread::scope(|scope| {
        let (rec_flag, cut_slot) = (&recording, &cut_to_terminate);
        let writer = scope.spawn(move || {
            loop {
                match rx.recv_timeout(rec.until_checkpoint().max(Duration::from_millis(10))) {
                    Ok(Msg::Output(at, data)) => rec.output(at, &data),
                    Ok(Msg::Input(at, data)) => rec.input(at, &data),
                    Ok(Msg::Resize(at, w, h)) => rec.resize(at, w, h),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
                rec.tick();
                if rec.recording().is_none() {
                    rec_flag.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                if let Some(cut) = rec.terminate.take() {
                    *cut_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(cut);
                    terminal::wake();
                }
            }
            rec
        });
        let exit = pump(
            r,
            start,
            &tx,
            &recording,
            record_input,
            &cut_to_terminate,
            &mut bytes_written,
        );
        drop(tx);
        let rec = writer.join().expect("the recording thread does not panic");
        let code = *exit.as_ref().unwrap_or(&127);
        (exit, rec.finish(code))
    });
    Outcome {
        exit,
        bytes_written,
        digests,
        truncated,
    }
}

/// Output read but not yet handed to the recording thread, with the time its first byte was read.
#[derive(Default)]
struct Batch {
    at: Duration,
    data: Vec<u8>,
}

/// Output handed over per message at most (one PTY read can exceed it; it then goes alone).
const BATCH: usize = 64 << 10;

impl Batch {
    fn push(&mut self, at: Duration, data: &[u8], tx: &std::sync::mpsc::SyncSender<Msg>) {
        if self.data.len() + data.len() > BATCH {
            self.flush(tx);
        }
        if self.data.is_empty() {
            self.at = at;
            self.data.reserve(BATCH);
        }
        self.data.extend_from_slice(data);
    }

    fn flush(&mut self, tx: &std::sync::mpsc::SyncSender<Msg>) {
        if !self.data.is_empty() {
            let _ = tx.send(Msg::Output(self.at, std::mem::take(&mut self.data)));
        }
    }
}

/// The byte-moving loop; returns the program's exit code. Output still batched when it returns with an
/// error is dropped with the session's end.
fn pump(
    r: &mut Running,
    start: Instant,
    tx: &std::sync::mpsc::SyncSender<Msg>,
    recording: &std::sync::atomic::AtomicBool,
    record_input: bool,
    cut_to_terminate: &std::sync::Mutex<Option<Cut>>,
    bytes_written: &mut u64,
) -> io::Result<i32> {
    let pid = r.child.id() as i32;
    let mut buf = vec![0u8; CHUNK];
    let mut pending: Vec<u8> = Vec::new();
    let mut stdin_open = true;
    let mut size = terminal::window_size();
    let mut term_signals = 0;
    let mut terminated = false;
    let mut master_done = false;
    let is_recording = || recording.load(std::sync::atomic::Ordering::Relaxed);
    // Output goes to the terminal at once, and to the recording thread in batches of up to BATCH bytes,
    // handed over when full, before any other message, and whenever the loop is about to sleep: a burst
    // costs one hand-over (one wake-up of that thread) per BATCH, not one per PTY read of a few KiB.
    let mut batch = Batch::default();
    let output = |data: &[u8], bytes_written: &mut u64, batch: &mut Batch| -> io::Result<()> {
        write_stdout(data)?;
        *bytes_written += data.len() as u64;
        if is_recording() {
            batch.push(start.elapsed(), data, tx);
        }
        Ok(())
    };
    loop {
        let stdin = rustix::stdio::stdin();
        let want_stdin = stdin_open && pending.len() < MAX_PENDING_INPUT;
        let mut master_flags = PollFlags::IN;
        if !pending.is_empty() {
            master_flags |= PollFlags::OUT;
        }
        let sfd = r.signals.fd();
        let (sig_ready, master_ready, stdin_ready) = {
            let mut fds = [
                PollFd::new(&sfd, PollFlags::IN),
                PollFd::new(&r.pty.master, master_flags),
                PollFd::new(
                    &stdin,
                    if want_stdin {
                        PollFlags::IN
                    } else {
                        PollFlags::empty()
                    },
                ),
            ];
            let n = if want_stdin { 3 } else { 2 };
            // With output waiting to be handed over, look first without sleeping; nothing ready means the
            // burst is over: hand it over, then sleep.
            let zero = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let timeout = (!batch.data.is_empty()).then_some(&zero);
            match rustix::event::poll(&mut fds[..n], timeout) {
                Ok(0) if timeout.is_some() => {
                    batch.flush(tx);
                    continue;
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            (
                fds[0].revents(),
                fds[1].revents(),
                if want_stdin {
                    fds[2].revents()
                } else {
                    PollFlags::empty()
                },
            )
        };
        if !master_ready.is_empty() && !master_done {
            // Output first: what the program wrote reaches the user before anything else happens, one read
            // (the master hands out a few KiB at most) and its write at a time, so the program's side and
            // the terminal's side of the recorder keep moving together; the recording gets it in batches.
            match pty::read(&r.pty.master, &mut buf) {
                Ok(0) => master_done = true,
                Ok(n) => output(&buf[..n], bytes_written, &mut batch)?,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if master_ready.contains(PollFlags::OUT) && !pending.is_empty() {
                match rustix::io::write(&r.pty.master, &pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                    Err(_) => pending.clear(),
                }
            }
        }
        if !stdin_ready.is_empty() {
            match rustix::io::read(stdin, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    if record_input && is_recording() {
                        batch.flush(tx);
                        let _ = tx.send(Msg::Input(start.elapsed(), buf[..n].to_vec()));
                    }
                    pending.extend_from_slice(&buf[..n]);
                    if let Ok(w) = rustix::io::write(&r.pty.master, &pending) {
                        pending.drain(..w);
                    }
                }
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(_) => stdin_open = false,
            }
        }
        if !sig_ready.is_empty() {
            for sig in r.signals.take() {
                match sig {
                    libc::SIGWINCH => {
                        let s = terminal::window_size();
                        if (s.ws_col, s.ws_row) != (size.ws_col, size.ws_row) {
                            size = s;
                            r.pty.resize(s);
                            if is_recording() {
                                batch.flush(tx);
                                let _ = tx.send(Msg::Resize(start.elapsed(), s.ws_col, s.ws_row));
                            }
                        }
                    }
                    libc::SIGTERM | libc::SIGHUP | libc::SIGINT => {
                        term_signals += 1;
                        let forward = if term_signals > 1 { libc::SIGKILL } else { sig };
                        // The program leads its own session: signal its whole process group.
                        // SAFETY: signalling our own child and its group.
                        unsafe {
                            libc::kill(-pid, forward);
                            libc::kill(pid, forward);
                        }
                    }
                    // SIGCHLD, or a wake-up from the recording thread: checked below.
                    _ => {}
                }
            }
        }
        // The child's exit comes with a SIGCHLD through the signal pipe: no wait syscall on other wake-ups.
        let child_gone = if !sig_ready.is_empty() || master_done {
            r.child.try_wait()?
        } else {
            None
        };
        let cut = cut_to_terminate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(cut) = cut.filter(|_| !terminated) {
            terminated = true;
            let _ = write_stdout(
                format!(
                    "\r\nauditrail: the session is ended: the recording limit was reached ({})\r\n",
                    cut.reason()
                )
                .as_bytes(),
            );
            // SAFETY: signalling our own child and its group.
            unsafe {
                libc::kill(-pid, libc::SIGHUP);
                libc::kill(-pid, libc::SIGTERM);
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if master_done && child_gone.is_none() {
            // Nothing holds the terminal any more: the program is ending.
            batch.flush(tx);
            let status = r.child.wait()?;
            return Ok(exit_code(status));
        }
        if let Some(status) = child_gone {
            // What the program wrote before it exited is in the PTY buffer: read it all.
            if !master_done {
                loop {
                    match pty::read(&r.pty.master, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => output(&buf[..n], bytes_written, &mut batch)?,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
            batch.flush(tx);
            return Ok(exit_code(status));
        }
    }
}
