//! The splunk_hec source against Splunk's published HEC documentation, through the real binary, with curl as
//! the HEC client (as the documentation's own examples are written): every fixture in
//! `integration-tests/fixtures/splunk_hec/` is one documented request shape and the exact answer Splunk
//! documents for it (status and body), plus how many of its events must reach the sink (none for a refused
//! request: a request is taken whole or not at all) and, for audit events, the exact bytes that must arrive.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use auditrail_integration_tests::*;

const TOKEN: &str = "B5A79AAD-D822-46CC-80D1-819F80D7BFB0";

struct Hec {
    agent: Agent,
    port: u16,
    out: PathBuf,
    expected: usize,
}

fn start(dir: &Path, extra: &str) -> Hec {
    std::fs::create_dir_all(dir).unwrap();
    let (api, port) = (free_port(), free_port());
    let out = dir.join("out");
    let config = format!(
        r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.hec]
type = "splunk_hec"
address = "127.0.0.1:{port}"
tokens = ["{TOKEN}"]
{extra}
[sinks.out]
type = "file"
inputs = ["hec"]
path = "{o}/events.ndjson"
"#,
        d = dir.display(),
        o = out.display()
    );
    Hec {
        agent: Agent::start(dir, &config, api),
        port,
        out,
        expected: 0,
    }
}

/// Sends the fixture's request with curl; returns the status and body.
fn curl(curl: &Path, port: u16, req: &serde_json::Value, scratch: &Path) -> (u16, String) {
    let mut cmd = Command::new(curl);
    cmd.args(["-s", "-S", "-o", "-", "-w", "\n%{http_code}", "-X"])
        .arg(req["method"].as_str().unwrap());
    for (k, v) in req["headers"].as_object().unwrap() {
        cmd.arg("-H").arg(format!("{k}: {}", v.as_str().unwrap()));
    }
    if let Some(body) = req["body"].as_str() {
        let file = scratch.join("body");
        if req["gzip"].as_bool() == Some(true) {
            std::fs::write(scratch.join("plain"), body).unwrap();
            let gz = Command::new("gzip")
                .arg("-c")
                .arg(scratch.join("plain"))
                .output()
                .unwrap();
            assert!(gz.status.success());
            std::fs::write(&file, gz.stdout).unwrap();
        } else {
            std::fs::write(&file, body).unwrap();
        }
        cmd.arg("-H")
            .arg("Content-Type: application/json")
            .arg("--data-binary")
            .arg(format!("@{}", file.display()));
    }
    cmd.arg(format!(
        "http://127.0.0.1:{port}{}",
        req["path"].as_str().unwrap()
    ));
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

#[test]
fn every_documented_request_is_answered_as_documented() {
    let Some(curl_bin) = curl_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut agents: HashMap<&str, Hec> = HashMap::new();
    agents.insert("open", start(&d.join("open"), ""));
    agents.insert(
        "strict",
        start(&d.join("strict"), "other_events = \"reject\""),
    );
    agents.insert(
        "acks",
        start(&d.join("acks"), "acknowledgements = { enabled = true }"),
    );
    let fixtures_dir = workspace_root().join("integration-tests/fixtures/splunk_hec");
    let mut fixtures: Vec<_> = std::fs::read_dir(&fixtures_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 30, "fixtures found: {}", fixtures.len());
    for path in &fixtures {
        let f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let name = f["name"].as_str().unwrap();
        let hec = agents.get_mut(f["agent"].as_str().unwrap()).unwrap();
        let want_status = f["response"]["status"].as_u64().unwrap() as u16;
        let want_body = f["response"]["body"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (status, body) = loop {
            let got = curl(&curl_bin, hec.port, &f["request"], d);
            let done = got == (want_status, want_body.to_string());
            if done
                || f["request"]["until_match"].as_bool() != Some(true)
                || Instant::now() > deadline
            {
                break got;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            (status, body.as_str()),
            (want_status, want_body),
            "{name} ({}): {}\n{}",
            path.display(),
            f["doc"],
            hec.agent.log_text()
        );
        hec.expected += f["events"].as_u64().unwrap() as usize;
        let expected = hec.expected;
        let out = hec.out.clone();
        wait_for(
            Duration::from_secs(10),
            &format!("{name}: {expected} events in the sink"),
            || line_count(&out) >= expected,
        );
        if let Some(line) = f["line"].as_str() {
            assert!(
                lines_in(&out).iter().any(|l| l == line),
                "{name}: the audit event arrives byte for byte: {line}"
            );
        }
        println!("{name}: {status} {body}");
    }
    for (name, hec) in &agents {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            line_count(&hec.out),
            hec.expected,
            "agent {name}: exactly the accepted events, none of a refused request"
        );
        let refused = metric_sum(
            &hec.agent.metrics(),
            "auditrail_source_splunk_hec_requests_total",
            &[],
        );
        assert!(refused > 0.0, "requests are counted");
    }
}

#[test]
fn server_busy_and_held_acks_from_the_fault_switch() {
    let (Some(bin), Some(curl_bin)) = (crash_binary(), curl_binary()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let faults = d.join("faults");
    let (api, port) = (free_port(), free_port());
    let config = format!(
        r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.hec]
type = "splunk_hec"
address = "127.0.0.1:{port}"
tokens = ["{TOKEN}"]
acknowledgements = {{ enabled = true }}
[sinks.out]
type = "file"
inputs = ["hec"]
path = "{d}/out/events.ndjson"
"#,
        d = d.display()
    );
    std::fs::write(&faults, "busy").unwrap();
    let _agent = Agent::start_binary(&bin, d, &config, api, |c| {
        c.env("AUDITRAIL_TEST_FAULTS_FILE", &faults);
    });
    let ch = "FE0ECFAD-13D5-401B-847D-77833BD77131";
    let post = serde_json::json!({"method": "POST", "path": format!("/services/collector/event?channel={ch}"),
        "headers": {"Authorization": format!("Splunk {TOKEN}")}, "body": "{\"event\":\"hello\"}"});
    let health =
        serde_json::json!({"method": "GET", "path": "/services/collector/health", "headers": {}});
    assert_eq!(
        curl(&curl_bin, port, &post, d),
        (503, r#"{"text":"Server is busy","code":9}"#.into()),
        "Troubleshoot HEC: code 9 Server is busy (503)"
    );
    assert_eq!(
        curl(&curl_bin, port, &health, d),
        (
            503,
            r#"{"text":"HEC is unhealthy, queues are full","code":18}"#.into()
        ),
        "Troubleshoot HEC: code 18"
    );
    std::fs::write(&faults, "hold_acks").unwrap();
    assert_eq!(
        curl(&curl_bin, port, &post, d),
        (200, r#"{"text":"Success","code":0,"ackId":0}"#.into())
    );
    let ack = serde_json::json!({"method": "POST", "path": format!("/services/collector/ack?channel={ch}"),
        "headers": {"Authorization": format!("Splunk {TOKEN}")}, "body": "{\"acks\":[0]}"});
    wait_for(Duration::from_secs(5), "the event in the sink", || {
        line_count(&d.join("out")) == 1
    });
    assert_eq!(
        curl(&curl_bin, port, &ack, d),
        (200, r#"{"acks":{"0":false}}"#.into())
    );
    std::fs::write(&faults, "").unwrap();
    assert_eq!(
        curl(&curl_bin, port, &ack, d),
        (200, r#"{"acks":{"0":true}}"#.into())
    );
}
