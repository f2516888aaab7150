//! `kafka-mock`: the Kafka peer of the integration tests, librdkafka's own mock cluster run as a process of
//! its own, so that `auditrail` talks to it over TCP as to a real cluster (metadata, watermarks, fetches from
//! several brokers) while nothing but this crate's build is needed to have one.
//!
//! ```text
//! kafka-mock [--brokers N] [--topic NAME:PARTITIONS]... [--exit-on-stdin-eof]
//! ```
//!
//! Starts N brokers (default 3) listening on 127.0.0.1, creates the topics named (with replication factor 1),
//! prints the bootstrap list (`127.0.0.1:PORT,…`) as one line on standard output, then runs until it is killed
//! (SIGTERM, SIGINT) or, with `--exit-on-stdin-eof`, until its standard input closes: a test harness holds
//! the pipe, so the cluster goes away with the test process however that ends. Everything is in memory; a
//! topic that a producer names and that does not exist is created with the mock's default partition count.
//!
//! Faults are injected by commands on standard input, one per line; each is answered with one line on
//! standard output, `ok` or `error: …`, so a test knows the fault is in place before it goes on:
//!
//! ```text
//! broker-down N            broker N (1-based) closes its connections and refuses new ones
//! broker-up N              broker N serves again
//! rtt N MS                 broker N answers every request MS milliseconds late
//! errors API ERR[*COUNT]…  the next requests of API (Produce, Fetch, OffsetCommit, …) fail with ERR
//!                          (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER, _TRANSPORT, NOT_LEADER_FOR_PARTITION), COUNT times each
//! clear-errors API         drops what `errors` queued for API
//! ```

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

struct Args {
    brokers: i32,
    topics: Vec<(String, i32)>,
    exit_on_stdin_eof: bool,
}

const USAGE: &str =
    "usage: kafka-mock [--brokers N] [--topic NAME:PARTITIONS]... [--exit-on-stdin-eof]";

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        brokers: 3,
        topics: Vec::new(),
        exit_on_stdin_eof: false,
    };
    while let Some(a) = argv.next() {
        match a.as_str() {
            "--brokers" => {
                let n = argv.next().ok_or("--brokers needs a number")?;
                args.brokers = n
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or(format!("--brokers {n:?}: expected a number of at least 1"))?;
            }
            "--topic" => {
                let t = argv.next().ok_or("--topic needs NAME:PARTITIONS")?;
                let parsed = t.rsplit_once(':').and_then(|(name, n)| {
                    let n: i32 = n.parse().ok().filter(|&n| n >= 1)?;
                    (!name.is_empty()).then(|| (name.to_string(), n))
                });
                args.topics
                    .push(parsed.ok_or(format!("--topic {t:?}: expected NAME:PARTITIONS"))?);
            }
            "--exit-on-stdin-eof" => args.exit_on_stdin_eof = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kafka-mock: {e}");
            return ExitCode::from(2);
        }
    };
    let cluster = match MockCluster::new(args.brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kafka-mock: cannot start the mock cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, partitions) in &args.topics {
        if let Err(e) = cluster.create_topic(name, *partitions, 1) {
            eprintln!("kafka-mock: cannot create topic {name:?}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", cluster.bootstrap_servers())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    // Commands until standard input ends (at once for `</dev/null`).
    let stdin = std::io::stdin().lock();
    for line in stdin.lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match command(&cluster, args.brokers, &line) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        eprintln!("kafka-mock: {line:?}: {answer}");
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    if !args.exit_on_stdin_eof {
        // SIGTERM and SIGINT end the process with their default action; the cluster lives only in memory.
        loop {
            std::thread::park();
        }
    }
    drop(cluster);
    ExitCode::SUCCESS
}

/// Carries out one fault-injection command (see the module documentation).
fn command(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    brokers: i32,
    line: &str,
) -> Result<(), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let broker = |w: Option<&&str>| -> Result<i32, String> {
        w.and_then(|w| w.parse().ok())
            .filter(|n| (1..=brokers).contains(n))
            .ok_or(format!("expected a broker id from 1 to {brokers}"))
    };
    match words.first().copied() {
        Some("broker-down") => cluster
            .broker_down(broker(words.get(1))?)
            .map_err(|e| e.to_string()),
        Some("broker-up") => cluster
            .broker_up(broker(words.get(1))?)
            .map_err(|e| e.to_string()),
        Some("rtt") => {
            let id = broker(words.get(1))?;
            let ms: u64 = words
                .get(2)
                .and_then(|w| w.parse().ok())
                .ok_or("rtt N MS: expected milliseconds")?;
            cluster
                .broker_round_trip_time(id, Duration::from_millis(ms))
                .map_err(|e| e.to_string())
        }
        Some("errors") => {
            let api = api_key(words.get(1).ok_or("errors API ERR…: expected an API name")?)?;
            let mut errors = Vec::new();
            for w in &words[2..] {
                let (name, count) = match w.split_once('*') {
                    Some((n, c)) => (
                        n,
                        c.parse::<usize>()
                            .ok()
                            .filter(|&c| (1..=100_000).contains(&c))
                            .ok_or(format!("{w:?}: expected ERR*COUNT, COUNT from 1 to 100000"))?,
                    ),
                    None => (*w, 1),
                };
                let e = resp_err(name)?;
                errors.extend(std::iter::repeat_n(e, count));
            }
            if errors.is_empty() {
                return Err("errors API ERR…: expected at least one error".into());
            }
            cluster.request_errors(api, &errors);
            Ok(())
        }
        Some("clear-errors") => {
            let api = api_key(words.get(1).ok_or("clear-errors API: expected an API name")?)?;
            cluster.clear_request_errors(api);
            Ok(())
        }
        _ => Err(format!(
            "unknown command {line:?}: expected broker-down N, broker-up N, rtt N MS, errors API ERR[*COUNT]…, clear-errors API"
        )),
    }
}

