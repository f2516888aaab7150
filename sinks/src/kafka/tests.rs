//! The sink against librdkafka's mock cluster in this process: every event acknowledged as delivered only
//! after its report, its record exactly the event's bytes with the key and headers the sink promises; an
//! oversize event dead-lettered. (The end-to-end and fault tests run the real binary in integration-tests.)

use std::collections::HashMap;
use std::time::Duration;

use auditrail_core::buffer::{memory_buffer, MemoryBufferConfig};
use auditrail_core::{AckBatch, Event, EventStatus, Sink, SinkContext};
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;

use super::{KafkaSink, KafkaSinkConfig};

fn ev(i: usize, sid: Option<&str>, pad: usize) -> Event {
    let sid = sid.map_or(String::new(), |s| format!(r#","sid":"{s}""#));
    Event::parse(
        Bytes::from(format!(
            r#"{{"event":"session.command","uid":"u{i}","time":"2017-02-03T06:54:05Z"{sid},"server_id":"srv","cmd":"a \u003c b","pad":"{}"}}"#,
            "x".repeat(pad)
        )),
        1 << 20,
    )
    .unwrap()
}

fn config(bootstrap: &str, extra: &str) -> KafkaSinkConfig {
    toml::from_str(&format!(
        "bootstrap_servers = \"{bootstrap}\"\ntopic = \"audit\"\n{extra}"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_records_with_key_headers_and_exact_bytes() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("audit", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = memory_buffer("k", &MemoryBufferConfig::default());
    let (ack_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let mut sent = HashMap::new();
    let mut events = Vec::new();
    for i in 0..200 {
        let batch = AckBatch::new(i as u64, ack_tx.clone());
        let sid = format!("s{}", i % 5);
        let mut e = ev(i, (i % 10 != 0).then_some(sid.as_str()), 10);
        sent.insert(format!("u{i}"), (e.raw().clone(), i % 10 != 0, sid));
        e.set_finalizer(batch.finalizer());
        events.push(e);
    }
    // One over message_max_bytes.
    let batch = AckBatch::new(1000, ack_tx.clone());
    let mut big = ev(1000, Some("s0"), 3000);
    big.set_finalizer(batch.finalizer());
    events.push(big);
    drop(batch);
    drop(ack_tx);
    tx.try_send(events).unwrap();
    drop(tx);
    let cx = SinkContext::new("k", dir.path().into());
    let sink = KafkaSink::new(config(&bootstrap, "message_max_bytes = 2000")).unwrap();
    tokio::time::timeout(Duration::from_secs(60), Box::new(sink).run(rx, cx))
        .await
        .expect("the sink drains")
        .unwrap();
    let mut outcomes = HashMap::new();
    while let Some(o) = acks.recv().await {
        outcomes.insert(o.id, o.status);
    }
    assert_eq!(outcomes.len(), 201);
    assert!((0..200).all(|i| outcomes[&i] == EventStatus::Delivered));
    assert_eq!(outcomes[&1000], EventStatus::Rejected);
    let dead = std::fs::read_to_string(dir.path().join("dead-letter/k.ndjson")).unwrap();
    assert!(dead.contains("\"reason\":\"message_too_large\"") && dead.contains("uid u1000"));

    // Read back: value, key and headers.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "check")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["audit"]).unwrap();
    let mut seen = 0;
    let mut partition_of_sid: HashMap<String, i32> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen < 200 && std::time::Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let headers: HashMap<&str, &[u8]> = m
            .headers()
            .unwrap()
            .iter()
            .map(|h| (h.key, h.value.unwrap()))
            .collect();
        let uid = std::str::from_utf8(headers["uid"]).unwrap().to_string();
        let (raw, has_sid, sid) = &sent[&uid];
        assert_eq!(m.payload().unwrap(), &raw[..]);
        assert_eq!(headers["event"], b"session.command");
        assert_eq!(headers["server_id"], b"srv");
        let key = std::str::from_utf8(m.key().unwrap()).unwrap();
        if *has_sid {
            assert_eq!(key, sid);
            let p = *partition_of_sid.entry(sid.clone()).or_insert(m.partition());
            assert_eq!(p, m.partition(), "one sid, one partition");
        } else {
            assert_eq!(key, uid);
        }
        seen += 1;
    }
    assert_eq!(seen, 200);
}
