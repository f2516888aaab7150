//! The integrity chain end to end: the agent chains and seals what two sources read, a file sink stores it, and
//! `auditrail verify` finds exactly what was done to the stored output — and nothing on an untouched or shuffled
//! copy. Also: kill -9 with a disk buffer keeps the chain whole, a lost chain state is announced, and key files
//! are handled with care.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use auditrail_core::integrity::chain::{content_digest, link, read_field, Integrity};
use auditrail_core::integrity::keys::EpochKey;
use auditrail_core::integrity::seal::Seal;
use auditrail_integration_tests::integrity::{
    assert_clean, config, ranges, rich_event, seqs, stream, verify, write_rich,
};
use auditrail_integration_tests::*;
use serde_json::Value;

/// The chain field's text and the body before it, for a line whose field is last.
fn split_field(line: &str) -> (&str, &str) {
    let at = line.rfind(",\"auditrail.integrity\":").unwrap();
    (&line[..at], &line[at..])
}

#[test]
fn tamper_matrix_is_located_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 10_000;
    write_rich(&d.join("in/a.log"), "a-", N);
    write_rich(&d.join("in/b.log"), "b-", N);
    let api = free_port();
    let cfg = config(
        d,
        api,
        &["a", "b"],
        "{ type = \"memory\", max_events = 20000 }",
        "seal_interval = \"200ms\"\nseal_events = 1000",
    );
    let agent = Agent::start(d, &cfg, api);
    wait_for(Duration::from_secs(60), "20,000 events out", || {
        uids_so_far(&d.join("out")).len() >= 2 * N
    });
    // An intruder's copy of the key directory, taken after some epochs.
    wait_for(Duration::from_secs(30), "epoch 3", || {
        agent.metric("auditrail_integrity_epoch", &[]) >= 3.0
    });
    std::fs::copy(d.join("keys/auditrail.key"), d.join("stolen.key")).unwrap();
    wait_for(Duration::from_secs(30), "two more epochs", || {
        agent.metric("auditrail_integrity_epoch", &[]) >= 5.0
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());

    let public = d.join("keys/auditrail.pub");
    let out = d.join("out/all.ndjson");
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    // Untouched, then shuffled: clean.
    let (code, report) = verify(&public, &[&out], None);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    for name in ["node-1/a", "node-1/b"] {
        let s = stream(&report, name);
        assert_clean(s);
        assert_eq!(s["duplicates"], 0);
        assert!(s["verified"].as_u64().unwrap() > N as u64);
    }
    let mut shuffled = lines.clone();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..shuffled.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        shuffled.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let shuffled_path = d.join("shuffled.ndjson");
    std::fs::write(&shuffled_path, shuffled.join("\n") + "\n").unwrap();
    let (code, report) = verify(&public, &[&shuffled_path], None);
    assert_eq!(code, 0, "shuffled: {report}");

    // Index the lines by stream and seq.
    let mut by: BTreeMap<(String, u64), usize> = BTreeMap::new();
    let mut seals: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (n, l) in lines.iter().enumerate() {
        let f = read_field(l.as_bytes()).unwrap();
        if l.starts_with("{\"event\":\"auditrail.seal\"") {
            seals.entry(f.stream.clone()).or_default().push(f.seq);
        }
        by.insert((f.stream, f.seq), n);
    }
    let a = "node-1/a".to_string();
    let b = "node-1/b".to_string();
    let is_seal = |s: &str, q: u64| seals[s].contains(&q);
    // Plain events of stream a, far from each other.
    let pick = |want: u64| -> u64 {
        (want..)
            .find(|&q| !is_seal(&a, q) && !is_seal(&a, q - 1) && !is_seal(&a, q + 1))
            .unwrap()
    };
    let (deleted, altered, swap1, swap2, duplicated, forged) = (
        pick(101),
        pick(1202),
        pick(2303),
        pick(3404),
        pick(4505),
        pick(5606),
    );
    let seal_a = seals[&a][seals[&a].len() / 2];
    let stolen = EpochKey::load(&d.join("stolen.key")).unwrap();
    // A seal of stream b from an epoch before the stolen key's, not the last one.
    let seal_b = *seals[&b]
        .iter()
        .find(|&&q| {
            let s = Seal::from_event(lines[by[&(b.clone(), q)]].as_bytes())
                .unwrap()
                .unwrap();
            s.epoch < stolen.epoch
        })
        .expect("a seal from an early epoch");
    assert!(seal_b < *seals[&b].last().unwrap());

    let line = |s: &String, q: u64| lines[by[&(s.clone(), q)]].to_string();
    let mut edited: Vec<String> = Vec::new();
    let skip: Vec<usize> = [(a.clone(), deleted), (a.clone(), seal_a)]
        .iter()
        .map(|k| by[k])
        .collect();
    for (n, l) in lines.iter().enumerate() {
        if skip.contains(&n) {
            continue;
        }
        let f = read_field(l.as_bytes()).unwrap();
        let mut l = l.to_string();
        if f.stream == a && f.seq == altered {
            assert!(l.contains("\"login\":\"dba\""));
            l = l.replacen("\"login\":\"dba\"", "\"login\":\"root\"", 1);
        } else if f.stream == a && (f.seq == swap1 || f.seq == swap2) {
            let other = line(&a, if f.seq == swap1 { swap2 } else { swap1 });
            l = format!("{}{}", split_field(&other).0, split_field(&l).1);
        } else if f.stream == b && f.seq == seal_b {
            // Re-sign the old seal as the stolen epoch: a valid signature by a genuine, certified key.
            let mut s = Seal::from_event(l.as_bytes()).unwrap().unwrap();
            s.epoch = stolen.epoch;
            s.epoch_start = stolen.epoch_start.clone();
            s.epoch_pub = stolen.public();
            s.epoch_cert = stolen.cert;
            s.next_pub = stolen.next_public();
            s.sig = stolen.sign(&s.message());
            assert!(s.signature_ok());
            let mut v: Value = serde_json::from_str(&l).unwrap();
            let fresh: Value = serde_json::from_slice(&s.to_event()).unwrap();
            v["seal"] = fresh["seal"].clone();
            l = serde_json::to_string(&v).unwrap();
        }
        edited.push(l.clone());
        if f.stream == a && f.seq == duplicated {
            edited.push(l.clone());
        }
        if f.stream == a && f.seq == forged {
            // Same place in the chain, other content, hash computed as the agent would.
            let body = split_field(&l)
                .0
                .replacen("\"login\":\"dba\"", "\"login\":\"mallory\"", 1)
                + "}";
            let digest = content_digest(body.as_bytes(), &mut Vec::new()).unwrap();
            let field = Integrity {
                stream: a.clone(),
                seq: f.seq,
                prev: f.prev,
                hash: link(&a, f.seq, &f.prev, &digest),
            };
            let mut member = Vec::new();
            field.write_member(&mut member);
            let forged_line = format!(
                "{},{}}}",
                &body[..body.len() - 1],
                String::from_utf8(member).unwrap()
            );
            edited.push(forged_line);
        }
    }
    let tampered = d.join("tampered.ndjson");
    std::fs::write(&tampered, edited.join("\n") + "\n").unwrap();
    let (code, report) = verify(&public, &[&tampered], None);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["ok"], false);
    let sa = stream(&report, &a);
    let mut gaps = vec![(deleted, deleted), (seal_a, seal_a)];
    gaps.sort();
    assert_eq!(ranges(&sa["gaps"]), gaps, "{sa}");
    let mut alt = vec![altered, swap1, swap2];
    alt.sort();
    assert_eq!(seqs(&sa["altered"]), alt, "{sa}");
    assert_eq!(seqs(&sa["conflicts"]), vec![forged], "{sa}");
    assert_eq!(sa["duplicates"], 1, "{sa}");
    assert_eq!(seqs(&sa["bad_seals"]), Vec::<u64>::new(), "{sa}");
    assert_eq!(seqs(&sa["broken_links"]), Vec::<u64>::new(), "{sa}");
    let sb = stream(&report, &b);
    assert_eq!(seqs(&sb["bad_seals"]), vec![seal_b], "{sb}");
    for key in ["gaps", "altered", "conflicts", "broken_links"] {
        assert!(sb[key].as_array().unwrap().is_empty(), "{key} in {sb}");
    }
    assert_eq!(sb["duplicates"], 0);
    println!(
        "tamper matrix: deleted {deleted}, altered {altered}, swapped {swap1}/{swap2}, duplicated {duplicated}, forged {forged}, seal deleted {seal_a} (a), seal re-signed {seal_b} (b, as epoch {})",
        stolen.epoch
    );

    // The same output on stdin verifies as well.
    let (code, _) = verify(&public, &[], Some(text.as_bytes()));
    assert_eq!(code, 0);
}

