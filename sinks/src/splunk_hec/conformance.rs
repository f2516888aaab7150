//! Conformance of the sink to Splunk's published HEC documentation, one fixture per documented shape under
//! `conformance/` (each names the page and section it comes from in its `_doc`): what the sink sends parses
//! exactly as documented (envelope keys and values, batches of concatenated envelopes, the raw endpoint with its
//! channel, the ack query body), and every documented answer (event answers with each status code, ack answers,
//! health answers) is judged as documented.

use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::Value;

use super::config::{EndpointTarget, SplunkHecSinkConfig};
use super::request_builder::RequestBuilder;
use super::response::{ack_request, parse_ack_answer, parse_answer, verdict};
use super::service::NodeParts;
use super::tests::{event, responder};
use crate::http::Reply;
use auditrail_core::Event;

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixtures are JSON")
}

fn envelopes(body: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("the body is concatenated JSON objects")
}

#[test]
fn an_envelope_has_exactly_the_documented_keys_and_values() {
    let f = fixture(include_str!("conformance/envelope.json"));
    let mut c = SplunkHecSinkConfig::with_endpoint("http://x", "t");
    c.host = Some(f["config"]["host"].as_str().unwrap().into());
    c.source = Some(f["config"]["source"].as_str().unwrap().into());
    c.index = Some(f["config"]["index"].as_str().unwrap().into());
    c.indexed_fields = serde_json::from_value(f["config"]["indexed_fields"].clone()).unwrap();
    let raw = f["input_event"].as_str().unwrap();
    let e = Event::parse(bytes::Bytes::from(raw.to_string()), 1 << 20).unwrap();
    let body = RequestBuilder::new(&c).plain(&[e]);
    let got = envelopes(&body);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], f["expected"]);
    let allowed: Vec<&str> = f["allowed_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    for k in got[0].as_object().unwrap().keys() {
        assert!(allowed.contains(&k.as_str()), "undocumented key {k}");
    }
    // `time` is a JSON number of epoch seconds, not a string.
    assert!(got[0]["time"].is_number());
    // The event's own bytes, escapes and big numbers included, are the `event` value verbatim.
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        event: &'a RawValue,
    }
    let env: Envelope<'_> = serde_json::from_slice(body.trim_ascii_end()).unwrap();
    assert_eq!(env.event.get(), raw);
}

#[test]
fn a_batch_is_envelopes_one_after_the_other_not_an_array() {
    let f = fixture(include_str!("conformance/batch.json"));
    let n = f["events"].as_u64().unwrap() as usize;
    let c = SplunkHecSinkConfig::with_endpoint("http://x", "t");
    let events: Vec<Event> = (0..n).map(|i| event(&format!("u{i}"))).collect();
    let body = RequestBuilder::new(&c).plain(&events);
    assert_eq!(body[0], b'{');
    let got = envelopes(&body);
    assert_eq!(got.len(), n);
    for (i, env) in got.iter().enumerate() {
        assert_eq!(env["event"]["uid"], format!("u{i}"));
        assert_eq!(env["sourcetype"], "teleport:audit");
        assert!(env.get("host").is_none() && env.get("index").is_none());
    }
}

#[test]
fn the_raw_endpoint_takes_the_channel_and_metadata_as_query_parameters() {
    let f = fixture(include_str!("conformance/raw.json"));
    let mut c = SplunkHecSinkConfig::with_endpoint("https://splunk.example.com:8088", "t");
    c.endpoint_target = EndpointTarget::Raw;
    c.host = Some("node-1".into());
    c.source = Some("teleport".into());
    c.index = Some("audit".into());
    let channel = "0192f1c4-7e2a-7b3c-9d4e-5f6a7b8c9d0e";
    let parts = NodeParts::new(&c, "hec", channel).unwrap();
    let url = parts.send_url(0);
    assert_eq!(url.path(), f["path"]);
    let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    assert_eq!(
        keys,
        serde_json::from_value::<Vec<String>>(f["query_keys"].clone()).unwrap()
    );
    let q: std::collections::HashMap<_, _> = url.query_pairs().collect();
    assert_eq!(q["channel"], channel);
    assert_eq!(q["sourcetype"], "teleport:audit");
    // The body is the events as they are, one per line.
    let e = event("r1");
    assert_eq!(
        RequestBuilder::new(&c).plain(std::slice::from_ref(&e)),
        [e.raw().as_ref(), b"\n"].concat()
    );
}

