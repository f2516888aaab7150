//! The driver loop's retry paths that the real test server cannot produce on demand (per-item 429s, a 503, a
//! request refused as a whole). A scripted responder on loopback plays the cluster's answers; what the sink
//! sends and how each event ends are checked exactly. Everything else is tested against a real server in
//! `integration-tests/tests/elasticsearch.rs`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditrail_core::buffer::{memory_buffer, MemoryBufferConfig};
use auditrail_core::{AckBatch, Event, EventStatus, Sink, SinkContext};
use bytes::Bytes;
use serde_json::{json, Value};

use super::{ElasticsearchSink, ElasticsearchSinkConfig};

/// The `uid`s of the documents in a bulk body.
fn uids(body: &[u8]) -> Vec<String> {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .step_by(2)
        .map(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            v["create"]["_id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Serves HTTP/1.1 on loopback; `answer` gets each request's uids and returns status and body. Returns the
/// port and the list of requests seen.
fn responder(
    answer: impl Fn(&[String]) -> (u16, Value) + Send + Sync + 'static,
) -> (u16, Arc<Mutex<Vec<Vec<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (answer, log) = (Arc::clone(&answer), Arc::clone(&log));
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        let l = line.trim_end().to_ascii_lowercase();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0u8; len];
                    r.read_exact(&mut body).unwrap();
                    let ids = uids(&body);
                    log.lock().unwrap().push(ids.clone());
                    let (status, reply) = answer(&ids);
                    let text = reply.to_string();
                    let _ = write!(
                        w,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                }
            });
        }
    });
    (port, seen)
}

fn created(id: &str) -> Value {
    json!({"create": {"_id": id, "status": 201}})
}

/// Runs the sink over events `uids` until every one has an outcome; returns each uid's status.
async fn run(port: u16, uids: &[&str], dir: &std::path::Path) -> HashMap<String, EventStatus> {
    run_on(&[port], uids, dir).await
}

/// Like [`run`], with one endpoint per port (`endpoint` for one, `endpoints` for more).
async fn run_on(
    ports: &[u16],
    uids: &[&str],
    dir: &std::path::Path,
) -> HashMap<String, EventStatus> {
    let mut c = ElasticsearchSinkConfig::with_endpoint(format!("http://127.0.0.1:{}", ports[0]));
    if ports.len() > 1 {
        c.endpoint = None;
        c.endpoints = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
    }
    c.compression = super::Compression::None;
    c.retry.initial_backoff = Duration::from_millis(5).into();
    c.retry.max_backoff = Duration::from_millis(20).into();
    c.batch.timeout = Duration::from_millis(10).into();
    let sink = ElasticsearchSink::new(c).unwrap();
    let (tx, rx) = memory_buffer("es", &MemoryBufferConfig::default());
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut events = Vec::new();
    for (i, u) in uids.iter().enumerate() {
        let batch = AckBatch::new(i as u64, ack_tx.clone());
        let mut e = Event::parse(
            Bytes::from(format!(
                r#"{{"event":"x","uid":"{u}","time":"2017-02-03T06:54:05Z"}}"#
            )),
            4096,
        )
        .unwrap();
        e.set_finalizer(batch.finalizer());
        events.push(e);
    }
    tx.try_send(events).unwrap();
    drop(tx);
    let cx = SinkContext::new("es", dir.into());
    tokio::time::timeout(Duration::from_secs(20), Box::new(sink).run(rx, cx))
        .await
        .expect("the sink finishes")
        .unwrap();
    let mut out = HashMap::new();
    while let Ok(o) = ack_rx.try_recv() {
        out.insert(uids[o.id as usize].to_string(), o.status);
    }
    out
}