/// The protocol requests faults can be injected into.
fn api_key(name: &str) -> Result<RDKafkaApiKey, String> {
    use RDKafkaApiKey::*;
    Ok(match name {
        "Produce" => Produce,
        "Fetch" => Fetch,
        "ListOffsets" => ListOffsets,
        "Metadata" => Metadata,
        "OffsetCommit" => OffsetCommit,
        "OffsetFetch" => OffsetFetch,
        "FindCoordinator" => FindCoordinator,
        "JoinGroup" => JoinGroup,
        "Heartbeat" => Heartbeat,
        "LeaveGroup" => LeaveGroup,
        "SyncGroup" => SyncGroup,
        "InitProducerId" => InitProducerId,
        _ => return Err(format!("unknown API {name:?}: expected Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch, FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup or InitProducerId")),
    })
}

/// The error codes faults can be made of, by librdkafka's names without `RD_KAFKA_RESP_ERR_`.
fn resp_err(name: &str) -> Result<RDKafkaRespErr, String> {
    use RDKafkaRespErr::*;
    Ok(match name {
        "_TRANSPORT" => RD_KAFKA_RESP_ERR__TRANSPORT,
        "OUT_OF_ORDER_SEQUENCE_NUMBER" => RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
        "DUPLICATE_SEQUENCE_NUMBER" => RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER,
        "UNKNOWN_PRODUCER_ID" => RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
        "INVALID_PRODUCER_EPOCH" => RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
        "NOT_LEADER_FOR_PARTITION" => RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        "REQUEST_TIMED_OUT" => RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        "NOT_ENOUGH_REPLICAS" => RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        "MSG_SIZE_TOO_LARGE" => RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        "COORDINATOR_NOT_AVAILABLE" => RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        "NOT_COORDINATOR" => RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        "REBALANCE_IN_PROGRESS" => RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        "UNKNOWN_MEMBER_ID" => RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
        "ILLEGAL_GENERATION" => RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
        _ => return Err(format!("unknown error {name:?}: expected one of librdkafka's names without RD_KAFKA_RESP_ERR_, e.g. OUT_OF_ORDER_SEQUENCE_NUMBER, _TRANSPORT")),
    })
}
