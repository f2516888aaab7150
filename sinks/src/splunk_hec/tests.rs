//! The sink against a scripted HEC responder on loopback: what it sends (paths, headers, bodies, ack queries) and
//! how each event ends, for the answers a real collector gives (acks false then true, acks that never come,
//! busy, a data error naming the bad event, a refused token, balancer cookies, acks disabled). The conformance of
//! the bodies to Splunk's documentation is pinned in `conformance.rs`; the real-process test (agent → agent over
//! HEC) is in `integration-tests/`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditrail_core::buffer::{memory_buffer, MemoryBufferConfig};
use auditrail_core::{AckBatch, Event, EventStatus, Sink, SinkContext};
use bytes::Bytes;
use serde_json::{json, Value};

use super::{EndpointTarget, SplunkHecSink, SplunkHecSinkConfig};

/// One request as the responder saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Lower-cased header names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Seen {
    /// The `uid`s of the events of an event-endpoint body.
    pub fn uids(&self) -> Vec<String> {
        serde_json::Deserializer::from_slice(&self.body)
            .into_iter::<Value>()
            .map(|v| {
                let v = v.unwrap();
                v["event"]["uid"].as_str().unwrap().to_string()
            })
            .collect()
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }
}

/// An answer: status, extra headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, Value);

/// Serves HTTP/1.1 on loopback; `answer` gets each request and returns the answer. Returns the port and the
/// requests seen.
pub fn responder(
    answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
) -> (u16, Arc<Mutex<Vec<Seen>>>) {
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
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let target = parts.next().unwrap_or("").to_string();
                    let mut headers = HashMap::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let len: usize = headers
                        .get("content-length")
                        .map_or(0, |v| v.parse().unwrap());
                    let mut body = vec![0u8; len];
                    r.read_exact(&mut body).unwrap();
                    let seen = Seen {
                        method,
                        target,
                        headers,
                        body,
                    };
                    log.lock().unwrap().push(seen.clone());
                    let (status, extra, reply) = answer(&seen);
                    let text = reply.to_string();
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                        text.len()
                    );
                    for (k, v) in extra {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    let _ = write!(w, "{head}\r\n{text}");
                }
            });
        }
    });
    (port, seen)
}

pub fn ok_ack(id: u64) -> Answer {
    (
        200,
        vec![],
        json!({"text": "Success", "code": 0, "ackId": id}),
    )
}

/// A collector that numbers its event answers' ackIds 1, 2, 3… and answers each ack query with
/// `indexed(id)` for every id asked about.
pub fn numbered_acks(
    indexed: impl Fn(u64) -> bool + Send + Sync + 'static,
) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    let sends = Mutex::new(0u64);
    move |s| match s.path() {
        "/services/collector/health" => health_ok(),
        "/services/collector/event" => {
            let mut n = sends.lock().unwrap();
            *n += 1;
            ok_ack(*n)
        }
        "/services/collector/ack" => {
            let body: Value = serde_json::from_slice(&s.body).unwrap();
            let acks: serde_json::Map<String, Value> = body["acks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| (id.to_string(), json!(indexed(id.as_u64().unwrap()))))
                .collect();
            (200, vec![], json!({ "acks": acks }))
        }
        _ => (404, vec![], json!({})),
    }
}

pub fn health_ok() -> Answer {
    (200, vec![], json!({"text": "HEC is healthy", "code": 17}))
}

pub fn config(port: u16) -> SplunkHecSinkConfig {
    let mut c = SplunkHecSinkConfig::with_endpoint(
        format!("http://127.0.0.1:{port}"),
        "11111111-2222-3333-4444-555555555555",
    );
    c.retry.initial_backoff = Duration::from_millis(5).into();
    c.retry.max_backoff = Duration::from_millis(20).into();
    c.batch.timeout = Duration::from_millis(10).into();
    c.ack_poll_interval = Duration::from_millis(10).into();
    c
}

pub fn event(uid: &str) -> Event {
    Event::parse(
        Bytes::from(format!(
            r#"{{"event":"session.start","uid":"{uid}","time":"2017-02-03T06:54:05.123Z","user":"alice"}}"#
        )),
        4096,
    )
    .unwrap()
}

