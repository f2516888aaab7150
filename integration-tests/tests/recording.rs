//! `auditrail record` as a real process: a scripted session driven through a real terminal (tmux), the
//! non-interactive `ssh host cmd` path, the agent down and then up (spool, then delivery), and the disk
//! bounds cutting a session that writes too much.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use auditrail_integration_tests::players::{tmux, Tmux};
use auditrail_integration_tests::*;
use serde_json::Value;

/// `auditrail record` with the environment of a plain (non-ssh) login.
fn record() -> Command {
    let mut c = Command::new(binary());
    c.arg("record")
        .env_remove("SSH_ORIGINAL_COMMAND")
        .env_remove("SSH_TTY")
        .env_remove("SSH_CONNECTION")
        .env_remove("AUDITRAIL_LOG");
    c
}

/// Every event line of every spool file under `dir/spool`.
fn spooled(dir: &Path) -> Vec<Value> {
    lines_in(&dir.join("spool"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The `.cast` file as JSON values, every line checked to be JSON.
fn cast_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect()
}

fn agent_config(d: &Path, api: u16, sock: &Path, extra: &str) -> String {
    format!(
        "data_dir = \"{d}/data\"\n[api]\naddress = \"127.0.0.1:{api}\"\n[sources.rec]\ntype = \"unix\"\npath = \"{s}\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"rec\"]\npath = \"{d}/out/e.ndjson\"\n{extra}",
        d = d.display(),
        s = sock.display()
    )
}

#[test]
fn a_scripted_session_through_a_real_terminal() {
    let Some(bin) = tmux() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    let sock = d.join("events.sock");
    let rec_dir = d.join("recordings");
    let cfg = agent_config(
        d,
        api,
        &sock,
        &format!(
            "[recording]\ndir = \"{}\"\nsocket = \"{}\"\nsessions_socket = \"{}/nosessions.sock\"\nserver_id = \"node-1\"\n",
            rec_dir.display(),
            sock.display(),
            d.display()
        ),
    );
    let agent = Agent::start(d, &cfg, api);
    // The program writes everything through tee, so `side` holds exactly the bytes it wrote; `stty -opost`
    // keeps the terminal from turning \n into \r\n, so those are also the bytes the terminal receives.
    let side = d.join("side");
    let script = format!(
        r#"stty -opost
out() {{ printf "$@" | tee -a {side}; }}
out '\033[1;31mred\033[0m \033[32mgreen\033[0m\n'
ls / | tee -a {side}
out 'euro: \342\202'
sleep 0.3
out '\254 done\n'
out 'bad bytes: \377\376 end\n'
out 'waiting for the resize\n'
while [ ! -e {go} ]; do sleep 0.05; done
stty size | tee -a {side}
exit 3
"#,
        side = side.display(),
        go = d.join("go").display()
    );
    std::fs::write(d.join("script.sh"), script).unwrap();
    let shell = format!(
        "env -u SSH_ORIGINAL_COMMAND -u SSH_TTY {bin} record --config {cfg} --sid scripted-1 -- sh {script} 2>{err}; echo $? > {rc}; sleep 30",
        err = d.join("record.err").display(),
        bin = binary().display(),
        cfg = d.join("auditrail.toml").display(),
        script = d.join("script.sh").display(),
        rc = d.join("rc").display()
    );
    let tmux = Tmux::start(bin, d.join("tmux.sock"), "t", (100, 30), &shell);
    let waiting = (0..1000).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::fs::read(&side)
            .is_ok_and(|s| String::from_utf8_lossy(&s).contains("waiting for the resize"))
    });
    assert!(
        waiting,
        "the script did not get to the resize; side: {:?}, pane: {}, recorder stderr: {:?}, rc: {:?}",
        std::fs::read(&side).map(|s| String::from_utf8_lossy(&s).into_owned()),
        tmux.screen(),
        std::fs::read_to_string(d.join("record.err")),
        std::fs::read_to_string(d.join("rc"))
    );
    tmux.resize(120, 40);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(d.join("go"), "").unwrap();
    wait_for(Duration::from_secs(20), "the session to end", || {
        std::fs::read_to_string(d.join("rc")).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(
        std::fs::read_to_string(d.join("rc")).unwrap().trim(),
        "3",
        "exit code passed through"
    );

    let raw_path = rec_dir.join("scripted-1.raw");
    let raw = std::fs::read(&raw_path).unwrap();
    let written = std::fs::read(&side).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&raw),
        String::from_utf8_lossy(&written)
    );
    assert_eq!(
        raw, written,
        ".raw holds exactly the bytes the program wrote"
    );
    assert!(written.ends_with(b"40 120\n"), "the program saw the resize");

    let cast = cast_lines(&rec_dir.join("scripted-1.cast"));
    assert_eq!(cast[0]["version"], 2);
    assert_eq!(cast[0]["width"], 100);
    assert_eq!(cast[0]["height"], 30);
    let mut output = String::new();
    let mut resized_at = None;
    for (i, e) in cast[1..].iter().enumerate() {
        match e[1].as_str().unwrap() {
            "o" => output.push_str(e[2].as_str().unwrap()),
            "r" => {
                assert_eq!(e[2], "120x40");
                resized_at = Some(i);
            }
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(output, String::from_utf8_lossy(&raw), "the cast plays .raw");
    assert!(output.contains("euro: € done"));
    assert!(output.contains("bad bytes: \u{FFFD}\u{FFFD} end"));
    let resized_at = resized_at.expect("a resize event");
    assert!(
        cast[resized_at + 2..]
            .iter()
            .any(|e| e[2].as_str().unwrap().contains("40 120")),
        "the resize is recorded before the output that follows it"
    );
    // No event splits the euro sign: each "o" line decodes on its own.
    assert!(!cast[1..]
        .iter()
        .any(|e| e[2].as_str().unwrap().contains('\u{FFFD}')
            && !e[2].as_str().unwrap().contains("bad")));

    let done: Value =
        serde_json::from_slice(&std::fs::read(rec_dir.join("scripted-1.done")).unwrap()).unwrap();
    assert_eq!(done["raw_sha256"], sha256_of(&raw_path).as_str());
    assert_eq!(done["raw_bytes"], raw.len());
    assert_eq!(
        done["cast_sha256"],
        sha256_of(&rec_dir.join("scripted-1.cast")).as_str()
    );
    assert_eq!(done["truncated"], false);

    wait_for(Duration::from_secs(20), "session.end in the sink", || {
        lines_so_far(&d.join("out"))
            .iter()
            .any(|l| l.contains("session.end"))
    });
    let got: Vec<Value> = lines_so_far(&d.join("out"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let start = events_of(&got, "session.start");
    let end = events_of(&got, "session.end");
    assert_eq!((start.len(), end.len()), (1, 1), "{got:?}");
    for e in [start[0], end[0]] {
        assert_eq!(e["sid"], "scripted-1");
        assert_eq!(e["server_id"], "node-1");
    }
    assert_eq!(start[0]["code"], "T2000I");
    assert_eq!(start[0]["size"], "100:30");
    assert_eq!(start[0]["interactive"], true);
    assert_eq!(start[0]["session_recording"], "node");
    assert!(start[0].get("cgroup_id").is_some());
    assert_eq!(end[0]["code"], "T2004I");
    assert_eq!(end[0]["exit_code"], 3);
    assert_eq!(end[0]["raw_sha256"], sha256_of(&raw_path).as_str());
    assert_eq!(end[0]["raw_bytes"], raw.len());
    assert_eq!(end[0]["cast_sha256"], done["cast_sha256"]);
    assert_eq!(end[0]["bytes_written"], raw.len());
    assert_eq!(end[0]["truncated"], false);
    assert!(!rec_dir.join("spool").exists() || spooled(&rec_dir).is_empty());
    drop(tmux);
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn ssh_host_cmd_passes_binary_stdio_through_without_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in.bin");
    let st = Command::new("head")
        .args(["-c", "10000000", "/dev/urandom"])
        .stdout(std::fs::File::create(&input).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let out_path = d.join("out.bin");
    let st = record()
        .args(["--dir"])
        .arg(d.join("rec"))
        .arg("--socket")
        .arg(d.join("nobody.sock"))
        .args([
            "--sessions-socket",
            "/nonexistent/s.sock",
            "--sid",
            "exec-1",
        ])
        .env("SSH_ORIGINAL_COMMAND", "cat")
        .env("SSH_CONNECTION", "10.0.0.9 50000 10.0.0.1 22")
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        std::fs::read(&input).unwrap() == std::fs::read(&out_path).unwrap(),
        "10 MB of random bytes round-trip unchanged"
    );
    let st = record()
        .args(["--dir"])
        .arg(d.join("rec"))
        .arg("--socket")
        .arg(d.join("nobody.sock"))
        .args(["--sid", "exec-2"])
        .env("SSH_ORIGINAL_COMMAND", "cat >/dev/null; exit 7")
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(7));
    let events = spooled(&d.join("rec"));
    let exec = events_of(&events, "exec");
    assert_eq!(exec.len(), 2, "{events:?}");
    assert_eq!(exec[0]["sid"], "exec-1");
    assert_eq!(exec[0]["code"], "T3002I");
    assert_eq!(exec[0]["command"], "cat");
    assert_eq!(exec[0]["exitCode"], "0");
    assert_eq!(exec[0]["addr.remote"], "10.0.0.9:50000");
    assert_eq!(exec[0]["addr.local"], "10.0.0.1:22");
    assert_eq!(exec[1]["exitCode"], "7");
    assert!(
        !d.join("rec/exec-1.raw").exists(),
        "nothing is recorded without a terminal"
    );
}

#[test]
fn agent_down_spools_and_the_next_session_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("events.sock");
    let rec_dir = d.join("rec");
    let run = |sid: &str| {
        let st = record()
            .arg("--dir")
            .arg(&rec_dir)
            .arg("--socket")
            .arg(&sock)
            .args(["--sid", sid, "--", "sh", "-c", "echo hello; exit 4"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(
            st.code(),
            Some(4),
            "the session works and its status passes through"
        );
    };
    run("down-1");
    let events = spooled(&rec_dir);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["session.start", "session.end"], "{events:?}");
    let uids: Vec<String> = events
        .iter()
        .map(|e| e["uid"].as_str().unwrap().into())
        .collect();

    let api = free_port();
    let agent = Agent::start(d, &agent_config(d, api, &sock, ""), api);
    run("up-2");
    wait_for(Duration::from_secs(20), "both sessions' events", || {
        line_count(&d.join("out")) >= 4
    });
    let got: Vec<Value> = lines_so_far(&d.join("out"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for uid in &uids {
        assert_eq!(
            got.iter().filter(|e| e["uid"] == uid.as_str()).count(),
            1,
            "spooled event {uid} delivered once: {got:?}"
        );
    }
    let up: Vec<&Value> = got.iter().filter(|e| e["sid"] == "up-2").collect();
    assert_eq!(up.len(), 2, "{got:?}");
    assert_eq!(got.len(), 4, "{got:?}");
    let left = std::fs::read_dir(rec_dir.join("spool")).unwrap().count();
    assert_eq!(left, 0, "the drained spool file is gone");
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn max_bytes_cuts_the_recording_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rec_dir = d.join("rec");
    let out = record()
        .arg("--dir")
        .arg(&rec_dir)
        .arg("--socket")
        .arg(d.join("nobody.sock"))
        .args([
            "--sid",
            "big-1",
            "--max-bytes",
            "1MiB",
            "--when-full",
            "stop_recording",
            "--",
        ])
        .args([
            "sh",
            "-c",
            "head -c 5000000 /dev/urandom; echo; echo still-here",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.ends_with(b"still-here\r\n"),
        "the session went on after the cut"
    );
    let raw = std::fs::metadata(rec_dir.join("big-1.raw")).unwrap().len();
    let cast = std::fs::metadata(rec_dir.join("big-1.cast")).unwrap().len();
    assert!(
        raw + cast <= 1 << 20,
        "raw {raw} + cast {cast} within max_bytes"
    );
    assert!(raw > 100_000, "it recorded until the bound: {raw}");
    let events = spooled(&rec_dir);
    let cut = events_of(&events, "auditrail.recording");
    let cut: Vec<&&Value> = cut.iter().filter(|e| e["kind"] == "cut").collect();
    assert_eq!(cut.len(), 1, "{events:?}");
    assert_eq!(cut[0]["code"], "AR1002W");
    assert_eq!(cut[0]["reason"], "max_bytes");
    assert_eq!(cut[0]["action"], "stop_recording");
    assert_eq!(cut[0]["raw_bytes"], raw);
    assert_eq!(
        cut[0]["raw_sha256"],
        sha256_of(&rec_dir.join("big-1.raw")).as_str()
    );
    let end = events_of(&events, "session.end");
    assert_eq!(end[0]["truncated"], true);
    assert_eq!(end[0]["truncated_reason"], "max_bytes");
    assert_eq!(end[0]["exit_code"], 0);
    assert!(end[0]["bytes_written"].as_u64().unwrap() >= 5_000_000);
    assert_eq!(end[0]["raw_sha256"], cut[0]["raw_sha256"]);
    let done: Value =
        serde_json::from_slice(&std::fs::read(rec_dir.join("big-1.done")).unwrap()).unwrap();
    assert_eq!(done["truncated"], true);

    // terminate: the session is ended, with a message, and the cut says so.
    let out = record()
        .arg("--dir")
        .arg(&rec_dir)
        .arg("--socket")
        .arg(d.join("nobody.sock"))
        .args([
            "--sid",
            "big-2",
            "--max-bytes",
            "256KiB",
            "--when-full",
            "terminate",
            "--",
        ])
        .args(["cat", "/dev/urandom"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The program may get a few more chunks out before the signals land, so the message is not
    // necessarily last.
    let message =
        b"\r\nauditrail: the session is ended: the recording limit was reached (max_bytes)\r\n";
    assert!(
        out.stdout.windows(message.len()).any(|w| w == message),
        "the user is told why the session ended"
    );
    let events = spooled(&rec_dir);
    let cut: Vec<&Value> = events
        .iter()
        .filter(|e| e["sid"] == "big-2" && e["kind"] == "cut")
        .collect();
    assert_eq!(cut.len(), 1, "{events:?}");
    assert_eq!(cut[0]["action"], "terminate");

    // The free-space floor: a floor above what the disk has cuts at once.
    let st = record()
        .arg("--dir")
        .arg(&rec_dir)
        .arg("--socket")
        .arg(d.join("nobody.sock"))
        .args([
            "--sid",
            "floor-1",
            "--min-free-bytes",
            "1000000TB",
            "--",
            "echo",
            "hi",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let events = spooled(&rec_dir);
    let cut: Vec<&Value> = events
        .iter()
        .filter(|e| e["sid"] == "floor-1" && e["kind"] == "cut")
        .collect();
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0]["reason"], "disk_floor");
}

#[test]
fn an_unusable_recordings_directory_is_an_event_not_a_broken_session() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("file"), "").unwrap();
    let api = free_port();
    let sock = d.join("events.sock");
    let agent = Agent::start(d, &agent_config(d, api, &sock, ""), api);
    let st = record()
        .arg("--dir")
        .arg(d.join("file/recordings"))
        .arg("--socket")
        .arg(&sock)
        .args(["--sid", "nodir-1", "--", "sh", "-c", "exit 5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(5));
    wait_for(Duration::from_secs(20), "the events", || {
        line_count(&d.join("out")) >= 3
    });
    let got: Vec<Value> = lines_so_far(&d.join("out"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let err = events_of(&got, "auditrail.recording");
    assert_eq!(err[0]["kind"], "error");
    assert_eq!(err[0]["code"], "AR1003W");
    assert!(err[0]["reason"].as_str().unwrap().contains("unusable"));
    let end = events_of(&got, "session.end");
    assert_eq!(end[0]["truncated"], true);
    assert_eq!(end[0]["exit_code"], 5);
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn proxy_mode_with_host_events_is_refused_and_examples_validate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("c.toml");
    std::fs::write(&cfg, "[recording]\nmode = \"proxy\"\nhost_events = true\n").unwrap();
    let out = record()
        .arg("--config")
        .arg(&cfg)
        .args(["--", "ssh", "db1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxy mode") && err.contains("host_events"),
        "{err}"
    );
    for f in [
        "examples/recording-node.toml",
        "examples/recording-proxy.toml",
    ] {
        let out = Command::new(binary())
            .args(["validate", "--config", f])
            .current_dir(workspace_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn asciicast_v3_and_recorded_keystrokes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rec_dir = d.join("rec");
    let input = d.join("keys");
    std::fs::write(&input, "typed line\n").unwrap();
    let st = record()
        .arg("--dir")
        .arg(&rec_dir)
        .arg("--socket")
        .arg(d.join("nobody.sock"))
        .args([
            "--sid",
            "v3-1",
            "--cast-format",
            "v3",
            "--record-input",
            "--",
        ])
        .args(["sh", "-c", "read line; echo \"got: $line\"; exit 6"])
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(6));
    let cast = cast_lines(&rec_dir.join("v3-1.cast"));
    assert_eq!(cast[0]["version"], 3);
    assert_eq!(cast[0]["term"]["cols"], 80);
    assert_eq!(cast[0]["term"]["rows"], 24);
    let input: String = cast[1..]
        .iter()
        .filter(|e| e[1] == "i")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert_eq!(input, "typed line\n");
    let output: String = cast[1..]
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert!(output.contains("got: typed line\r\n"), "{output:?}");
    let raw = std::fs::read(rec_dir.join("v3-1.raw")).unwrap();
    assert_eq!(output, String::from_utf8_lossy(&raw));
    assert!(cast[1..].iter().all(|e| e[0].as_f64().unwrap() >= 0.0));
    let last = cast.last().unwrap();
    assert_eq!(last[1], "x");
    assert_eq!(last[2], "6");
}

/// SHA-256 of the first `n` bytes of `path`.
fn prefix_sha256(path: &Path, n: u64) -> String {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() as u64 >= n,
        "{} shorter than {n}",
        path.display()
    );
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &bytes[..n as usize]).unwrap();
    sha256_of(tmp.path())
}

#[test]
fn checkpoints_prove_prefixes_even_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rec_dir = d.join("rec");
    let cfg = d.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[recording]\ndir = \"{}\"\nsocket = \"{}/nobody.sock\"\ncheckpoint_bytes = \"64KiB\"\n",
            rec_dir.display(),
            d.display()
        ),
    )
    .unwrap();
    let mut child = record()
        .arg("--config")
        .arg(&cfg)
        .args(["--sid", "killed-1", "--"])
        .args([
            "sh",
            "-c",
            "head -c 300000 /dev/urandom | od -An -tx1; sleep 60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "checkpoints in the spool", || {
        // Every 64 KiB of output; the files themselves lag behind by their write buffers until the next one.
        let e = spooled(&rec_dir);
        e.iter().filter(|e| e["kind"] == "checkpoint").count() >= 8
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !rec_dir.join("killed-1.done").exists(),
        "a killed recording is not done"
    );
    let events = spooled(&rec_dir);
    let checkpoints: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "checkpoint")
        .collect();
    let mut last = 0;
    for c in &checkpoints {
        assert_eq!(c["code"], "AR1001I");
        assert_eq!(c["sid"], "killed-1");
        let (rb, cb) = (
            c["raw_bytes"].as_u64().unwrap(),
            c["cast_bytes"].as_u64().unwrap(),
        );
        assert!(rb > last, "checkpoints advance");
        last = rb;
        assert_eq!(
            c["raw_sha256"],
            prefix_sha256(&rec_dir.join("killed-1.raw"), rb).as_str()
        );
        assert_eq!(
            c["cast_sha256"],
            prefix_sha256(&rec_dir.join("killed-1.cast"), cb).as_str()
        );
    }
    // The spooled events are whole lines: the next session could deliver them.
    assert!(events_of(&events, "session.start").len() == 1);
    // The program needs no cleanup: the master closed with the recorder, so the kernel hung up its terminal.
}

#[test]
fn sigterm_to_the_recorder_ends_the_session_and_restores_the_terminal() {
    let Some(bin) = tmux() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rec_dir = d.join("rec");
    let p = |name: &str| d.join(name).display().to_string();
    // The inner shell execs into the recorder, so its pid is the recorder's.
    let shell = format!(
        "stty -a > {before}; sh -c 'echo $$ > {pid}; exec env -u SSH_ORIGINAL_COMMAND {bin} record --dir {rec} --socket {sock} --sid term-1 -- sleep 60'; echo $? > {rc}; stty -a > {after}; sleep 30",
        before = p("before"),
        after = p("after"),
        pid = p("pid"),
        rc = p("rc"),
        sock = p("nobody.sock"),
        rec = rec_dir.display(),
        bin = binary().display(),
    );
    let _tmux = Tmux::start(bin, d.join("tmux.sock"), "t", (90, 20), &shell);
    wait_for(Duration::from_secs(20), "the session to start", || {
        spooled(&rec_dir)
            .iter()
            .any(|e| e["event"] == "session.start")
    });
    let pid: i32 = std::fs::read_to_string(d.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signalling the recorder this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_for(Duration::from_secs(20), "the recorder to exit", || {
        std::fs::read_to_string(d.join("after")).is_ok_and(|s| s.contains("speed"))
    });
    assert_eq!(
        std::fs::read_to_string(d.join("rc")).unwrap().trim(),
        "143",
        "the program died of the forwarded SIGTERM: 128 + 15"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("before")).unwrap(),
        std::fs::read_to_string(d.join("after")).unwrap(),
        "the terminal's settings are back as they were"
    );
    let events = spooled(&rec_dir);
    let end = events_of(&events, "session.end");
    assert_eq!(end[0]["exit_code"], 143);
    assert!(rec_dir.join("term-1.done").exists());
}
