//! The file source → file sink path through the real binary: volume, malformed input, kill -9 (once, and twenty
//! times over a disk buffer), SIGTERM.

use std::io::Write;
use std::time::Duration;

use auditrail_integration_tests::*;

fn config(dir: &std::path::Path, api: u16, buffer: &str) -> String {
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
path = "{d}/out/%Y-%m-%d.ndjson"
{buffer}
"#,
        d = dir.display()
    )
}

fn assert_exactly_once(counts: &std::collections::HashMap<String, usize>, prefix: &str, n: usize) {
    let missing: Vec<usize> = (0..n)
        .filter(|i| !counts.contains_key(&format!("{prefix}{i}")))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "missing uids (first 10): {missing:?}");
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(dups.is_empty(), "duplicated uids (first 10): {dups:?}");
    assert_eq!(counts.len(), n, "unexpected uids in output");
}

#[test]
fn two_hundred_thousand_events_arrive_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    write_events(&d.join("in/a.log"), "a-", 120_000);
    write_events(&d.join("in/b.log"), "b-", 80_000);
    let api = free_port();
    let agent = Agent::start(d, &config(d, api, ""), api);
    wait_for(
        Duration::from_secs(120),
        "200,000 lines in the output",
        || line_count(&d.join("out")) >= 200_000,
    );
    assert_eq!(
        agent.metric("auditrail_source_events_total", &[("source", "teleport")]),
        200_000.0
    );
    wait_for(Duration::from_secs(10), "delivery counted", || {
        agent.metric("auditrail_sink_events_total", &[("sink", "out")]) == 200_000.0
    });
    assert!(agent.terminate(Duration::from_secs(40)).success());
    let counts = uids_in(&d.join("out"));
    let (a, b): (Vec<_>, Vec<_>) = counts.keys().partition(|k| k.starts_with("a-"));
    assert_eq!((a.len(), b.len()), (120_000, 80_000));
    assert!(counts.values().all(|c| *c == 1), "every uid exactly once");
    // Verbatim: the first line of the output for file a is the first line of the input.
    let first_in = std::fs::read_to_string(d.join("in/a.log"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(lines_in(&d.join("out")).contains(&first_in));
}

#[test]
fn malformed_lines_are_counted_dead_lettered_and_do_not_stop_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let bad_kinds = [
        "this is not json",
        "[1,2,3]",
        r#"{"time":"2017-02-03T06:54:05Z","uid":"x"}"#,
        r#"{"event":"x","uid":"x"}"#,
        r#"{"event":"x","time":"yesterday"}"#,
        r#"{"event":"x","time":"2017-02-03T06:54:05Z","#,
    ];
    let mut f = std::io::BufWriter::new(std::fs::File::create(d.join("in/mixed.log")).unwrap());
    let mut bad_lines = Vec::new();
    let mut line_no = 0;
    for i in 0..10_000 {
        writeln!(f, "{}", event(&format!("g-{i}"), i)).unwrap();
        line_no += 1;
        if i % 10 == 0 {
            writeln!(f, "{}", bad_kinds[(i / 10) % bad_kinds.len()]).unwrap();
            line_no += 1;
            bad_lines.push(line_no);
        }
    }
    f.flush().unwrap();
    drop(f);
    assert_eq!(bad_lines.len(), 1_000);
    let api = free_port();
    let mut agent = Agent::start(d, &config(d, api, ""), api);
    wait_for(Duration::from_secs(60), "10,000 good events", || {
        line_count(&d.join("out")) >= 10_000
    });
    wait_for(Duration::from_secs(10), "1,000 invalid counted", || {
        agent.metric("auditrail_source_invalid_total", &[("source", "teleport")]) == 1_000.0
    });
    let m = agent.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "auditrail_source_invalid_total",
            &[("reason", "invalid_json")]
        ),
        333.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "auditrail_source_invalid_total",
            &[("reason", "not_object")]
        ),
        167.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "auditrail_source_invalid_total",
            &[("reason", "missing_event")]
        ),
        167.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "auditrail_source_invalid_total",
            &[("reason", "missing_time")]
        ),
        167.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "auditrail_source_invalid_total",
            &[("reason", "invalid_time")]
        ),
        166.0
    );
    assert!(agent.alive());
    let counts = uids_in(&d.join("out"));
    assert_exactly_once(&counts, "g-", 10_000);
    let dl = std::fs::read_to_string(d.join("data/dead-letter/sources/teleport.ndjson")).unwrap();
    let records: Vec<serde_json::Value> = dl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1_000);
    let path = d.join("in/mixed.log");
    let located: Vec<String> = records
        .iter()
        .map(|r| r["location"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = bad_lines
        .iter()
        .map(|l| format!("{}:{l}", path.display()))
        .collect();
    assert_eq!(located, expected, "each record names file:line");
    assert!(records
        .iter()
        .all(|r| !r["message"].as_str().unwrap().is_empty()));
    assert!(agent.log_text().contains("invalid input"));
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn kill_9_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 200_000;
    write_events(&d.join("in/a.log"), "k-", N);
    let api = free_port();
    // Small batches (an fsync every 50 events) keep the run seconds long, so the kill lands mid-stream, with
    // many events in flight.
    let cfg = config(
        d,
        api,
        "batch_max_events = 50\nbuffer = { type = \"memory\", max_events = 2000 }",
    );
    let agent = Agent::start(d, &cfg, api);
    wait_for(Duration::from_secs(60), "some output", || {
        line_count(&d.join("out")) >= 20_000
    });
    agent.kill9();
    let before = line_count(&d.join("out"));
    assert!(
        before < N,
        "the kill came after the end ({before} lines); make the test input larger"
    );
    let (missing, duplicates, counts) = recover_and_tally(d, &cfg, api, "k-", N);
    println!("kill -9 at {before} lines: sent {N}, delivered {} distinct, duplicated {duplicates}, lost {missing}", counts.len());
    assert_eq!(missing, 0);
    assert_eq!(counts.len(), N);
}

/// The issue "a crash loop does not multiply data": twenty lives killed with -9 at pseudo-random moments, each
/// restarting from what the disk buffer holds rather than from an old checkpoint, then one life that drains.
/// Nothing is lost, and what is delivered twice stays proportional to what was in flight at each kill (a sink
/// batch written but not yet acknowledged, a read being written to the buffer), far below the input.
#[test]
fn twenty_kill_9s_with_a_disk_buffer_re_read_only_what_was_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 200_000;
    write_events(&d.join("in/a.log"), "c-", N);
    let api = free_port();
    // Sink batches of 10 (an fsync each) keep the run longer than the twenty lives, so that every kill lands
    // mid-stream.
    let cfg = config(
        d,
        api,
        "batch_max_events = 10\nbuffer = { type = \"disk\", max_size = \"256MiB\", fsync_interval = \"20ms\" }",
    );
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20 {
        let agent = Agent::start(d, &cfg, api);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(200 + seed % 700));
        agent.kill9();
        let out = line_count(&d.join("out"));
        if round == 0 {
            assert!(
                out < N,
                "the first kill came after the end ({out} lines); make the test input larger"
            );
        }
        println!("kill -9 #{round}: {out} lines out so far");
    }
    let (lost, dups, counts) = recover_and_tally(d, &cfg, api, "c-", N);
    println!(
        "20 x kill -9, disk buffer: sent {N}, delivered {} distinct, duplicated {dups} ({:.2}% of the input), lost {lost}",
        counts.len(),
        dups as f64 * 100.0 / N as f64
    );
    assert_eq!(lost, 0);
    assert_eq!(counts.len(), N, "unexpected uids in output");
    assert!(
        dups * 20 <= N,
        "{dups} duplicates is over 5% of the {N} events sent"
    );
}

