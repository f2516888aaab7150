//! `auditrail verify` as an auditor runs it: on a file sink's output (files, directories, standard input) and on
//! an OpenSearch index, intact and tampered, with its exit status (0 intact, 1 tampered, 2 usage or input
//! error) and its `--json` shape. The chains are built with the agent's own primitives.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auditrail_core::event::Event;
use auditrail_core::integrity::chain::{
    append_member, content_digest, link, Hash, Integrity, GENESIS,
};
use auditrail_core::integrity::keys::{keygen, EpochKey};
use auditrail_core::integrity::seal::{Seal, CRASH_CODE, CRASH_EVENT};
use auditrail_integration_tests::*;

/// One stream's lines, built as the agent builds them.
struct Chain {
    stream: String,
    lines: Vec<String>,
    prev: Hash,
    last_seal: u64,
}

impl Chain {
    fn new(stream: &str) -> Chain {
        Chain {
            stream: stream.into(),
            lines: Vec::new(),
            prev: GENESIS,
            last_seal: 0,
        }
    }

    fn seq(&self) -> u64 {
        self.lines.len() as u64
    }

    fn push(&mut self, body: &[u8]) {
        let seq = self.seq() + 1;
        let digest = content_digest(body, &mut Vec::new()).unwrap();
        let hash = link(&self.stream, seq, &self.prev, &digest);
        let mut member = Vec::new();
        Integrity {
            stream: self.stream.clone(),
            seq,
            prev: self.prev,
            hash,
        }
        .write_member(&mut member);
        self.lines
            .push(String::from_utf8(append_member(body, &member)).unwrap());
        self.prev = hash;
    }

    fn events(&mut self, n: usize) {
        for _ in 0..n {
            let i = self.seq() as usize + 1;
            let body = event(&format!("{}-{i}", self.stream.replace('/', "-")), i);
            self.push(body.as_bytes());
        }
    }

    fn seal(&mut self, key: &EpochKey) {
        let to = self.seq();
        let s = Seal::sign(key, &self.stream, self.last_seal + 1, to, self.prev);
        self.push(&s.to_event());
        self.last_seal = self.seq();
    }

    /// The first event after a crash, as the agent makes it: seqs `from..=` the last numbered may be lost.
    fn announce_crash(&mut self, from: u64) {
        let e = Event::internal(
            CRASH_EVENT,
            CRASH_CODE,
            &[
                ("source", "teleport".into()),
                ("stream", self.stream.clone().into()),
                (
                    "window",
                    serde_json::json!({ "from": from, "to": self.seq() }),
                ),
                ("reason", "events held in a memory buffer were lost".into()),
            ],
        );
        self.push(e.raw());
    }

    /// The lines but those of the seqs in `lost`.
    fn lines_without(&self, lost: impl Fn(u64) -> bool) -> Vec<String> {
        (1..)
            .zip(&self.lines)
            .filter(|(seq, _)| !lost(*seq))
            .map(|(_, l)| l.clone())
            .collect()
    }
}

/// Two streams over two epochs (seal, evolve, seal), each ending with `tail` unsealed events; the key files
/// are written to `dir` and the public one's path returned.
fn two_streams(dir: &Path, per_epoch: usize, tail: usize) -> (Chain, Chain, PathBuf) {
    let public = dir.join("auditrail.pub");
    let k0 = keygen(&dir.join("auditrail.key"), &public).unwrap();
    let (mut a, mut b) = (Chain::new("node-1/teleport"), Chain::new("node-1/local"));
    for c in [&mut a, &mut b] {
        c.events(per_epoch);
        c.seal(&k0);
    }
    let k1 = k0.evolve();
    for c in [&mut a, &mut b] {
        c.events(per_epoch);
        c.seal(&k1);
        c.events(tail);
    }
    (a, b, public)
}

