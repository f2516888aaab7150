//! The recorder and the agent together, as on a recording node: one TOML file serves `auditrail run` (unix
//! source, `[sessions]`, `[integrity]`, a file sink) and `auditrail record --config` (its `[recording]` table
//! and `data_dir`). A session runs in the cgroup the agent made for it and `session.start` carries that
//! cgroup's id; a recorder killed -9 mid-session leaves a recording whose checkpointed prefix
//! `auditrail verify --recordings` proves from the chained events, the rest reported as unproven, not as
//! tampered; a byte changed inside the proven prefix is.
//!
//! Needs root (cgroups); not root and `AUDITRAIL_REQUIRE_ROOT` unset, the test prints why and returns.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use auditrail_integration_tests::recordings::{file, recording};
use auditrail_integration_tests::*;
use serde_json::Value;

fn config(d: &Path, api: u16, cg: &CgroupParent) -> String {
    format!(
        r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.rec]
type = "unix"
path = "{d}/data/events.sock"
mode = "0666"
spool_dirs = ["{d}/data/recordings/spool"]
[sinks.out]
type = "file"
inputs = ["rec"]
path = "{d}/out/all.ndjson"
[integrity]
key = "{d}/keys/auditrail.key"
node_id = "node-1"
seal_interval = "200ms"
[sessions]
{parent}[recording]
server_id = "node-1"
checkpoint_bytes = "64KiB"
"#,
        d = d.display(),
        parent = cg.toml()
    )
}

