//! The http source through the real binary: body shapes, per-line errors, limits, auth, backpressure, and
//! SIGTERM with requests in flight.

use std::io::Write;
use std::time::Duration;

use auditrail_integration_tests::*;

fn config(
    dir: &std::path::Path,
    api: u16,
    port: u16,
    sink_path: &str,
    extra_source: &str,
    buffer: &str,
) -> String {
    format!(
        r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.local]
type = "http"
address = "127.0.0.1:{port}"
max_body_bytes = "1MiB"
accept_timeout = "200ms"
{extra_source}
[sinks.out]
type = "file"
inputs = ["local"]
path = "{sink_path}"
{buffer}
"#,
        d = dir.display()
    )
}

/// A file-sink path whose directory is a regular file, so every write fails (for root too) until
/// [`unblock_sink`] removes it.
fn blocked_sink_path(d: &std::path::Path) -> String {
    std::fs::create_dir_all(d.join("out")).unwrap();
    std::fs::write(d.join("out/blocked"), b"").unwrap();
    format!("{}/out/blocked/events.ndjson", d.display())
}

fn unblock_sink(d: &std::path::Path) {
    std::fs::remove_file(d.join("out/blocked")).unwrap();
}

const A: &str = r#"{"event":"user.login","uid":"h-1","time":"2017-02-03T06:54:05Z","user":"alice","success":true}"#;
const B: &str = r#"{"event":"session.start","uid":"h-2","time":"2017-02-03T06:54:06.123456789Z","sid":"s1","addr.remote":"10.0.0.1:5"}"#;