#[test]
fn five_kill_9s_with_a_disk_buffer_leave_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 100_000;
    write_rich(&d.join("in/a.log"), "k-", N);
    let api = free_port();
    let cfg = config(
        d,
        api,
        &["a"],
        "{ type = \"disk\", max_size = \"256MiB\", fsync_interval = \"20ms\" }",
        "seal_interval = \"300ms\"\nseal_events = 2000",
    );
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..5 {
        let agent = Agent::start(d, &cfg, api);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % 300));
        agent.kill9();
        println!(
            "kill -9 #{round}: {} lines out so far",
            line_count(&d.join("out"))
        );
    }
    let (lost, dups, counts) = recover_and_tally(d, &cfg, api, "k-", N);
    println!(
        "5 x kill -9 with integrity: delivered {} distinct, duplicated {dups}, lost {lost}",
        counts.len()
    );
    assert_eq!(lost, 0);
    let (code, report) = verify(&d.join("keys/auditrail.pub"), &[&d.join("out")], None);
    assert_eq!(code, 0, "{report}");
    let s = stream(&report, "node-1/a");
    assert_clean(s);
    println!(
        "verify after 5 x kill -9: {} verified, {} duplicates, {} unsealed",
        s["verified"], s["duplicates"], s["unsealed"]
    );
}

