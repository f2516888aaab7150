//! `auditrail upload` against a real S3 implementation (moto_server, one per test on a free port): every
//! recording arrives with its exact bytes, multipart uploads survive kill -9, an unreachable store loses and
//! deletes nothing, the bandwidth limit holds, a file appended after `.done` goes up again, and one bad
//! recording (or a key holding someone else's object) never blocks the rest.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use auditrail_integration_tests::s3::{
    config, pseudo_random, sha256_hex, spooled_events, write_session, Moto, UploaderProc,
};
use auditrail_integration_tests::{free_port, wait_for};

/// Every session's expected objects: key → sha256 and size.
type Expected = BTreeMap<String, (String, u64)>;

fn expect_session(exp: &mut Expected, sid: &str, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        exp.insert(
            format!("pre/node1/{sid}/{name}"),
            (sha256_hex(bytes), bytes.len() as u64),
        );
    }
}

/// Reads back every expected object and compares its bytes.
fn assert_stored(moto: &Moto, bucket: &str, exp: &Expected) {
    for (key, (sha, size)) in exp {
        let body = moto
            .get(bucket, key)
            .unwrap_or_else(|| panic!("{key} is not in the bucket"));
        assert_eq!(body.len() as u64, *size, "{key}: size");
        assert_eq!(&sha256_hex(&body), sha, "{key}: sha256");
        let h = moto.head(bucket, key).unwrap();
        assert_eq!(h.get("x-amz-meta-sha256"), Some(sha), "{key}: metadata");
    }
}

