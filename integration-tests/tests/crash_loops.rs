//! Crash loops with the integrity chain on, against the real binary: twenty kill -9s at pseudo-random moments
//! with a disk buffer (three seeds) and with a memory buffer, then one life that delivers everything, and
//! `auditrail verify` on what the file sink stored; and an abort at every named crash point of the buffer, the
//! chain, the seals, the key and the tails, each followed by a clean restart.
//!
//! What must hold after the drain: nothing lost, verify exits 0, and no stream shows a gap, an altered event, a
//! conflict (one seq, two contents), a bad seal or a broken link. A memory buffer loses what it held with the
//! process; such seqs may only appear in the stream's declared `crash_windows`, never as gaps. With a disk
//! buffer the duplicates (output lines beyond one per input event) stay within 5% of the input.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use auditrail_integration_tests::integrity::{
    config, findings, is_clean, report_findings, rich_event, verify,
};
use auditrail_integration_tests::*;
use serde_json::Value;

const DISK: &str = r#"{ type = "disk", max_size = "256MiB", fsync_interval = "20ms" }"#;
const MEMORY: &str = r#"{ type = "memory", max_events = 10000 }"#;
const SEALS: &str = "seal_interval = \"300ms\"\nseal_events = 2000";

/// Every crash point a test can ask for with `AUDITRAIL_CRASH_AT`: the disk buffer's, then those of the chain,
/// the seals and the key file. The test checks that each one really fired.
use auditrail_core::crash::CRASH_POINTS;

/// The file source with its default `checkpoint_interval` (1 s) instead of the 100 ms of [`config`]: the
/// scenario of the issue, where no life lasts long enough for a checkpoint and every restart reads again what
/// the buffer already holds. With 100 ms the code before the fix came through the same loop clean.
fn with_default_checkpoints(cfg: &str) -> String {
    let line = "checkpoint_interval = \"100ms\"\n";
    assert!(cfg.contains(line), "config() changed: {cfg}");
    cfg.replace(line, "")
}

