//! Events → a `_bulk` request body: one action line and one document line per event (NDJSON), gzipped as
//! configured.
//!
//! The document is the event's raw bytes, untouched, in the default `schema = "teleport"` with plain indices.
//! Only what auditrail must add is written anew: in data-stream mode `"@timestamp":"<time>",` is put in front of
//! the event's own first field (the rest of the bytes follow as they are); with `schema = "ecs"` the ECS
//! fields are written and the original follows verbatim under `teleport.audit`. The action line carries the
//! index name and, by default, `_id` = the event's `uid` exactly as it is written in the event.

use std::io::Write;

use auditrail_core::Event;
use flate2::write::GzEncoder;

use super::config::{Compression, ElasticsearchSinkConfig, IdSource, Mode, OpType, Schema};
use super::ecs;
use super::index::IndexTemplate;
use crate::name_rules::NameRefused;

/// Longest `_id` Elasticsearch accepts, in bytes. A longer one fails the whole bulk request, so such an event
/// is refused here instead.
pub const MAX_ID_BYTES: usize = 512;

/// Dead-letter reason of an event whose `uid` is too long to be an `_id`.
pub const REASON_ID_TOO_LONG: &str = "id_too_long";
/// Dead-letter reason of an event that could not be turned into a document.
pub const REASON_ENCODING: &str = "encoding_error";

/// Turns batches of events into bulk bodies. Cheap to clone: each request encodes with its own copy.
#[derive(Clone, Debug)]
pub struct Encoder {
    mode: Mode,
    op_type: OpType,
    id: IdSource,
    schema: Schema,
    index: IndexTemplate,
    compression: Compression,
    level: u32,
}

/// A bulk body and the events it holds, in body order.
pub struct EncodedBatch {
    /// The request body (compressed if configured).
    pub body: Vec<u8>,
    /// Length of the NDJSON before compression.
    pub uncompressed_len: usize,
    /// The events in the body, in order: item `i` of the response is `events[i]`.
    pub events: Vec<Event>,
    /// Events that cannot be sent at all, with the dead-letter reason and message.
    pub refused: Vec<(Event, &'static str, String)>,
}

impl Encoder {
    /// An encoder for `config` (already validated).
    pub fn new(config: &ElasticsearchSinkConfig) -> Result<Encoder, String> {
        let (_, target) = config.target();
        Ok(Encoder {
            mode: config.mode,
            op_type: config.op_type,
            id: config.id,
            schema: config.encoding.schema,
            index: IndexTemplate::parse(target)?.policy(config.unsafe_index),
            compression: config.compression,
            level: config.compression_level,
        })
    }

    /// The index (or data stream) `event` goes to.
    pub fn index_of(&mut self, event: &Event) -> Result<String, NameRefused> {
        self.index.render(event)
    }

    /// Encodes `events` into one bulk body.
    pub fn encode(&mut self, events: Vec<Event>) -> EncodedBatch {
        let mut ndjson = Vec::with_capacity(events.iter().map(|e| e.raw().len() + 96).sum());
        let mut kept = Vec::with_capacity(events.len());
        let mut refused = Vec::new();
        let mut last_index: Option<(Vec<u8>, String)> = None;
        for e in events {
            let start = ndjson.len();
            if let Err((reason, message)) = self.encode_one(&e, &mut ndjson, &mut last_index) {
                ndjson.truncate(start);
                refused.push((e, reason, message));
            } else {
                kept.push(e);
            }
        }
        let uncompressed_len = ndjson.len();
        let body = match self.compression {
            Compression::None => ndjson,
            Compression::Gzip => {
                let mut gz = GzEncoder::new(
                    Vec::with_capacity(ndjson.len() / 4 + 64),
                    flate2::Compression::new(self.level),
                );
                gz.write_all(&ndjson)
                    .and_then(|()| gz.finish())
                    .expect("gzip into memory cannot fail")
            }
        };
        EncodedBatch {
            body,
            uncompressed_len,
            events: kept,
            refused,
        }
    }