#[test]
fn object_array_ndjson_bad_lines_and_oversize() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (api, port) = (free_port(), free_port());
    let out = format!("{}/out/events.ndjson", d.display());
    let agent = Agent::start(d, &config(d, api, port, &out, "", ""), api);
    let post = |body: &str| {
        http(
            "POST",
            port,
            "/v1/events",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap()
    };

    assert_eq!(post(A), (200, r#"{"accepted":1}"#.into()));
    assert_eq!(post(&format!("[{B}, {}]", B.replace("h-2", "h-3"))).0, 200);
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<serde_json::Value>(&A.replace("h-1", "h-4")).unwrap(),
    )
    .unwrap();
    assert_eq!(post(&pretty).0, 200);
    let ndjson = format!("{}\n{}\n", A.replace("h-1", "h-5"), B.replace("h-2", "h-6"));
    assert_eq!(post(&ndjson), (200, r#"{"accepted":2}"#.into()));

    // Bad lines are named; the good ones still go through.
    let mixed = format!(
        "{}\nnot json\n{}\n{{\"event\":\"x\"}}\n",
        A.replace("h-1", "h-7"),
        B.replace("h-2", "h-8")
    );
    let (status, body) = post(&mixed);
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["rejected"], 2);
    assert_eq!(v["errors"][0]["line"], 2);
    assert_eq!(v["errors"][0]["reason"], "invalid_json");
    assert_eq!(v["errors"][1]["line"], 4);
    assert_eq!(v["errors"][1]["reason"], "missing_time");
    let (status, body) = post(&format!("[{A}, 42]"));
    assert_eq!(status, 400);
    assert!(body.contains(r#""index":1"#), "{body}");

    // Over max_body_bytes: 413, nothing accepted.
    let big = format!("{}\n", A.replace("h-1", "big")).repeat(1 + (1 << 20) / A.len());
    assert_eq!(post(&big).0, 413);

    // Empty body and a truncated array are refused whole.
    assert_eq!(post("").0, 400);
    assert_eq!(post(&format!("[{A}, ")).0, 400);

    let expected = ["h-1", "h-2", "h-3", "h-4", "h-5", "h-6", "h-7", "h-8"];
    wait_for(Duration::from_secs(10), "8 events written", || {
        line_count(&d.join("out")) >= expected.len()
    });
    let counts = uids_in(&d.join("out"));
    let mut uids: Vec<_> = counts.keys().cloned().collect();
    uids.sort();
    assert_eq!(uids, expected);
    let lines = lines_in(&d.join("out"));
    assert!(
        lines.contains(&A.to_string()),
        "objects are written verbatim"
    );
    assert!(lines.iter().all(|l| !l.contains('\n')));
    assert_eq!(
        agent.metric("auditrail_source_http_requests_total", &[("status", "413")]),
        1.0
    );
    let invalid = agent.metric("auditrail_source_invalid_total", &[("source", "local")]);
    assert_eq!(
        invalid, 5.0,
        "2 bad lines, 1 bad element, the empty body, the truncated array"
    );
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn bearer_token_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (api, port) = (free_port(), free_port());
    let out = format!("{}/out/events.ndjson", d.display());
    let cfg = config(
        d,
        api,
        port,
        &out,
        "token = \"${AUDITRAIL_TEST_TOKEN:-s3cr3t-t0ken}\"",
        "",
    );
    let agent = Agent::start(d, &cfg, api);
    let (status, headers, _) = http_full("POST", port, "/v1/events", &[], A.as_bytes()).unwrap();
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(
        http(
            "POST",
            port,
            "/v1/events",
            &[("Authorization", "Bearer wrong")],
            A.as_bytes()
        )
        .unwrap()
        .0,
        401
    );
    assert_eq!(
        http(
            "POST",
            port,
            "/v1/events",
            &[("Authorization", "Bearer s3cr3t-t0ken")],
            A.as_bytes()
        )
        .unwrap()
        .0,
        200
    );
    assert!(
        !agent.log_text().contains("s3cr3t"),
        "the token never reaches the log"
    );
    drop(agent);
}

#[test]
fn full_block_buffer_answers_503_with_retry_after_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (api, port) = (free_port(), free_port());
    let out = blocked_sink_path(d);
    let cfg = config(d, api, port, &out, "", "batch_max_events = 10\nbuffer = { type = \"memory\", max_events = 20, when_full = \"block\" }");
    let agent = Agent::start(d, &cfg, api);
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        let uid = format!("bp-{i}");
        let (status, headers, body) =
            http_full("POST", port, "/v1/events", &[], event(&uid, i).as_bytes()).unwrap();
        match status {
            200 => accepted.push(uid),
            503 => {
                refused = Some((headers, body));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (headers, body) = refused.expect("a full buffer must answer 503");
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("backpressure"), "{body}");
    // 20 fill the buffer; the failing sink holds the batch it took first (1 to batch_max_events = 10).
    assert!(
        (21..=30).contains(&accepted.len()),
        "accepted {} before the first 503",
        accepted.len()
    );
    assert!(agent.metric("auditrail_sink_errors_total", &[("sink", "out")]) >= 1.0);
    assert_eq!(
        agent.metric("auditrail_sink_write_blocked", &[("sink", "out")]),
        1.0
    );
    // The destination comes back: everything accepted is delivered, and new requests are accepted again.
    unblock_sink(d);
    wait_for(Duration::from_secs(40), "accepted events delivered", || {
        line_count(&d.join("out")) >= accepted.len()
    });
    assert_eq!(
        http(
            "POST",
            port,
            "/v1/events",
            &[],
            event("bp-after", 0).as_bytes()
        )
        .unwrap()
        .0,
        200
    );
    wait_for(Duration::from_secs(10), "the last event", || {
        line_count(&d.join("out")) > accepted.len()
    });
    let counts = uids_in(&d.join("out"));
    assert!(accepted.iter().all(|u| counts.get(u) == Some(&1)));
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn sigterm_delivers_every_accepted_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (api, port) = (free_port(), free_port());
    let out = format!("{}/out/events.ndjson", d.display());
    let agent = Agent::start(d, &config(d, api, port, &out, "", ""), api);
    let sender = std::thread::spawn(move || {
        let mut accepted = Vec::new();
        for r in 0.. {
            let mut body = Vec::new();
            let uids: Vec<String> = (0..500).map(|i| format!("st-{r}-{i}")).collect();
            for (i, u) in uids.iter().enumerate() {
                writeln!(body, "{}", event(u, i)).unwrap();
            }
            match http("POST", port, "/v1/events", &[], &body) {
                Ok((200, _)) => accepted.extend(uids),
                _ => break,
            }
        }
        accepted
    });
    wait_for(Duration::from_secs(30), "traffic", || {
        line_count(&d.join("out")) >= 20_000
    });
    let status = agent.terminate(Duration::from_secs(40));
    assert!(status.success(), "{status}");
    let accepted = sender.join().unwrap();
    let counts = uids_in(&d.join("out"));
    let missing = accepted.iter().filter(|u| !counts.contains_key(*u)).count();
    println!(
        "SIGTERM with requests in flight: {} accepted, {} delivered, {missing} missing",
        accepted.len(),
        counts.len()
    );
    assert_eq!(
        missing, 0,
        "every event answered 200 was delivered before exit"
    );
}

#[test]
fn drop_newest_counts_every_drop_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (api, port) = (free_port(), free_port());
    let out = blocked_sink_path(d);
    let cfg = config(d, api, port, &out, "", "batch_max_events = 50\nbuffer = { type = \"memory\", max_events = 100, when_full = \"drop_newest\" }");
    let agent = Agent::start(d, &cfg, api);
    const SENT: usize = 1_000;
    for r in 0..(SENT / 100) {
        let body: String = (0..100)
            .map(|i| event(&format!("dn-{r}-{i}"), i) + "\n")
            .collect();
        let (status, body) = http("POST", port, "/v1/events", &[], body.as_bytes()).unwrap();
        assert_eq!(status, 200, "drop_newest never pushes back: {body}");
    }
    unblock_sink(d);
    let tally = |lines: &[String]| {
        let (mut delivered, mut dropped) = (0, 0);
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["event"] == "auditrail.dropped" {
                assert_eq!(v["sink"], "out");
                dropped += v["count"].as_u64().unwrap() as usize;
            } else {
                delivered += 1;
            }
        }
        (delivered, dropped)
    };
    // The drop notice can be written before the sink's last batches: wait for the whole account (or time out
    // and fail on the exact count below).
    wait_for(
        Duration::from_secs(40),
        "every event delivered or counted in an auditrail.dropped event",
        || {
            let (delivered, dropped) = tally(&lines_so_far(&d.join("out")));
            dropped > 0 && delivered + dropped >= SENT
        },
    );
    let (delivered, dropped) = tally(&lines_in(&d.join("out")));
    let metric = agent.metric("auditrail_buffer_dropped_events_total", &[("sink", "out")]) as usize;
    println!(
        "drop_newest: sent {SENT}, delivered {delivered}, dropped {dropped} (metric {metric})"
    );
    assert_eq!(delivered + dropped, SENT);
    assert_eq!(metric, dropped);
    assert!(dropped > 0);
    assert!(agent.log_text().contains("dropping new events"));
    assert!(agent.terminate(Duration::from_secs(30)).success());
}