#[test]
fn sigterm_drains_in_flight_events_and_resumes_without_duplicates() {
    sigterm_then_restart(
        "batch_max_events = 50\nbuffer = { type = \"memory\", max_events = 5000 }",
    );
}

/// A buffer smaller than one read of the file source (about 2,800 of these lines): each read goes out as several
/// batches, and SIGTERM lands between them.
#[test]
fn sigterm_with_a_buffer_smaller_than_a_read_resumes_without_duplicates() {
    sigterm_then_restart("batch_max_events = 50\nbuffer = { type = \"memory\", max_events = 700 }");
}

/// Sends SIGTERM mid-stream with this sink configuration, restarts, and checks that every line arrived once.
fn sigterm_then_restart(sink: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 200_000;
    write_events(&d.join("in/a.log"), "t-", N);
    let api = free_port();
    let cfg = config(d, api, sink);
    // An fsync every 50 events keeps the run seconds long, so SIGTERM lands mid-stream.
    let agent = Agent::start(d, &cfg, api);
    wait_for(Duration::from_secs(60), "some output", || {
        line_count(&d.join("out")) >= 10_000
    });
    let status = agent.terminate(Duration::from_secs(40));
    assert!(status.success(), "exit status {status}");
    let first = line_count(&d.join("out"));
    assert!(
        first < N,
        "SIGTERM came after the end; make the test input larger"
    );
    // A clean stop checkpoints exactly what was delivered: the restart neither repeats nor skips a line.
    let agent = Agent::start(d, &cfg, api);
    wait_for(Duration::from_secs(120), "the rest after restart", || {
        line_count(&d.join("out")) >= N
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());
    assert_exactly_once(&uids_in(&d.join("out")), "t-", N);
    println!(
        "SIGTERM after {first} lines; restart delivered the remaining {}",
        N - first
    );
}

#[test]
fn rotation_by_rename_keeps_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let api = free_port();
    let cfg = config(d, api, "").replace(
        "poll_interval = \"20ms\"",
        "poll_interval = \"20ms\"\nglob_interval = \"100ms\"\nrotate_wait = \"500ms\"",
    );
    let agent = Agent::start(d, &cfg, api);
    let path = d.join("in/events.log");
    let mut total = 0;
    for round in 0..5 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for i in 0..1_000 {
            writeln!(f, "{}", event(&format!("r{round}-{i}"), i)).unwrap();
        }
        // Let the agent find the file, then rotate it away (out of the glob) while the writer, still holding
        // it open, appends more before it moves to the new file.
        std::thread::sleep(Duration::from_millis(300));
        std::fs::rename(&path, d.join(format!("in/events.log.{round}"))).unwrap();
        for i in 1_000..2_000 {
            writeln!(f, "{}", event(&format!("r{round}-{i}"), i)).unwrap();
        }
        total += 2_000;
    }
    wait_for(Duration::from_secs(30), "all rotated events", || {
        line_count(&d.join("out")) >= total
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());
    let counts = uids_in(&d.join("out"));
    assert_eq!(counts.len(), total);
    assert!(counts.values().all(|c| *c == 1));
}
