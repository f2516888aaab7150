//! `auditrail verify --kafka BROKERS --topic T` against a cluster (librdkafka's mock, as the `kafka-mock`
//! process, 3 brokers): the chained output of the real agent, produced to a 3-partition topic in shuffled
//! order, verifies clean; one altered record and one missing record are named by their seq; a record without
//! a value is unreadable; unreachable brokers and a missing topic are input errors in bounded time.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use auditrail_core::integrity::chain::read_field;
use auditrail_integration_tests::integrity::{
    assert_clean, config, ranges, seqs, stream, write_rich,
};
use auditrail_integration_tests::*;
use serde_json::Value;

/// Events per source; two sources make two streams.
const N: usize = 2_000;
const PARTITIONS: i32 = 3;

/// What the agent wrote once for every test here: the output lines and the public key.
struct Output {
    lines: Vec<String>,
    public_key: Vec<u8>,
}

/// Runs the agent once (integrity on, two file sources, a file sink, seals every 500 events or 200 ms) and
/// keeps its output; the tests of this file share it.
fn output() -> &'static Output {
    static OUT: OnceLock<Output> = OnceLock::new();
    OUT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("in")).unwrap();
        write_rich(&d.join("in/a.log"), "a-", N);
        write_rich(&d.join("in/b.log"), "b-", N);
        let api = free_port();
        let cfg = config(
            d,
            api,
            &["a", "b"],
            "{ type = \"memory\", max_events = 10000 }",
            "seal_interval = \"200ms\"\nseal_events = 500",
        );
        let agent = Agent::start(d, &cfg, api);
        wait_for(Duration::from_secs(60), "4,000 events out", || {
            uids_so_far(&d.join("out")).len() >= 2 * N
        });
        assert!(agent.terminate(Duration::from_secs(30)).success());
        let lines = lines_in(&d.join("out"));
        assert!(lines.len() > 2 * N, "events and seals: {}", lines.len());
        Output {
            lines,
            public_key: std::fs::read(d.join("keys/auditrail.pub")).unwrap(),
        }
    })
}

fn kafka_mock(topics: &[(&str, i32)]) -> Option<KafkaMock> {
    KafkaMock::start(Path::new(env!("CARGO_BIN_EXE_kafka-mock")), topics)
}

/// `lines` in a shuffled order, dealt round-robin over the partitions: storage order is not the chain's.
fn shuffled_records(lines: &[String]) -> Vec<(i32, Option<&[u8]>)> {
    let mut order: Vec<&String> = lines.iter().collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..order.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        order.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    order
        .into_iter()
        .enumerate()
        .map(|(i, l)| ((i % PARTITIONS as usize) as i32, Some(l.as_bytes())))
        .collect()
}

/// Runs `auditrail verify --json --key PUB --kafka BROKERS --topic TOPIC`; returns the exit code, the report
/// (`Null` when none was printed), stderr and how long it took.
fn verify_kafka(dir: &Path, brokers: &str, topic: &str) -> (i32, Value, String, Duration) {
    let key = dir.join("auditrail.pub");
    std::fs::write(&key, &output().public_key).unwrap();
    let started = Instant::now();
    let out = Command::new(binary())
        .args(["verify", "--json", "--key"])
        .arg(&key)
        .args(["--kafka", brokers, "--topic", topic])
        .output()
        .unwrap();
    let took = started.elapsed();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), report, stderr, took)
}

/// The seq of a plain event of stream `node-1/a` near the middle, with plain events on both sides (a seal
/// next to it would be reported as a bad seal too).
fn plain_seq_of_a(lines: &[String]) -> u64 {
    let mut seals = Vec::new();
    let mut highest = 0;
    for l in lines {
        let f = read_field(l.as_bytes()).unwrap();
        if f.stream == "node-1/a" {
            highest = highest.max(f.seq);
            if l.starts_with("{\"event\":\"auditrail.seal\"") {
                seals.push(f.seq);
            }
        }
    }
    (highest / 2..)
        .find(|q| !seals.contains(q) && !seals.contains(&(q - 1)) && !seals.contains(&(q + 1)))
        .unwrap()
}

/// The index of the line of stream `node-1/a` with seq `seq`.
fn line_of_a(lines: &[String], seq: u64) -> usize {
    lines
        .iter()
        .position(|l| {
            let f = read_field(l.as_bytes()).unwrap();
            f.stream == "node-1/a" && f.seq == seq
        })
        .unwrap()
}