fn write_lines(path: &Path, lines: &[String]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// Runs `auditrail ARGS` with `stdin` as standard input; returns exit code, stdout, stderr.
fn auditrail(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("AUDITRAIL_ES_API_KEY")
        .env_remove("AUDITRAIL_ES_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("running auditrail");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

fn stream<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == name)
        .unwrap_or_else(|| panic!("no stream {name}: {report}"))
}

#[test]
fn intact_output_verifies_from_files_directories_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, public) = two_streams(dir.path(), 40, 3);
    let out = dir.path().join("out");
    // A file sink's directory: one stream per file, a nested directory, an unchained pipeline event, and
    // the other stream's lines in reverse order (storage order is not evidence).
    write_lines(&out.join("teleport.ndjson"), &a.lines);
    let mut rev = b.lines.clone();
    rev.reverse();
    rev.push(
        r#"{"event":"auditrail.dropped","uid":"d1","time":"2017-02-03T06:54:05Z","count":2}"#
            .into(),
    );
    write_lines(&out.join("2017/local.ndjson"), &rev);
    std::fs::write(out.join(".hidden"), "not an event\n").unwrap();
    let key = public.to_str().unwrap();

    let (code, stdout, stderr) =
        auditrail(&["verify", "--key", key, out.to_str().unwrap()], None, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("stream node-1/teleport: intact"),
        "{stdout}"
    );
    assert!(stdout.contains("result: intact (2 streams)"), "{stdout}");

    let files = [out.join("teleport.ndjson"), out.join("2017/local.ndjson")];
    let (code, stdout, stderr) = auditrail(
        &[
            "verify",
            "--json",
            "--key",
            key,
            files[0].to_str().unwrap(),
            files[1].to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.lines().count(),
        1,
        "--json prints one object: {stdout}"
    );
    let r = json(&stdout);
    assert_eq!(r["ok"], true);
    assert_eq!(r["unchained"], 1);
    assert_eq!(r["unreadable"], 0);
    let s = stream(&r, "node-1/teleport");
    assert_eq!(s["verified"], a.lines.len());
    assert_eq!(s["unsealed"], 3);
    assert_eq!(s["duplicates"], 0);
    for k in [
        "gaps",
        "altered",
        "conflicts",
        "broken_links",
        "bad_seals",
        "crash_windows",
        "bad_crash_windows",
    ] {
        assert_eq!(s[k], serde_json::json!([]), "{k}: {s}");
    }

    // Standard input, with every line twice (at-least-once delivery): duplicates, not an error.
    let mut text = a.lines.join("\n") + "\n";
    text.push_str(&a.lines.join("\n"));
    let (code, stdout, stderr) = auditrail(
        &["verify", "--json", "--key", key, "-"],
        Some(text.as_bytes()),
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let r = json(&stdout);
    assert_eq!(stream(&r, "node-1/teleport")["duplicates"], a.lines.len());
}

#[test]
fn tampering_is_located_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, public) = two_streams(dir.path(), 20, 0);
    let mut lines = a.lines.clone();
    // seq 5 altered (its chain field kept), seq 9..=10 deleted, a line that is not JSON.
    lines[4] = lines[4].replace("user5@", "mallory@");
    lines.drain(8..10);
    lines.insert(3, "{\"event\":".into());
    let file = dir.path().join("a.ndjson");
    write_lines(&file, &lines);
    let key = public.to_str().unwrap();
    let (code, stdout, stderr) = auditrail(
        &["verify", "--json", "--key", key, file.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    let r = json(&stdout);
    assert_eq!(r["ok"], false);
    let s = stream(&r, "node-1/teleport");
    assert_eq!(s["altered"], serde_json::json!([5]));
    assert_eq!(s["gaps"], serde_json::json!([[9, 10]]));
    assert_eq!(s["broken_links"], serde_json::json!([]));
    assert_eq!(r["unreadable"], 1);
    let problems = r["problems"].as_array().unwrap();
    let at = format!("{}:4: not a JSON object", file.display());
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().starts_with(&at)),
        "{problems:?}"
    );

    let (code, stdout, _) = auditrail(&["verify", "--key", key, file.to_str().unwrap()], None, &[]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("stream node-1/teleport: TAMPERED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("altered (hash does not match content): 5"),
        "{stdout}"
    );
    assert!(stdout.contains("gaps (missing seqs): 9-10"), "{stdout}");
}