#[test]
fn a_lost_chain_state_is_announced_not_restarted_silently() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    write_rich(&d.join("in/a1.log"), "r-", 500);
    let api = free_port();
    let cfg = config(
        d,
        api,
        &["a"],
        "{ type = \"memory\" }",
        "seal_interval = \"200ms\"",
    );
    let agent = Agent::start(d, &cfg, api);
    wait_for(Duration::from_secs(30), "500 events", || {
        uids_so_far(&d.join("out")).len() >= 500
    });
    assert!(agent.terminate(Duration::from_secs(20)).success());
    std::fs::remove_file(d.join("data/integrity/a.chain")).unwrap();
    write_rich(&d.join("in/a2.log"), "s-", 500);
    let agent = Agent::start(d, &cfg, api);
    wait_for(Duration::from_secs(30), "1000 events", || {
        uids_so_far(&d.join("out")).len() >= 1000
    });
    assert!(agent.metric("auditrail_integrity_resets_total", &[]) == 1.0);
    assert!(agent.log_text().contains("integrity chain state lost"));
    assert!(agent.terminate(Duration::from_secs(20)).success());
    let lines = lines_in(&d.join("out"));
    let resets: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"event\":\"auditrail.integrity_reset\""))
        .collect();
    assert_eq!(resets.len(), 1);
    let reset: Value = serde_json::from_str(resets[0]).unwrap();
    assert_eq!(reset["previous_stream"], "node-1/a");
    let new_stream = reset["new_stream"].as_str().unwrap();
    assert!(new_stream.starts_with("node-1/a~"), "{new_stream}");
    assert_eq!(reset["auditrail.integrity"]["seq"], 1);
    assert_eq!(reset["auditrail.integrity"]["stream"], new_stream);
    // Both segments verify on their own; nothing was given a seq twice.
    let (code, report) = verify(&d.join("keys/auditrail.pub"), &[&d.join("out")], None);
    assert_eq!(code, 0, "{report}");
    assert_clean(stream(&report, "node-1/a"));
    assert_clean(stream(&report, new_stream));
}