#[test]
fn the_agents_output_read_back_from_kafka_verifies_clean() {
    let out = output();
    let Some(kafka) = kafka_mock(&[("audit", PARTITIONS), ("empty", PARTITIONS)]) else {
        return;
    };
    let started = Instant::now();
    kafka.produce("audit", &shuffled_records(&out.lines));
    let produced = started.elapsed();
    let dir = tempfile::tempdir().unwrap();
    let (code, report, stderr, took) = verify_kafka(dir.path(), &kafka.bootstrap, "audit");
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["unreadable"], 0, "{report}");
    let mut verified = 0;
    for name in ["node-1/a", "node-1/b"] {
        let s = stream(&report, name);
        assert_clean(s);
        assert!(ranges(&s["gaps"]).is_empty(), "{s}");
        assert_eq!(s["duplicates"], 0, "{s}");
        // The shutdown seal signed everything, and it verified as read back from Kafka.
        assert_eq!(s["unsealed"], 0, "{s}");
        verified += s["verified"].as_u64().unwrap();
    }
    assert_eq!(verified, out.lines.len() as u64, "{report}");
    println!(
        "kafka round trip: {} records over {PARTITIONS} partitions produced in {produced:?}, verified clean in {took:?}",
        out.lines.len()
    );

    // An empty topic has nothing to verify, and that is not an error.
    let (code, report, stderr, _) = verify_kafka(dir.path(), &kafka.bootstrap, "empty");
    assert_eq!(code, 0, "{report} {stderr}");
    assert_eq!(report["streams"].as_array().map(Vec::len), Some(0));
}

#[test]
fn an_altered_record_and_a_missing_record_are_named_by_seq() {
    let out = output();
    let Some(kafka) = kafka_mock(&[("altered", PARTITIONS), ("deleted", PARTITIONS)]) else {
        return;
    };
    let seq = plain_seq_of_a(&out.lines);
    let at = line_of_a(&out.lines, seq);

    // One field value of one event changed where it is stored.
    let mut altered = out.lines.clone();
    assert!(altered[at].contains("\"login\":\"dba\""));
    altered[at] = altered[at].replacen("\"login\":\"dba\"", "\"login\":\"root\"", 1);
    kafka.produce("altered", &shuffled_records(&altered));
    let dir = tempfile::tempdir().unwrap();
    let (code, report, stderr, _) = verify_kafka(dir.path(), &kafka.bootstrap, "altered");
    assert_eq!(code, 1, "{report} {stderr}");
    assert_eq!(report["ok"], false);
    let a = stream(&report, "node-1/a");
    assert_eq!(seqs(&a["altered"]), vec![seq], "{a}");
    assert!(ranges(&a["gaps"]).is_empty(), "{a}");
    assert_clean(stream(&report, "node-1/b"));

    // One record never produced.
    let mut deleted = out.lines.clone();
    deleted.remove(at);
    kafka.produce("deleted", &shuffled_records(&deleted));
    let (code, report, stderr, _) = verify_kafka(dir.path(), &kafka.bootstrap, "deleted");
    assert_eq!(code, 1, "{report} {stderr}");
    let a = stream(&report, "node-1/a");
    assert_eq!(ranges(&a["gaps"]), vec![(seq, seq)], "{a}");
    assert!(seqs(&a["altered"]).is_empty(), "{a}");
    assert_clean(stream(&report, "node-1/b"));
    println!("kafka tampering: seq {seq} of node-1/a altered, then deleted; both located");
}

#[test]
fn a_record_without_a_value_is_unreadable_and_located() {
    let out = output();
    let Some(kafka) = kafka_mock(&[("nulls", 1)]) else {
        return;
    };
    let records: Vec<(i32, Option<&[u8]>)> = out
        .lines
        .iter()
        .map(|l| (0, Some(l.as_bytes())))
        .chain([(0, None)])
        .collect();
    kafka.produce("nulls", &records);
    let dir = tempfile::tempdir().unwrap();
    let (code, report, stderr, _) = verify_kafka(dir.path(), &kafka.bootstrap, "nulls");
    assert_eq!(code, 1, "{report} {stderr}");
    assert_eq!(report["unreadable"], 1, "{report}");
    let where_ = format!("kafka:nulls/0@{}: the record has no value", out.lines.len());
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.contains(&where_))),
        "{report}"
    );
    for name in ["node-1/a", "node-1/b"] {
        assert_clean(stream(&report, name));
    }
}

#[test]
fn unreachable_brokers_and_a_missing_topic_exit_2_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let brokers = format!("127.0.0.1:{}", free_port());
    let (code, _, stderr, unreachable) = verify_kafka(dir.path(), &brokers, "audit");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("Kafka topic \"audit\" at {brokers}")),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(
        unreachable < Duration::from_secs(30),
        "took {unreachable:?}"
    );

    let Some(kafka) = kafka_mock(&[("audit", PARTITIONS)]) else {
        return;
    };
    let (code, _, stderr, missing) = verify_kafka(dir.path(), &kafka.bootstrap, "no-such-topic");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Kafka topic \"no-such-topic\" at {}: the topic does not exist",
            kafka.bootstrap
        )),
        "{stderr}"
    );
    assert!(missing < Duration::from_secs(30), "took {missing:?}");
    println!("kafka input errors, exit 2: unreachable brokers in {unreachable:?}, a missing topic in {missing:?}");
}