#[test]
fn declared_crash_windows_exit_0_unless_they_reach_into_a_seal() {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("auditrail.pub");
    let k0 = keygen(&dir.path().join("auditrail.key"), &public).unwrap();
    let key = public.to_str().unwrap();
    let file = dir.path().join("a.ndjson");
    let run = |lines: &[String], json: bool| {
        write_lines(&file, lines);
        let mut args = vec!["verify", "--key", key, file.to_str().unwrap()];
        if json {
            args.insert(1, "--json");
        }
        auditrail(&args, None, &[])
    };

    // 1..=10, seal 11; 12..=16, of which 14..=16 die in a memory buffer; the announcement at 17; 18..=20 and
    // the seal at 21, which covers 12..=20.
    let mut a = Chain::new("node-1/teleport");
    a.events(10);
    a.seal(&k0);
    a.events(5);
    a.announce_crash(12);
    a.events(3);
    a.seal(&k0);
    let lines = a.lines_without(|s| (14..=16).contains(&s));
    let (code, stdout, stderr) = run(&lines, true);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let r = json(&stdout);
    assert_eq!(r["ok"], true);
    let s = stream(&r, "node-1/teleport");
    assert_eq!(s["gaps"], serde_json::json!([]));
    assert_eq!(
        s["crash_windows"],
        serde_json::json!([{"announced_at": 17, "from": 12, "to": 16, "missing": [[14, 16]]}])
    );
    assert_eq!(s["bad_crash_windows"], serde_json::json!([]));
    assert_eq!(s["unsealed"], 0);
    let (code, stdout, _) = run(&lines, false);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("stream node-1/teleport: intact"),
        "{stdout}"
    );
    assert!(
        stdout.contains("    seq 17 declares 12-16; missing: 14-16\n"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("result: intact (1 streams; 3 seqs missing within 1 declared crash windows)"),
        "{stdout}"
    );

    // Sealed events deleted and declared lost in a crash: the seal at 11 still covers 5..=10.
    let mut b = Chain::new("node-1/teleport");
    b.events(10);
    b.seal(&k0);
    b.events(2);
    b.announce_crash(5);
    let lines = b.lines_without(|s| (5..=10).contains(&s) || (12..=13).contains(&s));
    let (code, stdout, stderr) = run(&lines, true);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let r = json(&stdout);
    assert_eq!(r["ok"], false);
    let s = stream(&r, "node-1/teleport");
    assert_eq!(s["crash_windows"], serde_json::json!([]));
    assert_eq!(
        s["bad_crash_windows"],
        serde_json::json!([{
            "announced_at": 14,
            "reason": "declares seqs 5-13 lost, but the seal at seq 11 before it covers 1-10"
        }])
    );
    assert_eq!(s["gaps"], serde_json::json!([[5, 10], [12, 13]]));
}

#[test]
fn usage_and_input_errors_exit_2_and_name_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, public) = two_streams(dir.path(), 2, 0);
    let file = dir.path().join("a.ndjson");
    write_lines(&file, &a.lines);
    let (key, f) = (public.to_str().unwrap(), file.to_str().unwrap());

    let (code, _, stderr) = auditrail(
        &["verify", "--key", key, "/nonexistent/out.ndjson"],
        None,
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/nonexistent/out.ndjson: cannot read"),
        "{stderr}"
    );

    let (code, _, stderr) = auditrail(
        &["verify", "--key", "/nonexistent/auditrail.pub", f],
        None,
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/auditrail.pub"), "{stderr}");

    std::fs::write(dir.path().join("bad.pub"), "{\"root\":\"abc\"}").unwrap();
    let bad = dir.path().join("bad.pub");
    let (code, _, stderr) = auditrail(&["verify", "--key", bad.to_str().unwrap(), f], None, &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.pub") && stderr.contains("not an Ed25519 public key"),
        "{stderr}"
    );

    let (code, _, stderr) = auditrail(&["verify", "--key", key], None, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("nothing to verify"), "{stderr}");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, stderr) = auditrail(
        &["verify", "--key", key, empty.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("holds no files"), "{stderr}");

    let (code, _, _) = auditrail(&["verify", "--key", key, "--index", "x", f], None, &[]);
    assert_eq!(code, 2, "--index needs --elasticsearch");
    let (code, _, _) = auditrail(&["verify", f], None, &[]);
    assert_eq!(code, 2, "--key is required");

    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, _, stderr) = auditrail(
        &[
            "verify",
            "--key",
            key,
            "--elasticsearch",
            &url,
            "--index",
            "audit",
        ],
        None,
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("cannot reach {url}/audit/_search")),
        "{stderr}"
    );
}

// ---- OpenSearch (osmem-server) ----

/// Whether a missing osmem-server must fail the test rather than skip it (CI and scripts/test.sh).
fn required() -> bool {
    [
        "AUDITRAIL_REQUIRE_ROOT",
        "AUDITRAIL_REQUIRE_OPENSEARCH",
        "CI",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|x| !x.is_empty() && x != "0" && x != "false"))
}

