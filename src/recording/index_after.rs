//! After a session ends (and `session.end` is handed to the agent), starts a detached, lowest-priority
//! `auditrail play --frame --at 100%` on the finished `.cast`, which builds and keeps `<sid>.index`, so
//! the first play of a finished recording seeks from the stored index. Off the PTY byte loop and after the
//! user's session: the recorder exits at once and never waits for it; a failure to start is logged and
//! never fails the recording (playing without the index still works, only the first seek is slower).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Niceness of the index builder: the lowest priority, so it only takes CPU nobody else wants.
const NICENESS: libc::c_int = 19;

/// Starts the detached index build for `<dir>/<sid>.cast`; returns at once.
pub fn spawn(dir: &Path, sid: &str) {
    let cast = dir.join(format!("{sid}.cast"));
    if !cast.is_file() {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, sid, "cannot find the auditrail binary to build the seek index");
            return;
        }
    };
    let mut cmd = Command::new(exe);
    cmd.arg("play")
        .arg("--frame")
        .arg("--at")
        .arg("100%")
        .arg(&cast)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setpriority and setsid are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::setpriority(libc::PRIO_PROCESS, 0, NICENESS);
            Ok(())
        });
    }
    if let Err(e) = cmd.spawn() {
        tracing::warn!(error = %e, sid, cast = %cast.display(), "cannot start the seek index build; the first play builds it");
    }
}
