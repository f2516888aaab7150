//! The pseudo-terminal the recorded program runs in: opening the pair and starting the program as the
//! session leader with the slave as its controlling terminal.
//!
//! rustix's `pty`/`termios` calls are used directly (no PTY framework): the recorder owns both descriptors,
//! polls the master itself and reads it in large chunks, and nothing else sits between the program's writes
//! and the recorder's reads. The slave gets the user's terminal settings (as `script` does), so the program
//! sees the terminal it would see without the recorder.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use rustix::pty::OpenptFlags;
use rustix::termios::{self, OptionalActions, Termios, Winsize};

/// The master side, which the recorder reads and writes.
pub struct Pty {
    /// The master descriptor (non-blocking).
    pub master: OwnedFd,
}

/// Opens a pty pair sized `size`, with `settings` (the user's terminal's) on the slave.
pub fn open(size: Winsize, settings: Option<&Termios>) -> io::Result<(Pty, OwnedFd)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    if let Some(t) = settings {
        termios::tcsetattr(&slave, OptionalActions::Now, t)?;
    }
    termios::tcsetwinsize(&slave, size)?;
    rustix::io::ioctl_fionbio(&master, true)?;
    Ok((Pty { master }, slave))
}

impl Pty {
    /// Gives the terminal a new size (the kernel sends SIGWINCH to the program's foreground group).
    pub fn resize(&self, size: Winsize) {
        let _ = termios::tcsetwinsize(&self.master, size);
    }
}

/// Starts `cmd` on `slave`: a new session, the slave as controlling terminal and as stdin/stdout/stderr.
/// The slave descriptor is closed in the recorder once the program has it, so the master reads EOF/EIO when
/// the program (and everything it left on the terminal) is gone.
pub fn spawn(mut cmd: Command, slave: OwnedFd) -> io::Result<Child> {
    let fd = slave.as_raw_fd();
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave.try_clone()?));
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, ioctl) on inherited descriptors.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setsid()?;
            let _ = fd;
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(slave);
    child
}

/// Reads from the master; `Ok(0)` at the end (EIO: no process holds the slave any more).
pub fn read(master: &impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    match rustix::io::read(master, buf) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::IO) => Ok(0),
        Err(e) => Err(e.into()),
    }
}
