//! `auditrail play` as a real process: in a real terminal (tmux) driven with keys — pause, seek back and
//! forward, speed, quit — with the screen read back with capture-pane at each step; `--raw` and `--frame`;
//! damaged files (truncated, a line that is not JSON, a wrong header) giving `file:line` messages and no
//! panic; and flat memory on a 200 MB recording (max RSS of the process, from the kernel).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auditrail_integration_tests::players::{counting_cast, tmux, Tmux};
use auditrail_integration_tests::*;

/// The second the top line shows.
fn second(screen: &str) -> u32 {
    let line = screen.lines().next().unwrap_or("");
    line.strip_prefix("second ")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("top line is not `second NN`:\n{screen}"))
}

#[test]
fn keys_pause_seek_speed_and_quit_in_a_real_terminal() {
    let Some(bin) = tmux() else { return };
    let d = tempfile::tempdir().unwrap();
    let cast = d.path().join("s1.cast");
    counting_cast(&cast, 60, 12, 60);
    let cmd = format!("{} play --speed 2 {}", binary().display(), cast.display());
    let t = Tmux::start(
        bin,
        d.path().join("tmux.sock"),
        "play",
        (60, 12),
        &format!("{cmd}; echo \"exit=$?\"; sleep 60"),
    );

    // Plays at twice the recorded speed: second 08 after about 4 s.
    t.wait_for("second 08", 20);
    t.keys(&["Space"]);
    std::thread::sleep(Duration::from_millis(300));
    let paused = second(&t.screen());
    assert!(paused >= 8, "{paused}");
    std::thread::sleep(Duration::from_millis(1500));
    let still = t.screen();
    assert_eq!(second(&still), paused, "paused playback moved:\n{still}");
    // The second line is what the recording drew with the top line: redrawn whole after a seek too.
    let bar = |s: u32| "#".repeat((s % 20) as usize + 1);
    assert_eq!(still.lines().nth(1).unwrap().trim_end(), bar(paused));

    // ← seeks back 5 s, and the screen is the one of that time.
    t.keys(&["Left"]);
    let back = t.wait_for(&format!("second {:02}", paused - 5), 10);
    assert_eq!(
        back.lines().nth(1).unwrap().trim_end(),
        bar(paused - 5),
        "{back}"
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        second(&t.screen()),
        paused - 5,
        "a seek while paused stays paused"
    );
    // Twice back, once forward: 10 s before the pause point, then 5.
    t.keys(&["Left", "Left"]);
    t.wait_for(&format!("second {:02}", paused - 15.min(paused)), 10);
    t.keys(&["Right"]);
    let fwd = t.wait_for(&format!("second {:02}", (paused - 15.min(paused)) + 5), 10);
    assert_eq!(fwd.lines().count().min(12), fwd.lines().count());

    // Speed: from 2× up four times to 32×, then resume: the remaining ~50 recorded seconds take under 2 s
    // of wall time, where 2× would need about 25.
    t.keys(&["+", "+", "+", "+", "Space"]);
    let started = Instant::now();
    t.wait_for("second 60", 12);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "speed keys had no effect"
    );
    // The end of the recording ends the player, with status 0 and the terminal given back.
    t.wait_for("exit=0", 10);
}

#[test]
fn q_quits_at_once_and_gives_the_terminal_back() {
    let Some(bin) = tmux() else { return };
    let d = tempfile::tempdir().unwrap();
    let cast = d.path().join("s2.cast");
    counting_cast(&cast, 60, 12, 600);
    let cmd = format!("{} play {}", binary().display(), cast.display());
    let t = Tmux::start(
        bin,
        d.path().join("tmux.sock"),
        "play",
        (60, 12),
        // After the player: `stty -a` shows whether the terminal is back in cooked mode (icanon echo).
        &format!("{cmd}; echo \"exit=$?\"; echo \"modes: $(stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' ')end\"; sleep 60"),
    );
    t.wait_for("second 01", 20);
    t.keys(&["q"]);
    t.wait_for("exit=0", 10);
    let s = t.wait_for("end", 10);
    assert!(
        s.contains("modes: icanon echo end"),
        "terminal not restored:\n{s}"
    );
}