/// A xorshift64 step: the pseudo-random kill moments of a seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Appends [`rich_event`]s `prefix{from..to}` to `path` in one write (whole lines only).
fn append_rich(path: &Path, prefix: &str, from: usize, to: usize) {
    let mut text = String::with_capacity((to - from) * 400);
    for i in from..to {
        text.push_str(&rich_event(prefix, i));
        text.push('\n');
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// What the file sink wrote so far, read incrementally (complete lines only: the sink cuts a torn last line at
/// its next start, never anything before the last newline), so that polling a large output stays cheap.
struct Output {
    path: PathBuf,
    offset: u64,
    lines: usize,
    uids: HashMap<String, usize>,
}

impl Output {
    fn new(dir: &Path) -> Output {
        Output {
            path: dir.join("out/all.ndjson"),
            offset: 0,
            lines: 0,
            uids: HashMap::new(),
        }
    }

    /// Reads what was appended since the last call. Event lines are told by their start (every input line is a
    /// [`rich_event`], whose first members are `event` and `uid`), so that a million lines take seconds even in
    /// a debug build; the agent's own events (`auditrail.*`) are counted as lines only.
    fn update(&mut self) {
        const START: &str = "{\"event\":\"session.command\",\"uid\":\"";
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        let size = f.metadata().unwrap().len();
        assert!(size >= self.offset, "{} shrank", self.path.display());
        f.seek(SeekFrom::Start(self.offset)).unwrap();
        let mut bytes = Vec::new();
        f.take(size - self.offset).read_to_end(&mut bytes).unwrap();
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let text = std::str::from_utf8(&bytes[..end + 1]).expect("UTF-8 output");
        for line in text.lines() {
            self.lines += 1;
            let Some(rest) = line.strip_prefix(START) else {
                assert!(
                    line.starts_with('{') && line.contains("\"event\":\"auditrail."),
                    "unexpected output line {line:?}"
                );
                continue;
            };
            let uid = &rest[..rest.find('"').expect("uid ends")];
            *self.uids.entry(uid.to_string()).or_insert(0) += 1;
        }
        self.offset += end as u64 + 1;
    }

    /// For uids `prefix{0..n}`: how many are missing, how many extra copies there are (of any uid).
    fn lost_and_duplicates(&self, prefix: &str, n: usize) -> (usize, usize) {
        let lost = (0..n)
            .filter(|i| !self.uids.contains_key(&format!("{prefix}{i}")))
            .count();
        let dups = self.uids.values().map(|c| c - 1).sum();
        (lost, dups)
    }
}

/// Starts the agent again (no crash hook), waits until every uid `prefix{0..n}` is out, stops it with SIGTERM
/// and returns the lost and duplicated counts.
fn drain(
    d: &Path,
    cfg: &str,
    api: u16,
    out: &mut Output,
    prefix: &str,
    n: usize,
) -> (usize, usize) {
    let agent = Agent::start(d, cfg, api);
    let want = |o: &Output| o.lost_and_duplicates(prefix, n).0 == 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        out.update();
        if out.uids.len() >= n && want(out) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every uid out 120 s after the restart: {} of {n} distinct\n{}",
            out.uids.len(),
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = agent.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status} after SIGTERM");
    out.update();
    out.lost_and_duplicates(prefix, n)
}

/// Verifies `d/out`; returns the exit code and the report.
fn verify_out(d: &Path) -> (i32, Value) {
    verify(&d.join("keys/auditrail.pub"), &[&d.join("out")], None)
}

/// What every crash test needs of a verify run: every stream clean (no gaps, altered events, conflicts, bad
/// seals or broken links) and exit 0.
fn assert_verified(code: i32, report: &Value, what: &str) {
    let streams = report["streams"].as_array().cloned().unwrap_or_default();
    assert!(!streams.is_empty(), "{what}: verify found no stream");
    for s in &streams {
        assert!(is_clean(s), "{what}: {}", findings(s));
    }
    assert_eq!(
        code,
        0,
        "{what}: verify exit code\n{}",
        report_findings(report)
    );
}

/// Kills the agent with SIGKILL `kills` times at pseudo-random moments 0.2-0.9 s after it answered /health,
/// appending new events during every life so that each kill lands while events flow; then drains and verifies.
/// Returns (input events, duplicates, report).
fn kill_loop(buffer: &str, mut seed: u64, prefix: &str) -> (usize, usize, Value) {
    const BACKLOG: usize = 60_000;
    const PER_LIFE: usize = 2_000;
    const KILLS: usize = 20;
    const N: usize = BACKLOG + KILLS * PER_LIFE;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let input = d.join("in/a.log");
    append_rich(&input, prefix, 0, BACKLOG);
    let api = free_port();
    let cfg = with_default_checkpoints(&config(d, api, &["a"], buffer, SEALS));
    let mut out = Output::new(d);
    let mut written = BACKLOG;
    for k in 1..=KILLS {
        let mut agent = Agent::start(d, &cfg, api);
        let life = Instant::now();
        let delay = Duration::from_millis(200 + next(&mut seed) % 701);
        // A trickle over the life, then a burst 5-60 ms before the kill: however fast the agent is, the kill
        // finds that burst somewhere between the file and the sink.
        let burst_at = delay - Duration::from_millis(5 + next(&mut seed) % 56);
        for step in 1..=4 {
            std::thread::sleep((burst_at * step / 5).saturating_sub(life.elapsed()));
            append_rich(&input, prefix, written, written + PER_LIFE / 8);
            written += PER_LIFE / 8;
        }
        std::thread::sleep(burst_at.saturating_sub(life.elapsed()));
        append_rich(&input, prefix, written, written + PER_LIFE / 2);
        written += PER_LIFE / 2;
        std::thread::sleep(delay.saturating_sub(life.elapsed()));
        assert!(
            agent.alive(),
            "life {k} ended by itself:\n{}",
            agent.log_text()
        );
        agent.kill9();
        out.update();
        println!(
            "{prefix} kill -9 #{k} at {} ms: {written} events in, {} lines out, {} distinct",
            delay.as_millis(),
            out.lines,
            out.uids.len()
        );
    }
    assert_eq!(written, N);
    let (lost, dups) = drain(d, &cfg, api, &mut out, prefix, N);
    let (code, report) = verify_out(d);
    println!(
        "{prefix} {KILLS} x kill -9 ({buffer}): {N} in, {} distinct out, {dups} duplicates ({:.1}%), {lost} lost, {:.1} s\n{}",
        out.uids.len(),
        100.0 * dups as f64 / N as f64,
        started.elapsed().as_secs_f64(),
        report_findings(&report)
    );
    assert_eq!(lost, 0, "lost events\n{}", report_findings(&report));
    assert_verified(code, &report, &format!("{prefix} after {KILLS} x kill -9"));
    (N, dups, report)
}

fn disk_kill_loop(seed: u64, prefix: &str) {
    let (n, dups, report) = kill_loop(DISK, seed, prefix);
    let streams: Vec<&str> = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["stream"].as_str())
        .collect();
    assert_eq!(
        streams,
        ["node-1/a"],
        "a disk buffer keeps the chain state: no reset expected\n{}",
        report_findings(&report)
    );
    assert!(
        dups * 20 <= n,
        "{dups} duplicates for {n} events: more than 5%\n{}",
        report_findings(&report)
    );
}

#[test]
fn twenty_kill_9s_with_a_disk_buffer_seed_1() {
    disk_kill_loop(0x2545_f491_4f6c_dd1d, "d1-");
}

