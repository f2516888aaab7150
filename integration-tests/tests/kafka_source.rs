//! The `kafka` source as an aggregator: records produced to librdkafka's mock cluster (the `kafka-mock`
//! process) are read by `auditrail` in a consumer group and written by a file sink. An aggregator killed -9
//! and restarted loses nothing and duplicates at most what it had not committed; two aggregators share the
//! partitions and one leaving hands its partitions over; malformed records are dead-lettered with their
//! offsets and never stall a partition; a sink that refuses for a while pauses the source, nothing past what
//! was delivered is committed, and nothing is lost when it recovers.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use auditrail_integration_tests::*;
use serde_json::Value;

const PARTITIONS: i32 = 6;

fn kafka_mock(topics: &[(&str, i32)]) -> Option<KafkaMock> {
    KafkaMock::start(Path::new(env!("CARGO_BIN_EXE_kafka-mock")), topics)
}

fn record(prefix: &str, i: usize) -> String {
    format!(
        r#"{{"event":"session.command","uid":"{prefix}{i}","time":"2026-11-25T06:54:05.{:06}Z","user":"alice","sid":"s-{}","n":{i}}}"#,
        i % 1_000_000,
        i % 64
    )
}

/// Produces uids `{prefix}{range}` spread round robin over the partitions.
fn produce_range(kafka: &KafkaMock, topic: &str, prefix: &str, range: std::ops::Range<usize>) {
    let values: Vec<(i32, String)> = range
        .map(|i| ((i % PARTITIONS as usize) as i32, record(prefix, i)))
        .collect();
    let records: Vec<(i32, Option<&[u8]>)> = values
        .iter()
        .map(|(p, v)| (*p, Some(v.as_bytes())))
        .collect();
    kafka.produce(topic, &records);
}

fn config(d: &Path, api: u16, bootstrap: &str, group: &str, out: &str, extra: &str) -> String {
    format!(
        r#"
data_dir = "{d}/data"
shutdown_timeout = "30s"
[api]
address = "127.0.0.1:{api}"
[sources.fleet]
type = "kafka"
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
topics = ["audit"]
commit_interval = "200ms"
session_timeout = "6s"
lag_interval = "500ms"
{extra}
[sinks.out]
type = "file"
inputs = ["fleet"]
path = "{out}"
batch_max_events = 1000
buffer = {{ type = "memory", max_events = 5000 }}
"#,
        d = d.display()
    )
}

fn count(dir: &Path) -> HashMap<String, usize> {
    uids_in(dir)
}

fn lost(counts: &HashMap<String, usize>, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{i}"))
        .filter(|u| !counts.contains_key(u))
        .collect()
}