fn osmem_path() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("OSMEM_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let script = workspace_root().join("integration-tests/peers/opensearch/install");
    let out = if script.exists() {
        Command::new(&script).output()
    } else {
        Command::new("python3")
            .args([
                "-c",
                "import osmem_server; print(osmem_server.resolve_binary())",
            ])
            .output()
    }
    .map_err(|e| e.to_string())?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "osmem-server not found (pip install osmem-server): {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_osmem() -> Option<Server> {
    let bin = match osmem_path() {
        Ok(b) => b,
        Err(e) => {
            assert!(
                !required(),
                "osmem-server is required here but missing: {e}"
            );
            println!("osmem-server not available, test not run: {e}");
            return None;
        }
    };
    let port = free_port();
    let child = Command::new(bin)
        .args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch"])
        .args(["-parent-pid", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting osmem-server");
    let mut server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(http("GET", port, "/", &[], b""), Ok((200, _))) {
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "osmem-server exited"
        );
        assert!(Instant::now() < deadline, "osmem-server not ready in 20s");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

/// Indexes `lines` into `index` with `_bulk` (`_id` = uid), in batches, and refreshes.
fn bulk(port: u16, index: &str, lines: &[String], op: &str) {
    for batch in lines.chunks(2000) {
        let mut body = String::new();
        for l in batch {
            let uid = serde_json::from_str::<serde_json::Value>(l).unwrap()["uid"]
                .as_str()
                .unwrap()
                .to_string();
            body.push_str(&serde_json::json!({ op: { "_index": index, "_id": uid } }).to_string());
            body.push('\n');
            body.push_str(l);
            body.push('\n');
        }
        let (status, text) = http(
            "POST",
            port,
            "/_bulk?refresh=true",
            &[("Content-Type", "application/x-ndjson")],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains("\"errors\":false"),
            "{}",
            &text[..text.len().min(2000)]
        );
    }
}

#[test]
fn events_read_back_from_opensearch_verify_and_tampering_is_found() {
    let Some(server) = start_osmem() else { return };
    let dir = tempfile::tempdir().unwrap();
    // More than two pages of the scroll.
    let (a, b, public) = two_streams(dir.path(), 6000, 10);
    // The events' `n` exceeds a `long`: keep the documents without indexing their fields.
    for index in ["audit-2017", "audit-2018"] {
        let body = br#"{"mappings":{"dynamic":false}}"#;
        let (status, text) = http(
            "PUT",
            server.port,
            &format!("/{index}"),
            &[("Content-Type", "application/json")],
            body,
        )
        .unwrap();
        assert_eq!(status, 200, "{text}");
    }
    bulk(server.port, "audit-2017", &a.lines, "create");
    bulk(server.port, "audit-2018", &b.lines, "create");
    let key = public.to_str().unwrap();
    // The user in the URL, its password from the environment and an API key from a file (mode 0600) are sent;
    // the test server accepts anything.
    let url = format!("http://auditor@127.0.0.1:{}", server.port);
    let key_file = dir.path().join("es-api-key");
    std::fs::write(&key_file, "a2V5\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = [
        "verify",
        "--json",
        "--key",
        key,
        "--elasticsearch",
        &url,
        "--index",
        "audit-*",
        "--es-api-key-file",
        key_file.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = auditrail(&args, None, &[("AUDITRAIL_ES_PASSWORD", "s3cret")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let r = json(&stdout);
    assert_eq!(stream(&r, "node-1/teleport")["verified"], a.lines.len());
    assert_eq!(stream(&r, "node-1/local")["verified"], b.lines.len());
    assert_eq!(stream(&r, "node-1/local")["unsealed"], 10);

    // Someone with write access to the index changes a document (seq 100) and deletes another (seq 200).
    let changed = a.lines[99].replace("\"login\":\"dba\"", "\"login\":\"root\"");
    assert_ne!(changed, a.lines[99]);
    bulk(server.port, "audit-2017", &[changed], "index");
    let uid = serde_json::from_str::<serde_json::Value>(&a.lines[199]).unwrap()["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, text) = http(
        "DELETE",
        server.port,
        &format!("/audit-2017/_doc/{uid}?refresh=true"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let (code, stdout, stderr) = auditrail(&args, None, &[("AUDITRAIL_ES_PASSWORD", "s3cret")]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let r = json(&stdout);
    let s = stream(&r, "node-1/teleport");
    assert_eq!(s["altered"], serde_json::json!([100]));
    assert_eq!(s["gaps"], serde_json::json!([[200, 200]]));
    assert!(
        r["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("audit-2017/_doc/"),
        "problems name the document: {r}"
    );

    // Both sinks at once: the file copy fills the gap, the altered copy is still reported.
    let file = dir.path().join("teleport.ndjson");
    write_lines(&file, &a.lines);
    let mut both = args.to_vec();
    both.push(file.to_str().unwrap());
    let (code, stdout, _) = auditrail(&both, None, &[("AUDITRAIL_ES_PASSWORD", "s3cret")]);
    assert_eq!(code, 1);
    let r = json(&stdout);
    let s = stream(&r, "node-1/teleport");
    assert_eq!(s["gaps"], serde_json::json!([]));
    assert_eq!(s["altered"], serde_json::json!([100]));
    assert_eq!(s["duplicates"], a.lines.len() - 2);

    let (code, _, stderr) = auditrail(
        &[
            "verify",
            "--key",
            key,
            "--elasticsearch",
            &server_url(&server),
            "--index",
            "nope",
        ],
        None,
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read index \"nope\"") && stderr.contains("404"),
        "{stderr}"
    );
}

fn server_url(s: &Server) -> String {
    format!("http://127.0.0.1:{}", s.port)
}

#[test]
fn secrets_on_the_command_line_are_refused_with_what_to_use_instead() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, public) = two_streams(dir.path(), 5, 0);
    write_lines(&dir.path().join("out/a.ndjson"), &a.lines);
    let key = public.to_str().unwrap();
    // Nothing listens here: a refusal comes before any connection, and names no secret.
    let url = format!("http://127.0.0.1:{}", free_port());
    let with_user = url.replace("http://", "http://auditor:hunter2@");
    let with_user_only = url.replace("http://", "http://auditor@");
    let es = |u: &str, extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--key",
            key,
            "--elasticsearch",
            u,
            "--index",
            "audit-*",
        ];
        args.extend_from_slice(extra);
        auditrail(&args, None, &[])
    };
    let (code, _, stderr) = es(&url, &["--es-api-key", "c2VjcmV0LWtleQ=="]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--es-api-key puts the API key on the command line"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("set AUDITRAIL_ES_API_KEY in the environment or use --es-api-key-file FILE"),
        "{stderr}"
    );
    assert!(!stderr.contains("c2VjcmV0LWtleQ=="), "{stderr}");
    let (code, _, stderr) = es(&with_user, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the URL holds a password"), "{stderr}");
    assert!(
        stderr.contains(
            "set AUDITRAIL_ES_PASSWORD in the environment or use --es-password-file FILE"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let (code, _, stderr) = es(&with_user_only, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no password is given"), "{stderr}");
    // A password file others can read is refused; the directory input alone still verifies.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, stderr) = es(
        &with_user_only,
        &["--es-password-file", pw.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("mode 0644") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // With the password in a private file, verify gets as far as connecting (and nothing listens).
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, stderr) = es(
        &with_user_only,
        &["--es-password-file", pw.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("auditor@"),
        "{stderr}"
    );
}

#[test]
fn a_symlink_loop_in_a_directory_ends_with_a_note_and_every_file_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, public) = two_streams(dir.path(), 20, 0);
    let out = dir.path().join("out");
    write_lines(&out.join("a.ndjson"), &a.lines);
    write_lines(&out.join("sub/b.ndjson"), &b.lines);
    // a -> .. (a cycle through the parent), b -> a (a cycle through a link to a link).
    std::os::unix::fs::symlink("..", out.join("sub/a")).unwrap();
    std::os::unix::fs::symlink("a", out.join("sub/b")).unwrap();
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = auditrail(
        &[
            "verify",
            "--json",
            "--key",
            public.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // Nothing was skipped that was not read once: the verdict is the events', intact.
    assert_eq!(code, 0, "{stdout}{stderr}");
    let r = json(&stdout);
    assert_eq!(stream(&r, "node-1/teleport")["verified"], a.lines.len());
    assert_eq!(stream(&r, "node-1/local")["verified"], b.lines.len());
    for s in ["node-1/teleport", "node-1/local"] {
        assert_eq!(stream(&r, s)["duplicates"], 0, "{r}");
    }
    let note = format!("{}: leads to", out.join("sub/a").display());
    assert!(
        stderr.contains(&note) && stderr.contains("symbolic link loop"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: leads to", out.join("sub/b").display())),
        "{stderr}"
    );
}
