//! Shared harness of the integration tests: runs the real `auditrail` binary as a process, talks to it over
//! HTTP and its unix socket, and reads back what it wrote; starts the peers it writes to or is read back from
//! (osmem-server for OpenSearch, the `kafka-mock` cluster for Kafka).
//!
//! The binary is `$AUDITRAIL_BIN` when set (CI builds it once in release mode), else it is built here with
//! `cargo build --release --bin auditrail`. Tests that abort the agent at a named step need the binary built with
//! the `crash-points` feature, `$AUDITRAIL_CRASH_BIN` (see [`crash_binary`]): the plain one has no hook.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod cgroups;
pub mod integrity;
pub mod peer_process;
pub mod players;
pub mod recordings;
pub mod s3;

pub use cgroups::{cgroup2_mount, root_or_skip, root_or_skip_as, CgroupParent};
use peer_process::PeerProcess;

/// Path of the agent binary, building it on first use when `AUDITRAIL_BIN` is not set.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("AUDITRAIL_BIN") {
            return PathBuf::from(p);
        }
        let root = workspace_root();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--bin", "auditrail"])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(
            status.success(),
            "cargo build --release --bin auditrail failed"
        );
        root.join("target/release/auditrail")
    })
    .clone()
}

/// Whether a missing [`crash_binary`] fails the test rather than skips it (`scripts/test.sh` and CI).
pub fn crash_binary_required() -> bool {
    ["AUDITRAIL_REQUIRE_CRASH_BIN", "CI"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|x| !x.is_empty() && x != "0" && x != "false"))
}

/// The agent built with the test-only crash hook (`cargo build --release --bin auditrail --features
/// crash-points`, which `scripts/test.sh` copies to `target/release/auditrail-crash-points`), from
/// `$AUDITRAIL_CRASH_BIN`. `None` when unset, and the caller says the test is not run; panics instead when it is
/// required ([`crash_binary_required`]) or names no file.
pub fn crash_binary() -> Option<PathBuf> {
    match std::env::var_os("AUDITRAIL_CRASH_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "AUDITRAIL_CRASH_BIN={} is not a file (scripts/test.sh builds it)",
                p.display()
            );
            Some(p)
        }
        None => {
            assert!(
                !crash_binary_required(),
                "AUDITRAIL_CRASH_BIN is required (CI or AUDITRAIL_REQUIRE_CRASH_BIN) but not set: build it with \
                 `cargo build --release --bin auditrail --features crash-points` and copy it aside"
            );
            println!(
                "AUDITRAIL_CRASH_BIN not set: crash-point test not run (the plain binary has no crash hook)"
            );
            None
        }
    }
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests has a parent")
        .to_path_buf()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running agent. Killed (SIGKILL) when dropped if still running.
