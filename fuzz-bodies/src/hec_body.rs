//! Untrusted HEC bodies → the splunk_hec source's body parser (`/event` envelopes back to back, `/raw` lines):
//! must never panic; an accepted `/event` body yields exactly one event per envelope, in order, each the
//! envelope's `event` bytes unchanged when it is an audit event (or wrapped, and counted, when it is not); a
//! refused one names a position no later than the envelopes that parse; an accepted part is never over the
//! per-event limit; a `/raw` body yields one event per non-blank line.
//!
//! Input layout: one byte of settings (low 4 bits: the per-event limit, `(b + 1) * 64` bytes; bit 4: reject
//! other data instead of wrapping it; bit 5: keep the metadata under `hec`), then the body.

use auditrail::sources::ingest::Ingest;
use auditrail::sources::splunk_hec::body::{parse_events, parse_raw, Options, RawQuery};
use auditrail::sources::splunk_hec::OtherEvents;
use bytes::Bytes;
use serde_json::value::RawValue;

/// The `hec_body` target.
pub fn hec_body(input: &[u8]) {
    let Some((&settings, body)) = input.split_first() else {
        return;
    };
    let max_line = (usize::from(settings & 0x0f) + 1) * 64;
    let opts = Options {
        metadata_key: (settings & 0x20 != 0).then_some("hec"),
        other: if settings & 0x10 != 0 {
            OtherEvents::Reject
        } else {
            OtherEvents::Wrap
        },
    };
    // Dead letters would go under this directory; parsing alone never writes them.
    let ingest = Ingest::new("fuzz", max_line, std::path::Path::new("/nonexistent"));
    let body = Bytes::copy_from_slice(body);
    // The envelopes as serde_json alone sees them, up to the first that is not an object.
    let mut envelopes: Vec<&RawValue> = Vec::new();
    for v in serde_json::Deserializer::from_slice(&body).into_iter::<&RawValue>() {
        match v {
            Ok(v) if v.get().starts_with('{') => envelopes.push(v),
            _ => break,
        }
    }
    match parse_events(&body, &ingest, opts) {
        Ok(parsed) => {
            assert_eq!(
                parsed.events.len(),
                envelopes.len(),
                "one event per envelope"
            );
            assert!(parsed.wrapped as usize <= parsed.events.len());
            if opts.other == OtherEvents::Reject {
                assert_eq!(parsed.wrapped, 0);
            }
            for (e, env) in parsed.events.iter().zip(&envelopes) {
                let map: std::collections::HashMap<String, &RawValue> =
                    serde_json::from_str(env.get()).unwrap();
                let inner = map["event"].get();
                if opts.metadata_key.is_none() && e.kind() != "splunk_hec.event" {
                    let raw = std::str::from_utf8(e.raw()).unwrap();
                    assert!(
                        raw == inner || raw.starts_with(&inner[..inner.len() - 1]),
                        "the event's bytes are kept: {raw} vs {inner}"
                    );
                }
                assert_eq!(e.source(), Some("fuzz"));
            }
        }
        Err(r) => {
            if let Some(n) = r.event {
                assert!(
                    n <= envelopes.len(),
                    "refused at {n} of {}",
                    envelopes.len()
                );
            }
            assert!(!r.detail.is_empty());
        }
    }
    let lines = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
        .count();
    match parse_raw(&body, &RawQuery::default(), &ingest, opts) {
        Ok(parsed) => assert_eq!(parsed.events.len(), lines, "one event per line"),
        Err(r) => assert!(r.event.is_none_or(|n| n < lines) || lines == 0),
    }
}
