//! Agent to agent over Splunk HEC, real processes: agent A (file source → `splunk_hec` sink, indexer
//! acknowledgements on, disk buffer) sends to agent B (`splunk_hec` source with acknowledgements → file sink).
//! Every uid arrives; B killed -9 and restarted loses nothing; B busy (its test-only fault switch) makes A back
//! off and lose nothing, in bounded memory; acks that never come are resent after `ack_timeout`, duplicates
//! counted and nothing lost; a wrong token delivers nothing, loses nothing, and says so, and once fixed and A
//! restarted everything arrives.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use auditrail_integration_tests::*;

const TOKEN: &str = "0bd64dd6-7b2a-4a6f-9a8c-5a1de8c2e0f1";

/// Agent B's config: the HEC source on `port`, its events into `dir/out`.
fn b_config(dir: &Path, api: u16, port: u16) -> String {
    format!(
        r#"
data_dir = "{d}/b-data"
[api]
address = "127.0.0.1:{api}"
[sources.hec]
type = "splunk_hec"
address = "127.0.0.1:{port}"
tokens = ["{TOKEN}"]
acknowledgements = {{ enabled = true }}
[sinks.out]
type = "file"
inputs = ["hec"]
path = "{d}/out/events.ndjson"
"#,
        d = dir.display()
    )
}

/// Agent A's config: its files under `dir/in` to B on `port`, with `token`.
fn a_config(dir: &Path, api: u16, port: u16, token: &str, ack_timeout: &str) -> String {
    format!(
        r#"
data_dir = "{d}/a-data"
[api]
address = "127.0.0.1:{api}"
[sources.teleport]
type = "file"
include = ["{d}/in/*.log"]
poll_interval = "20ms"
[sinks.hec]
type = "splunk_hec"
inputs = ["teleport"]
endpoint = "http://127.0.0.1:{port}"
token = "{token}"
acknowledgements = true
ack_poll_interval = "50ms"
ack_timeout = "{ack_timeout}"
retry = {{ initial_backoff = "50ms", max_backoff = "500ms" }}
buffer = {{ type = "disk", max_size = "512MiB" }}
"#,
        d = dir.display()
    )
}

struct Pair {
    dir: tempfile::TempDir,
    a_api: u16,
    b_api: u16,
    port: u16,
}