pub struct Agent {
    child: Option<Child>,
    /// The API port (`/metrics`, `/health`).
    pub api_port: u16,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Agent {
    /// Writes `config` to `dir/auditrail.toml` and starts the agent with it; waits until `/health` answers.
    /// `config` must contain `[api] address = "127.0.0.1:{api_port}"`.
    pub fn start(dir: &Path, config: &str, api_port: u16) -> Agent {
        Agent::start_with(dir, config, api_port, |_| {})
    }

    /// Like [`Agent::start`], letting `customize` adjust the command first (environment, resource limits).
    pub fn start_with(
        dir: &Path,
        config: &str,
        api_port: u16,
        customize: impl FnOnce(&mut Command),
    ) -> Agent {
        Agent::start_binary(&binary(), dir, config, api_port, customize)
    }

    /// Like [`Agent::start_with`], running `bin` (the test build with the fault switches, say) instead.
    pub fn start_binary(
        bin: &Path,
        dir: &Path,
        config: &str,
        api_port: u16,
        customize: impl FnOnce(&mut Command),
    ) -> Agent {
        let path = dir.join("auditrail.toml");
        std::fs::write(&path, config).unwrap();
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let log = dir.join(format!(
            "agent-{}.log",
            STARTS.fetch_add(1, Ordering::Relaxed)
        ));
        let mut command = Command::new(bin);
        command
            .args(["run", "--config"])
            .arg(&path)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        customize(&mut command);
        let child = command.spawn().expect("starting auditrail");
        let mut agent = Agent {
            child: Some(child),
            api_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = http("GET", api_port, "/health", &[], b"") {
                break;
            }
            if let Some(status) = agent.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "auditrail exited with {status} before it was ready:\n{}",
                    agent.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "auditrail not ready in 20s:\n{}",
                agent.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and waits for the exit status (at most `timeout`).
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.wait(timeout)
    }

    /// SIGKILL, no drain.
    pub fn kill9(mut self) {
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        self.wait(Duration::from_secs(10));
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "auditrail did not exit within {timeout:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/metrics` as text.
    pub fn metrics(&self) -> String {
        let (status, body) =
            http("GET", self.api_port, "/metrics", &[], b"").expect("GET /metrics");
        assert_eq!(status, 200);
        body
    }

    /// Sum of every sample of metric `name` whose labels include all of `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sum of the samples of `name` in Prometheus text whose labels include `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').map_or((series, ""), |(n, r)| (n, r));
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A minimal HTTP/1.1 request to 127.0.0.1:`port`; returns status and body.
pub fn http(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let (status, _, body) = http_full(method, port, path, headers, body)?;
    Ok((status, body))
}

/// Like [`http`], also returning the response headers (lower-cased names).
pub fn http_full(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, HashMap<String, String>, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // A server may answer (413) before reading the whole body and close: that is not an error here.
    let _ = s.write_all(body);
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut hdrs = HashMap::new();
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "transfer-encoding" && v.trim().eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
            hdrs.insert(k, v.trim().to_string());
        }
    }
    let mut raw = Vec::new();
    r.read_to_end(&mut raw)?;
    let body = if chunked { dechunk(&raw) } else { raw };
    Ok((status, hdrs, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..pos]).unwrap_or("0").trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    out
}

/// A Teleport-like event with uid `uid`, about 300 bytes.
pub fn event(uid: &str, i: usize) -> String {
    format!(
        r#"{{"event":"session.start","uid":"{uid}","code":"T2000I","time":"2017-02-03T06:54:05.{:03}Z","user":"user{}@example.com","login":"dba","server_id":"f84f7386-5e22-45ff-8f7d-b8079742e63c","sid":"8d3895b6-e9dd-11e6-94e4-{:012}","addr.local":"10.5.1.15:3022","addr.remote":"10.5.1.{}:51234","cluster_name":"prod","n":123456789012345678901,"cmd":"a \u003c b"}}"#,
        i % 1000,
        i % 97,
        i,
        i % 250
    )
}

/// Writes `n` events with uids `{prefix}{i}` to `path`, one per line.
pub fn write_events(path: &Path, prefix: &str, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(f, "{}", event(&format!("{prefix}{i}"), i)).unwrap();
    }
    f.flush().unwrap();
}

/// The `uid` of every line of every `*.ndjson` file under `dir`, with how often each occurs; lines of
/// `auditrail.*` events are left out. For use once the agent has stopped: panics on a line that is not a JSON
/// object, including a partial last line.
pub fn uids_in(dir: &Path) -> HashMap<String, usize> {
    count_uids(lines_in(dir))
}

/// Like [`uids_in`], for use while the agent runs: a last line still being written is left out.
pub fn uids_so_far(dir: &Path) -> HashMap<String, usize> {
    count_uids(lines_so_far(dir))
}

fn count_uids(lines: Vec<String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad output line {line:?}: {e}"));
        if v["event"]
            .as_str()
            .is_some_and(|e| e.starts_with("auditrail."))
        {
            continue;
        }
        *counts
            .entry(v["uid"].as_str().expect("uid").to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// For uids `{prefix}0..n`: how many are missing from the `*.ndjson` files under `dir/out`, how many extra
/// copies there are, and every uid's count. For use once the agent has stopped.
pub fn tally(dir: &Path, prefix: &str, n: usize) -> (usize, usize, HashMap<String, usize>) {
    let counts = uids_in(&dir.join("out"));
    let lost = (0..n)
        .filter(|i| !counts.contains_key(&format!("{prefix}{i}")))
        .count();
    let dups = counts.values().map(|c| c - 1).sum();
    (lost, dups, counts)
}

/// Starts the agent again (after a crash or kill), waits until every uid `{prefix}0..n` is in `dir/out`, stops
/// it cleanly and returns [`tally`]'s lost, duplicated and counts.
pub fn recover_and_tally(
    dir: &Path,
    config: &str,
    api_port: u16,
    prefix: &str,
    n: usize,
) -> (usize, usize, HashMap<String, usize>) {
    let agent = Agent::start(dir, config, api_port);
    wait_for(
        Duration::from_secs(120),
        "every uid after the restart",
        || uids_so_far(&dir.join("out")).len() >= n,
    );
    let status = agent.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    tally(dir, prefix, n)
}

/// Every line of every `*.ndjson` file under `dir` (recursively), in file-name order, for use once the agent
/// has stopped: a file that does not end with a newline (a torn line) is kept whole, so that it fails parsing.
pub fn lines_in(dir: &Path) -> Vec<String> {
    read_lines(dir, true)
}

/// Like [`lines_in`], for use while the agent runs: a last line still being written is left out.
pub fn lines_so_far(dir: &Path) -> Vec<String> {
    read_lines(dir, false)
}

fn read_lines(dir: &Path, keep_partial: bool) -> Vec<String> {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        let complete = if keep_partial {
            text.as_str()
        } else {
            &text[..text.rfind('\n').map_or(0, |p| p + 1)]
        };
        out.extend(complete.lines().map(str::to_string));
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "ndjson") {
            out.push(p);
        }
    }
}

/// Waits until `cond` holds, checking every 20 ms, for at most `timeout`; panics with `what` otherwise.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Number of lines across `*.ndjson` files under `dir`, counted cheaply (newlines).
pub fn line_count(dir: &Path) -> usize {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count())
                .unwrap_or(0)
        })
        .sum()
}