#[test]
fn twenty_kill_9s_with_a_disk_buffer_seed_2() {
    disk_kill_loop(0x9e37_79b9_7f4a_7c15, "d2-");
}

#[test]
fn twenty_kill_9s_with_a_disk_buffer_seed_3() {
    disk_kill_loop(0xd1b5_4a32_d192_ed03, "d3-");
}

#[test]
fn twenty_kill_9s_with_a_memory_buffer_declare_their_windows() {
    let (_, _, report) = kill_loop(MEMORY, 0x6a09_e667_f3bc_c909, "m-");
    for s in report["streams"].as_array().unwrap() {
        println!(
            "memory buffer: {} crash_windows {}",
            s["stream"],
            s.get("crash_windows")
                .map_or("(no such key)".to_string(), Value::to_string)
        );
    }
}

/// The agent with `AUDITRAIL_CRASH_AT=point` and `AUDITRAIL_CRASH_AFTER=after`, not waited for (an abort at
/// startup comes before /health answers).
fn start_hooked(bin: &Path, d: &Path, cfg: &str, point: &str, after: u64) -> (Child, PathBuf) {
    let path = d.join("auditrail.toml");
    std::fs::write(&path, cfg).unwrap();
    let log = d.join(format!("hooked-{point}-{after}.log"));
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&path)
        .current_dir(d)
        .env("AUDITRAIL_CRASH_AT", point)
        .env("AUDITRAIL_CRASH_AFTER", after.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting auditrail");
    (child, log)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// One crash point: start with the hook while events are appended, wait for the abort, restart without it,
/// drain and verify. Err says what went wrong.
fn crash_at(bin: &Path, point: &str, after: u64) -> Result<String, String> {
    const BACKLOG: usize = 2_000;
    const CHUNK: usize = 500;
    const MAX_CHUNKS: usize = 40;
    let what = format!("{point} x{after}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let input = d.join("in/a.log");
    let prefix = "c-";
    append_rich(&input, prefix, 0, BACKLOG);
    let api = free_port();
    // Small segments, so that acknowledged ones are deleted (before_unlink, after_unlink); short epochs, so
    // that seals and key evolutions happen in a life of a second.
    let buffer = r#"{ type = "disk", max_size = "256MiB", fsync_interval = "20ms", max_segment_size = "1MiB" }"#;
    let cfg = config(
        d,
        api,
        &["a"],
        buffer,
        "seal_interval = \"200ms\"\nseal_events = 2000",
    );
    let (mut child, log) = start_hooked(bin, d, &cfg, point, after);
    let written = AtomicUsize::new(BACKLOG);
    let stop = AtomicBool::new(false);
    let status: Option<ExitStatus> = std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..MAX_CHUNKS {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
                let from = written.load(Ordering::Acquire);
                append_rich(&input, prefix, from, from + CHUNK);
                written.store(from + CHUNK, Ordering::Release);
            }
        });
        // The appends take about 2 s; the hook has 3 s more (seals, key evolutions and checkpoints go on
        // while idle) before it counts as not fired.
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        stop.store(true, Ordering::Release);
        status
    });
    let n = written.load(Ordering::Acquire);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "{what}: the hook did not fire within 5 s ({n} events appended; the agent does not know the point?)\n{}",
            log_tail(&log)
        ));
    };
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    if status.signal() != Some(libc::SIGABRT) || !log_text.contains(point) {
        return Err(format!(
            "{what}: exited with {status}, not by the hook's abort (signal 6 and the point named in the log)\n{}",
            log_tail(&log)
        ));
    }
    let mut out = Output::new(d);
    out.update();
    let at_crash = out.lines;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (lost, dups) = drain(d, &cfg, api, &mut out, prefix, n);
        let (code, report) = verify_out(d);
        assert_verified(code, &report, &what);
        assert_eq!(lost, 0, "{what}: lost events\n{}", report_findings(&report));
        assert_eq!(out.uids.len(), n, "{what}: uids that were never put in");
        format!(
            "{what}: {at_crash} lines out at the abort; {n} in, {dups} duplicates, 0 lost; verify clean"
        )
    }));
    result.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| format!("{what}: panicked"))
    })
}

/// Every crash point, hit the first time (for several that is at startup) and the third time.
#[test]
fn an_abort_at_every_crash_point_loses_nothing_and_verifies() {
    let Some(bin) = crash_binary() else {
        return;
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    for point in CRASH_POINTS {
        for after in [1, 3] {
            let t = Instant::now();
            match crash_at(&bin, point, after) {
                Ok(line) => println!("{line} ({:.1} s)", t.elapsed().as_secs_f64()),
                Err(why) => {
                    println!("FAILED {why}");
                    failures.push(why);
                }
            }
        }
    }
    println!(
        "{} crash points x 2 in {:.1} s",
        CRASH_POINTS.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CRASH_POINTS.len() * 2,
        failures.join("\n\n")
    );
}