#[test]
fn the_ack_query_and_its_answer_are_as_documented() {
    let f = fixture(include_str!("conformance/ack.json"));
    let ids: Vec<u64> = serde_json::from_value(f["request_ids"].clone()).unwrap();
    let body: Value = serde_json::from_slice(&ack_request(&ids)).unwrap();
    assert_eq!(body, f["request_body"]);
    let answer = serde_json::to_vec(&f["response_body"]).unwrap();
    let (yes, no) = parse_ack_answer("http://x/", 200, &answer).unwrap();
    assert_eq!(
        yes,
        serde_json::from_value::<Vec<u64>>(f["indexed"].clone()).unwrap()
    );
    assert_eq!(
        no,
        serde_json::from_value::<Vec<u64>>(f["not_yet"].clone()).unwrap()
    );
    let ev = serde_json::to_vec(&f["event_answer"]).unwrap();
    let a = parse_answer(&ev).unwrap();
    assert_eq!((a.code, a.ack_id), (Some(0), Some(0)));
    // The ack query goes to /services/collector/ack with the channel.
    let c = SplunkHecSinkConfig::with_endpoint("https://splunk.example.com:8088", "t");
    let parts = NodeParts::new(&c, "hec", "ch-1").unwrap();
    assert_eq!(parts.send_url(0).path(), "/services/collector/event");
    // Code 14 on an ack query names the setting to change.
    let e =
        parse_ack_answer("http://x/", 400, br#"{"text":"ACK is disabled","code":14}"#).unwrap_err();
    assert!(
        e.to_string().contains("Enable indexer acknowledgement"),
        "{e}"
    );
}

#[test]
fn every_documented_code_is_judged_as_documented() {
    let f = fixture(include_str!("conformance/codes.json"));
    let after = Some(Duration::from_secs(3));
    for c in f["codes"].as_array().unwrap() {
        let code = c["code"].as_i64().unwrap();
        let status = c["status"].as_u64().unwrap() as u16;
        let text = c["text"].as_str().unwrap();
        let mut body = serde_json::json!({"text": text, "code": code});
        if let Some(n) = c.get("invalid-event-number") {
            body["invalid-event-number"] = n.clone();
        }
        let reply = verdict("http://x/", status, body.to_string().as_bytes(), after);
        let why = |r: &Reply| match r {
            Reply::Transient { why, .. }
            | Reply::Auth { why }
            | Reply::Refused { why, .. }
            | Reply::Unexpected { why } => why.clone(),
            Reply::Ok(_) => String::new(),
        };
        if code != 0 {
            assert!(why(&reply).contains(text), "code {code}: {reply:?}");
        }
        match c["verdict"].as_str().unwrap() {
            "ok" => assert!(matches!(reply, Reply::Ok(_)), "code {code}: {reply:?}"),
            "auth" => assert!(
                matches!(reply, Reply::Auth { .. }),
                "code {code}: {reply:?}"
            ),
            "data" => match reply {
                Reply::Refused { at, status: s, .. } => {
                    assert_eq!(s, status);
                    assert_eq!(
                        at,
                        c.get("invalid-event-number")
                            .map(|n| n.as_u64().unwrap() as usize),
                        "code {code}"
                    );
                }
                other => panic!("code {code}: {other:?}"),
            },
            "busy" => assert!(
                matches!(reply, Reply::Transient { retry_after, .. } if retry_after == after),
                "code {code}: {reply:?}"
            ),
            "server" => assert!(
                matches!(
                    reply,
                    Reply::Transient {
                        node_down: true,
                        ..
                    }
                ),
                "code {code}: {reply:?}"
            ),
            "setting" => match &reply {
                Reply::Unexpected { why } => {
                    assert!(
                        why.contains(c["names"].as_str().unwrap()),
                        "code {code}: {why}"
                    )
                }
                other => panic!("code {code}: {other:?}"),
            },
            v => panic!("fixture verdict {v}"),
        }
    }
    // The HTTP status alone, when a proxy answers without Splunk's body.
    assert!(matches!(
        verdict("http://x/", 401, b"", None),
        Reply::Auth { .. }
    ));
    assert!(matches!(
        verdict("http://x/", 403, b"<html>", None),
        Reply::Auth { .. }
    ));
    assert!(
        matches!(verdict("http://x/", 503, b"", after), Reply::Transient { retry_after, .. } if retry_after == after)
    );
    assert!(matches!(
        verdict("http://x/", 413, b"", None),
        Reply::Refused { at: None, .. }
    ));
    assert!(matches!(
        verdict("http://x/", 404, b"", None),
        Reply::Unexpected { .. }
    ));
}

#[tokio::test]
async fn health_answers_are_judged_as_documented() {
    let f = fixture(include_str!("conformance/health.json"));
    for a in f["answers"].as_array().unwrap() {
        let status = a["status"].as_u64().unwrap() as u16;
        let body = a["body"].clone();
        let (port, seen) = responder(move |_| (status, vec![], body.clone()));
        let c = SplunkHecSinkConfig::with_endpoint(format!("http://127.0.0.1:{port}"), "t");
        let nodes = NodeParts::new(&c, "hec", "ch").unwrap().nodes(|_| None);
        let r = nodes[0].check_health().await;
        assert_eq!(r.is_ok(), a["passes"].as_bool().unwrap(), "{a}: {r:?}");
        if let Err(why) = r {
            assert!(why.contains(a["body"]["text"].as_str().unwrap()), "{why}");
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].target, "/services/collector/health");
    }
}