/// Whether tests that need a peer server must fail (rather than skip) when it cannot be had: under CI, or with
/// `AUDITRAIL_REQUIRE_OPENSEARCH=1` (set by `scripts/test.sh`).
pub fn opensearch_required() -> bool {
    peer_process::peer_required("AUDITRAIL_REQUIRE_OPENSEARCH")
}

/// The osmem-server binary (an in-memory OpenSearch-compatible server from PyPI), installed on first use by
/// `integration-tests/peers/opensearch/install`. `None` when it cannot be installed and is not required; panics
/// when it is required (see [`opensearch_required`]).
pub fn osmem_binary() -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BIN.get_or_init(|| {
        let path = peer_process::install_peer("opensearch")?;
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("install printed {path:?}, which is not a file"))
        }
    });
    match found {
        Ok(p) => Some(p.clone()),
        Err(e) => {
            assert!(
                !opensearch_required(),
                "osmem-server is required (CI or AUDITRAIL_REQUIRE_OPENSEARCH) but cannot be installed: {e}"
            );
            println!("osmem-server not available, test not run: {e}");
            None
        }
    }
}

/// A running osmem-server on 127.0.0.1, killed when dropped. It keeps everything in memory: a restart starts
/// empty. It also exits by itself when the test process is gone (`-parent-pid`).
pub struct Osmem {
    process: PeerProcess,
    /// Its port.
    pub port: u16,
}

impl Osmem {
    /// Starts a server on a free port; `None` when osmem-server is not available (and not required).
    pub fn start(dir: &Path) -> Option<Osmem> {
        osmem_binary()?;
        Some(Osmem::start_on(dir, free_port()))
    }

