//! `auditrail verify --recordings s3://bucket/prefix` through the real binaries against a real S3
//! implementation (moto_server): the uploader stores sessions and spools its `session.upload` events, the
//! events go through the real agent with `[integrity]` on (its http source, its file sink), and verify reads
//! the sink's output and the bucket. An object replaced, deleted or added behind the uploader's back, and an
//! upload event edited in the chained output, are each named; the untouched sessions stay intact.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use auditrail_integration_tests::s3::{config, pseudo_random, spooled_events, write_session, Moto};
use auditrail_integration_tests::*;
use serde_json::Value;

/// `auditrail verify --key … --recordings URL --json INPUT…` with the store reached through the standard
/// AWS environment: exit code and report.
fn verify_stored(d: &Path, moto: &Moto, url: &str, input: &Path) -> (i32, Value) {
    let out = Command::new(binary())
        .arg("verify")
        .arg("--key")
        .arg(d.join("keys/auditrail.pub"))
        .args(["--recordings", url, "--json"])
        .arg(input)
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The verdict of the object at `url` in a report, and whether it is ok.
fn verdict(report: &Value, url: &str) -> (String, bool) {
    let o = report["stored"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["url"] == url)
        .unwrap_or_else(|| panic!("{url} is not in the report: {report:#}"));
    (
        o["verdict"].as_str().unwrap().to_string(),
        o["ok"].as_bool().unwrap(),
    )
}

#[test]
fn verify_checks_stored_objects_against_the_chained_upload_events() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(moto) = Moto::start(d) else {
        return;
    };
    moto.create_bucket("vstore");
    let keygen = Command::new(binary())
        .args(["keygen", "--out"])
        .arg(d.join("keys"))
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");

    // Three sessions, one of them multipart (above the 5 MiB threshold set here), uploaded once.
    let rec = d.join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    write_session(&rec, "s-a", pseudo_random(1, 200_000));
    write_session(&rec, "s-b", pseudo_random(2, 3_000));
    write_session(&rec, "s-c", pseudo_random(3, 6 << 20));
    let cfg = config(
        d,
        moto.port,
        "vstore",
        "multipart_threshold = \"5MiB\"\npart_size = \"5MiB\"",
    );
    std::fs::write(d.join("upload.toml"), &cfg).unwrap();
    let up = Command::new(binary())
        .args(["upload", "--once", "--config"])
        .arg(d.join("upload.toml"))
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let events = spooled_events(&rec);
    assert_eq!(events.len(), 3, "{events:?}");

    // The events through the agent: chained and sealed.
    let (agent, port) = integrity::sealing_http_agent(d, &d.join("agent"));
    integrity::post_events(port, &events);
    let out = d.join("out/all.ndjson");
    wait_for(
        Duration::from_secs(30),
        "the upload events and a seal after them",
        || {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            text.matches("\"session.upload\"").count() == 3
                && text
                    .rfind("\"session.upload\"")
                    .is_some_and(|at| text[at..].contains("\"event\":\"auditrail.seal\""))
        },
    );
    assert!(agent.terminate(Duration::from_secs(20)).success());

    let url = |sid: &str, file: &str| format!("s3://vstore/pre/node1/{sid}/{file}");
    let (code, rep) = verify_stored(d, &moto, "s3://vstore/pre", &out);
    assert_eq!(code, 0, "{rep:#}");
    let objects = rep["stored"]["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 6, "{rep:#}");
    assert!(objects.iter().all(|o| o["verdict"] == "intact"), "{rep:#}");

    // Behind the uploader's back: one object replaced, one deleted, one added.
    moto.put("vstore", "pre/node1/s-a/s-a.raw", b"replaced content");
    let (st, _, _) = moto
        .request("DELETE", "/vstore/pre/node1/s-b/s-b.cast", &[], b"")
        .unwrap();
    assert_eq!(st, 204);
    moto.put(
        "vstore",
        "pre/node1/stray/stray.raw",
        b"nobody uploaded this",
    );
    let (code, rep) = verify_stored(d, &moto, "s3://vstore/pre", &out);
    assert_eq!(code, 1, "{rep:#}");
    assert_eq!(
        verdict(&rep, &url("s-a", "s-a.raw")),
        ("altered".into(), false)
    );
    assert_eq!(
        verdict(&rep, &url("s-b", "s-b.cast")),
        ("missing".into(), false)
    );
    assert_eq!(
        verdict(&rep, &url("stray", "stray.raw")),
        ("unrecorded".into(), false)
    );
    for (sid, file) in [("s-a", "s-a.cast"), ("s-b", "s-b.raw"), ("s-c", "s-c.raw")] {
        assert_eq!(verdict(&rep, &url(sid, file)), ("intact".into(), true));
    }

    // An upload event edited in the chained output (s-c's digests swapped for the altered object's):
    // its hash no longer matches, so it vouches for nothing, and s-c's objects are unverifiable.
    let text = std::fs::read_to_string(&out).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("\"session.upload\"") && l.contains("\"sid\":\"s-c\""))
        .unwrap();
    let sha_c = events.iter().find(|e| e["sid"] == "s-c").unwrap()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["file"] == "s-c.raw")
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let edited = text.replace(line, &line.replace(&sha_c, &"0".repeat(64)));
    assert_ne!(edited, text);
    let tampered = d.join("tampered.ndjson");
    std::fs::write(&tampered, edited).unwrap();
    let (code, rep) = verify_stored(d, &moto, "s3://vstore/pre", &tampered);
    assert_eq!(code, 1, "{rep:#}");
    assert_eq!(
        verdict(&rep, &url("s-c", "s-c.raw")),
        ("unverifiable".into(), false)
    );
    assert_eq!(
        verdict(&rep, &url("s-b", "s-b.raw")),
        ("intact".into(), true)
    );

    // A narrower prefix checks only what is under it; the rest is counted as outside.
    let (code, rep) = verify_stored(d, &moto, "s3://vstore/pre/node1/s-c", &out);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(rep["stored"]["objects"].as_array().unwrap().len(), 2);
    assert_eq!(rep["stored"]["outside"], 4);
}