    /// Appends the action and document lines of `e`. `last_index` caches the JSON of the last index name.
    fn encode_one(
        &mut self,
        e: &Event,
        out: &mut Vec<u8>,
        last_index: &mut Option<(Vec<u8>, String)>,
    ) -> Result<(), (&'static str, String)> {
        let name = self.index.render(e).map_err(|r| (r.reason, r.message))?;
        if last_index.as_ref().is_none_or(|(_, n)| *n != name) {
            let json = serde_json::to_vec(&name).expect("a string always serializes");
            *last_index = Some((json, name));
        }
        let (index_json, _) = last_index.as_ref().expect("set above");
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(self.op_type.as_str().as_bytes());
        out.extend_from_slice(b"\":{\"_index\":");
        out.extend_from_slice(index_json);
        if self.id == IdSource::Uid {
            let uid = e.uid();
            if uid.len() > MAX_ID_BYTES {
                return Err((
                    REASON_ID_TOO_LONG,
                    format!(
                        "uid is {} bytes; an Elasticsearch _id holds at most {MAX_ID_BYTES}",
                        uid.len()
                    ),
                ));
            }
            out.extend_from_slice(b",\"_id\":\"");
            out.extend_from_slice(e.uid_raw().as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"}}\n");
        match (self.schema, self.mode) {
            (Schema::Ecs, _) => ecs::encode(e, out).map_err(|m| (REASON_ENCODING, m))?,
            (Schema::Teleport, Mode::Index) => out.extend_from_slice(e.raw()),
            (Schema::Teleport, Mode::DataStream) => with_timestamp(e, out),
        }
        out.push(b'\n');
        Ok(())
    }
}

/// The event with `"@timestamp":"<time>"` put first, unless it has a top-level `@timestamp` already.
fn with_timestamp(e: &Event, out: &mut Vec<u8>) {
    let raw = e.raw();
    let has_own =
        memchr::memmem::find(raw, b"\"@timestamp\"").is_some() && e.field("@timestamp").is_some();
    if has_own {
        out.extend_from_slice(raw);
        return;
    }
    out.extend_from_slice(b"{\"@timestamp\":\"");
    out.extend_from_slice(e.time_raw().as_bytes());
    out.extend_from_slice(b"\",");
    // An event always has `event` and `time`, so the object is not empty and `{` is its first byte.
    out.extend_from_slice(&raw[1..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use serde_json::Value;

    fn ev(json: &str) -> Event {
        Event::parse(Bytes::copy_from_slice(json.as_bytes()), 1 << 20).unwrap()
    }

    fn config(extra: &str) -> ElasticsearchSinkConfig {
        let c: ElasticsearchSinkConfig = toml::from_str(&format!(
            "endpoint = \"http://h\"\ncompression = \"none\"\n{extra}"
        ))
        .unwrap();
        c.validate().unwrap();
        c
    }

    fn lines(body: &[u8]) -> Vec<&[u8]> {
        assert_eq!(body.last(), Some(&b'\n'));
        body[..body.len() - 1].split(|&b| b == b'\n').collect()
    }

    const E1: &str = r#"{"event":"session.start","uid":"u-1","time":"2017-02-03T06:54:05.000Z","cmd":"a \u003c b","n":123456789012345678901,"addr.remote":"1.2.3.4:5","o":{"k":[1,null]}}"#;

    #[test]
    fn documents_are_the_raw_bytes_and_ids_the_uids() {
        let mut enc = Encoder::new(&config("")).unwrap();
        let b = enc.encode(vec![
            ev(E1),
            ev(r#"{"event":"x","uid":"a\"b","time":"2018-01-01T00:00:00Z"}"#),
        ]);
        assert!(b.refused.is_empty());
        assert_eq!(b.events.len(), 2);
        let l = lines(&b.body);
        assert_eq!(l.len(), 4);
        assert_eq!(
            l[0],
            br#"{"create":{"_index":"auditrail-2017.02.03","_id":"u-1"}}"#
        );
        assert_eq!(l[1], E1.as_bytes());
        assert_eq!(
            l[2],
            br#"{"create":{"_index":"auditrail-2018.01.01","_id":"a\"b"}}"#
        );
        let action: Value = serde_json::from_slice(l[2]).unwrap();
        assert_eq!(action["create"]["_id"], "a\"b");
        assert_eq!(b.uncompressed_len, b.body.len());
    }

    #[test]
    fn op_type_and_auto_ids() {
        let mut enc = Encoder::new(&config(
            "op_type = \"index\"\nid = \"auto\"\nindex = \"fixed\"",
        ))
        .unwrap();
        let b = enc.encode(vec![ev(E1)]);
        assert_eq!(lines(&b.body)[0], br#"{"index":{"_index":"fixed"}}"#);
    }

    #[test]
    fn data_streams_get_a_timestamp_in_front() {
        let mut enc = Encoder::new(&config("mode = \"data_stream\"")).unwrap();
        let own = r#"{"event":"x","uid":"b","time":"2017-02-03T06:54:05Z","@timestamp":"2020-01-01T00:00:00Z"}"#;
        let nested =
            r#"{"event":"x","uid":"c","time":"2017-02-03T06:54:05Z","o":{"@timestamp":1}}"#;
        let b = enc.encode(vec![ev(E1), ev(own), ev(nested)]);
        let l = lines(&b.body);
        assert_eq!(
            l[0],
            br#"{"create":{"_index":"logs-teleport.audit-default","_id":"u-1"}}"#
        );
        assert_eq!(
            String::from_utf8_lossy(l[1]),
            format!(r#"{{"@timestamp":"2017-02-03T06:54:05.000Z",{}"#, &E1[1..])
        );
        assert_eq!(l[3], own.as_bytes());
        assert!(l[5].starts_with(br#"{"@timestamp":"2017-02-03T06:54:05Z","event""#));
    }

    #[test]
    fn ecs_documents() {
        let mut enc = Encoder::new(&config("encoding = { schema = \"ecs\" }")).unwrap();
        let b = enc.encode(vec![ev(E1)]);
        let doc: Value = serde_json::from_slice(lines(&b.body)[1]).unwrap();
        assert_eq!(doc["event"]["action"], "session.start");
        assert_eq!(doc["teleport"]["audit"]["uid"], "u-1");
    }

    #[test]
    fn ids_over_512_bytes_are_refused_before_sending() {
        let mut enc = Encoder::new(&config("")).unwrap();
        let long = format!(
            r#"{{"event":"x","uid":"{}","time":"2017-02-03T06:54:05Z"}}"#,
            "a".repeat(513)
        );
        let b = enc.encode(vec![ev(&long), ev(E1)]);
        assert_eq!(b.refused.len(), 1);
        assert_eq!(b.refused[0].1, REASON_ID_TOO_LONG);
        assert_eq!(b.events.len(), 1);
        assert_eq!(lines(&b.body).len(), 2);
    }

    #[test]
    fn gzip() {
        let mut c = config("");
        c.compression = Compression::Gzip;
        let mut enc = Encoder::new(&c).unwrap();
        let b = enc.encode(vec![ev(E1); 50]);
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&b.body[..]), &mut plain)
            .unwrap();
        assert_eq!(plain.len(), b.uncompressed_len);
        assert!(b.body.len() < plain.len() / 5);
        assert_eq!(lines(&plain)[1], E1.as_bytes());
    }

    proptest! {
        #[test]
        fn every_body_is_pairs_of_valid_json_lines(
            uids in prop::collection::vec("[ -~\\u{80}-\\u{2ff}]{1,20}", 1..20),
            data_stream in any::<bool>(),
        ) {
            let mut enc = Encoder::new(&config(if data_stream { "mode = \"data_stream\"" } else { "" })).unwrap();
            let events: Vec<Event> = uids.iter().map(|u| {
                ev(&serde_json::json!({"event":"x","uid":u,"time":"2017-02-03T06:54:05Z","v":u}).to_string())
            }).collect();
            let b = enc.encode(events);
            let l = lines(&b.body);
            prop_assert_eq!(l.len(), 2 * uids.len());
            for (i, u) in uids.iter().enumerate() {
                let action: Value = serde_json::from_slice(l[2 * i]).unwrap();
                prop_assert_eq!(&action["create"]["_id"], &Value::from(u.as_str()));
                let doc: Value = serde_json::from_slice(l[2 * i + 1]).unwrap();
                prop_assert_eq!(&doc["v"], &Value::from(u.as_str()));
                prop_assert_eq!(doc.get("@timestamp").is_some(), data_stream);
            }
        }
    }
}