    /// Starts a server on `port` (e.g. again after [`Osmem::kill9`]) and waits until it answers.
    pub fn start_on(dir: &Path, port: u16) -> Osmem {
        let bin = osmem_binary().expect("osmem-server is available");
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let log = dir.join(format!(
            "osmem-{}.log",
            STARTS.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cmd = Command::new(bin);
        cmd.args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch"])
            .args(["-parent-pid", &std::process::id().to_string()]);
        let process = PeerProcess::start("osmem-server", cmd, log, Duration::from_secs(20), || {
            matches!(
                http("GET", port, "/_cluster/health", &[], b""),
                Ok((200, _))
            )
        });
        Osmem { process, port }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL; everything it held is gone.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// A JSON request; returns the status and the body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(
            method,
            self.port,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A JSON request that must succeed, parsed.
    pub fn json(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let (status, text) = self.request(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }

    /// Documents in `index` (a name or pattern); 0 when it does not exist yet.
    pub fn count(&self, index: &str) -> u64 {
        let (status, text) = self.request("GET", &format!("/{index}/_count"), "");
        if status == 404 {
            return 0;
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("_count of {index}: {status} {text}"))
    }

    /// The `_id`s among `ids` that exist in `index` (one `ids` query per call; keep `ids` to a few thousand).
    pub fn existing_ids(&self, index: &str, ids: &[String]) -> Vec<String> {
        let body = serde_json::json!({
            "query": { "ids": { "values": ids } },
            "size": ids.len(),
            "_source": false,
        });
        let v = self.json(
            "POST",
            &format!("/{index}/_search?filter_path=hits.hits._id"),
            &body.to_string(),
        );
        v["hits"]["hits"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h["_id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The exact text of the first hit's `_source` in a `_search` response body, as the server wrote it (not
/// re-serialized), or `None` when there is no hit.
pub fn first_source(search_response: &str) -> Option<String> {
    use serde_json::value::RawValue;
    type Object = HashMap<String, Box<RawValue>>;
    let top: Object = serde_json::from_str(search_response).ok()?;
    let hits: Object = serde_json::from_str(top.get("hits")?.get()).ok()?;
    let list: Vec<Object> = serde_json::from_str(hits.get("hits")?.get()).ok()?;
    list.first()?.get("_source").map(|r| r.get().to_string())
}

// ---- Kafka (librdkafka's mock cluster, as the `kafka-mock` process) ----

/// Whether tests that need the Kafka mock must fail (rather than skip) when it cannot be started: under CI,
/// or with `AUDITRAIL_REQUIRE_KAFKA=1` (set by `scripts/test.sh`).
pub fn kafka_required() -> bool {
    std::env::var_os("AUDITRAIL_REQUIRE_KAFKA").is_some_and(|v| v != "0")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// A running `kafka-mock` (this crate's binary: librdkafka's mock cluster, brokers on 127.0.0.1), killed when
/// dropped. It also exits by itself when the test process is gone: it holds the other end of its stdin.
pub struct KafkaMock {
    child: Option<Child>,
    /// Its standard output after the bootstrap line: one answer per command.
    answers: std::sync::Mutex<Option<BufReader<std::process::ChildStdout>>>,
    /// The bootstrap list, `127.0.0.1:PORT,…`, one entry per broker.
    pub bootstrap: String,
}

impl KafkaMock {
    /// Starts `bin` (a test passes `env!("CARGO_BIN_EXE_kafka-mock")`) with 3 brokers and the topics given
    /// as (name, partitions), and waits for its bootstrap list. `None` when it cannot be started and is not
    /// required; panics when it is (see [`kafka_required`]).
    pub fn start(bin: &Path, topics: &[(&str, i32)]) -> Option<KafkaMock> {
        match KafkaMock::try_start(bin, topics) {
            Ok(m) => Some(m),
            Err(e) => {
                assert!(
                    !kafka_required(),
                    "the Kafka mock is required (CI or AUDITRAIL_REQUIRE_KAFKA) but did not start: {e}"
                );
                println!("Kafka mock not available, test not run: {e}");
                None
            }
        }
    }

    fn try_start(bin: &Path, topics: &[(&str, i32)]) -> Result<KafkaMock, String> {
        let mut cmd = Command::new(bin);
        cmd.args(["--brokers", "3", "--exit-on-stdin-eof"]);
        for (name, partitions) in topics {
            cmd.args(["--topic", &format!("{name}:{partitions}")]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            let _ = tx.send((line, reader));
        });
        let mut mock = KafkaMock {
            child: Some(child),
            answers: std::sync::Mutex::new(None),
            bootstrap: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((line, reader)) if line.trim().contains(':') => {
                mock.bootstrap = line.trim().to_string();
                *mock.answers.lock().unwrap() = Some(reader);
                Ok(mock)
            }
            Ok(_) => {
                let mut err = String::new();
                if let Some(c) = mock.child.as_mut() {
                    let _ = c.wait();
                    if let Some(mut e) = c.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                }
                Err(format!("kafka-mock printed no bootstrap list: {err}"))
            }
            Err(_) => Err("kafka-mock printed no bootstrap list in 20 s".into()),
        }
    }

    /// Produces `records` (partition, value; `None` for a record without a value) to `topic`, in order, and
    /// waits until every one is acknowledged; panics on any delivery failure.
    pub fn produce(&self, topic: &str, records: &[(i32, Option<&[u8]>)]) {
        produce(&self.bootstrap, topic, records);
    }

    /// Sends one fault-injection command (`broker-down 1`, `errors Produce OUT_OF_ORDER_SEQUENCE_NUMBER*3`,
    /// see the kafka-mock binary) and waits until the mock says it is in place; panics when it refuses.
    pub fn command(&self, command: &str) {
        let child = self.child.as_ref().expect("kafka-mock is running");
        let mut answers = self.answers.lock().unwrap();
        let reader = answers.as_mut().expect("kafka-mock's answers");
        // The harness's own handle: a shared reference to the pipe is enough to write to it.
        let mut stdin = child.stdin.as_ref().expect("stdin is piped");
        writeln!(stdin, "{command}").expect("writing to kafka-mock");
        stdin.flush().unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).expect("kafka-mock's answer");
        assert_eq!(answer.trim(), "ok", "kafka-mock refused {command:?}");
    }
}

impl Drop for KafkaMock {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The offsets consumer group `group` has committed for partitions `0..partitions` of `topic` at `bootstrap`,
/// summed (a partition without a commit counts 0): how many records of the topic the group has done, when
/// the topic's offsets start at 0.
pub fn committed_sum(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("creating the Kafka consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("the group's committed offsets");
    committed
        .elements()
        .iter()
        .filter_map(|e| e.offset().to_raw())
        .filter(|&o| o >= 0)
        .sum()
}

/// Counts failed deliveries, keeping the first failure's text.
#[derive(Default)]
struct Deliveries {
    failed: AtomicUsize,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_failure.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Produces `records` (partition, value; `None` for no value) to `topic` at `bootstrap` with an idempotent,
/// `acks=all` producer, and waits until all are acknowledged; panics on any failure.
pub fn produce(bootstrap: &str, topic: &str, records: &[(i32, Option<&[u8]>)]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer<Deliveries> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create_with_context(Deliveries::default())
        .expect("creating the Kafka producer");
    for &(partition, value) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).partition(partition);
        if let Some(v) = value {
            record = record.payload(v);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    producer.poll(Duration::from_millis(50));
                    record = back;
                }
                Err((e, _)) => panic!("producing to {topic} partition {partition}: {e}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("flushing the producer for {topic}: {e}"));
    let ctx = producer.context();
    let failed = ctx.failed.load(Ordering::Relaxed);
    assert_eq!(
        failed,
        0,
        "{failed} records to {topic} not delivered; first: {:?}",
        ctx.first_failure.lock().ok().and_then(|f| f.clone())
    );
}

/// Whether the HEC tests' client (curl) is required: set by `AUDITRAIL_REQUIRE_CURL` or `CI`.
pub fn curl_required() -> bool {
    std::env::var_os("AUDITRAIL_REQUIRE_CURL").is_some_and(|v| v != "0")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// curl, installed on first use by `integration-tests/peers/curl/install`. `None` when it cannot be installed
/// and is not required; panics when it is required (see [`curl_required`]).
pub fn curl_binary() -> Option<PathBuf> {
    let script = workspace_root().join("integration-tests/peers/curl/install");
    let out = Command::new(&script).stderr(Stdio::inherit()).output();
    match out {
        Ok(o) if o.status.success() => {
            let path = String::from_utf8_lossy(&o.stdout).trim().to_string();
            Some(PathBuf::from(path))
        }
        other => {
            assert!(
                !curl_required(),
                "curl is required (AUDITRAIL_REQUIRE_CURL or CI) but {} failed: {other:?}",
                script.display()
            );
            eprintln!("curl not available: HEC conformance test not run");
            None
        }
    }
}
