//! The crash-point hook is a test build's only: the release binary (`AUDITRAIL_BIN`) carries no trace of
//! `AUDITRAIL_CRASH_AT` and runs through a step it names, while the binary built with the `crash-points` feature
//! (`AUDITRAIL_CRASH_BIN`) aborts there — so the test can fail both ways.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use auditrail_integration_tests::*;

const VAR: &[u8] = b"AUDITRAIL_CRASH_AT";
/// The splunk_hec source's test-only fault switch (`test-faults`), built into the same test binary.
const FAULTS_VAR: &[u8] = b"AUDITRAIL_TEST_FAULTS_FILE";
/// A step every disk-buffered write passes (the first write of the first batch).
const POINT: &str = "after_write";
const N: usize = 1_000;

fn contains_var(bin: &Path) -> bool {
    contains(bin, VAR)
}

fn contains(bin: &Path, what: &[u8]) -> bool {
    let bytes = std::fs::read(bin).unwrap();
    memchr::memmem::find(&bytes, what).is_some()
}

fn config(d: &Path, api: u16) -> String {
    format!(
        r#"
data_dir = "{d}/data"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:{api}"
[sources.teleport]
type = "file"
include = ["{d}/in/*.log"]
poll_interval = "20ms"
[sinks.out]
type = "file"
inputs = ["teleport"]
path = "{d}/out/events.ndjson"
buffer = {{ type = "disk", max_size = "64MiB", fsync_interval = "20ms" }}
"#,
        d = d.display()
    )
}

/// What running `bin` with `AUDITRAIL_CRASH_AT=after_write` on N events came to: the exit status if it exited
/// within 20 s (else it is stopped with SIGTERM once every event is out, and that status), lines out, its log.
fn run_with_hook(bin: &Path) -> (Option<ExitStatus>, ExitStatus, usize, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    write_events(&d.join("in/a.log"), "h-", N);
    let api = free_port();
    std::fs::write(d.join("auditrail.toml"), config(d, api)).unwrap();
    let log = d.join("agent.log");
    let mut child = Command::new(bin)
        .args(["run", "--config"])
        .arg(d.join("auditrail.toml"))
        .env("AUDITRAIL_CRASH_AT", POINT)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting auditrail");
    let deadline = Instant::now() + Duration::from_secs(20);
    let early = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if line_count(&d.join("out")) >= N || Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let last = match early {
        Some(st) => st,
        None => {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().unwrap()
        }
    };
    let out = line_count(&d.join("out"));
    (
        early,
        last,
        out,
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[test]
fn the_release_binary_has_no_crash_hook() {
    let plain = binary();
    assert!(
        !contains_var(&plain),
        "{} contains {:?}: the crash hook ships",
        plain.display(),
        String::from_utf8_lossy(VAR)
    );
    assert!(
        !contains(&plain, FAULTS_VAR),
        "{} contains {:?}: the splunk_hec fault switch ships",
        plain.display(),
        String::from_utf8_lossy(FAULTS_VAR)
    );
    let (early, last, out, log) = run_with_hook(&plain);
    assert!(
        early.is_none(),
        "the release binary exited ({early:?}) with AUDITRAIL_CRASH_AT={POINT}:\n{log}"
    );
    assert_eq!(out, N, "every event delivered:\n{log}");
    assert!(last.success(), "a clean stop: {last:?}\n{log}");
    println!("release binary: no {POINT} abort, {out} events out, clean stop");
}

#[test]
fn the_crash_points_binary_aborts_where_asked() {
    let Some(bin) = crash_binary() else {
        return;
    };
    assert!(
        contains_var(&bin),
        "{} has no crash hook: built without --features crash-points?",
        bin.display()
    );
    assert!(
        contains(&bin, FAULTS_VAR),
        "{} has no splunk_hec fault switch: built without --features test-faults?",
        bin.display()
    );
    let (early, _, out, log) = run_with_hook(&bin);
    let st = early.unwrap_or_else(|| panic!("the crash binary did not abort at {POINT}:\n{log}"));
    assert_eq!(st.signal(), Some(libc::SIGABRT), "{st:?}\n{log}");
    assert!(
        log.contains(&format!("AUDITRAIL_CRASH_AT={POINT} reached")),
        "{log}"
    );
    assert!(out < N, "aborted before delivering everything ({out})");
    println!("crash binary: aborted at {POINT} with {out} of {N} lines out");
}