/// Runs the sink over events `uids` until every one has an outcome; returns each uid's status.
pub async fn run(
    c: SplunkHecSinkConfig,
    uids: &[&str],
    dir: &std::path::Path,
) -> HashMap<String, EventStatus> {
    let sink = SplunkHecSink::new(c).unwrap();
    let (tx, rx) = memory_buffer("hec", &MemoryBufferConfig::default());
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut events = Vec::new();
    for (i, u) in uids.iter().enumerate() {
        let batch = AckBatch::new(i as u64, ack_tx.clone());
        let mut e = event(u);
        e.set_finalizer(batch.finalizer());
        events.push(e);
    }
    tx.try_send(events).unwrap();
    drop(tx);
    let cx = SinkContext::new("hec", dir.into());
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

fn events_of(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| {
            s.path().starts_with("/services/collector/event")
                || s.path().starts_with("/services/collector/raw")
        })
        .collect()
}

fn acks_of(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| s.path() == "/services/collector/ack")
        .collect()
}

#[tokio::test]
async fn with_acks_events_are_delivered_only_once_their_ack_id_is_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let polls = Arc::new(Mutex::new(0u32));
    let p = polls.clone();
    let (port, seen) = responder(move |s| match s.path() {
        "/services/collector/health" => health_ok(),
        "/services/collector/event" => ok_ack(7),
        "/services/collector/ack" => {
            let mut n = p.lock().unwrap();
            *n += 1;
            // Not indexed on the first two polls.
            (200, vec![], json!({"acks": {"7": *n > 2}}))
        }
        _ => (404, vec![], json!({"text": "not found", "code": 404})),
    });
    let status = run(config(port), &["a", "b"], dir.path()).await;
    assert_eq!(status["a"], EventStatus::Delivered);
    assert_eq!(status["b"], EventStatus::Delivered);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].path(), "/services/collector/health");
    let sent = events_of(&seen);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].uids(), vec!["a", "b"]);
    assert_eq!(
        sent[0].headers["authorization"],
        "Splunk 11111111-2222-3333-4444-555555555555"
    );
    let channel = sent[0].headers["x-splunk-request-channel"].clone();
    assert_eq!(
        uuid::Uuid::parse_str(&channel).unwrap().to_string(),
        channel
    );
    let acks = acks_of(&seen);
    assert!(acks.len() >= 3, "{acks:?}");
    for a in &acks {
        assert_eq!(a.method, "POST");
        assert_eq!(
            a.target,
            format!("/services/collector/ack?channel={channel}")
        );
        assert_eq!(a.headers["x-splunk-request-channel"], channel);
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body, json!({"acks": [7]}));
    }
}

#[tokio::test]
async fn an_ack_that_never_comes_is_resent_after_ack_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // The first request's ackId (1) never turns true; the second's (2) does.
    let (port, seen) = responder(numbered_acks(|id| id == 2));
    let mut c = config(port);
    c.ack_timeout = Duration::from_secs(1).into();
    let status = run(c, &["a"], dir.path()).await;
    assert_eq!(status["a"], EventStatus::Delivered);
    let seen = seen.lock().unwrap().clone();
    let sent = events_of(&seen);
    assert_eq!(sent.len(), 2, "sent again after ack_timeout");
    assert!(sent.iter().all(|s| s.uids() == vec!["a"]));
}