#[test]
fn key_files_are_handled_with_care() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let api = free_port();
    let cfg = config(d, api, &["a"], "{ type = \"memory\" }", "");
    // Missing: created, and the log says where the public key is.
    let agent = Agent::start(d, &cfg, api);
    wait_for(Duration::from_secs(10), "key created", || {
        d.join("keys/auditrail.pub").exists()
    });
    let key = d.join("keys/auditrail.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let log = agent.log_text();
    assert!(log.contains("created the integrity key pair"), "{log}");
    assert!(log.contains("auditrail.pub"), "{log}");
    assert!(agent.terminate(Duration::from_secs(20)).success());

    let run = |cfg: &str| {
        let path = d.join("c.toml");
        std::fs::write(&path, cfg).unwrap();
        Command::new(binary())
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    // Loose permissions: refused, with the fix in the message.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("must not be accessible to group or others") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The public key alone cannot seal: the agent refuses to start with it.
    let public_cfg = cfg.replace("keys/auditrail.key", "keys/pub-as-key");
    std::fs::copy(d.join("keys/auditrail.pub"), d.join("keys/pub-as-key")).unwrap();
    std::fs::set_permissions(
        d.join("keys/pub-as-key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = run(&public_cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("public key") && err.contains("secret key"),
        "{err}"
    );
}

/// Verifies `--elasticsearch` against the real server: what the chained events look like after `_bulk` and
/// `_source` (re-serialized or not) must verify clean, and an edit made in the index must be found.
#[test]
fn events_read_back_from_elasticsearch_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(os) = Osmem::start(d) else { return };
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 5_000;
    // Past 2^53 but inside Elasticsearch's `long` (a larger integer is a mapping error there, dead-lettered).
    let text: String = (0..N)
        .map(|i| rich_event("e-", i).replace("123456789012345678901", "9007199254740993") + "\n")
        .collect();
    std::fs::write(d.join("in/a.log"), text).unwrap();
    let api = free_port();
    let cfg = format!(
        r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.a]
type = "file"
include = ["{d}/in/a*.log"]
poll_interval = "20ms"
[sinks.es]
type = "elasticsearch"
inputs = ["a"]
endpoint = "{url}"
index = "audit-chain"
batch = {{ max_events = 500, timeout = "100ms" }}
[integrity]
key = "{d}/keys/auditrail.key"
node_id = "node-1"
seal_interval = "300ms"
seal_events = 1000
"#,
        d = d.display(),
        url = os.url()
    );
    let agent = Agent::start(d, &cfg, api);
    wait_for(Duration::from_secs(60), "5,000 events indexed", || {
        agent.metric("auditrail_sink_events_total", &[("sink", "es")]) >= N as f64
    });
    assert!(agent.terminate(Duration::from_secs(20)).success());
    let indexed = os.count("audit-chain");
    assert!(indexed > N as u64, "events and seals: {indexed}");
    let verify_es = || {
        let out = Command::new(binary())
            .args(["verify", "--json", "--key"])
            .arg(d.join("keys/auditrail.pub"))
            .args(["--elasticsearch", &os.url(), "--index", "audit-chain"])
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap(), report)
    };
    let (code, report) = verify_es();
    assert_eq!(code, 0, "{report}");
    let s = stream(&report, "node-1/a");
    assert_clean(s);
    assert_eq!(s["verified"].as_u64().unwrap(), indexed, "{s}");
    println!("elasticsearch round trip: {indexed} documents verified clean");

    // An intruder with write access to the index edits one document in place.
    let uid = "e-1234";
    let hit = os.json(
        "POST",
        "/audit-chain/_search",
        &serde_json::json!({ "query": { "ids": { "values": [uid] } } }).to_string(),
    );
    let mut doc = hit["hits"]["hits"][0]["_source"].clone();
    let seq = doc["auditrail.integrity"]["seq"].as_u64().unwrap();
    doc["login"] = "root".into();
    let (status, body) = os.request("PUT", &format!("/audit-chain/_doc/{uid}"), &doc.to_string());
    assert!((200..300).contains(&status), "{status} {body}");
    os.request("POST", "/audit-chain/_refresh", "");
    let (code, report) = verify_es();
    assert_eq!(code, 1, "{report}");
    assert_eq!(seqs(&stream(&report, "node-1/a")["altered"]), vec![seq]);
}

#[test]
fn validate_checks_the_key_and_the_integrity_table() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |extra: &str| {
        let path = d.join("c.toml");
        std::fs::write(
            &path,
            format!(
                "data_dir = \"{d}/data\"\n[sources.a]\ntype = \"file\"\ninclude = [\"{d}/*.log\"]\n[sinks.o]\ntype = \"blackhole\"\ninputs = [\"a\"]\n[integrity]\nkey = \"{d}/k/auditrail.key\"\n{extra}",
                d = d.display()
            ),
        )
        .unwrap();
        Command::new(binary())
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = write("");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not exist yet"));
    let out = write("seal_events = 0\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[integrity] `seal_events`: must be at least 1"),
        "{err}"
    );
    let out = write("seal_intervall = \"1s\"\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("seal_intervall") && err.contains("seal_interval"),
        "{err}"
    );
    let out = Command::new(binary())
        .args(["keygen", "--out"])
        .arg(d.join("k"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = write("");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("(epoch 0)"));
    std::fs::set_permissions(
        d.join("k/auditrail.key"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let out = write("");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}
