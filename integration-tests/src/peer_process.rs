//! A test server run as a child process (osmem-server, moto_server): installed by its
//! `integration-tests/peers/<name>/install`, started with its output in a log file, waited for until it
//! answers, killed -9 on demand and when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a missing peer fails the test rather than skips it: `var` set (and not `0`), or under CI.
pub fn peer_required(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v != "0")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Runs `integration-tests/peers/<peer>/install` and returns the path it prints; an error says why not.
pub fn install_peer(peer: &str) -> Result<PathBuf, String> {
    let script = crate::workspace_root().join(format!("integration-tests/peers/{peer}/install"));
    let out = Command::new(&script)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A running peer server process.
pub struct PeerProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl PeerProcess {
    /// Spawns `cmd` (stdin closed, stdout to `log`, stderr dropped) and waits up to `timeout` until `ready()`;
    /// panics, with `name` and the log, when it exits first or is not ready in time.
    pub fn start(
        name: &str,
        mut cmd: Command,
        log: PathBuf,
        timeout: Duration,
        ready: impl Fn() -> bool,
    ) -> PeerProcess {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut p = PeerProcess {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + timeout;
        while !ready() {
            if let Some(status) = p.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{name} exited with {status}: {}", p.log_text());
            }
            assert!(Instant::now() < deadline, "{name} not ready in {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL and wait; everything it held in memory is gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