fn play(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .arg("play")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn frame_and_raw_show_the_screen_and_the_bytes() {
    let d = tempfile::tempdir().unwrap();
    let cast = d.path().join("s3.cast");
    counting_cast(&cast, 40, 5, 100);
    let o = play(&["--frame", "--at", "42.5", cast.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.starts_with("second 42\n###\n"), "{text}");
    let o = play(&["--frame", "--at", "50%", cast.to_str().unwrap()]);
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .starts_with("second 50\n"));
    // A sid is looked up in --dir; --frame without --at is the end.
    let o = play(&["--frame", "--dir", d.path().to_str().unwrap(), "s3"]);
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .starts_with("second 100\n"));
    // --raw: the .raw file when there, byte for byte.
    std::fs::write(d.path().join("s3.raw"), b"exact \xff bytes").unwrap();
    let o = play(&["--raw", "--dir", d.path().to_str().unwrap(), "s3"]);
    assert_eq!(o.stdout, b"exact \xff bytes");
    // A .cast alone: its output events.
    std::fs::remove_file(d.path().join("s3.raw")).unwrap();
    let o = play(&["--raw", cast.to_str().unwrap()]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("second 00") && text.contains("second 100"));
    // An unknown sid says where it looked.
    let o = play(&["--dir", d.path().to_str().unwrap(), "nope"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("no recording `nope`"), "{err}");
}

#[test]
fn damaged_files_show_what_is_readable_and_say_where() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good.cast");
    counting_cast(&good, 40, 5, 10);
    let text = std::fs::read_to_string(&good).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    // A line that is not JSON (line 5): the rest plays, the message names the line.
    let bad_line = d.path().join("badline.cast");
    let mut t = lines.clone();
    t[4] = "[3.0, \"o\", \"unterminated";
    std::fs::write(&bad_line, t.join("\n") + "\n").unwrap();
    // Truncated in the middle of the last event.
    let truncated = d.path().join("truncated.cast");
    std::fs::write(&truncated, &text[..text.len() - 10]).unwrap();
    // A wrong header.
    let wrong = d.path().join("wrong.cast");
    std::fs::write(
        &wrong,
        format!("{{\"version\": 7}}\n{}\n", lines[1..].join("\n")),
    )
    .unwrap();

    for mode in [&["--frame"][..], &["--raw"][..]] {
        let run = |p: &Path| {
            let mut a = mode.to_vec();
            a.push(p.to_str().unwrap());
            play(&a)
        };
        let o = run(&bad_line);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(o.status.code(), Some(1), "{mode:?} {err}");
        assert!(
            err.contains(&format!("{}:5: not an event", bad_line.display())),
            "{err}"
        );
        assert!(
            out.contains("second 10"),
            "{mode:?}: the rest is played: {out}"
        );

        let o = run(&truncated);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "{}:{}: truncated",
                truncated.display(),
                lines.len()
            )),
            "{err}"
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("second 09"));

        let o = run(&wrong);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!(
                "{}:1: asciicast version 7 is not supported",
                wrong.display()
            )),
            "{err}"
        );
    }
}

/// Max RSS of a child in KiB, from the kernel's accounting of the process (wait4's rusage), and the first
/// 64 KiB of its output with the output's size. (This process is kept small too: a forked child's high-water
/// mark starts at its parent's size until it execs.)
// The child is reaped by wait4 (for its rusage), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn run_measured(mut cmd: Command) -> (std::process::ExitStatus, u64, Vec<u8>, u64) {
    use std::os::unix::process::ExitStatusExt;
    let out_path = std::env::temp_dir().join(format!("play-out-{}", std::process::id()));
    let out = std::fs::File::create(&out_path).unwrap();
    let child = cmd.stdout(out).stdin(Stdio::null()).spawn().unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid out pointers.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(r, child.id() as i32);
    let size = std::fs::metadata(&out_path).unwrap().len();
    let mut head = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(&out_path).unwrap(), 64 << 10),
        &mut head,
    )
    .unwrap();
    let _ = std::fs::remove_file(&out_path);
    (
        std::process::ExitStatus::from_raw(status),
        usage.ru_maxrss as u64,
        head,
        size,
    )
}

