//! What the agent leaves on disk, run as it would be from a careless shell (umask 000): every directory it
//! makes for its state is 0700 and every file 0600 (the integrity public key, meant to be handed out, 0644);
//! dead-letter files are rotated at `[dead_letter] max_size`, and every record rotation removes is counted in
//! the metric and reported in `auditrail.dead_letter_lost` events, exactly; a group- or world-writable
//! `data_dir` is warned about at start.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use auditrail_integration_tests::*;

const GOOD: usize = 300;
const BAD: usize = 300;

fn config(d: &Path, api: u16) -> String {
    format!(
        r#"
data_dir = "{d}/state/data"
[api]
address = "127.0.0.1:{api}"
[dead_letter]
max_size = "4KiB"
max_files = 2
[sources.teleport]
type = "file"
include = ["{d}/in/*.log"]
poll_interval = "20ms"
checkpoint_interval = "100ms"
[sinks.out]
type = "file"
inputs = ["teleport"]
path = "{d}/out/events.ndjson"
buffer = {{ type = "disk", max_size = "64MiB", fsync_interval = "20ms" }}
[integrity]
key = "{d}/state/data/keys/auditrail.key"
node_id = "node-1"
seal_interval = "200ms"
"#,
        d = d.display()
    )
}

/// Every path under `root` (itself included) with its mode, not following links.
fn walk(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.push((p.clone(), m.is_dir(), m.permissions().mode() & 0o7777));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

/// The records in the dead-letter files of source `teleport`.
fn dead_lettered(data: &Path) -> Vec<String> {
    let base = data.join("dead-letter/sources/teleport.ndjson");
    let mut out = Vec::new();
    for n in (0..4).rev() {
        let p = if n == 0 {
            base.clone()
        } else {
            PathBuf::from(format!("{}.{n}", base.display()))
        };
        if let Ok(text) = std::fs::read_to_string(&p) {
            assert!(
                text.len() <= 4096,
                "{} holds {} bytes",
                p.display(),
                text.len()
            );
            out.extend(text.lines().map(String::from));
        }
    }
    out
}

/// The sum of `count` over the `auditrail.dead_letter_lost` events in the sink's output.
fn reported_lost(out: &Path) -> u64 {
    lines_so_far(out)
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "auditrail.dead_letter_lost")
        .inspect(|v| assert_eq!(v["component"], "teleport", "{v}"))
        .map(|v| v["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn state_is_private_under_umask_000_and_dead_letter_rotation_counts_every_loss() {
    // The agent inherits the umask; only this test runs in this binary's process with it.
    let old = unsafe { libc::umask(0) };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let mut text = String::new();
    for i in 0..GOOD.max(BAD) {
        if i < GOOD {
            text.push_str(&event(&format!("good-{i}"), i));
            text.push('\n');
        }
        if i < BAD {
            text.push_str(&format!("not json {i:05} {}\n", "x".repeat(300)));
        }
    }
    std::fs::write(d.join("in/a.log"), text).unwrap();
    let api = free_port();
    let agent = Agent::start(d, &config(d, api), api);
    let data = d.join("state/data");
    let out = d.join("out");
    wait_for(
        Duration::from_secs(60),
        "the good events and the refusals",
        || {
            let invalid = agent.metric("auditrail_source_invalid_total", &[("source", "teleport")]);
            let uids = uids_so_far(&out);
            invalid >= BAD as f64 && (0..GOOD).all(|i| uids.contains_key(&format!("good-{i}")))
        },
    );
    let lost_metric = || {
        agent.metric(
            "auditrail_dead_letter_rotated_lost_total",
            &[("component", "teleport")],
        ) as u64
    };
    wait_for(
        Duration::from_secs(20),
        "the loss reported in the audit trail",
        || lost_metric() > 0 && reported_lost(&out) == lost_metric(),
    );
    let lost = lost_metric();
    assert_eq!(
        agent.metric("auditrail_data_dir_group_or_world_writable", &[]),
        0.0
    );
    assert!(agent.terminate(Duration::from_secs(20)).success());

    // Exact accounting: what the files keep plus what rotation removed is what was dead-lettered.
    let kept = dead_lettered(&data);
    assert_eq!(
        kept.len() as u64 + lost,
        BAD as u64,
        "kept {} + lost {lost}",
        kept.len()
    );
    assert_eq!(reported_lost(&out), lost, "each lost record reported once");
    // The kept ones are the newest, each once.
    let locations: HashSet<String> = kept
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["raw"]
                .as_str()
                .unwrap()[9..14]
                .to_string()
        })
        .collect();
    assert_eq!(locations.len(), kept.len());
    let newest: HashSet<String> = (BAD - kept.len()..BAD).map(|i| format!("{i:05}")).collect();
    assert_eq!(locations, newest);
    let log = std::fs::read_to_string(agent_log(d)).unwrap();
    assert!(log.contains("dead-letter file rotated out"), "{log}");

    // Modes: everything the agent made under data_dir (and data_dir and its parent, which it created).
    let entries = walk(&d.join("state"));
    let mut kinds = HashSet::new();
    for (p, is_dir, mode) in &entries {
        let rel = p.strip_prefix(d).unwrap().display().to_string();
        if *is_dir {
            assert_eq!(*mode, 0o700, "{rel}: {mode:04o}");
        } else if rel.ends_with(".pub") {
            assert_eq!(*mode, 0o644, "{rel}: the public key is meant to be read");
        } else {
            assert_eq!(*mode, 0o600, "{rel}: {mode:04o}");
        }
        for part in ["buffers", "checkpoints", "integrity", "dead-letter", "keys"] {
            if rel.contains(part) {
                kinds.insert(part);
            }
        }
    }
    assert_eq!(
        kinds.len(),
        5,
        "every kind of state was made: {kinds:?} in {entries:?}"
    );
    assert!(entries.len() > 12, "{entries:?}");
    // The file sink's output is the operator's: 0640.
    let m = std::fs::metadata(out.join("events.ndjson"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(m & 0o7777, 0o640);

    // A data_dir others may write to is warned about at the next start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let agent = Agent::start(d, &config(d, api), api);
    assert_eq!(
        agent.metric("auditrail_data_dir_group_or_world_writable", &[]),
        1.0
    );
    let log = agent.log_text();
    assert!(
        log.contains("data_dir is writable by its group or by everyone") && log.contains("0777"),
        "{log}"
    );
    assert!(agent.terminate(Duration::from_secs(20)).success());
    unsafe { libc::umask(old) };
}

fn agent_log(d: &Path) -> PathBuf {
    d.join("agent-0.log")
}