impl Pair {
    fn new(n: usize, prefix: &str) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("in")).unwrap();
        write_events(&dir.path().join("in/a.log"), prefix, n);
        Pair {
            dir,
            a_api: free_port(),
            b_api: free_port(),
            port: free_port(),
        }
    }
    fn d(&self) -> &Path {
        self.dir.path()
    }
    fn out(&self) -> PathBuf {
        self.d().join("out")
    }
    fn start_b(&self, bin: Option<&Path>, faults: Option<&Path>) -> Agent {
        let config = b_config(self.d(), self.b_api, self.port);
        let bdir = self.d().join("b");
        std::fs::create_dir_all(&bdir).unwrap();
        let customize = |c: &mut std::process::Command| {
            if let Some(f) = faults {
                c.env("AUDITRAIL_TEST_FAULTS_FILE", f);
            }
        };
        match bin {
            Some(bin) => Agent::start_binary(bin, &bdir, &config, self.b_api, customize),
            None => Agent::start_with(&bdir, &config, self.b_api, customize),
        }
    }
    fn start_a(&self, token: &str, ack_timeout: &str) -> Agent {
        let adir = self.d().join("a");
        std::fs::create_dir_all(&adir).unwrap();
        Agent::start(
            &adir,
            &a_config(self.d(), self.a_api, self.port, token, ack_timeout),
            self.a_api,
        )
    }
    fn wait_all(&self, n: usize, timeout: Duration, a: &Agent, b: &Agent) {
        let out = self.out();
        let deadline = Instant::now() + timeout;
        loop {
            let got = uids_so_far(&out).len();
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{got} of {n} uids arrived in {timeout:?}\nA:\n{}\nB:\n{}",
                tail(&a.log_text()),
                tail(&b.log_text())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn rss_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Stops both cleanly and returns lost and duplicated uids of `prefix0..n`.
fn finish(p: &Pair, a: Agent, b: Agent, prefix: &str, n: usize) -> (usize, usize) {
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());
    let (lost, dups, _) = tally(p.d(), prefix, n);
    (lost, dups)
}

#[test]
fn two_hundred_thousand_events_every_uid_arrives() {
    const N: usize = 200_000;
    let p = Pair::new(N, "h-");
    let b = p.start_b(None, None);
    let a = p.start_a(TOKEN, "30s");
    let started = Instant::now();
    p.wait_all(N, Duration::from_secs(120), &a, &b);
    let took = started.elapsed();
    let acked = b.metric(
        "auditrail_source_splunk_hec_requests_total",
        &[("endpoint", "ack"), ("code", "success")],
    );
    assert!(acked > 0.0, "A asked B for its acks");
    let (lost, dups) = finish(&p, a, b, "h-", N);
    assert_eq!(lost, 0, "every uid arrives");
    println!("{N} events in {took:?}, {dups} duplicates");
}

#[test]
fn b_killed_and_restarted_mid_run_loses_nothing() {
    const N: usize = 60_000;
    let p = Pair::new(N, "k-");
    let b = p.start_b(None, None);
    let a = p.start_a(TOKEN, "5s");
    wait_for(Duration::from_secs(60), "some events at B", || {
        line_count(&p.out()) >= N / 10
    });
    b.kill9();
    let before = line_count(&p.out());
    std::thread::sleep(Duration::from_millis(500));
    let b = p.start_b(None, None);
    p.wait_all(N, Duration::from_secs(120), &a, &b);
    let (lost, dups) = finish(&p, a, b, "k-", N);
    assert_eq!(
        lost, 0,
        "B's kill loses nothing ({before} were out when it died)"
    );
    println!("killed with {before} out; 0 lost, {dups} duplicates (resent after the kill)");
}

#[test]
fn b_busy_for_a_while_a_backs_off_and_loses_nothing() {
    let Some(bin) = crash_binary() else {
        return;
    };
    const N: usize = 50_000;
    let p = Pair::new(N, "busy-");
    let faults = p.d().join("faults");
    std::fs::write(&faults, "busy").unwrap();
    let b = p.start_b(Some(&bin), Some(&faults));
    let a = p.start_a(TOKEN, "30s");
    let busy_for = Duration::from_secs(3);
    let t0 = Instant::now();
    let mut peak = 0;
    while t0.elapsed() < busy_for {
        peak = peak.max(rss_kib(a.pid(), "VmRSS:"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = b.metric(
        "auditrail_source_splunk_hec_requests_total",
        &[("endpoint", "event"), ("code", "server_busy")],
    );
    assert_eq!(line_count(&p.out()), 0, "nothing taken while busy");
    assert!(refused >= 1.0, "A tried while B was busy");
    // Backoff: with 50ms..500ms waits, 3 s of busy is a few dozen attempts per request slot, not thousands.
    assert!(
        refused < 400.0,
        "{refused} attempts in {busy_for:?}: A does not back off"
    );
    std::fs::write(&faults, "").unwrap();
    p.wait_all(N, Duration::from_secs(120), &a, &b);
    peak = peak.max(rss_kib(a.pid(), "VmHWM:"));
    let (lost, _) = finish(&p, a, b, "busy-", N);
    assert_eq!(lost, 0);
    assert!(
        peak < 200 * 1024,
        "A's memory stays bounded while B is busy: {peak} KiB"
    );
    println!("busy {busy_for:?}: {refused} refused attempts, A peak {peak} KiB, 0 lost");
}

#[test]
fn acks_that_never_come_are_resent_and_nothing_is_lost() {
    let Some(bin) = crash_binary() else {
        return;
    };
    const N: usize = 5_000;
    let p = Pair::new(N, "ack-");
    let faults = p.d().join("faults");
    std::fs::write(&faults, "hold_acks").unwrap();
    let b = p.start_b(Some(&bin), Some(&faults));
    let a = p.start_a(TOKEN, "2s");
    wait_for(Duration::from_secs(60), "every event at B once", || {
        uids_so_far(&p.out()).len() >= N
    });
    // Past ack_timeout without a single true: A sends again.
    wait_for(Duration::from_secs(30), "a resend", || {
        line_count(&p.out()) > N
    });
    std::fs::write(&faults, "").unwrap();
    let resent = metric_sum(&a.metrics(), "auditrail_sink_hec_resent_total", &[]);
    p.wait_all(N, Duration::from_secs(60), &a, &b);
    // Once acks flow, A settles: its disk buffer empties.
    wait_for(
        Duration::from_secs(60),
        "A's pending events confirmed",
        || {
            let before = line_count(&p.out());
            std::thread::sleep(Duration::from_millis(3000));
            line_count(&p.out()) == before
        },
    );
    let (lost, dups) = finish(&p, a, b, "ack-", N);
    assert_eq!(lost, 0);
    assert!(dups > 0, "resends arrive as duplicates");
    assert!(resent > 0.0, "A counts what it resent");
    println!("acks held: {resent} resent (counted), {dups} duplicates, 0 lost");
}

#[test]
fn wrong_token_delivers_nothing_loses_nothing_then_all_arrive() {
    const N: usize = 5_000;
    let p = Pair::new(N, "tok-");
    let b = p.start_b(None, None);
    let a = p.start_a("wrong-token", "30s");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        line_count(&p.out()),
        0,
        "nothing delivered with a wrong token"
    );
    let refused = b.metric(
        "auditrail_source_splunk_hec_requests_total",
        &[("endpoint", "event"), ("code", "invalid_token")],
    );
    assert!(refused >= 1.0, "B refused A's token");
    let log = a.log_text();
    assert!(
        log.to_ascii_lowercase().contains("token"),
        "A says its token is rejected:\n{}",
        tail(&log)
    );
    assert!(
        !log.contains("wrong-token"),
        "the token never reaches the log"
    );
    // A SIGTERM while the token is refused waits out the sink's drain (the events are held, not dropped):
    // the restart here is a kill, which the disk buffer and the file checkpoints survive.
    a.kill9();
    let a = p.start_a(TOKEN, "30s");
    p.wait_all(N, Duration::from_secs(60), &a, &b);
    let (lost, _) = finish(&p, a, b, "tok-", N);
    assert_eq!(lost, 0, "all delivered once the token is fixed");
}