#[tokio::test]
async fn with_half_the_pending_window_waiting_acks_are_asked_before_the_interval() {
    // ack_poll_interval is far longer than the test may take: only the eager queries (half of
    // max_pending_events waiting) can confirm events here. With the interval alone the sink would stop at its
    // 4 pending events for 60 s.
    let dir = tempfile::tempdir().unwrap();
    let (port, _seen) = responder(numbered_acks(|_| true));
    let mut c = config(port);
    c.ack_poll_interval = Duration::from_secs(60).into();
    c.ack_timeout = Duration::from_secs(120).into();
    c.batch.max_events = 1;
    c.max_pending_events = 4;
    let sink = SplunkHecSink::new(c).unwrap();
    let (tx, rx) = memory_buffer("hec", &MemoryBufferConfig::default());
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    let events: Vec<Event> = (0..12u64)
        .map(|i| {
            let mut e = event(&format!("e{i}"));
            e.set_finalizer(AckBatch::new(i, ack_tx.clone()).finalizer());
            e
        })
        .collect();
    tx.try_send(events).unwrap();
    let cx = SinkContext::new("hec", dir.path().into());
    let task = tokio::spawn(Box::new(sink).run(rx, cx));
    let mut delivered = 0;
    while delivered < 8 {
        let o = tokio::time::timeout(Duration::from_secs(30), ack_rx.recv())
            .await
            .expect("events confirmed long before ack_poll_interval")
            .unwrap();
        assert_eq!(o.status, EventStatus::Delivered);
        delivered += 1;
    }
    drop(tx);
    task.abort();
}

#[tokio::test]
async fn without_acks_http_200_code_0_is_delivered_and_no_ack_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) = responder(|s| match s.path() {
        "/services/collector/health" => health_ok(),
        _ => (200, vec![], json!({"text": "Success", "code": 0})),
    });
    let mut c = config(port);
    c.acknowledgements = false;
    let status = run(c, &["a", "b", "c"], dir.path()).await;
    assert!(
        status.values().all(|s| *s == EventStatus::Delivered),
        "{status:?}"
    );
    assert!(acks_of(&seen.lock().unwrap()).is_empty());
}

#[tokio::test]
async fn busy_answers_are_retried_after_the_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Mutex::new(0u32));
    let n = calls.clone();
    let (port, seen) = responder(move |s| match s.path() {
        "/services/collector/health" => health_ok(),
        _ => {
            let mut n = n.lock().unwrap();
            *n += 1;
            match *n {
                1 => (
                    503,
                    vec![("retry-after", "0".into())],
                    json!({"text": "Server is busy", "code": 9}),
                ),
                2 => (503, vec![], json!({"text": "Service Unavailable"})),
                _ => (200, vec![], json!({"text": "Success", "code": 0})),
            }
        }
    });
    let mut c = config(port);
    c.acknowledgements = false;
    let status = run(c, &["a", "b"], dir.path()).await;
    assert!(
        status.values().all(|s| *s == EventStatus::Delivered),
        "{status:?}"
    );
    let seen = seen.lock().unwrap().clone();
    let sent = events_of(&seen);
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|s| s.uids() == vec!["a", "b"]));
}

#[tokio::test]
async fn a_data_error_dead_letters_the_event_splunk_names_with_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) = responder(|s| match s.path() {
        "/services/collector/health" => health_ok(),
        _ => match s.uids().iter().position(|u| u == "bad") {
            Some(i) => (
                400,
                vec![],
                json!({"text": "Invalid data format", "code": 6, "invalid-event-number": i}),
            ),
            None => (200, vec![], json!({"text": "Success", "code": 0})),
        },
    });
    let mut c = config(port);
    c.acknowledgements = false;
    let status = run(c, &["a", "b", "bad", "c"], dir.path()).await;
    for u in ["a", "b", "c"] {
        assert_eq!(status[u], EventStatus::Delivered, "{u}");
    }
    assert_eq!(status["bad"], EventStatus::Rejected);
    let dead = std::fs::read_to_string(dir.path().join("dead-letter/hec.ndjson")).unwrap();
    assert_eq!(dead.lines().count(), 1);
    assert!(
        dead.contains("Invalid data format") && dead.contains("HEC code 6"),
        "{dead}"
    );
    let seen = seen.lock().unwrap().clone();
    let sent = events_of(&seen);
    assert_eq!(
        sent.len(),
        2,
        "one request, then the others without the bad event"
    );
    assert_eq!(sent[1].uids(), vec!["a", "b", "c"]);
}

