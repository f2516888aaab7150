//! The players on what the recorder and the agent wrote, not on a cast a test wrote: `auditrail record`
//! in a real terminal (tmux) sending its session events to a running agent, whose file sink templated on
//! `{sid}` writes `<sid>.events.ndjson` beside the recording; then the seek index the recorder leaves
//! behind (`<sid>.index`, built after the session ended), `auditrail play --frame` at two times from it,
//! and `auditrail play --web`'s list and timeline of that session.

use std::path::Path;
use std::time::{Duration, SystemTime};

use auditrail_integration_tests::players::{serve, tmux, Tmux};
use auditrail_integration_tests::*;
use serde_json::Value;

/// The index file's length and modification time: equal before and after a play that loaded it.
fn stamp(path: &Path) -> (u64, SystemTime) {
    let m = std::fs::metadata(path).unwrap();
    (m.len(), m.modified().unwrap())
}

/// `auditrail play --frame --at AT --dir DIR SID`: the screen at that time.
fn frame(dir: &Path, sid: &str, at: &str) -> String {
    let o = std::process::Command::new(binary())
        .args(["play", "--frame", "--at", at, "--dir"])
        .arg(dir)
        .arg(sid)
        .output()
        .unwrap();
    assert!(o.status.success(), "play --frame --at {at}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_recorded_session_plays_from_the_index_the_recorder_left_with_its_events() {
    let Some(bin) = tmux() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    let sock = d.join("events.sock");
    let rec = d.join("recordings");
    let cfg = format!(
        r#"data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.recorder]
type = "unix"
path = "{sock}"
[sinks.session_events]
type = "file"
inputs = ["recorder"]
path = "{rec}/{{sid}}.events.ndjson"
[recording]
dir = "{rec}"
socket = "{sock}"
sessions_socket = "{d}/nosessions.sock"
server_id = "node-7"
"#,
        d = d.display(),
        sock = sock.display(),
        rec = rec.display(),
    );
    let agent = Agent::start(d, &cfg, api);
    // Two screens a second apart: the first until about 1.5 s, then a cleared one.
    std::fs::write(
        d.join("session.sh"),
        "printf 'hello from the session\\n'\nsleep 1.5\nprintf '\\033[2J\\033[Hthe last screen\\n'\nsleep 0.5\n",
    )
    .unwrap();
    let shell = format!(
        "env -u SSH_ORIGINAL_COMMAND -u SSH_TTY {bin} record --config {cfg} --sid live-1 -- sh {script} 2>{err}; echo $? > {rc}; sleep 30",
        bin = binary().display(),
        cfg = d.join("auditrail.toml").display(),
        script = d.join("session.sh").display(),
        err = d.join("record.err").display(),
        rc = d.join("rc").display(),
    );
    let _tmux = Tmux::start(bin, d.join("tmux.sock"), "t", (80, 24), &shell);
    wait_for(Duration::from_secs(30), "the session to end", || {
        std::fs::read_to_string(d.join("rc")).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(
        std::fs::read_to_string(d.join("rc")).unwrap().trim(),
        "0",
        "recorder stderr: {:?}",
        std::fs::read_to_string(d.join("record.err"))
    );
    assert!(rec.join("live-1.done").is_file());

    // The recorder exits at once; the index is built after it, apart from the session.
    let index = rec.join("live-1.index");
    wait_for(Duration::from_secs(30), "the recorder's seek index", || {
        index.is_file()
    });
    let before = stamp(&index);
    let first = frame(&rec, "live-1", "0.8");
    assert!(first.contains("hello from the session"), "{first}");
    assert!(!first.contains("the last screen"), "{first}");
    let last = frame(&rec, "live-1", "100%");
    assert!(last.contains("the last screen"), "{last}");
    assert!(!last.contains("hello from the session"), "{last}");
    assert_eq!(
        stamp(&index),
        before,
        "the plays loaded the recorder's index instead of building another"
    );

    // The agent's templated file sink wrote the session's events beside the recording.
    let events_file = rec.join("live-1.events.ndjson");
    wait_for(
        Duration::from_secs(20),
        "session.end in live-1.events.ndjson",
        || std::fs::read_to_string(&events_file).is_ok_and(|s| s.contains("\"session.end\"")),
    );
    let server = serve(&rec, &[]);
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let (status, list) = http("GET", port, "/", &[], b"").unwrap();
    assert_eq!(status, 200);
    assert!(list.contains("data-sid=\"live-1\""), "{list}");
    let start: Value = std::fs::read_to_string(&events_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "session.start")
        .expect("session.start in the events file");
    let user = start["user"].as_str().unwrap();
    assert!(
        list.contains(&format!("<td>{user}</td>")),
        "the list shows the user {user}: {list}"
    );
    let (status, timeline) = http("GET", port, "/api/events/live-1", &[], b"").unwrap();
    assert_eq!(status, 200);
    let timeline: Value = serde_json::from_str(&timeline).unwrap();
    let names: Vec<&str> = timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"session.start") && names.contains(&"session.end"),
        "{names:?}"
    );
    let end = timeline
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "session.end")
        .unwrap();
    let t = end["t"].as_f64().unwrap();
    assert!(
        (1.5..10.0).contains(&t),
        "session.end sits at the end of the recording's time line: {end}"
    );
    drop(server);
    assert!(agent.terminate(Duration::from_secs(30)).success());
}
