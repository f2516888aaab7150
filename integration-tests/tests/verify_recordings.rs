//! `auditrail verify --recordings DIR` through the real binary: recordings are written here, their events
//! (session.start, `auditrail.recording` checkpoints and cuts, session.end, in the recorder's shapes) go
//! through the real agent with `[integrity]` on (its http source, its file sink), and verify reads the sink's
//! output. Tampering with the files is named exactly; events that do not verify vouch for nothing.
//! (The events are made here, not by the recorder, so this test does not depend on it.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use auditrail_core::integrity::chain::{append_member, content_digest, link, read_field};
use auditrail_integration_tests::recordings::{file, recording};
use auditrail_integration_tests::*;
use serde_json::{json, Value};

/// SHA-256 in hex, by coreutils' sha256sum (an independent implementation).
fn sha(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A recording as the recorder would leave it, and the offsets of its chunk ends in both files.
struct Rec {
    sid: String,
    raw: Vec<u8>,
    cast: Vec<u8>,
    /// (raw bytes, cast bytes) after each output chunk.
    marks: Vec<(usize, usize)>,
}

impl Rec {
    /// `chunks` chunks of terminal output (colours, UTF-8, a cursor move), as .raw and asciicast v2.
    fn new(sid: &str, chunks: usize) -> Rec {
        let mut raw = Vec::new();
        let mut cast = format!(
            "{}\n",
            json!({"version": 2, "width": 120, "height": 40, "timestamp": 1_764_640_000u64,
                   "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"}, "command": "bash"})
        )
        .into_bytes();
        let mut marks = Vec::new();
        for i in 0..chunks {
            let mut chunk = String::new();
            for j in 0..400 {
                chunk.push_str(&format!(
                    "\x1b[3{}m{sid} chunk {i} line {j}: café 日本語 ✓\x1b[0m\r\n",
                    (i + j) % 8
                ));
            }
            chunk.push_str("\x1b[2A\x1b[K");
            raw.extend_from_slice(chunk.as_bytes());
            cast.extend_from_slice(format!("{}\n", json!([i as f64 * 0.5, "o", chunk])).as_bytes());
            marks.push((raw.len(), cast.len()));
        }
        Rec {
            sid: sid.to_string(),
            raw,
            cast,
            marks,
        }
    }

    fn write(&self, dir: &Path) {
        std::fs::write(dir.join(format!("{}.raw", self.sid)), &self.raw).unwrap();
        std::fs::write(dir.join(format!("{}.cast", self.sid)), &self.cast).unwrap();
    }

    fn write_done(&self, dir: &Path, truncated: bool) {
        std::fs::write(
            dir.join(format!("{}.done", self.sid)),
            format!("{}\n", json!({"sid": self.sid, "raw_bytes": self.raw.len(), "raw_sha256": sha(&self.raw),
                "cast_bytes": self.cast.len(), "cast_sha256": sha(&self.cast), "truncated": truncated})),
        )
        .unwrap();
    }

    fn common(&self, event: &str, code: &str, n: usize) -> Value {
        json!({"event": event, "code": code, "uid": format!("{}-{n}", self.sid),
               "time": format!("2026-12-02T03:00:{:02}.000Z", n % 60), "sid": self.sid, "user": "alice",
               "login": "alice", "server_id": "node-a", "server_hostname": "node-a"})
    }

    fn start(&self) -> Value {
        let mut e = self.common("session.start", "T2000I", 0);
        e["size"] = "120:40".into();
        e["interactive"] = true.into();
        e["session_recording"] = "node".into();
        e["cgroup_id"] = Value::Null;
        e["cgroup_error"] = "not in this test".into();
        e
    }

    /// The checkpoint after chunk `i` (0-based).
    fn checkpoint(&self, i: usize) -> Value {
        let (r, c) = self.marks[i];
        let mut e = self.common("auditrail.recording", "AR1001I", 10 + i);
        e["kind"] = "checkpoint".into();
        e["raw_bytes"] = r.into();
        e["raw_sha256"] = sha(&self.raw[..r]).into();
        e["cast_bytes"] = c.into();
        e["cast_sha256"] = sha(&self.cast[..c]).into();
        e
    }

    fn cut(&self) -> Value {
        let mut e = self.checkpoint(self.marks.len() - 1);
        e["code"] = "AR1002W".into();
        e["uid"] = format!("{}-cut", self.sid).into();
        e["kind"] = "cut".into();
        e["reason"] = "max_bytes".into();
        e["action"] = "stop_recording".into();
        e
    }

    fn end(&self, truncated: bool) -> Value {
        let mut e = self.common("session.end", "T2004I", 59);
        e["session_start"] = "2026-12-02T03:00:00.000Z".into();
        e["session_stop"] = "2026-12-02T03:00:59.000Z".into();
        e["interactive"] = true.into();
        e["participants"] = json!(["alice"]);
        e["exit_code"] = 0.into();
        e["bytes_written"] = self.raw.len().into();
        e["raw_bytes"] = self.raw.len().into();
        e["raw_sha256"] = sha(&self.raw).into();
        e["cast_bytes"] = self.cast.len().into();
        e["cast_sha256"] = sha(&self.cast).into();
        e["truncated"] = truncated.into();
        if truncated {
            e["truncated_reason"] = "max_bytes".into();
        }
        e
    }
}

