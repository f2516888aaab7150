//! A file sink whose path template renders untrusted fields, through the real binary: one crafted event (a
//! 10,000-byte `user`, a `user` of `..`) among 10,000 good ones is dead-lettered with its reason while every
//! good one lands and the source never stalls; 100,000 distinct values never hold more than `max_open_files`
//! output files open at once.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auditrail_integration_tests::*;

fn config(d: &Path, api: u16, path: &str, sink_extra: &str) -> String {
    format!(
        r#"
data_dir = "{d}/data"
shutdown_timeout = "30s"
[api]
address = "127.0.0.1:{api}"
[sources.teleport]
type = "file"
include = ["{d}/in/*.log"]
poll_interval = "20ms"
[sinks.out]
type = "file"
inputs = ["teleport"]
path = "{path}"
batch_max_events = 500
buffer = {{ type = "memory", max_events = 1000, when_full = "block" }}
{sink_extra}
"#,
        d = d.display()
    )
}

fn crafted(uid: &str, user: &str) -> String {
    serde_json::json!({"event":"session.start","uid":uid,"time":"2017-02-03T06:54:05Z","user":user})
        .to_string()
}

#[test]
fn crafted_fields_are_dead_lettered_and_every_good_event_lands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 10_000;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(d.join("in/a.log")).unwrap());
        for i in 0..N {
            writeln!(f, "{}", event(&format!("g-{i}"), i)).unwrap();
            // Early, so that a stalled sink would hold back almost all the good events behind them.
            if i == 100 {
                writeln!(f, "{}", crafted("bad-long", &"u".repeat(10_000))).unwrap();
            }
            if i == 200 {
                writeln!(f, "{}", crafted("bad-dots", "..")).unwrap();
            }
        }
        f.flush().unwrap();
    }
    let api = free_port();
    let path = format!("{}/out/{{user}}/{{event}}.ndjson", d.display());
    let agent = Agent::start(d, &config(d, api, &path, ""), api);
    wait_for(
        Duration::from_secs(120),
        "every good event in the output and the two crafted ones dead-lettered",
        || {
            line_count(&d.join("out")) >= N
                && agent.metric("auditrail_sink_rejected_total", &[("sink", "out")]) >= 2.0
        },
    );
    assert_eq!(
        agent.metric("auditrail_sink_events_total", &[("sink", "out")]),
        N as f64
    );
    assert_eq!(
        agent.metric("auditrail_sink_rejected_total", &[("sink", "out")]),
        2.0
    );
    for reason in ["path_too_long", "path_unsafe_component"] {
        assert_eq!(
            agent.metric(
                "auditrail_sink_dead_lettered_total",
                &[("sink", "out"), ("reason", reason)]
            ),
            1.0,
            "{reason}"
        );
    }
    assert!(agent.terminate(Duration::from_secs(40)).success());

    let counts = uids_in(&d.join("out"));
    assert_eq!(counts.len(), N, "every good uid once");
    assert!(counts.keys().all(|k| k.starts_with("g-")));
    assert!(counts.values().all(|c| *c == 1));
    // Nothing was written outside the template's directories (`out/../session.start.ndjson`).
    assert!(!d.join("session.start.ndjson").exists());
    let dl = std::fs::read_to_string(d.join("data/dead-letter/out.ndjson")).unwrap();
    let records: HashMap<String, serde_json::Value> = dl
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["location"].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert_eq!(records.len(), 2, "{dl:.2000}");
    let long = &records["uid bad-long"];
    assert_eq!(long["reason"], "path_too_long");
    assert_eq!(long["component"], "out");
    let message = long["message"].as_str().unwrap();
    assert!(
        message.contains("file sink `out`")
            && message.contains("`user`")
            && message.contains("at most 240"),
        "{message}"
    );
    assert!(long["raw"].as_str().unwrap().contains(&"u".repeat(10_000)));
    let dots = &records["uid bad-dots"];
    assert_eq!(dots["reason"], "path_unsafe_component");
    assert!(dots["message"].as_str().unwrap().contains("`..`"));
}

/// Output files (under `out`) the process holds open, and all its descriptors.
fn descriptors(pid: i32, out: &Path) -> (usize, usize) {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let mut all = 0;
    let mut outputs = 0;
    for e in entries.flatten() {
        all += 1;
        if std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(out)) {
            outputs += 1;
        }
    }
    (outputs, all)
}

#[test]
fn a_hundred_thousand_distinct_values_stay_within_max_open_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    // The input exists (empty) from the start, so that the source's descriptor for it is in the baseline.
    let input = d.join("in/a.log");
    std::fs::write(&input, b"").unwrap();
    const N: usize = 100_000;
    const MAX_OPEN: usize = 16;
    let api = free_port();
    let path = format!("{}/out/{{user}}.ndjson", d.display());
    // fsync = "none": a hundred thousand fsyncs would test the disk, not the bound.
    let extra = format!("max_open_files = {MAX_OPEN}\nfsync = \"none\"");
    let agent = Agent::start(d, &config(d, api, &path, &extra), api);
    let pid = agent.pid();
    let out = d.join("out");
    let mut baseline = 0;
    for _ in 0..50 {
        baseline = baseline.max(descriptors(pid, &out).1);
        std::thread::sleep(Duration::from_millis(10));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, out) = (Arc::clone(&stop), out.clone());
        std::thread::spawn(move || {
            let (mut outputs, mut all, mut samples) = (0, 0, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let (o, a) = descriptors(pid, &out);
                outputs = outputs.max(o);
                all = all.max(a);
                samples += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            (outputs, all, samples)
        })
    };
    {
        let mut f = std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&input)
                .unwrap(),
        );
        for i in 0..N {
            let user = format!("user-{i}");
            let line = serde_json::json!({"event":"x","uid":format!("d-{i}"),"time":"2017-02-03T06:54:05Z","user":user});
            writeln!(f, "{line}").unwrap();
        }
        f.flush().unwrap();
    }
    // Polled from the files rather than the metrics endpoint, whose connection would be a descriptor more.
    wait_for(
        Duration::from_secs(300),
        "a file for every distinct user",
        || std::fs::read_dir(&out).is_ok_and(|r| r.count() >= N),
    );
    wait_for(Duration::from_secs(120), "every event delivered", || {
        agent.metric("auditrail_sink_events_total", &[("sink", "out")]) >= N as f64
    });
    stop.store(true, Ordering::Relaxed);
    let (outputs, all, samples) = sampler.join().unwrap();
    assert!(agent.terminate(Duration::from_secs(40)).success());
    eprintln!("descriptors: baseline {baseline}, most {all}; output files open at most {outputs} ({samples} samples)");
    assert!(samples > 100, "the sampler ran ({samples} samples)");
    assert!(outputs > 0, "the sampler saw output files open");
    assert!(
        outputs <= MAX_OPEN,
        "{outputs} output files open at once; max_open_files = {MAX_OPEN}"
    );
    // The metrics poll at the end and the checkpoint's write may each hold one descriptor for a moment.
    assert!(
        all <= baseline + MAX_OPEN + 2,
        "{all} descriptors at most; baseline {baseline} + max_open_files {MAX_OPEN}"
    );
    let counts = uids_in(&out);
    assert_eq!(counts.len(), N);
    assert!(counts.values().all(|c| *c == 1));
}