#[tokio::test]
async fn only_the_items_to_retry_are_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) = responder(|ids| {
        let items: Vec<Value> = ids
            .iter()
            .map(|id| match id.as_str() {
                "busy" if !RETRIED.swap(true, std::sync::atomic::Ordering::SeqCst) => json!({"create": {"_id": id, "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}}),
                "there" => json!({"create": {"_id": id, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "document already exists"}}}),
                "bad" => json!({"create": {"_id": id, "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [detail]"}}}),
                _ => created(id),
            })
            .collect();
        (200, json!({"errors": true, "items": items}))
    });
    static RETRIED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let status = run(port, &["a", "busy", "there", "bad"], dir.path()).await;
    assert_eq!(status["a"], EventStatus::Delivered);
    assert_eq!(status["busy"], EventStatus::Delivered);
    assert_eq!(status["there"], EventStatus::Delivered);
    assert_eq!(status["bad"], EventStatus::Rejected);
    let requests = seen.lock().unwrap().clone();
    assert_eq!(
        requests,
        vec![vec!["a", "busy", "there", "bad"], vec!["busy"]]
    );
    let dead = std::fs::read_to_string(dir.path().join("dead-letter/es.ndjson")).unwrap();
    assert_eq!(dead.lines().count(), 1);
    assert!(
        dead.contains("mapper_parsing_exception") && dead.contains("\"reason\":\"mapping_error\"")
    );
}

#[tokio::test]
async fn a_failed_request_is_sent_again_whole() {
    let dir = tempfile::tempdir().unwrap();
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (port, seen) = responder(|ids| {
        if CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            (
                503,
                json!({"error": {"type": "unavailable_shards_exception"}}),
            )
        } else {
            (
                200,
                json!({"errors": false, "items": ids.iter().map(|i| created(i)).collect::<Vec<_>>()}),
            )
        }
    });
    let status = run(port, &["a", "b"], dir.path()).await;
    assert!(
        status.values().all(|s| *s == EventStatus::Delivered),
        "{status:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(seen.lock().unwrap().iter().all(|r| r == &vec!["a", "b"]));
}

#[tokio::test]
async fn a_request_refused_whole_is_split_to_find_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) = responder(|ids| {
        if ids.iter().any(|i| i == "poison") {
            (
                400,
                json!({"error": {"type": "illegal_argument_exception", "reason": "request refused"}}),
            )
        } else {
            (
                200,
                json!({"errors": false, "items": ids.iter().map(|i| created(i)).collect::<Vec<_>>()}),
            )
        }
    });
    let status = run(port, &["a", "b", "poison", "c", "d"], dir.path()).await;
    for u in ["a", "b", "c", "d"] {
        assert_eq!(status[u], EventStatus::Delivered, "{u}");
    }
    assert_eq!(status["poison"], EventStatus::Rejected);
    let dead = std::fs::read_to_string(dir.path().join("dead-letter/es.ndjson")).unwrap();
    assert!(
        dead.contains("\"reason\":\"request_refused\"") && dead.contains("request refused"),
        "{dead}"
    );
    // Halves until the refused document stands alone: 5 → 2+3 → 1+2 → 1+1.
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.first().unwrap().len(), 5);
    assert!(requests.contains(&vec!["poison".to_string()]));
}

#[tokio::test]
async fn a_batch_whose_node_fails_goes_to_the_next_node_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Node a answers every request (bulk or health check) 503; node b indexes.
    let (a, seen_a) = responder(|_| {
        (
            503,
            json!({"error": {"type": "master_not_discovered_exception"}}),
        )
    });
    let (b, seen_b) = responder(|ids| {
        (
            200,
            json!({"errors": false, "items": ids.iter().map(|i| created(i)).collect::<Vec<_>>()}),
        )
    });
    let status = run_on(&[a, b], &["a", "b", "c"], dir.path()).await;
    assert_eq!(status.len(), 3);
    assert!(
        status.values().all(|s| *s == EventStatus::Delivered),
        "{status:?}"
    );
    // One bulk to a (the round robin starts there), then the same batch to b; a is out and only
    // health-checked (requests without documents) from then on.
    let to_a = seen_a.lock().unwrap().clone();
    assert_eq!(to_a[0], vec!["a", "b", "c"]);
    assert!(to_a[1..].iter().all(Vec::is_empty), "{to_a:?}");
    assert_eq!(seen_b.lock().unwrap().clone(), vec![vec!["a", "b", "c"]]);
}