fn state_parts_done(data: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(data.join("uploader/state.json")) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["files"]
        .as_object()
        .map(|files| {
            files
                .values()
                .filter_map(|f| f["upload"]["parts"].as_array())
                .map(|p| p.iter().filter(|x| !x.is_null()).count())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn fifty_sessions_of_mixed_sizes_arrive_intact_and_are_deleted_only_after_verification() {
    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = Moto::start(dir.path()) else {
        return;
    };
    moto.create_bucket("fifty");
    let mut up = UploaderProc::start(
        dir.path(),
        &config(
            dir.path(),
            moto.port,
            "fifty",
            "after_upload = \"delete\"\nconcurrency = 4\n",
        ),
    );
    let rec = dir.path().join("rec");
    let mut exp = Expected::new();
    let mut sids = Vec::new();
    for i in 0..50u64 {
        // Two large ones (multipart: 64 MiB and 20 MiB), the rest 1 KB to ~300 KB.
        let size = match i {
            7 => 64 << 20,
            31 => 20 << 20,
            _ => 1000 + (i as usize * 6151) % 300_000,
        };
        let sid = format!("s{i:02}");
        let files = write_session(&rec, &sid, pseudo_random(i, size));
        expect_session(&mut exp, &sid, &files);
        sids.push(sid);
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    // While it runs: whatever is gone locally must already be in the bucket, complete.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let gone: Vec<&String> = sids
            .iter()
            .filter(|s| !rec.join(format!("{s}.raw")).exists())
            .collect();
        if !gone.is_empty() {
            let listed: BTreeMap<String, u64> = moto.list("fifty").into_iter().collect();
            for s in &gone {
                for f in ["raw", "cast"] {
                    let key = format!("pre/node1/{s}/{s}.{f}");
                    assert_eq!(
                        listed.get(&key),
                        Some(&exp[&key].1),
                        "{s} deleted locally before {key} was stored"
                    );
                }
            }
        }
        if gone.len() == sids.len() {
            break;
        }
        assert!(up.alive(), "the uploader exited: {}", up.log_text());
        assert!(
            Instant::now() < deadline,
            "not all uploaded in time ({} of 50): {}",
            gone.len(),
            up.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_stored(&moto, "fifty", &exp);
    let listed = moto.list("fifty");
    assert_eq!(listed.len(), exp.len(), "no other objects: {listed:?}");
    assert!(moto.multipart_uploads("fifty").is_empty());
    // One success event per session, naming each object's digest.
    wait_for(Duration::from_secs(10), "50 events", || {
        spooled_events(&rec).len() >= 50
    });
    let events = spooled_events(&rec);
    assert_eq!(events.len(), 50, "{events:?}");
    for e in &events {
        assert_eq!(e["code"], "T2005I", "{e}");
        for o in e["objects"].as_array().unwrap() {
            let key = o["key"].as_str().unwrap();
            assert_eq!(o["sha256"].as_str().unwrap(), exp[key].0, "{e}");
            assert_eq!(o["size"].as_u64().unwrap(), exp[key].1, "{e}");
        }
        assert!(e["url"]
            .as_str()
            .unwrap()
            .starts_with("s3://fifty/pre/node1/"));
    }
    // .done went with the rest.
    assert!(!rec.join("s00.done").exists());
}

#[test]
fn kill_9_during_a_multipart_upload_then_restart_completes_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = Moto::start(dir.path()) else {
        return;
    };
    moto.create_bucket("crash");
    // 40 MiB at 8 MiB/s in 5 MiB parts: about five seconds, so the kill lands mid-upload.
    let cfg = config(
        dir.path(),
        moto.port,
        "crash",
        "part_size = \"5MiB\"\nmultipart_threshold = \"5MiB\"\nmax_bytes_per_sec = \"8MiB\"\npart_concurrency = 2\n",
    );
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let mut exp = Expected::new();
    let files = write_session(&rec, "big", pseudo_random(99, 40 << 20));
    expect_session(&mut exp, "big", &files);
    let mut up = UploaderProc::start(dir.path(), &cfg);
    let data = dir.path().join("data");
    wait_for(Duration::from_secs(30), "two parts recorded", || {
        state_parts_done(&data) >= 2
    });
    up.kill9();
    let open = moto.multipart_uploads("crash");
    assert_eq!(open.len(), 1, "one upload left open by the kill: {open:?}");
    assert!(moto.head("crash", "pre/node1/big/big.raw").is_none());
    let up2 = UploaderProc::start(dir.path(), &cfg);
    wait_for(Duration::from_secs(60), "the event", || {
        !spooled_events(&rec).is_empty()
    });
    assert!(
        up2.log_text().contains("continuing the multipart upload"),
        "the restart continued the upload: {}",
        up2.log_text()
    );
    assert_stored(&moto, "crash", &exp);
    assert_eq!(moto.list("crash").len(), 2, "{:?}", moto.list("crash"));
    assert!(
        moto.multipart_uploads("crash").is_empty(),
        "{:?}",
        moto.multipart_uploads("crash")
    );
    let events = spooled_events(&rec);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["code"], "T2005I");
}

#[test]
fn a_store_that_is_down_for_a_while_loses_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    if auditrail_integration_tests::s3::moto_bin_dir().is_none() {
        return;
    }
    let port = free_port();
    // Few attempts: an unreachable store must not count towards quarantine.
    let cfg = config(
        dir.path(),
        port,
        "later",
        "after_upload = \"delete\"\nmax_attempts = 2\n",
    );
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let mut exp = Expected::new();
    for i in 0..5u64 {
        let sid = format!("d{i}");
        let files = write_session(&rec, &sid, pseudo_random(i, 10_000 + i as usize));
        expect_session(&mut exp, &sid, &files);
    }
    let mut up = UploaderProc::start(dir.path(), &cfg);
    std::thread::sleep(Duration::from_secs(5));
    assert!(up.alive(), "{}", up.log_text());
    for i in 0..5 {
        assert!(
            rec.join(format!("d{i}.raw")).exists(),
            "nothing deleted while the store is down"
        );
    }
    assert!(
        !rec.join("quarantine").exists(),
        "a down store quarantines nothing"
    );
    assert!(
        spooled_events(&rec).is_empty(),
        "no event while nothing is stored"
    );
    let moto = Moto::start_on(dir.path(), port);
    moto.create_bucket("later");
    wait_for(
        Duration::from_secs(30),
        "everything uploaded and deleted",
        || (0..5).all(|i| !rec.join(format!("d{i}.raw")).exists()),
    );
    assert_stored(&moto, "later", &exp);
    let events = spooled_events(&rec);
    assert_eq!(events.len(), 5);
    assert!(events.iter().all(|e| e["code"] == "T2005I"));
    assert!(
        up.log_text().contains("retrying"),
        "the outage was reported"
    );
}

#[test]
fn the_bandwidth_limit_holds_within_ten_percent_over_forty_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = Moto::start(dir.path()) else {
        return;
    };
    moto.create_bucket("slow");
    let rate: u64 = 1 << 20;
    let cfg = config(
        dir.path(),
        moto.port,
        "slow",
        "max_bytes_per_sec = \"1MiB\"\npart_size = \"5MiB\"\n",
    );
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    // 40 MiB (multipart) through the one limit: at 1 MiB/s about 40 s, so that the work around the transfer
    // (hashing the file first, HEAD before and after) weighs a few percent, not the 10 % the bound allows.
    let mut exp = Expected::new();
    let mut total = 0u64;
    let files = write_session(&rec, "bw", pseudo_random(5, 40 << 20));
    total += files.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
    expect_session(&mut exp, "bw", &files);
    let up = UploaderProc::start(dir.path(), &cfg);
    let start = Instant::now();
    wait_for(Duration::from_secs(120), "the upload", || {
        !spooled_events(&rec).is_empty()
    });
    let secs = start.elapsed().as_secs_f64();
    let measured = total as f64 / secs;
    assert!(
        (rate as f64 * 0.9..=rate as f64 * 1.1).contains(&measured),
        "{total} bytes in {secs:.2}s = {measured:.0} B/s, limit {rate} B/s: {}",
        up.log_text()
    );
    assert_stored(&moto, "slow", &exp);
}

#[test]
fn a_file_appended_after_done_is_uploaded_again_and_the_event_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = Moto::start(dir.path()) else {
        return;
    };
    moto.create_bucket("append");
    let cfg = config(dir.path(), moto.port, "append", "");
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let files = write_session(&rec, "ap", b"first part\n".to_vec());
    let _up = UploaderProc::start(dir.path(), &cfg);
    wait_for(Duration::from_secs(20), "the first event", || {
        spooled_events(&rec).len() == 1
    });
    let first = &spooled_events(&rec)[0];
    assert!(first.get("reupload").is_none(), "{first}");
    let mut raw = files[0].1.clone();
    raw.extend_from_slice(b"written after .done\n");
    // A different mtime even on a coarse clock.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::OpenOptions::new()
        .append(true)
        .open(rec.join("ap.raw"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"written after .done\n"))
        .unwrap();
    wait_for(Duration::from_secs(20), "the second event", || {
        spooled_events(&rec).len() == 2
    });
    let second = &spooled_events(&rec)[1];
    assert_eq!(second["code"], "T2005I");
    assert_eq!(second["reupload"], true, "{second}");
    assert!(
        second["reupload_reason"]
            .as_str()
            .unwrap()
            .contains("ap.raw"),
        "{second}"
    );
    let raw_obj = second["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["file"] == "ap.raw")
        .unwrap();
    assert_eq!(raw_obj["sha256"].as_str().unwrap(), sha256_hex(&raw));
    assert_eq!(
        moto.get("append", "pre/node1/ap/ap.raw").unwrap(),
        raw,
        "the object holds the whole file now"
    );
}

#[test]
fn one_unreadable_recording_and_a_foreign_object_block_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = Moto::start(dir.path()) else {
        return;
    };
    moto.create_bucket("mixed");
    let foreign = b"someone else's object".to_vec();
    moto.put("mixed", "pre/node1/m01/m01.cast", &foreign);
    let cfg = config(
        dir.path(),
        moto.port,
        "mixed",
        "after_upload = \"delete\"\nmax_attempts = 3\n",
    );
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let mut exp = Expected::new();
    for i in 0..20u64 {
        let sid = format!("m{i:02}");
        let files = write_session(&rec, &sid, pseudo_random(i + 100, 2000 + i as usize * 100));
        if i == 0 {
            // Unreadable whoever runs the test (root reads a mode-000 file): not a regular file.
            std::fs::remove_file(rec.join("m00.raw")).unwrap();
            std::fs::create_dir(rec.join("m00.raw")).unwrap();
        } else if i != 1 {
            expect_session(&mut exp, &sid, &files);
        }
    }
    let up = UploaderProc::start(dir.path(), &cfg);
    wait_for(Duration::from_secs(60), "20 events", || {
        spooled_events(&rec).len() >= 20
    });
    let events = spooled_events(&rec);
    let failed: Vec<&serde_json::Value> = events.iter().filter(|e| e["code"] == "T2005W").collect();
    let ok: Vec<&serde_json::Value> = events.iter().filter(|e| e["code"] == "T2005I").collect();
    assert_eq!(ok.len(), 18, "{events:?}");
    assert_eq!(failed.len(), 2, "{events:?}");
    let by_sid: BTreeMap<&str, &serde_json::Value> = failed
        .iter()
        .map(|e| (e["sid"].as_str().unwrap(), *e))
        .collect();
    let bad = by_sid["m00"];
    assert!(bad["error"].as_str().unwrap().contains("m00.raw"), "{bad}");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("not a regular file"),
        "{bad}"
    );
    assert_eq!(bad["attempts"], 3);
    let conflict = by_sid["m01"];
    assert!(
        conflict["error"]
            .as_str()
            .unwrap()
            .contains("other content"),
        "{conflict}"
    );
    assert!(bad.get("url").is_none() && conflict.get("url").is_none());
    // Quarantined whole, not deleted.
    for s in ["m00", "m01"] {
        let q = rec.join("quarantine").join(s);
        assert!(q.join(format!("{s}.raw")).exists(), "{s} quarantined");
        assert!(q.join(format!("{s}.cast")).exists() && q.join(format!("{s}.done")).exists());
    }
    assert_eq!(
        moto.get("mixed", "pre/node1/m01/m01.cast").unwrap(),
        foreign,
        "the foreign object is untouched"
    );
    assert!(moto.head("mixed", "pre/node1/m00/m00.raw").is_none());
    assert_stored(&moto, "mixed", &exp);
    for i in 2..20 {
        assert!(
            !rec.join(format!("m{i:02}.raw")).exists(),
            "verified sessions deleted"
        );
    }
    assert!(up.log_text().contains("quarantined"), "{}", up.log_text());
}