/// Writes a 1-hour, ~200 MB v2 cast: dense coloured output every 10 ms, the top line saying the second.
fn big_cast(path: &Path) -> u64 {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(f, "{{\"version\": 2, \"width\": 120, \"height\": 40}}").unwrap();
    let filler = "\\u001b[32mlorem ipsum dolor sit amet\\u001b[0m ".repeat(14);
    for i in 0..360_000u32 {
        let t = i as f64 / 100.0;
        if i % 100 == 0 {
            writeln!(
                f,
                "[{t:.6}, \"o\", \"\\u001b[1;1H\\u001b[Ksecond {:04}\\r\\n\"]",
                i / 100
            )
            .unwrap();
        } else {
            writeln!(f, "[{t:.6}, \"o\", \"\\u001b[5;1H{filler} {i}\\r\\n\"]").unwrap();
        }
    }
    f.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn memory_stays_flat_on_a_200_mb_recording() {
    let d = tempfile::tempdir().unwrap();
    let cast = d.path().join("big.cast");
    let size = big_cast(&cast);
    assert!(size > 190_000_000, "{size}");
    let limit_kib = 50 * 1024;

    let mut raw = Command::new(binary());
    raw.args(["play", "--raw"]).arg(&cast);
    let (status, rss, _, written) = run_measured(raw);
    assert!(status.success(), "{status:?}");
    assert!(written > size / 2, "{written}");
    assert!(
        rss <= limit_kib,
        "play --raw max RSS {rss} KiB on a {size}-byte file"
    );
    eprintln!("{size}-byte recording: max RSS {rss} KiB (play --raw)");

    // A seek to 90% (of 3599.99 s: 3239.991 s): the screen there, from the index's keyframes. Cold: the
    // play builds the index (and keeps it); warm: the next one loads it.
    for run in ["cold", "warm"] {
        let mut seek = Command::new(binary());
        seek.args(["play", "--frame", "--at", "90%"]).arg(&cast);
        let (status, rss, out, _) = run_measured(seek);
        assert!(status.success(), "{status:?}");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("second 3239\n"),
            "{}",
            &text[..text.len().min(300)]
        );
        assert!(
            rss <= limit_kib,
            "seek to 90% ({run}): max RSS {rss} KiB on a {size}-byte file"
        );
        let index = std::fs::metadata(d.path().join("big.index")).expect("the index is kept");
        eprintln!(
            "{size}-byte recording: max RSS {rss} KiB (seek to 90%, {run}); index {} bytes",
            index.len()
        );
    }
}

/// `play --frame [--at T] PATH`: the status, the first two lines of the screen, and stderr.
fn frame_at(cast: &Path, at: Option<&str>) -> (Option<i32>, String, String) {
    let mut args = vec!["--frame"];
    if let Some(t) = at {
        args.extend(["--at", t]);
    }
    args.push(cast.to_str().unwrap());
    let o = play(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    (
        o.status.code(),
        out.lines().take(2).collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The top two lines of `counting_cast`'s screen at second `s`.
fn counting_screen(s: u32) -> String {
    format!("second {s:02}\n{}", "#".repeat((s % 20) as usize + 1))
}

#[test]
fn the_seek_index_is_kept_beside_the_recording_and_checked_before_use() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let cast = d.path().join("k1.cast");
    counting_cast(&cast, 40, 5, 200);
    std::fs::set_permissions(&cast, std::fs::Permissions::from_mode(0o600)).unwrap();
    let index = d.path().join("k1.index");
    let want = |t: &str| -> String {
        let s = match t.strip_suffix('%') {
            Some(p) => 200.0 * p.parse::<f64>().unwrap() / 100.0,
            None => t.parse().unwrap(),
        };
        counting_screen(s as u32)
    };

    // The first play (to the end) builds the whole index and keeps it, as private as the recording.
    let (code, out, err) = frame_at(&cast, None);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(0), want("200").as_str(), "")
    );
    let meta = std::fs::metadata(&index).expect("the first play keeps k1.index");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let built = std::fs::read(&index).unwrap();
    // Every later play seeks from it to the screen of that time, and leaves it as it is.
    for t in ["0", "29.5", "31", "61", "99.99", "150", "50%", "90%", "200"] {
        let (code, out, err) = frame_at(&cast, Some(t));
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (Some(0), want(t).as_str(), ""),
            "at {t}"
        );
    }
    assert_eq!(std::fs::read(&index).unwrap(), built);
    assert_eq!(
        std::fs::metadata(&index).unwrap().modified().unwrap(),
        meta.modified().unwrap()
    );

    // A damaged index: said so, rebuilt (to the same bytes), and the next play uses it silently.
    let mut bad = built.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x20;
    std::fs::write(&index, &bad).unwrap();
    let (code, out, err) = frame_at(&cast, None);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), want("200").as_str()),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "the seek index {} is damaged: its checksum does not match",
            index.display()
        )) && err.contains("rebuilt it"),
        "{err}"
    );
    assert_eq!(std::fs::read(&index).unwrap(), built);
    let (_, out, err) = frame_at(&cast, Some("61"));
    assert_eq!((out.as_str(), err.as_str()), (want("61").as_str(), ""));
    // Not an index at all, and one too large to be read.
    std::fs::write(&index, b"{\"version\": 2}\n").unwrap();
    let (code, out, err) = frame_at(&cast, Some("99.99"));
    assert_eq!((code, out.as_str()), (Some(0), want("99.99").as_str()));
    assert!(
        err.contains("does not start with the seek index magic"),
        "{err}"
    );
    std::fs::File::create(&index)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let (code, out, err) = frame_at(&cast, Some("31"));
    assert_eq!((code, out.as_str()), (Some(0), want("31").as_str()));
    assert!(
        err.contains("is damaged") && err.contains("more than the"),
        "{err}"
    );

    // A recording changed under its index (same size and mtime, other bytes): stale, rebuilt.
    frame_at(&cast, None);
    let mtime = std::fs::metadata(&cast).unwrap().modified().unwrap();
    let text = std::fs::read_to_string(&cast)
        .unwrap()
        .replace("second 1", "SECOND 1");
    std::fs::write(&cast, &text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&cast)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (code, out, err) = frame_at(&cast, Some("150"));
    assert_eq!(
        (code, out.as_str()),
        (
            Some(0),
            want("150").replace("second 1", "SECOND 1").as_str()
        )
    );
    assert!(
        err.contains("is stale") && err.contains("rebuilt it"),
        "{err}"
    );

    // A recording that grew (a session still going when it was first played): the index goes on from its
    // last keyframe, silently, and the new end is there.
    std::fs::remove_file(&cast).unwrap();
    counting_cast(&cast, 40, 5, 200);
    frame_at(&cast, Some("100"));
    let mut more = std::fs::OpenOptions::new()
        .append(true)
        .open(&cast)
        .unwrap();
    for i in 201..=260u32 {
        writeln!(
            more,
            "[{i}.000000, \"o\", \"\\u001b[1;1Hsecond {i:02}\\u001b[2;1H\\u001b[K{}\"]",
            "#".repeat((i % 20) as usize + 1)
        )
        .unwrap();
    }
    drop(more);
    for t in ["100", "199", "230", "260"] {
        let (code, out, err) = frame_at(&cast, Some(t));
        let want = counting_screen(t.parse().unwrap());
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (Some(0), want.as_str(), ""),
            "at {t}"
        );
    }
}

