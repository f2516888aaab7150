//! The Kafka tier end to end: agent A (file source → `kafka` sink) → librdkafka's mock cluster (the
//! `kafka-mock` process, 3 brokers on 127.0.0.1) → aggregator B (`kafka` source → file sink). Every uid
//! arrives, per-`sid` order holds, A's chain verifies from the topic and from B's output; faults injected
//! through kafka-mock's stdin (a broker down, a fatal idempotence error) lose nothing; an oversize event is
//! dead-lettered with the reason; B killed -9, two aggregators sharing a group, malformed records and a sink
//! that refuses for a while lose nothing either.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use auditrail_integration_tests::integrity::{assert_clean, stream};
use auditrail_integration_tests::*;
use serde_json::Value;

/// librdkafka's mock cluster keeps at most 5 MiB (and 100,000 records) per partition and deletes older
/// segments, as a retention limit: the 200,000-event round trip (~60 MB) needs enough partitions that nothing
/// is deleted before the aggregator reads it.
const PARTITIONS: i32 = 24;
/// Sessions the generated events belong to; each keeps its order through its partition.
const SIDS: usize = 64;

fn kafka_mock(topics: &[(&str, i32)]) -> Option<KafkaMock> {
    KafkaMock::start(Path::new(env!("CARGO_BIN_EXE_kafka-mock")), topics)
}

/// One event of session `s-{i % SIDS}` with uid `{prefix}{i}`.
fn session_event(prefix: &str, i: usize) -> String {
    format!(
        r#"{{"event":"session.command","uid":"{prefix}{i}","code":"T4000I","time":"2026-11-25T06:54:05.{:06}Z","user":"alice@example.com","login":"dba","server_id":"srv-{}","sid":"s-{}","argv":["ls","-l"],"cmd":"a \u003c b","n":{i}}}"#,
        i % 1_000_000,
        i % 7,
        i % SIDS
    )
}

fn write_session_events(path: &Path, prefix: &str, range: std::ops::Range<usize>) {
    let mut f = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap(),
    );
    for i in range {
        writeln!(f, "{}", session_event(prefix, i)).unwrap();
    }
    f.flush().unwrap();
}

/// Agent A: a file source reading `d/in/*.log`, a kafka sink to `topic`; `integrity` adds `[integrity]`.
fn agent_config(
    d: &Path,
    api: u16,
    bootstrap: &str,
    topic: &str,
    integrity: bool,
    sink_extra: &str,
) -> String {
    let mut c = format!(
        r#"
data_dir = "{d}/data"
shutdown_timeout = "30s"
[api]
address = "127.0.0.1:{api}"
[sources.teleport]
type = "file"
include = ["{d}/in/*.log"]
poll_interval = "20ms"
checkpoint_interval = "100ms"
[sinks.kafka]
type = "kafka"
inputs = ["teleport"]
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
retry_initial_backoff = "50ms"
retry_max_backoff = "1s"
buffer = {{ type = "memory", max_events = 20000 }}
{sink_extra}
"#,
        d = d.display()
    );
    if integrity {
        c.push_str(&format!(
            "[integrity]\nkey = \"{d}/keys/auditrail.key\"\nnode_id = \"node-a\"\nseal_interval = \"500ms\"\nseal_events = 5000\n",
            d = d.display()
        ));
    }
    c
}

/// Aggregator B: a kafka source in `group` → a file sink writing `out_path`; `integrity` adds `[integrity]`
/// (which must leave the relayed chains alone).
fn aggregator_config(
    d: &Path,
    api: u16,
    bootstrap: &str,
    topic: &str,
    group: &str,
    out_path: &str,
    integrity: bool,
) -> String {
    let mut c = format!(
        r#"
data_dir = "{d}/data"
shutdown_timeout = "30s"
[api]
address = "127.0.0.1:{api}"
[sources.fleet]
type = "kafka"
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
topics = ["{topic}"]
commit_interval = "200ms"
session_timeout = "6s"
lag_interval = "500ms"
max_in_flight_events = 20000
[sinks.out]
type = "file"
inputs = ["fleet"]
path = "{out_path}"
batch_max_events = 1000
buffer = {{ type = "memory", max_events = 10000 }}
"#,
        d = d.display()
    );
    if integrity {
        c.push_str(&format!(
            "[integrity]\nkey = \"{d}/keys/auditrail.key\"\nnode_id = \"node-b\"\n",
            d = d.display()
        ));
    }
    c
}

