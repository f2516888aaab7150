//! What the players' tests need: tmux (the terminal `auditrail play` is driven in) and Chromium with
//! playwright-core (the browser the web player and the export are opened in), each installed by its
//! `integration-tests/peers/<name>/install`, and recordings written the way the recorder writes them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{binary, workspace_root};

fn required(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v != "0")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Runs `peers/<name>/install` and gives the path it prints; `None` (the test is not run) when that fails
/// and `require_var` (or `CI`) is not set; panics when it is.
pub fn peer_tool(name: &str, require_var: &str) -> Option<PathBuf> {
    let script = workspace_root().join(format!("integration-tests/peers/{name}/install"));
    let out = Command::new(&script).stderr(Stdio::inherit()).output();
    match out {
        Ok(o) if o.status.success() => Some(PathBuf::from(
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )),
        other => {
            assert!(
                !required(require_var),
                "{name} is required ({require_var} or CI) but {} failed: {other:?}",
                script.display()
            );
            eprintln!("{name} not available: test not run");
            None
        }
    }
}

/// tmux (`AUDITRAIL_REQUIRE_TMUX`).
pub fn tmux() -> Option<PathBuf> {
    peer_tool("tmux", "AUDITRAIL_REQUIRE_TMUX")
}

/// One tmux server on its own socket with one session (`target`), killed when dropped: the real terminal
/// `auditrail play` and `auditrail record` are driven in.
pub struct Tmux {
    bin: PathBuf,
    sock: PathBuf,
    target: String,
}

impl Tmux {
    /// Starts a detached `cols`×`rows` session named `target` running `sh -c command`, its server on
    /// `sock`.
    pub fn start(
        bin: PathBuf,
        sock: PathBuf,
        target: &str,
        (cols, rows): (u16, u16),
        command: &str,
    ) -> Tmux {
        let t = Tmux {
            bin,
            sock,
            target: target.to_string(),
        };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        t.run(&[
            "new-session",
            "-d",
            "-s",
            target,
            "-x",
            &cols,
            "-y",
            &rows,
            "sh",
            "-c",
            command,
        ]);
        t
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .arg("-S")
            .arg(&self.sock)
            .args(["-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a tmux command on this server; panics with its stderr when it fails.
    pub fn run(&self, args: &[&str]) {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// The session's screen as text (`capture-pane`).
    pub fn screen(&self) -> String {
        let o = self.cmd(&["capture-pane", "-p", "-t", &self.target]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Waits until the screen has `want` (panics with the screen after `secs`).
    pub fn wait_for(&self, want: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if s.contains(want) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {want:?}; it shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `keys` to the session (`send-keys`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Resizes the session's window.
    pub fn resize(&self, cols: u16, rows: u16) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        self.run(&[
            "resize-window",
            "-t",
            &self.target,
            "-x",
            &cols,
            "-y",
            &rows,
        ]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// `auditrail play --web` serving a recordings directory, killed when dropped.
pub struct Server {
    child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `auditrail play --web` on a free loopback port; waits for its "serving" line.
pub fn serve(dir: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(binary())
        .args(["play", "--web", "--address", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("play --web exited before serving")
            .unwrap();
        if let Some(rest) = line.split(" on http://").nth(1) {
            break format!("http://{}", rest.trim_end_matches('/'));
        }
    };
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

/// Chromium, with playwright-core installed under `integration-tests/browser` (`AUDITRAIL_REQUIRE_BROWSER`).
pub fn chromium() -> Option<PathBuf> {
    peer_tool("chromium", "AUDITRAIL_REQUIRE_BROWSER")
}

/// Runs `integration-tests/browser/<script>` under node with `args`; panics with its output when it fails.
pub fn run_browser_script(script: &str, args: &[&str], chromium: &Path) -> String {
    let dir = workspace_root().join("integration-tests/browser");
    let profile = tempfile_dir("chromium-profile");
    let out = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .env("CHROMIUM", chromium)
        .env("PROFILE_DIR", &profile)
        .current_dir(&dir)
        .output()
        .expect("running node");
    let _ = std::fs::remove_dir_all(&profile);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{text}");
    text
}

fn tempfile_dir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "auditrail-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A v2 `.cast` of `cols`×`rows` whose top line says `second NN` from second NN on (0..=`seconds`),
/// with a second line that changes with it; the screen at any time is known exactly.
pub fn counting_cast(path: &Path, cols: u16, rows: u16, seconds: u32) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        f,
        "{{\"version\": 2, \"width\": {cols}, \"height\": {rows}, \"timestamp\": 1700000000, \"env\": {{\"TERM\": \"xterm\"}}}}"
    )
    .unwrap();
    writeln!(f, "[0.000000, \"o\", \"\\u001b[H\\u001b[2J\"]").unwrap();
    for i in 0..=seconds {
        writeln!(
            f,
            "[{i}.000000, \"o\", \"\\u001b[1;1Hsecond {i:02}\\u001b[2;1H\\u001b[K{}\"]",
            "#".repeat((i % 20) as usize + 1)
        )
        .unwrap();
    }
    f.flush().unwrap();
}