/// Sends each group of `groups` through the agent (one POST of NDJSON), waiting after each until the sink
/// holds it and a seal after it; stops the agent and returns the sink file.
fn through_agent(d: &Path, groups: &[Vec<Value>]) -> PathBuf {
    let (agent, port) = integrity::sealing_http_agent(d, &d.join("data"));
    let out = d.join("out/all.ndjson");
    for events in groups {
        integrity::post_events(port, events);
        let last_uid = events.last().unwrap()["uid"].as_str().unwrap().to_string();
        wait_for(
            Duration::from_secs(30),
            "the events and a seal after them",
            || {
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                text.find(&format!("\"uid\":\"{last_uid}\""))
                    .is_some_and(|at| text[at..].contains("\"event\":\"auditrail.seal\""))
            },
        );
    }
    assert!(agent.terminate(Duration::from_secs(20)).success());
    out
}

/// `auditrail verify --key … --recordings DIR [--json] INPUT…`: exit code, stdout.
fn verify_recordings(d: &Path, dir: &Path, inputs: &[&Path], as_json: bool) -> (i32, String) {
    let mut cmd = Command::new(binary());
    cmd.arg("verify")
        .arg("--key")
        .arg(d.join("keys/auditrail.pub"))
        .arg("--recordings")
        .arg(dir);
    if as_json {
        cmd.arg("--json");
    }
    cmd.args(inputs);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "exit {code}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout)
}

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn verdicts(r: &Value) -> Vec<(String, String)> {
    r["recordings"]["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["sid"].as_str().unwrap().to_string(),
                x["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = v
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn tampering_is_named_exactly_and_the_rest_verify_intact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recs = d.join("recordings");
    std::fs::create_dir_all(&recs).unwrap();
    let names = [
        "s-intact",
        "s-flip",
        "s-trunc",
        "s-gone",
        "s-killed-long",
        "s-killed-short",
        "s-cut",
    ];
    let r: Vec<Rec> = names.iter().map(|n| Rec::new(n, 9)).collect();
    let mut events = Vec::new();
    for rec in &r {
        rec.write(&recs);
        events.push(rec.start());
        events.push(rec.checkpoint(2));
        events.push(rec.checkpoint(5));
        match rec.sid.as_str() {
            // Killed -9 mid-session: no session.end, no .done; the recorder wrote on after its last checkpoint.
            "s-killed-long" | "s-killed-short" => {}
            "s-cut" => {
                events.push(rec.cut());
                events.push(rec.end(true));
                rec.write_done(&recs, true);
            }
            _ => {
                events.push(rec.end(false));
                rec.write_done(&recs, false);
            }
        }
    }
    let out = through_agent(d, &[events]);

    // Untouched: every recording verifies, the killed ones with a proven prefix and an unproven tail.
    let (code, text) = verify_recordings(d, &recs, &[&out], true);
    let rep = report(&text);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(rep["ok"], true);
    assert_eq!(
        verdicts(&rep),
        pairs(&[
            ("s-cut", "intact"),
            ("s-flip", "intact"),
            ("s-gone", "intact"),
            ("s-intact", "intact"),
            ("s-killed-long", "unfinished"),
            ("s-killed-short", "unfinished"),
            ("s-trunc", "intact"),
        ])
    );
    let cut = recording(&rep, "s-cut");
    assert!(
        cut["cut"].as_str().unwrap().contains("max_bytes"),
        "{cut:#}"
    );
    for s in ["s-intact", "s-flip"] {
        let x = recording(&rep, s);
        assert_eq!(x["trusted_events"], 4, "{x:#}");
        assert_eq!(x["untrusted_events"], json!([]), "{x:#}");
        assert_eq!(file(x, "raw")["verdict"], "intact");
        assert_eq!(file(x, "cast")["verdict"], "intact");
    }

    // Tampering.
    let flip = &r[1];
    let at = flip.marks[6].0 + 17; // after the second checkpoint (chunk 5's end), within chunk 7
    let mut raw = flip.raw.clone();
    raw[at] ^= 0x20;
    std::fs::write(recs.join("s-flip.raw"), &raw).unwrap();
    let trunc = &r[2];
    std::fs::write(
        recs.join("s-trunc.cast"),
        &trunc.cast[..trunc.cast.len() - 1000],
    )
    .unwrap();
    for ext in ["raw", "cast", "done"] {
        std::fs::remove_file(recs.join(format!("s-gone.{ext}"))).unwrap();
    }
    let extra = Rec::new("s-extra", 2);
    extra.write(&recs);
    let short = &r[5];
    let short_len = short.marks[5].0 - 10; // 10 bytes short of the last checkpoint
    std::fs::write(recs.join("s-killed-short.raw"), &short.raw[..short_len]).unwrap();

    let (code, text) = verify_recordings(d, &recs, &[&out], true);
    let rep = report(&text);
    assert_eq!(code, 1, "{rep:#}");
    assert_eq!(rep["ok"], false);
    assert_eq!(rep["recordings"]["ok"], false);
    // The events themselves are untouched: the chain verifies.
    let streams = rep["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{rep:#}");
    for key in ["gaps", "altered", "conflicts", "broken_links", "bad_seals"] {
        assert_eq!(streams[0][key], json!([]), "{key}: {rep:#}");
    }
    assert_eq!(
        verdicts(&rep),
        pairs(&[
            ("s-cut", "intact"),
            ("s-extra", "unrecorded"),
            ("s-flip", "altered"),
            ("s-gone", "missing"),
            ("s-intact", "intact"),
            ("s-killed-long", "unfinished"),
            ("s-killed-short", "truncated"),
            ("s-trunc", "truncated"),
        ])
    );
    let x = recording(&rep, "s-flip");
    let raw_f = file(x, "raw");
    assert_eq!(raw_f["verdict"], "altered", "{x:#}");
    assert_eq!(raw_f["last_matching_checkpoint"], flip.marks[5].0, "{x:#}");
    assert_eq!(file(x, "cast")["verdict"], "intact", "{x:#}");
    let x = recording(&rep, "s-trunc");
    let cast_f = file(x, "cast");
    assert_eq!(cast_f["verdict"], "truncated", "{x:#}");
    assert_eq!(cast_f["size"], trunc.cast.len() - 1000);
    assert_eq!(cast_f["expected_bytes"], trunc.cast.len());
    assert_eq!(cast_f["proven_bytes"], trunc.marks[5].1, "{x:#}");
    assert_eq!(file(x, "raw")["verdict"], "intact", "{x:#}");
    let x = recording(&rep, "s-gone");
    assert_eq!(file(x, "raw")["verdict"], "missing");
    assert_eq!(file(x, "cast")["verdict"], "missing");
    let x = recording(&rep, "s-killed-long");
    let (raw_f, cast_f) = (file(x, "raw"), file(x, "cast"));
    let long = &r[4];
    assert_eq!(raw_f["verdict"], "unfinished");
    assert_eq!(raw_f["proven_bytes"], long.marks[5].0);
    assert_eq!(raw_f["unproven_bytes"], long.raw.len() - long.marks[5].0);
    assert_eq!(cast_f["proven_bytes"], long.marks[5].1);
    assert_eq!(cast_f["unproven_bytes"], long.cast.len() - long.marks[5].1);
    let x = recording(&rep, "s-killed-short");
    assert_eq!(file(x, "raw")["verdict"], "truncated", "{x:#}");
    assert_eq!(file(x, "raw")["proven_bytes"], short.marks[2].0, "{x:#}");
    assert_eq!(file(x, "cast")["verdict"], "unfinished", "{x:#}");

    // The text report names the same, and exits the same.
    let (code, text) = verify_recordings(d, &recs, &[&out], false);
    assert_eq!(code, 1, "{text}");
    println!("{text}");
    for line in [
        "recording s-flip: ALTERED",
        "recording s-trunc: TRUNCATED",
        "recording s-gone: MISSING",
        "recording s-extra: UNRECORDED",
        "recording s-killed-short: TRUNCATED",
        "recording s-killed-long: unfinished",
        "recording s-intact: intact",
        "recording s-cut: intact (cut at",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert!(text.contains("result: intact (1 streams)"), "{text}");
}

/// The line of `out` that is `sid`'s session.end.
fn end_line(lines: &[String], sid: &str) -> usize {
    lines
        .iter()
        .position(|l| {
            l.contains("\"event\":\"session.end\"") && l.contains(&format!("\"sid\":\"{sid}\""))
        })
        .unwrap()
}

#[test]
fn events_that_do_not_verify_do_not_vouch_for_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recs = d.join("recordings");
    std::fs::create_dir_all(&recs).unwrap();
    let r: Vec<Rec> = ["s-edited", "s-rehashed", "s-fine", "s-link"]
        .iter()
        .map(|n| Rec::new(n, 6))
        .collect();
    // A seal between a session's checkpoint and its end, and after its end: an event replaced and re-hashed
    // makes unprovable what no good seal signs before it (a seal signs the chain up to it, not a part).
    let mut groups = Vec::new();
    for rec in &r {
        rec.write(&recs);
        rec.write_done(&recs, false);
        groups.push(vec![rec.start(), rec.checkpoint(2)]);
        groups.push(vec![rec.end(false)]);
    }
    let out = through_agent(d, &groups);
    let (code, text) = verify_recordings(d, &recs, &[&out], true);
    assert_eq!(code, 0, "{text}");

    // An intruder changes the first chunk of two .raw files and puts their new digests into session.end:
    // once without touching the chain field (the event's hash no longer matches), once recomputing the
    // event's hash too (the next event's link to it breaks).
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (sid, rehash) in [("s-edited", false), ("s-rehashed", true)] {
        let rec = r.iter().find(|x| x.sid == sid).unwrap();
        let mut raw = rec.raw.clone();
        raw[100] ^= 0x01;
        std::fs::write(recs.join(format!("{sid}.raw")), &raw).unwrap();
        let i = end_line(&lines, sid);
        let mut v: Value = serde_json::from_str(&lines[i]).unwrap();
        v["raw_sha256"] = sha(&raw).into();
        if rehash {
            let field = read_field(lines[i].as_bytes()).unwrap();
            v.as_object_mut().unwrap().remove("auditrail.integrity");
            let body = v.to_string();
            let digest = content_digest(body.as_bytes(), &mut Vec::new()).unwrap();
            let mut f = field.clone();
            f.hash = link(&f.stream, f.seq, &f.prev, &digest);
            assert_ne!(f.hash, field.hash);
            let mut member = Vec::new();
            f.write_member(&mut member);
            lines[i] = String::from_utf8(append_member(body.as_bytes(), &member)).unwrap();
        } else {
            lines[i] = v.to_string();
        }
    }
    let forged = d.join("forged.ndjson");
    std::fs::write(&forged, lines.join("\n") + "\n").unwrap();

    let (code, text) = verify_recordings(d, &recs, &[&forged], true);
    let rep = report(&text);
    assert_eq!(code, 1, "{rep:#}");
    for sid in ["s-edited", "s-rehashed"] {
        let x = recording(&rep, sid);
        // The forged session.end is ignored; the genuine checkpoint shows the first chunk changed.
        assert_eq!(x["verdict"], "altered", "{x:#}");
        assert_eq!(x["ok"], false, "{x:#}");
        let raw_f = file(x, "raw");
        assert_eq!(raw_f["verdict"], "altered", "{x:#}");
        assert_eq!(raw_f["last_matching_checkpoint"], Value::Null, "{x:#}");
        assert_eq!(
            raw_f["expected_bytes"],
            Value::Null,
            "no trusted session.end: {x:#}"
        );
        let untrusted = x["untrusted_events"].as_array().unwrap();
        assert_eq!(untrusted.len(), 1, "{x:#}");
        let why = untrusted[0].as_str().unwrap();
        if sid == "s-edited" {
            assert!(why.contains("does not match its content"), "{why}");
        } else {
            assert!(why.contains("does not link to it"), "{why}");
        }
        assert_eq!(x["trusted_events"], 2, "{x:#}");
        assert_eq!(x["tampered_events"], 1, "{x:#}");
    }
    assert_eq!(recording(&rep, "s-fine")["verdict"], "intact");
    assert_eq!(recording(&rep, "s-fine")["ok"], true);
    assert_eq!(recording(&rep, "s-link")["verdict"], "intact");

    // A .raw replaced by a symbolic link out of DIR, to a byte-identical copy: not followed, so not proven.
    let link = r.iter().find(|x| x.sid == "s-link").unwrap();
    let outside = d.join("outside.raw");
    std::fs::write(&outside, &link.raw).unwrap();
    std::fs::remove_file(recs.join("s-link.raw")).unwrap();
    std::os::unix::fs::symlink(&outside, recs.join("s-link.raw")).unwrap();
    let (code, text) = verify_recordings(d, &recs, &[&out], true);
    let rep = report(&text);
    assert_eq!(code, 1, "{rep:#}");
    let x = recording(&rep, "s-link");
    assert_eq!(x["verdict"], "unreadable", "{x:#}");
    assert!(
        file(x, "raw")["detail"]
            .as_str()
            .unwrap()
            .contains("symbolic link"),
        "{x:#}"
    );
    assert_eq!(file(x, "cast")["verdict"], "intact", "{x:#}");
    assert_eq!(recording(&rep, "s-fine")["verdict"], "intact");
}

#[test]
fn bad_input_is_reported_never_a_crash() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recs = d.join("recordings");
    std::fs::create_dir_all(recs.join("spool")).unwrap();
    let status = Command::new(binary())
        .args(["keygen", "--out"])
        .arg(d.join("keys"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    // Unchained events only (as when [integrity] is off), one with a sid that would escape DIR.
    let u = Rec::new("s-unchained", 1);
    u.write(&recs);
    let events = format!(
        "{}\n{}\n",
        u.end(false),
        json!({"event": "session.start", "uid": "x", "time": "2026-12-02T03:00:00Z", "sid": "../../etc/passwd"})
    );
    let input = d.join("events.ndjson");
    std::fs::write(&input, events).unwrap();
    // A link out of DIR under a recording's name, a name that is not UTF-8, and a file that is no recording.
    std::fs::write(d.join("outside"), b"secret").unwrap();
    std::os::unix::fs::symlink(d.join("outside"), recs.join("s-link.raw")).unwrap();
    std::fs::write(
        recs.join(std::ffi::OsStr::from_bytes(b"bad-\xff.raw")),
        b"x",
    )
    .unwrap();
    std::fs::write(recs.join("notes.txt"), b"x").unwrap();

    let (code, text) = verify_recordings(d, &recs, &[&input], true);
    let rep = report(&text);
    assert_eq!(code, 1, "{rep:#}");
    assert_eq!(
        verdicts(&rep),
        pairs(&[("s-link", "unrecorded"), ("s-unchained", "unverifiable")])
    );
    let problems = rep["recordings"]["problems"].to_string();
    for p in ["not UTF-8", "notes.txt", "../../etc/passwd"] {
        assert!(problems.contains(p), "{p:?} not in {problems}");
    }
    assert!(!problems.contains("spool"), "{problems}");
    let x = recording(&rep, "s-unchained");
    assert!(
        x["untrusted_events"][0]
            .as_str()
            .unwrap()
            .contains("not chained"),
        "{x:#}"
    );

    // DIR missing, or a file: input errors, exit 2, naming it.
    for bad in [d.join("nope"), d.join("outside")] {
        let out = Command::new(binary())
            .arg("verify")
            .arg("--key")
            .arg(d.join("keys/auditrail.pub"))
            .arg("--recordings")
            .arg(&bad)
            .arg(&input)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&bad.display().to_string()), "{err}");
    }
    // Events from Elasticsearch or Kafka are not read for recordings yet: refused, not ignored.
    let out = Command::new(binary())
        .arg("verify")
        .arg("--key")
        .arg(d.join("keys/auditrail.pub"))
        .arg("--recordings")
        .arg(&recs)
        .args(["--elasticsearch", "http://127.0.0.1:9", "--index", "audit"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NDJSON inputs"),
        "{out:?}"
    );
}
