//! The user's terminal and the recorder's signals: raw mode that is restored on every way out, the window
//! size, and a self-pipe that turns signals into poll events.
//!
//! Raw mode is undone by a drop guard (normal return, error return), by a panic hook (a panic that unwinds
//! past the guard or aborts), and termination signals never kill the recorder outright: their handlers only
//! write the signal number into a pipe, and the session loop forwards them to the program and exits
//! normally (dropping the guard) once it ends.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

use rustix::termios::{self, OptionalActions, Termios, Winsize};

/// The terminal settings to put back, for the panic hook.
static SAVED: OnceLock<Mutex<Option<Termios>>> = OnceLock::new();

/// Puts the terminal on stdin in raw mode until dropped.
pub struct RawMode {
    original: Termios,
}

impl RawMode {
    /// Makes stdin raw; `None` when stdin is not a terminal.
    pub fn enter() -> Option<(RawMode, Termios)> {
        let stdin = rustix::stdio::stdin();
        if !termios::isatty(stdin) {
            return None;
        }
        let original = termios::tcgetattr(stdin).ok()?;
        let mut raw = original.clone();
        raw.make_raw();
        *SAVED
            .get_or_init(|| Mutex::new(None))
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(original.clone());
        install_panic_hook();
        termios::tcsetattr(stdin, OptionalActions::Flush, &raw).ok()?;
        Some((
            RawMode {
                original: original.clone(),
            },
            original,
        ))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(
            rustix::stdio::stdin(),
            OptionalActions::Flush,
            &self.original,
        );
        if let Some(m) = SAVED.get() {
            *m.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(m) = SAVED.get() {
                if let Ok(guard) = m.try_lock() {
                    if let Some(t) = guard.as_ref() {
                        let _ = termios::tcsetattr(rustix::stdio::stdin(), OptionalActions::Now, t);
                    }
                }
            }
            previous(info);
        }));
    });
}

/// The window size of the terminal on stdin (or stdout), or `$COLUMNS`×`$LINES`, or 80×24.
pub fn window_size() -> Winsize {
    for fd in [rustix::stdio::stdin(), rustix::stdio::stdout()] {
        if termios::isatty(fd) {
            if let Ok(w) = termios::tcgetwinsize(fd) {
                if w.ws_col > 0 && w.ws_row > 0 {
                    return w;
                }
            }
        }
    }
    let env = |k: &str, d: u16| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0)
            .unwrap_or(d)
    };
    Winsize {
        ws_col: env("COLUMNS", 80),
        ws_row: env("LINES", 24),
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// The write end of the self-pipe, for the handlers.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

/// The signals the session loop handles.
pub const SIGNALS: [i32; 5] = [
    libc::SIGWINCH,
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGINT,
];

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe drops the byte, which is fine (a pending byte
        // of the same kind is already there to wake the loop, and SIGCHLD is re-checked with waitpid).
        unsafe {
            let e = *libc::__errno_location();
            libc::write(fd, (&b as *const u8).cast(), 1);
            *libc::__errno_location() = e;
        }
    }
}

/// Wakes the session loop (from another thread): a 0 byte on the signal pipe.
pub fn wake() {
    on_signal(0);
}

/// Signals as bytes on a pipe.
pub struct Signals {
    read: OwnedFd,
    _write: OwnedFd,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Signals> {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        PIPE_WRITE.store(std::os::fd::AsRawFd::as_raw_fd(&write), Ordering::SeqCst);
        for sig in SIGNALS {
            // SAFETY: the handler only calls async-signal-safe functions; SA_RESTART keeps blocking writes to
            // the user's terminal from failing with EINTR.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(Signals {
            read,
            _write: write,
        })
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// The signals received since the last call.
    pub fn take(&self) -> Vec<i32> {
        let mut buf = [0u8; 64];
        let mut out = Vec::new();
        while let Ok(n) = rustix::io::read(&self.read, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend(buf[..n].iter().map(|&b| b as i32));
        }
        out
    }
}