#[test]
fn an_aggregator_killed_9_and_restarted_loses_nothing_and_duplicates_only_what_was_unacked() {
    const N: usize = 40_000;
    let Some(kafka) = kafka_mock(&[("audit", PARTITIONS)]) else {
        return;
    };
    produce_range(&kafka, "audit", "k-", 0..N);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    let first = format!("{}/out/first.ndjson", d.display());
    let extra = "max_in_flight_events = 5000";
    let agent = Agent::start(
        d,
        &config(d, api, &kafka.bootstrap, "agg", &first, extra),
        api,
    );
    wait_for(
        Duration::from_secs(60),
        "a third of the events written",
        || line_count(&d.join("out")) >= N / 3,
    );
    agent.kill9();
    // What was written and what the group has committed, at the kill.
    let written = lines_so_far(&d.join("out")).len() as i64;
    let committed = committed_sum(&kafka.bootstrap, "agg", "audit", PARTITIONS);
    assert!(
        committed <= written,
        "committed {committed} > written {written}"
    );
    let unacked = written - committed;
    // The same group again (its own output file: the first may end in a torn line).
    let second = format!("{}/out2/second.ndjson", d.display());
    let agent = Agent::start(
        d,
        &config(d, api, &kafka.bootstrap, "agg", &second, extra),
        api,
    );
    wait_for(
        Duration::from_secs(90),
        "every event after the restart",
        || {
            let mut all = uids_so_far(&d.join("out"));
            all.extend(uids_so_far(&d.join("out2")));
            all.len() >= N
        },
    );
    // The group's commit reaches the end once the last acks are in (read while the aggregator runs: whether
    // a SIGTERM commits what was acked in its last moment is not what this test is about).
    wait_for(
        Duration::from_secs(60),
        "the group's commit at the end",
        || committed_sum(&kafka.bootstrap, "agg", "audit", PARTITIONS) == N as i64,
    );
    assert!(agent.terminate(Duration::from_secs(30)).success());
    let mut counts = HashMap::new();
    for (u, c) in uids_so_far(&d.join("out"))
        .into_iter()
        .chain(uids_in(&d.join("out2")))
    {
        *counts.entry(u).or_insert(0) += c;
    }
    let missing = lost(&counts, "k-", N);
    assert!(
        missing.is_empty(),
        "lost {}: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let dups: i64 = counts.values().map(|c| *c as i64 - 1).sum();
    assert!(
        dups <= unacked,
        "{dups} duplicates, but only {unacked} were unacknowledged at the kill"
    );
    assert_eq!(
        committed_sum(&kafka.bootstrap, "agg", "audit", PARTITIONS),
        N as i64
    );
    println!("kafka source kill -9: {written} written, {committed} committed at the kill; after the restart 0 lost, {dups} duplicates (≤ {unacked} unacked)");
}

#[test]
fn two_aggregators_share_the_group_and_one_leaving_hands_its_partitions_over() {
    const N: usize = 40_000;
    let Some(kafka) = kafka_mock(&[("audit", PARTITIONS)]) else {
        return;
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (api1, api2) = (free_port(), free_port());
    let out1 = format!("{}/out/events.ndjson", d1.path().display());
    let out2 = format!("{}/out/events.ndjson", d2.path().display());
    let b1 = Agent::start(
        d1.path(),
        &config(d1.path(), api1, &kafka.bootstrap, "pair", &out1, ""),
        api1,
    );
    wait_for(Duration::from_secs(60), "B1 assigned", || {
        b1.log_text().contains("partitions assigned")
    });
    let b2 = Agent::start(
        d2.path(),
        &config(d2.path(), api2, &kafka.bootstrap, "pair", &out2, ""),
        api2,
    );
    // B2 is assigned its share once the group has rebalanced around it.
    wait_for(Duration::from_secs(60), "B2 assigned", || {
        b2.log_text().contains("partitions assigned")
    });
    std::thread::sleep(Duration::from_secs(1));
    produce_range(&kafka, "audit", "p-", 0..N / 2);
    wait_for(
        Duration::from_secs(60),
        "both aggregators delivering",
        || line_count(&d1.path().join("out")) > 0 && line_count(&d2.path().join("out")) > 0,
    );
    wait_for(Duration::from_secs(60), "the first half", || {
        line_count(&d1.path().join("out")) + line_count(&d2.path().join("out")) >= N / 2
    });
    let first_share = line_count(&d1.path().join("out"));
    assert!(b1.terminate(Duration::from_secs(40)).success());
    produce_range(&kafka, "audit", "p-", N / 2..N);
    wait_for(Duration::from_secs(90), "every uid in the union", || {
        let mut all = uids_so_far(&d1.path().join("out"));
        all.extend(uids_so_far(&d2.path().join("out")));
        all.len() >= N
    });
    let revokes = b2.metric(
        "auditrail_source_kafka_rebalances_total",
        &[("kind", "revoke")],
    );
    assert!(b2.terminate(Duration::from_secs(40)).success());
    let mut counts = count(&d1.path().join("out"));
    for (u, c) in count(&d2.path().join("out")) {
        *counts.entry(u).or_insert(0) += c;
    }
    let missing = lost(&counts, "p-", N);
    assert!(
        missing.is_empty(),
        "lost {}: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Duplicates are allowed (at least once) and counted; the output says how many.
    let dups: usize = counts.values().map(|c| c - 1).sum();
    assert!(revokes >= 1.0);
    println!("kafka group of two: B1 delivered {first_share} of the first {} and left; B2 took over; 0 lost, {dups} duplicates", N / 2);
}

#[test]
fn malformed_records_are_dead_lettered_with_their_offsets_and_never_stall_a_partition() {
    let Some(kafka) = kafka_mock(&[("audit", 1)]) else {
        return;
    };
    let good: Vec<String> = (0..100).map(|i| record("m-", i)).collect();
    let mut records: Vec<(i32, Option<&[u8]>)> = Vec::new();
    let bad: [&[u8]; 3] = [b"not json at all", br#"{"no":"event field"}"#, b"[1,2,3]"];
    let mut bad_offsets = Vec::new();
    for (i, g) in good.iter().enumerate() {
        records.push((0, Some(g.as_bytes())));
        if i % 25 == 0 {
            bad_offsets.push(records.len() as i64);
            records.push((0, Some(bad[i / 25 % 3])));
        }
        if i == 50 {
            bad_offsets.push(records.len() as i64);
            records.push((0, None));
        }
    }
    kafka.produce("audit", &records);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    let out = format!("{}/out/events.ndjson", d.display());
    let agent = Agent::start(d, &config(d, api, &kafka.bootstrap, "mal", &out, ""), api);
    wait_for(Duration::from_secs(60), "every good event", || {
        uids_so_far(&d.join("out")).len() >= good.len()
    });
    // The malformed records count as done: the commit reaches the end of the partition.
    wait_for(Duration::from_secs(30), "the commit at the end", || {
        committed_sum(&kafka.bootstrap, "mal", "audit", 1) == records.len() as i64
    });
    let invalid = agent.metric("auditrail_source_invalid_total", &[("source", "fleet")]);
    assert!(agent.terminate(Duration::from_secs(30)).success());
    assert_eq!(invalid, bad_offsets.len() as f64);
    let dead = std::fs::read_to_string(d.join("data/dead-letter/sources/fleet.ndjson")).unwrap();
    let locations: Vec<String> = dead
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["location"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: Vec<String> = bad_offsets
        .iter()
        .map(|o| format!("kafka:audit/0@{o}"))
        .collect();
    assert_eq!(locations, expected);
    assert_eq!(count(&d.join("out")).len(), good.len());
}

#[test]
fn a_sink_refusing_for_a_while_pauses_the_source_commits_nothing_undelivered_and_loses_nothing() {
    const N: usize = 30_000;
    let Some(kafka) = kafka_mock(&[("audit", PARTITIONS)]) else {
        return;
    };
    produce_range(&kafka, "audit", "r-", 0..N);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A directory where the sink's file should be: every write fails until it is gone.
    let out = d.join("out/events.ndjson");
    std::fs::create_dir_all(&out).unwrap();
    let api = free_port();
    let cfg = config(
        d,
        api,
        &kafka.bootstrap,
        "refuse",
        &out.display().to_string(),
        "max_in_flight_events = 8000",
    );
    let agent = Agent::start(d, &cfg, api);
    wait_for(Duration::from_secs(30), "the sink failing", || {
        agent.metric("auditrail_sink_errors_total", &[("sink", "out")]) >= 2.0
    });
    let held = Instant::now();
    let mut paused_seen = false;
    while held.elapsed() < Duration::from_secs(4) {
        paused_seen |= agent.metric("auditrail_source_kafka_paused", &[("source", "fleet")]) == 1.0;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(paused_seen, "the source never paused");
    let read = agent.metric("auditrail_source_events_total", &[("source", "fleet")]);
    // Bounded: what the buffer and the in-flight limit hold, not the topic.
    assert!(
        read <= 8_000.0 + 2_000.0,
        "read {read} while the sink refused"
    );
    assert_eq!(
        committed_sum(&kafka.bootstrap, "refuse", "audit", PARTITIONS),
        0
    );
    std::fs::remove_dir(&out).unwrap();
    wait_for(
        Duration::from_secs(90),
        "every event once the sink recovers",
        || uids_so_far(&d.join("out")).len() >= N,
    );
    wait_for(Duration::from_secs(30), "everything committed", || {
        committed_sum(&kafka.bootstrap, "refuse", "audit", PARTITIONS) == N as i64
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());
    let counts = count(&d.join("out"));
    assert!(lost(&counts, "r-", N).is_empty());
    println!("kafka source behind a refusing sink: paused with {read} read, 0 committed; then all {N} delivered");
}