/// `auditrail record --config d/auditrail.toml --sid SID -- sh -c SCRIPT`, no terminal on its side (the
/// session still gets a PTY of its own).
fn record(d: &Path, sid: &str, script: &str) -> Command {
    let mut c = Command::new(binary());
    c.arg("record")
        .arg("--config")
        .arg(d.join("auditrail.toml"))
        .args(["--sid", sid, "--", "sh", "-c", script])
        .env_remove("SSH_ORIGINAL_COMMAND")
        .env_remove("SSH_TTY")
        .env_remove("SSH_CONNECTION")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

fn events(d: &Path) -> Vec<Value> {
    lines_so_far(&d.join("out"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of<'a>(events: &'a [Value], sid: &str, kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["sid"] == sid && e["event"] == kind)
        .collect()
}

/// `auditrail verify --json --key … --recordings DIR d/out`: exit code and the report.
fn verify(d: &Path) -> (i32, Value) {
    let out = Command::new(binary())
        .arg("verify")
        .arg("--json")
        .arg("--key")
        .arg(d.join("keys/auditrail.pub"))
        .arg("--recordings")
        .arg(d.join("data/recordings"))
        .arg(d.join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

#[test]
fn a_session_in_its_cgroup_killed_mid_way_verifies_its_checkpointed_prefix() {
    if !root_or_skip("session cgroups with the recorder") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let st = Command::new(binary())
        .args(["keygen", "--out"])
        .arg(d.join("keys"))
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let api = free_port();
    let cg = CgroupParent::new("rec");
    let agent = Agent::start(d, &config(d, api, &cg), api);

    // A session that ends by itself: intact, exit status passed through.
    let st = record(d, "rk-done", "echo finished; exit 3")
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(3));
    wait_for(Duration::from_secs(20), "rk-done's session.end", || {
        !of(&events(d), "rk-done", "session.end").is_empty()
    });

    // A session that writes ~1 MB of text, then waits; its recorder is killed -9 after 4 checkpoints.
    let cg_file = d.join("cgroup.txt");
    let script = format!(
        "cat /proc/self/cgroup > {}; head -c 300000 /dev/urandom | od -An -tx1; sleep 60",
        cg_file.display()
    );
    let mut child = record(d, "rk-killed", &script).spawn().unwrap();
    wait_for(Duration::from_secs(20), "the session's cgroup", || {
        std::fs::read_to_string(&cg_file).is_ok_and(|t| t.ends_with('\n'))
    });
    let line = std::fs::read_to_string(&cg_file).unwrap();
    let rel = line
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup v2 line in {line}"));
    assert_eq!(rel, format!("/{}/rk-killed", cg.name()), "{line}");
    let cgroup: PathBuf = cgroup2_mount().join(rel.trim_start_matches('/'));
    let inode = std::fs::metadata(&cgroup).unwrap().ino();
    wait_for(
        Duration::from_secs(30),
        "4 checkpoints, chained and sealed",
        || {
            let text = std::fs::read_to_string(d.join("out/all.ndjson")).unwrap_or_default();
            let e = events(d);
            let cps = of(&e, "rk-killed", "auditrail.recording");
            cps.len() >= 4 && {
                let last = cps.last().unwrap()["uid"].as_str().unwrap().to_string();
                text.find(&format!("\"uid\":\"{last}\""))
                    .is_some_and(|at| text[at..].contains("\"event\":\"auditrail.seal\""))
            }
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let e = events(d);
    let start = of(&e, "rk-killed", "session.start");
    assert_eq!(start.len(), 1, "{e:?}");
    assert_eq!(
        start[0]["cgroup_id"].as_u64(),
        Some(inode),
        "session.start names the session's cgroup: {}",
        start[0]
    );
    assert!(of(&e, "rk-killed", "session.end").is_empty());
    // The recorder's connection to the agent closed with it: once the session's processes are gone, so is
    // its cgroup.
    wait_for(Duration::from_secs(40), "the cgroup removed", || {
        !cgroup.exists()
    });

    let last_raw = of(&e, "rk-killed", "auditrail.recording")
        .iter()
        .filter(|c| c["kind"] == "checkpoint")
        .filter_map(|c| c["raw_bytes"].as_u64())
        .max()
        .unwrap();
    let raw_path = d.join("data/recordings/rk-killed.raw");
    // Output the recorder wrote after its last checkpoint and before the kill: here the recorder checkpointed
    // as the output paused, so such a tail is added by hand, as a kill between a write and the next
    // checkpoint leaves it.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&raw_path)
        .unwrap()
        .write_all(&[b'x'; 1000])
        .unwrap();
    let size = std::fs::metadata(&raw_path).unwrap().len();
    assert!(size > last_raw);
    let (code, report) = verify(d);
    println!(
        "rk-killed: cgroup {} (id {inode}), .raw {size} bytes, proven up to {last_raw}",
        cgroup.display()
    );
    assert_eq!(code, 0, "nothing is tampered: {report:#}");
    let killed = recording(&report, "rk-killed");
    let raw = file(killed, "raw");
    assert_eq!(raw["verdict"], "unfinished", "{killed:#}");
    assert_eq!(raw["proven_bytes"], last_raw, "{killed:#}");
    assert_eq!(raw["unproven_bytes"], size - last_raw, "{killed:#}");
    let done = recording(&report, "rk-done");
    assert_eq!(file(done, "raw")["verdict"], "intact", "{done:#}");
    assert_eq!(file(done, "cast")["verdict"], "intact", "{done:#}");

    // One byte changed inside the proven prefix is tampering, and only that recording is named.
    let mut bytes = std::fs::read(&raw_path).unwrap();
    bytes[(last_raw / 2) as usize] ^= 0x01;
    std::fs::write(&raw_path, bytes).unwrap();
    let (code, report) = verify(d);
    assert_eq!(code, 1, "{report:#}");
    let killed = recording(&report, "rk-killed");
    assert_eq!(file(killed, "raw")["verdict"], "altered", "{killed:#}");
    assert_eq!(file(killed, "cast")["verdict"], "unfinished", "{killed:#}");
    let done = recording(&report, "rk-done");
    assert_eq!(file(done, "raw")["verdict"], "intact", "{done:#}");
    assert!(agent.terminate(Duration::from_secs(20)).success());
}
