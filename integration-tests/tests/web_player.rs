//! `auditrail play --web` and `auditrail export` in a real browser (Debian's Chromium driven by
//! playwright-core; scripts under `integration-tests/browser/`): the list, play, pause, seek with the bar
//! and with a timeline event, the terminal text at each time, a screenshot; 404 for paths out of the
//! directory and unknown sids; 401 without the token; an exported page opened from file:// with no server.

use std::path::{Path, PathBuf};
use std::process::Command;

use auditrail_integration_tests::players::{chromium, counting_cast, run_browser_script, serve};
use auditrail_integration_tests::*;

/// A recordings directory: `s1` (60 s, with events), the damaged `broken` (line 5 not JSON), `truncated`
/// (cut inside its last event) and `badheader` (asciicast version 9), and `evil.cast`, a symlink out.
fn recordings(root: &Path) -> PathBuf {
    let dir = root.join("recordings");
    std::fs::create_dir(&dir).unwrap();
    counting_cast(&dir.join("s1.cast"), 60, 12, 60);
    // The header's timestamp is 1700000000 (2023-11-14T22:13:20Z); events as the file sink writes them.
    std::fs::write(
        dir.join("s1.events.ndjson"),
        concat!(
            "{\"event\":\"session.start\",\"code\":\"T2000I\",\"time\":\"2023-11-14T22:13:20.100Z\",\"sid\":\"s1\",\"user\":\"alice\",\"login\":\"alice\",\"server_id\":\"n1\",\"server_hostname\":\"db1\"}\n",
            "{\"event\":\"exec\",\"code\":\"T3002I\",\"time\":\"2023-11-14T22:13:32.500Z\",\"sid\":\"s1\",\"command\":\"ls -la\"}\n",
            "{\"event\":\"auditrail.recording\",\"code\":\"AR1001I\",\"time\":\"2023-11-14T22:13:50Z\",\"sid\":\"s1\",\"kind\":\"checkpoint\"}\n",
            "{\"event\":\"session.end\",\"code\":\"T2004I\",\"time\":\"2023-11-14T22:14:20Z\",\"sid\":\"s1\",\"exit_code\":0}\n",
        ),
    )
    .unwrap();
    counting_cast(&dir.join("broken.cast"), 60, 12, 10);
    let text = std::fs::read_to_string(dir.join("broken.cast")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[4] = "{not json";
    std::fs::write(dir.join("broken.cast"), lines.join("\n") + "\n").unwrap();
    // Cut in the middle of its last event (the recorder killed mid-write): plays to second 08.
    counting_cast(&dir.join("truncated.cast"), 60, 12, 9);
    let text = std::fs::read_to_string(dir.join("truncated.cast")).unwrap();
    let cut = text.trim_end().rfind(", \"o\"").unwrap();
    std::fs::write(dir.join("truncated.cast"), &text[..cut]).unwrap();
    // A header that is not asciicast v2 or v3: nothing to play, the list and the page say why.
    std::fs::write(
        dir.join("badheader.cast"),
        "{\"version\": 9, \"width\": 60}\n[0.5, \"o\", \"x\"]\n",
    )
    .unwrap();
    let outside = root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    counting_cast(&outside.join("secret.cast"), 60, 12, 3);
    std::os::unix::fs::symlink(outside.join("secret.cast"), dir.join("evil.cast")).unwrap();
    dir
}

/// The status line of `GET path` sent byte for byte.
fn raw_get(url: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or("").to_string()
}

#[test]
fn the_web_player_lists_plays_pauses_and_seeks_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = recordings(d.path());
    let server = serve(&dir, &[]);
    let shot = workspace_root().join("target/web-player.png");
    let out = run_browser_script(
        "web.mjs",
        &[&server.url, "s1", shot.to_str().unwrap()],
        &chromium,
    );
    eprintln!("{out}");
    assert!(out.contains("ok: click on the exec event"), "{out}");
    // Paths with literal `..` and absolute paths, sent as they are (a browser would resolve them first).
    for path in [
        "/api/cast/../../etc/passwd",
        "/play/../../etc/passwd",
        "/api/cast//etc/passwd",
        "/play/s1/../../../etc/passwd",
        "/api/events/../s1.cast",
        "/play/%2E%2E",
        "/api/cast/%2E%2E%2Fs1",
    ] {
        let status = raw_get(&server.url, path);
        assert!(status.starts_with("HTTP/1.1 404"), "{path}: {status}");
    }
    assert!(raw_get(&server.url, "/play/s1").starts_with("HTTP/1.1 200"));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
}

#[test]
fn the_web_player_needs_its_token_and_refuses_to_serve_elsewhere_without_one() {
    let Some(chromium) = chromium() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = recordings(d.path());
    let token = "0123456789abcdef0123456789abcdef";
    let token_file = d.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let server = serve(&dir, &["--token-file", token_file.to_str().unwrap()]);
    let out = run_browser_script("token.mjs", &[&server.url, token], &chromium);
    assert!(out.contains("ok: the cookie lets the browser in"), "{out}");

    // Not loopback and no token: refused before listening.
    let o = Command::new(binary())
        .args(["play", "--web", "--address", "0.0.0.0:0", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not a loopback address: give --token-file"),
        "{err}"
    );
}

#[test]
fn an_export_opens_from_a_file_with_no_server_on_the_screen_asked_for() {
    let Some(chromium) = chromium() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = recordings(d.path());
    let export = |at: Option<&str>, name: &str| {
        let out = d.path().join(name);
        let mut c = Command::new(binary());
        c.args(["export", "--dir"])
            .arg(&dir)
            .arg("s1")
            .arg("-o")
            .arg(&out);
        if let Some(a) = at {
            c.args(["--at", a]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{o:?}");
        out
    };
    // Default: the end of the session.
    let end = export(None, "end.html");
    let html = std::fs::read_to_string(&end).unwrap();
    assert!(
        !html.contains("src=\"/") && !html.contains("href=\"/assets"),
        "refers to a server"
    );
    assert!(
        html.contains("exec command=ls -la"),
        "events are in the page"
    );
    run_browser_script("export.mjs", &[end.to_str().unwrap(), "60"], &chromium);
    let at = export(Some("0:20"), "at20.html");
    run_browser_script("export.mjs", &[at.to_str().unwrap(), "20"], &chromium);

    // A damaged recording exports what is readable, says what is wrong, exit status 1.
    let out = d.path().join("broken.html");
    let o = Command::new(binary())
        .args(["export", "--dir"])
        .arg(&dir)
        .args(["broken", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken.cast:5: not an event"));
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("broken.cast:5: not an event"));
}
