//! Verification throughput: `cargo bench --bench verify` writes N chained Teleport-like events (default
//! 1,000,000; `AUDITRAIL_VERIFY_EVENTS` to change) with seals every 10,000 events and a new epoch key every
//! 250,000, then times the verifier on them: the library on the text in memory, and the release binary
//! (`auditrail verify --json FILE`, built first unless `AUDITRAIL_BIN` names one) reading the file. Prints
//! events/s, CPU seconds and max RSS of each of 3 runs and the median. Numbers go in benches/RESULTS.md.
//! `AUDITRAIL_VERIFY_ONLY=library|cli` runs one half; `AUDITRAIL_VERIFY_KEEP=DIR` keeps the files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use auditrail_core::integrity::chain::{
    append_member, content_digest, link, Hash, Integrity, GENESIS,
};
use auditrail_core::integrity::keys::{write_public, EpochKey};
use auditrail_core::integrity::seal::Seal;
use auditrail_core::integrity::verify::Verifier;

const STREAM: &str = "bench-node/teleport";
const SEAL_EVERY: u64 = 10_000;
const EPOCH_EVERY: u64 = 250_000;
const RUNS: usize = 3;

/// A Teleport-like event of about 400 bytes. One in ten has a command with `<`, which Teleport's Go encoder
/// writes as `\u003c` (every one with `AUDITRAIL_VERIFY_ESCAPED=1`): lines with escapes take the verifier's
/// slower path.
fn event(i: u64, all_escaped: bool) -> String {
    let cmd = if all_escaped || i % 10 == 0 {
        r"grep -c x \u003c /var/log/auth.log"
    } else {
        "tail -n 100 /var/log/auth.log"
    };
    format!(
        r#"{{"event":"session.start","uid":"0192f1c4-8e3a-7b9c-a1d2-{i:012}","code":"T2000I","time":"2017-02-03T06:54:05.{:03}Z","user":"user{}@example.com","login":"dba","server_id":"f84f7386-5e22-45ff-8f7d-b8079742e63c","sid":"8d3895b6-e9dd-11e6-94e4-{i:012}","addr.local":"10.5.1.15:3022","addr.remote":"10.5.1.{}:51234","cluster_name":"prod","size":"80:25","cmd":"{cmd}"}}"#,
        i % 1000,
        i % 97,
        i % 250
    )
}

/// `n` chained events (seals and their events included) as NDJSON, and the root key.
fn generate(n: u64) -> (Vec<u8>, EpochKey) {
    let all_escaped = std::env::var_os("AUDITRAIL_VERIFY_ESCAPED").is_some_and(|v| v == "1");
    let root = EpochKey::generate();
    let mut key: Option<EpochKey> = None;
    let mut out = Vec::with_capacity(n as usize * 420);
    let (mut prev, mut seq, mut last_seal, mut scratch) = (GENESIS, 0u64, 0u64, Vec::new());
    let mut push = |body: &[u8], prev: &mut Hash, seq: &mut u64, out: &mut Vec<u8>| {
        *seq += 1;
        let d = content_digest(body, &mut scratch).expect("valid JSON");
        let hash = link(STREAM, *seq, prev, &d);
        let mut m = Vec::with_capacity(200);
        Integrity {
            stream: STREAM.into(),
            seq: *seq,
            prev: *prev,
            hash,
        }
        .write_member(&mut m);
        out.extend_from_slice(&append_member(body, &m));
        out.push(b'\n');
        *prev = hash;
    };
    let mut i = 0u64;
    let mut next_epoch_at = EPOCH_EVERY;
    while seq < n {
        i += 1;
        push(
            event(i, all_escaped).as_bytes(),
            &mut prev,
            &mut seq,
            &mut out,
        );
        if seq % SEAL_EVERY == 0 || seq + 1 == n {
            let k = key.as_ref().unwrap_or(&root);
            let s = Seal::sign(k, STREAM, last_seal + 1, seq, prev);
            push(&s.to_event(), &mut prev, &mut seq, &mut out);
            last_seal = seq;
            if seq >= next_epoch_at {
                // The agent seals every stream, then evolves the key.
                let next = k.evolve();
                key = Some(next);
                next_epoch_at += EPOCH_EVERY;
            }
        }
    }
    (out, root)
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AUDITRAIL_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--bin", "auditrail"])
        .current_dir(root)
        .status()
        .expect("running cargo build");
    assert!(
        status.success(),
        "cargo build --release --bin auditrail failed"
    );
    root.join("target/release/auditrail")
}

