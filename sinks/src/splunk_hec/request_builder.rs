//! Events → one HEC request body.
//!
//! On `/services/collector/event` each event becomes one JSON envelope and the batch is the envelopes one after
//! the other (Splunk's "batch of events": concatenated JSON objects; a newline between them, which HEC reads as
//! whitespace):
//!
//! ```json
//! {"time":1486104845.123,"host":"node-1","source":"teleport","sourcetype":"teleport:audit","index":"audit","fields":{"user":"alice"},"event":{...the event, byte for byte...}}
//! ```
//!
//! - `time`: epoch seconds with the fraction of the event's own `time` (nanoseconds, trailing zeros cut), so
//!   Splunk's `_time` is the moment of the event, not of its arrival.
//! - `host`, `source`, `index` only when configured; `sourcetype` always (default `teleport:audit`).
//! - `fields`: the configured indexed fields the event has, as strings (HEC indexes only strings and arrays of
//!   strings; a nested value would fail the request with code 15).
//! - `event`: the event's raw bytes, never re-encoded (see DESIGN: a forensic record keeps its bytes).
//!
//! On `/services/collector/raw` the body is the events' bytes, one per line, and the metadata goes in the query
//! string ([`super::service`]). gzip is applied last when configured.

use std::io::Write;

use auditrail_core::Event;
use flate2::write::GzEncoder;

use super::config::{Compression, EndpointTarget, SplunkHecSinkConfig};
use crate::http::Built;

/// Turns batches into request bodies. Cheap to clone: each request encodes with its own copy.
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    target: EndpointTarget,
    /// `,"host":..,"source":..,"sourcetype":..,"index":..` written once.
    metadata: Vec<u8>,
    /// Indexed fields: name and its JSON-quoted form.
    fields: Vec<(String, Vec<u8>)>,
    compression: Compression,
    level: u32,
}

impl RequestBuilder {
    /// The builder of `config` (validated).
    pub fn new(config: &SplunkHecSinkConfig) -> RequestBuilder {
        let mut metadata = Vec::new();
        let mut put = |key: &str, value: &str| {
            metadata.extend_from_slice(b",\"");
            metadata.extend_from_slice(key.as_bytes());
            metadata.extend_from_slice(b"\":");
            serde_json::to_writer(&mut metadata, value).expect("a string always serializes");
        };
        if let Some(h) = &config.host {
            put("host", h);
        }
        if let Some(s) = &config.source {
            put("source", s);
        }
        put("sourcetype", &config.sourcetype);
        if let Some(i) = &config.index {
            put("index", i);
        }
        RequestBuilder {
            target: config.endpoint_target,
            metadata,
            fields: config
                .indexed_fields
                .iter()
                .map(|f| {
                    (
                        f.clone(),
                        serde_json::to_vec(f).expect("a string always serializes"),
                    )
                })
                .collect(),
            compression: config.compression,
            level: config.compression_level,
        }
    }

    /// The body of `events`, uncompressed.
    pub fn plain(&self, events: &[Event]) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            events
                .iter()
                .map(|e| e.raw().len() + 64 + self.metadata.len())
                .sum(),
        );
        for e in events {
            match self.target {
                EndpointTarget::Event => self.envelope(e, &mut out),
                EndpointTarget::Raw => {
                    out.extend_from_slice(e.raw());
                    out.push(b'\n');
                }
            }
        }
        out
    }

    /// Appends the envelope of `e` and a newline.
    fn envelope(&self, e: &Event, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":");
        write_epoch(e.timestamp_nanos(), out);
        out.extend_from_slice(&self.metadata);
        if !self.fields.is_empty() {
            let mut any = false;
            for (name, quoted) in &self.fields {
                let Some(value) = e.field(name) else { continue };
                out.extend_from_slice(if any { b"," } else { b",\"fields\":{" });
                any = true;
                out.extend_from_slice(quoted);
                out.push(b':');
                serde_json::to_writer(&mut *out, value.as_ref())
                    .expect("a string always serializes");
            }
            if any {
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"event\":");
        out.extend_from_slice(e.raw());
        out.extend_from_slice(b"}\n");
    }

    /// Encodes `events` into one body (compressed as configured).
    pub fn build(&self, events: Vec<Event>) -> Built {
        let plain = self.plain(&events);
        let body = match self.compression {
            Compression::None => plain,
            Compression::Gzip => {
                let mut gz = GzEncoder::new(
                    Vec::with_capacity(plain.len() / 4 + 64),
                    flate2::Compression::new(self.level),
                );
                gz.write_all(&plain)
                    .and_then(|()| gz.finish())
                    .expect("gzip into memory cannot fail")
            }
        };
        Built {
            body,
            events,
            refused: Vec::new(),
        }
    }
}

/// Writes Unix nanoseconds as epoch seconds with the fraction, trailing zeros cut: `1486104845.123`.
pub fn write_epoch(nanos: i64, out: &mut Vec<u8>) {
    let n = i128::from(nanos);
    if n < 0 {
        out.push(b'-');
    }
    let n = n.unsigned_abs();
    let secs = n / 1_000_000_000;
    let frac = (n % 1_000_000_000) as u32;
    write!(out, "{secs}").expect("writing to a Vec cannot fail");
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push(b'.');
        out.extend_from_slice(digits.trim_end_matches('0').as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn ev(text: &str) -> Event {
        Event::parse(Bytes::from(text.to_string()), 1 << 20).unwrap()
    }

    fn epoch(nanos: i64) -> String {
        let mut v = Vec::new();
        write_epoch(nanos, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn epoch_seconds_keep_the_fraction() {
        assert_eq!(epoch(1_486_104_845_000_000_000), "1486104845");
        assert_eq!(epoch(1_486_104_845_123_000_000), "1486104845.123");
        assert_eq!(epoch(1_486_104_845_000_000_001), "1486104845.000000001");
        assert_eq!(epoch(-1_500_000_000), "-1.5");
        assert_eq!(epoch(0), "0");
    }

    proptest! {
        #[test]
        fn epoch_parses_back_to_the_same_instant(nanos in any::<i64>()) {
            let text = epoch(nanos);
            let (sign, rest) = text.strip_prefix('-').map_or((1i128, text.as_str()), |r| (-1, r));
            let (s, f) = rest.split_once('.').unwrap_or((rest, ""));
            let f = format!("{f:0<9}");
            let back = sign * (s.parse::<i128>().unwrap() * 1_000_000_000 + f.parse::<i128>().unwrap());
            prop_assert_eq!(back, i128::from(nanos));
        }
    }

    #[test]
    fn raw_mode_is_the_events_one_per_line() {
        let mut c = SplunkHecSinkConfig::with_endpoint("http://x", "t");
        c.endpoint_target = EndpointTarget::Raw;
        let b = RequestBuilder::new(&c);
        let a = r#"{"event":"a","uid":"1","time":"2017-02-03T06:54:05Z"}"#;
        let z = r#"{"event":"z","uid":"2","time":"2017-02-03T06:54:06Z"}"#;
        assert_eq!(b.plain(&[ev(a), ev(z)]), format!("{a}\n{z}\n").into_bytes());
    }

    #[test]
    fn gzip_round_trips() {
        let mut c = SplunkHecSinkConfig::with_endpoint("http://x", "t");
        c.compression = Compression::Gzip;
        let b = RequestBuilder::new(&c);
        let events = vec![ev(
            r#"{"event":"a","uid":"1","time":"2017-02-03T06:54:05Z"}"#,
        )];
        let plain = b.plain(&events);
        let built = b.build(events);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&built.body[..]), &mut out)
            .unwrap();
        assert_eq!(out, plain);
    }
}