/// Runs `auditrail verify --json --key KEY --kafka BROKERS --topic TOPIC`.
fn verify_kafka(key: &Path, brokers: &str, topic: &str) -> (i32, Value, String) {
    let out = Command::new(binary())
        .args(["verify", "--json", "--key"])
        .arg(key)
        .args(["--kafka", brokers, "--topic", topic])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The uid and sid of every non-`auditrail.*` line, in file order.
fn events_of(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
            if v["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("auditrail."))
            {
                return None;
            }
            Some((
                v["uid"].as_str().unwrap().to_string(),
                v["sid"].as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// Checks that within every sid, the uids `{prefix}{i}` come in increasing `i` (first copies only).
fn assert_per_sid_order(events: &[(String, String)], prefix: &str) {
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut seen = HashSet::new();
    for (uid, sid) in events {
        if !seen.insert(uid.as_str()) {
            continue;
        }
        let i: usize = uid.strip_prefix(prefix).unwrap().parse().unwrap();
        if let Some(&prev) = last.get(sid.as_str()) {
            assert!(prev < i, "sid {sid}: {prefix}{i} after {prefix}{prev}");
        }
        last.insert(sid, i);
    }
}

fn missing(counts: &HashMap<String, usize>, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{i}"))
        .filter(|u| !counts.contains_key(u))
        .take(5)
        .collect()
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn agent_to_cluster_to_aggregator_every_uid_in_sid_order_and_the_chain_verifies() {
    const N: usize = 200_000;
    let Some(kafka) = kafka_mock(&[("audit", PARTITIONS)]) else {
        return;
    };
    let a_dir = tempfile::tempdir().unwrap();
    let a = a_dir.path();
    std::fs::create_dir_all(a.join("in")).unwrap();
    write_session_events(&a.join("in/a.log"), "e-", 0..N);
    let b_dir = tempfile::tempdir().unwrap();
    let b = b_dir.path();
    let started = Instant::now();
    let (api_a, api_b) = (free_port(), free_port());
    let agent = Agent::start(
        a,
        &agent_config(a, api_a, &kafka.bootstrap, "audit", true, ""),
        api_a,
    );
    let out = format!("{}/out/events.ndjson", b.display());
    let aggregator = Agent::start(
        b,
        &aggregator_config(
            b,
            api_b,
            &kafka.bootstrap,
            "audit",
            "aggregators",
            &out,
            true,
        ),
        api_b,
    );
    wait_for(
        Duration::from_secs(150),
        "200,000 events at the aggregator",
        || line_count(&b.join("out")) >= N,
    );
    let took = started.elapsed();
    // A stops: its shutdown seal goes through the topic too.
    assert!(agent.terminate(Duration::from_secs(30)).success());
    std::thread::sleep(Duration::from_secs(2));
    let lag = aggregator.metric("auditrail_source_kafka_lag", &[("source", "fleet")]);
    let commits = aggregator.metric("auditrail_source_kafka_commits_total", &[("result", "ok")]);
    assert!(aggregator.terminate(Duration::from_secs(30)).success());

    let lines = lines_in(&b.join("out"));
    let events = events_of(&lines);
    let counts = count(&events);
    assert_eq!(counts.len(), N, "missing: {:?}", missing(&counts, "e-", N));
    let dups: usize = counts.values().map(|c| c - 1).sum();
    assert_eq!(dups, 0, "a clean run makes no duplicates");
    assert_per_sid_order(&events, "e-");
    assert!(commits > 0.0);

    // A's chain, read back from the topic and from B's output (relayed, not re-chained).
    let key = a.join("keys/auditrail.pub");
    let (code, report, stderr) = verify_kafka(&key, &kafka.bootstrap, "audit");
    assert_eq!(code, 0, "{report} {stderr}");
    let s = stream(&report, "node-a/teleport");
    assert_clean(s);
    assert_eq!(s["unsealed"], 0, "{s}");
    let (code, report) = integrity::verify(&key, &[&b.join("out")], None);
    assert_eq!(code, 0, "{report}");
    assert_clean(stream(&report, "node-a/teleport"));
    assert!(
        !lines.iter().any(|l| l.contains("node-b/")),
        "the aggregator chained relayed events"
    );
    println!(
        "kafka round trip: {N} events A → {PARTITIONS} partitions → B in {took:?}; lag at the end {lag}; both verifications clean"
    );
}

fn count(events: &[(String, String)]) -> HashMap<String, usize> {
    let mut c = HashMap::new();
    for (u, _) in events {
        *c.entry(u.clone()).or_insert(0) += 1;
    }
    c
}

/// Waits until A's file source has read `n` events and its kafka sink has delivered as many (seals count
/// there too; a SIGTERM afterwards drains the rest).
fn wait_delivered(agent: &Agent, n: usize, timeout: Duration) {
    wait_for(
        timeout,
        &format!("{n} events read and delivered to Kafka"),
        || {
            let m = agent.metrics();
            metric_sum(
                &m,
                "auditrail_source_events_total",
                &[("source", "teleport")],
            ) >= n as f64
                && metric_sum(&m, "auditrail_sink_events_total", &[("sink", "kafka")]) >= n as f64
        },
    );
}

#[test]
fn a_broker_down_mid_run_then_up_loses_nothing_and_memory_stays_bounded() {
    const N: usize = 60_000;
    let Some(kafka) = kafka_mock(&[("audit", PARTITIONS)]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let api = free_port();
    let cfg = agent_config(
        d,
        api,
        &kafka.bootstrap,
        "audit",
        true,
        "max_in_flight_events = 5000",
    );
    let agent = Agent::start(d, &cfg, api);
    write_session_events(&d.join("in/a.log"), "b-", 0..N / 3);
    wait_delivered(&agent, 5_000, Duration::from_secs(60));
    kafka.command("broker-down 1");
    write_session_events(&d.join("in/a.log"), "b-", N / 3..N);
    let mut max_in_flight = 0.0f64;
    let mut max_rss = 0;
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(4) {
        max_in_flight =
            max_in_flight.max(agent.metric("auditrail_sink_kafka_in_flight_events", &[]));
        max_rss = max_rss.max(rss_kib(agent.pid()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let during = agent.metric("auditrail_sink_events_total", &[("sink", "kafka")]);
    kafka.command("broker-up 1");
    wait_delivered(&agent, N, Duration::from_secs(90));
    assert!(agent.terminate(Duration::from_secs(30)).success());
    assert!(max_in_flight <= 5_000.0, "in flight {max_in_flight}");
    assert!(max_rss < 300 * 1024, "RSS {max_rss} KiB");
    let (code, report, stderr) =
        verify_kafka(&d.join("keys/auditrail.pub"), &kafka.bootstrap, "audit");
    assert_eq!(code, 0, "{report} {stderr}");
    let s = stream(&report, "node-a/teleport");
    assert_clean(s);
    assert!(s["verified"].as_u64().unwrap() >= N as u64, "{s}");
    println!("kafka broker down 4 s: {during} delivered while down, at most {max_in_flight} in flight, max RSS {max_rss} KiB; 0 lost");
}

#[test]
fn a_fatal_idempotence_error_rebuilds_the_producer_and_delivers_everything() {
    const N: usize = 30_000;
    let Some(kafka) = kafka_mock(&[("audit", PARTITIONS)]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let api = free_port();
    let agent = Agent::start(
        d,
        &agent_config(d, api, &kafka.bootstrap, "audit", true, ""),
        api,
    );
    write_session_events(&d.join("in/a.log"), "f-", 0..N / 3);
    wait_delivered(&agent, N / 3, Duration::from_secs(60));
    // The next produce request fails as out of order while it is the head of line: librdkafka cannot reason
    // about its sequence any more and fails the producer for good.
    kafka.command("errors Produce OUT_OF_ORDER_SEQUENCE_NUMBER");
    write_session_events(&d.join("in/a.log"), "f-", N / 3..N);
    wait_for(Duration::from_secs(60), "the producer rebuilt", || {
        agent.metric("auditrail_sink_kafka_producer_rebuilds_total", &[]) >= 1.0
    });
    wait_delivered(&agent, N, Duration::from_secs(60));
    let log = agent.log_text();
    assert!(log.contains("built a new Kafka producer"), "{log}");
    assert!(agent.terminate(Duration::from_secs(30)).success());
    let (code, report, stderr) =
        verify_kafka(&d.join("keys/auditrail.pub"), &kafka.bootstrap, "audit");
    assert_eq!(code, 0, "{report} {stderr}");
    let s = stream(&report, "node-a/teleport");
    assert!(
        stream(&report, "node-a/teleport")["gaps"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{s}"
    );
    assert_clean(s);
    println!(
        "kafka fatal error: producer rebuilt, {} verified, {} duplicates, 0 lost",
        s["verified"], s["duplicates"]
    );
}

#[test]
fn an_oversize_event_goes_to_the_dead_letter_file_with_the_reason() {
    let Some(kafka) = kafka_mock(&[("audit", 1)]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let api = free_port();
    let cfg = agent_config(
        d,
        api,
        &kafka.bootstrap,
        "audit",
        false,
        "message_max_bytes = 2000",
    );
    let agent = Agent::start(d, &cfg, api);
    let big = format!(
        r#"{{"event":"session.command","uid":"big-1","time":"2026-11-25T06:54:05Z","sid":"s-1","pad":"{}"}}"#,
        "x".repeat(5000)
    );
    write_session_events(&d.join("in/a.log"), "o-", 0..10);
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("in/a.log"))
        .unwrap()
        .write_all(format!("{big}\n").as_bytes())
        .unwrap();
    write_session_events(&d.join("in/a.log"), "o-", 10..20);
    wait_delivered(&agent, 20, Duration::from_secs(30));
    let dead = d.join("data/dead-letter/kafka.ndjson");
    wait_for(Duration::from_secs(10), "the dead letter", || dead.exists());
    assert_eq!(
        agent.metric(
            "auditrail_sink_dead_lettered_total",
            &[("reason", "message_too_large")]
        ),
        1.0
    );
    assert!(agent.terminate(Duration::from_secs(30)).success());
    let text = std::fs::read_to_string(&dead).unwrap();
    let v: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["reason"], "message_too_large", "{v}");
    assert_eq!(v["location"], "uid big-1", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("message_max_bytes"),
        "{v}"
    );
    assert!(
        v["raw"].as_str().unwrap().contains("\"uid\":\"big-1\""),
        "{v}"
    );
}

#[test]
fn the_example_shows_both_tiers_and_both_validate() {
    let text =
        std::fs::read_to_string(workspace_root().join("examples/kafka-aggregator.toml")).unwrap();
    let agent: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("# --- agent tier"))
        .skip(1)
        .take_while(|l| !l.starts_with("# --- end of agent tier"))
        .map(|l| {
            l.strip_prefix("# ")
                .or_else(|| l.strip_prefix('#'))
                .unwrap_or(l)
        })
        .collect();
    assert!(
        agent.iter().any(|l| l.contains("type = \"kafka\"")),
        "{agent:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let agent_path = dir.path().join("agent.toml");
    std::fs::write(&agent_path, agent.join("\n")).unwrap();
    for (name, path) in [
        (
            "aggregator",
            workspace_root().join("examples/kafka-aggregator.toml"),
        ),
        ("agent", agent_path),
    ] {
        let out = Command::new(binary())
            .args(["validate", "--config"])
            .arg(&path)
            .env("KAFKA_PASSWORD", "p")
            .env("SPLUNK_HEC_TOKEN", "t")
            .env("ES_API_KEY", "k")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} tier: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
