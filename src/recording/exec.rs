//! Node mode without a terminal (`ssh host cmd`, scp, rsync, sftp): the command runs with the recorder's
//! stdin, stdout and stderr inherited as they are — no PTY, no copying, no recording — so binary protocols
//! pass byte for byte; the recorder only waits, forwards termination signals, and reports `exec`.

use std::io;
use std::process::Command;

use rustix::event::{PollFd, PollFlags};

use super::session::exit_code;
use super::terminal::Signals;

/// Runs `cmd` with inherited stdio; returns its exit code (128 + N for signal N).
pub fn run(mut cmd: Command, signals: &Signals) -> io::Result<i32> {
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    let mut forwarded = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(exit_code(status));
        }
        let sfd = signals.fd();
        let mut fds = [PollFd::new(&sfd, PollFlags::IN)];
        // SIGCHLD wakes the poll; the timeout only guards against a lost wake-up.
        let ts = rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        for sig in signals.take() {
            if matches!(sig, libc::SIGTERM | libc::SIGHUP | libc::SIGINT) {
                forwarded += 1;
                let s = if forwarded > 1 { libc::SIGKILL } else { sig };
                // SAFETY: signalling our own child.
                unsafe {
                    libc::kill(pid, s);
                }
            }
        }
    }
}
