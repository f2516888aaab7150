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

use std::io::{Read, Write};
use std::process::ExitCode;

use rdkafka::mocking::MockCluster;

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
    if args.exit_on_stdin_eof {
        // Whatever is written is ignored; only the end matters.
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    } else {
        // SIGTERM and SIGINT end the process with their default action; the cluster lives only in memory.
        loop {
            std::thread::park();
        }
    }
    drop(cluster);
    ExitCode::SUCCESS
}
