//! A test server run as a child process (osmem-server, moto_server): started with its output in a log file,
//! waited for until it answers, killed -9 on demand and when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