#[tokio::test]
async fn a_rejected_token_holds_the_events_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Mutex::new(0u32));
    let n = calls.clone();
    let (port, _) = responder(move |s| match s.path() {
        "/services/collector/health" => {
            (400, vec![], json!({"text": "Invalid HEC token", "code": 4}))
        }
        _ => {
            let mut n = n.lock().unwrap();
            *n += 1;
            if *n <= 4 {
                (403, vec![], json!({"text": "Invalid token", "code": 4}))
            } else {
                (200, vec![], json!({"text": "Success", "code": 0}))
            }
        }
    });
    let mut c = config(port);
    c.acknowledgements = false;
    let status = run(c, &["a", "b"], dir.path()).await;
    assert!(
        status.values().all(|s| *s == EventStatus::Delivered),
        "{status:?}"
    );
    assert!(!dir.path().join("dead-letter/hec.ndjson").exists());
    assert_eq!(*calls.lock().unwrap(), 5);
}

#[tokio::test]
async fn balancer_cookies_come_back_on_data_and_ack_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) = responder(|s| match s.path() {
        "/services/collector/health" => (
            200,
            vec![("set-cookie", "AWSELB=STICKY1;PATH=/;MAX-AGE=3600".into())],
            json!({"text": "HEC is healthy", "code": 17}),
        ),
        "/services/collector/event" => ok_ack(0),
        _ => (200, vec![], json!({"acks": {"0": true}})),
    });
    let status = run(config(port), &["a"], dir.path()).await;
    assert_eq!(status["a"], EventStatus::Delivered);
    let seen = seen.lock().unwrap().clone();
    for s in seen.iter().skip(1) {
        assert_eq!(
            s.headers.get("cookie").map(String::as_str),
            Some("AWSELB=STICKY1"),
            "{}",
            s.target
        );
    }
    assert!(!acks_of(&seen).is_empty());
}

#[tokio::test]
async fn acks_disabled_on_the_token_count_events_delivered_on_http_200() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _) = responder(|s| match s.path() {
        "/services/collector/health" => health_ok(),
        "/services/collector/event" => ok_ack(3),
        _ => (400, vec![], json!({"text": "ACK is disabled", "code": 14})),
    });
    let status = run(config(port), &["a"], dir.path()).await;
    assert_eq!(status["a"], EventStatus::Delivered);
}

#[tokio::test]
async fn the_raw_endpoint_carries_the_channel_and_metadata_in_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) = responder(|s| match s.path() {
        "/services/collector/health" => health_ok(),
        _ => (200, vec![], json!({"text": "Success", "code": 0})),
    });
    let mut c = config(port);
    c.acknowledgements = false;
    c.endpoint_target = EndpointTarget::Raw;
    c.index = Some("audit".into());
    let status = run(c, &["a", "b"], dir.path()).await;
    assert!(status.values().all(|s| *s == EventStatus::Delivered));
    let seen = seen.lock().unwrap().clone();
    let sent = events_of(&seen);
    let channel = &sent[0].headers["x-splunk-request-channel"];
    assert_eq!(
        sent[0].target,
        format!(
            "/services/collector/raw?channel={channel}&sourcetype=teleport%3Aaudit&index=audit"
        )
    );
    let lines: Vec<&[u8]> = sent[0]
        .body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        lines,
        vec![event("a").raw().as_ref(), event("b").raw().as_ref()]
    );
}

#[tokio::test]
async fn several_indexers_are_used_round_robin_and_asked_about_their_own_acks() {
    let dir = tempfile::tempdir().unwrap();
    let handler = |s: &Seen| match s.path() {
        "/services/collector/health" => health_ok(),
        "/services/collector/event" => ok_ack(0),
        _ => (200, vec![], json!({"acks": {"0": true}})),
    };
    let (a, seen_a) = responder(handler);
    let (b, seen_b) = responder(handler);
    let mut c = config(a);
    c.endpoint = None;
    c.endpoints = vec![
        format!("http://127.0.0.1:{a}"),
        format!("http://127.0.0.1:{b}"),
    ];
    c.batch.max_events = 1;
    let status = run(c, &["x", "y", "z", "w"], dir.path()).await;
    assert!(
        status.values().all(|s| *s == EventStatus::Delivered),
        "{status:?}"
    );
    for seen in [seen_a, seen_b] {
        let seen = seen.lock().unwrap().clone();
        assert!(!events_of(&seen).is_empty());
        assert!(
            !acks_of(&seen).is_empty(),
            "each indexer is asked about its own acks"
        );
    }
}