/// A recording played while `auditrail record` is still writing it: the screen so far (the index of that
/// prefix is kept); played again once the session ended, the whole of it, the index continued from where
/// the first play left it, and the same screen as a play that builds the index from scratch.
#[test]
fn a_recording_plays_while_the_recorder_writes_it_and_after() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("rec");
    // Checkpoints every 200 ms flush the `.cast` to disk while the session runs.
    let config = d.path().join("auditrail.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}/data\"\n[recording]\ncheckpoint_interval = \"200ms\"\n",
            d.path().display()
        ),
    )
    .unwrap();
    let mut recorder = Command::new(binary())
        .arg("record")
        .arg("--config")
        .arg(&config)
        .arg("--dir")
        .arg(&dir)
        .arg("--socket")
        .arg(d.path().join("no-agent.sock"))
        .args([
            "--sid",
            "live1",
            "--",
            "sh",
            "-c",
            "i=1; while [ $i -le 12 ]; do echo tick $i; i=$((i+1)); sleep 0.5; done",
        ])
        .env_remove("SSH_ORIGINAL_COMMAND")
        .env_remove("SSH_TTY")
        .env_remove("SSH_CONNECTION")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let frame = || {
        let o = play(&["--frame", "--dir", dir.to_str().unwrap(), "live1"]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let (_, out, err) = frame();
        if out.contains("tick 3\n") {
            break (out, err);
        }
        assert!(
            Instant::now() < deadline,
            "the live recording never showed tick 3: {out:?} {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !live.0.contains("tick 12"),
        "the session ended before it could be played live: {live:?}"
    );
    assert!(!dir.join("live1.done").exists());
    assert!(
        !live.1.contains("panic"),
        "a live recording is played as far as it goes: {}",
        live.1
    );
    let status = recorder.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(dir.join("live1.done").exists());

    let (code, after, err) = frame();
    assert_eq!((code, err.as_str()), (Some(0), ""), "{after}");
    let ticks: Vec<&str> = after.lines().filter(|l| l.starts_with("tick ")).collect();
    let want: Vec<String> = (1..=12).map(|i| format!("tick {i}")).collect();
    assert_eq!(ticks, want, "{after}");
    // The same screen as a play that builds its index from nothing.
    let index = dir.join("live1.index");
    assert!(index.exists());
    std::fs::remove_file(&index).unwrap();
    let (_, scratch, _) = frame();
    assert_eq!(scratch, after);
}