fn children_cpu_and_rss() -> (f64, f64) {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(u.ru_utime) + secs(u.ru_stime),
        u.ru_maxrss as f64 / 1024.0,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Times the library on `text` in memory with `threads` threads (0: every core).
fn library(text: &[u8], root: &EpochKey, n: u64, threads: usize) {
    let what = if threads == 0 {
        "every core".to_string()
    } else {
        format!("{threads} thread")
    };
    let mut rates = Vec::new();
    for run in 1..=RUNS {
        let t = Instant::now();
        let mut v = Verifier::new(root.public());
        if threads > 0 {
            v = v.with_threads(threads);
        }
        // Whole lines at a time, as `auditrail verify` reads a file.
        let (mut start, mut line) = (0, 1);
        while start < text.len() {
            let end = (start + (8 << 20)).min(text.len());
            let end =
                memchr::memrchr(b'\n', &text[start..end]).map_or(text.len(), |p| start + p + 1);
            line += v.feed_ndjson(&text[start..end], "events.ndjson", line);
            start = end;
        }
        let report = v.finish();
        let secs = t.elapsed().as_secs_f64();
        assert!(report.ok, "the generated chain must verify: {report}");
        assert_eq!(report.streams[0].verified, n);
        rates.push(n as f64 / secs);
        println!(
            "library ({what}) run {run}: {secs:.3} s, {:.0} events/s, {:.2} µs/event",
            n as f64 / secs,
            secs * 1e6 / n as f64
        );
    }
    println!("library ({what}) median: {:.0} events/s", median(rates));
}

/// Times `auditrail verify --json` on the file.
fn cli(bin: &Path, public: &Path, file: &Path, n: u64) {
    let mut rates = Vec::new();
    for run in 1..=RUNS {
        let (cpu0, _) = children_cpu_and_rss();
        let t = Instant::now();
        let out = Command::new(bin)
            .args(["verify", "--json", "--key"])
            .arg(public)
            .arg(file)
            .output()
            .expect("running auditrail verify");
        let secs = t.elapsed().as_secs_f64();
        let (cpu1, rss) = children_cpu_and_rss();
        assert_eq!(
            out.status.code(),
            Some(0),
            "auditrail verify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["streams"][0]["verified"], n);
        rates.push(n as f64 / secs);
        println!(
            "auditrail verify run {run}: {secs:.3} s, {:.0} events/s, CPU {:.2} s, max RSS {rss:.0} MB",
            n as f64 / secs,
            cpu1 - cpu0
        );
    }
    println!("auditrail verify median: {:.0} events/s", median(rates));
}

fn main() {
    let n: u64 = std::env::var("AUDITRAIL_VERIFY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    // AUDITRAIL_VERIFY_KEEP=DIR keeps the events and the key there (to profile or try the CLI by hand).
    let dir = std::env::var_os("AUDITRAIL_VERIFY_KEEP")
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    let (text, root) = generate(n);
    let file = dir.join("events.ndjson");
    std::fs::File::create(&file)
        .and_then(|mut f| f.write_all(&text))
        .unwrap();
    let public = dir.join("auditrail.pub");
    write_public(&root.public(), &public).unwrap();
    println!(
        "generated {n} chained events ({} bytes, {:.0} bytes/event) in {:.1} s",
        text.len(),
        text.len() as f64 / n as f64,
        started.elapsed().as_secs_f64()
    );
    let only = std::env::var("AUDITRAIL_VERIFY_ONLY").unwrap_or_default();
    if only != "cli" {
        library(&text, &root, n, 1);
        library(&text, &root, n, 0);
    }
    // The children's max RSS would count this process's pages (they are forked from it) while it holds the text.
    drop(text);
    if only != "library" {
        cli(&binary(), &public, &file, n);
    }
}
