//! The chain itself: what an event's `hash` is computed over, and the field that carries it.
//!
//! ```text
//! digest = SHA-256(RFC 8785 form of the event without "auditrail.integrity")
//! hash   = SHA-256("auditrail.chain.v1" 0x00 | u32be len(stream) | stream | u64be seq | prev | digest)
//! ```
//!
//! `prev` is the previous event's `hash` (32 zero bytes before seq 1). Binding the stream and the seq into the
//! hash means an event cannot be moved to another place or stream without its hash changing; binding `prev`
//! makes each hash commit to everything before it, so a seal over one hash covers the whole prefix.
//!
//! The field is appended last, as `"auditrail.integrity":{"stream":…,"seq":…,"prev":"<hex>","hash":"<hex>"}`.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::canonical::{canonicalize_object, canonicalize_open_object, CanonicalError};
use super::FIELD;

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The `prev` of a stream's first event.
pub const GENESIS: Hash = [0; 32];

const DOMAIN: &[u8] = b"auditrail.chain.v1\0";

/// SHA-256 of the canonical form of `event` (a JSON object), without its chain field.
///
/// `scratch` is reused between calls to avoid an allocation per event.
pub fn content_digest(event: &[u8], scratch: &mut Vec<u8>) -> Result<Hash, CanonicalError> {
    scratch.clear();
    canonicalize_object(event, Some(FIELD), scratch)?;
    Ok(Sha256::digest(&scratch[..]).into())
}

/// [`content_digest`] of an event given without its closing brace and whatever came last before it (e.g. the
/// chain field cut off): the same digest, without copying the text.
pub fn open_content_digest(members: &[u8], scratch: &mut Vec<u8>) -> Result<Hash, CanonicalError> {
    scratch.clear();
    canonicalize_open_object(members, Some(FIELD), scratch)?;
    Ok(Sha256::digest(&scratch[..]).into())
}

/// The chain hash of the event at `seq` of `stream`, given its predecessor's hash and its content digest.
pub fn link(stream: &str, seq: u64, prev: &Hash, digest: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update((stream.len() as u32).to_be_bytes());
    h.update(stream.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(digest);
    h.finalize().into()
}

/// The value of an event's chain field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integrity {
    /// `node_id/source` (plus a suffix after a chain reset).
    pub stream: String,
    /// Position in the stream, from 1.
    pub seq: u64,
    /// The previous event's hash.
    pub prev: Hash,
    /// This event's hash.
    pub hash: Hash,
}

impl Integrity {
    /// Appends the field's JSON text (`"auditrail.integrity":{…}`, without a leading comma) to `out`.
    pub fn write_member(&self, out: &mut Vec<u8>) {
        write_member_with(
            &member_prefix(&self.stream),
            self.seq,
            &self.prev,
            &self.hash,
            out,
        );
    }
}

/// The constant start of a stream's chain fields: `"auditrail.integrity":{"stream":"…","seq":`.
pub fn member_prefix(stream: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + stream.len());
    out.extend_from_slice(b"\"");
    out.extend_from_slice(FIELD.as_bytes());
    out.extend_from_slice(b"\":{\"stream\":");
    // Stream names come from config names and node ids; serde_json escapes whatever they hold.
    serde_json::to_writer(&mut out, stream).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"seq\":");
    out
}

/// Appends a chain field given its stream's [`member_prefix`] (the hot path: no allocation).
pub fn write_member_with(prefix: &[u8], seq: u64, prev: &Hash, hash: &Hash, out: &mut Vec<u8>) {
    out.extend_from_slice(prefix);
    let mut digits = [0u8; 20];
    let mut n = digits.len();
    let mut v = seq;
    loop {
        n -= 1;
        digits[n] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[n..]);
    out.extend_from_slice(b",\"prev\":\"");
    push_hex(prev, out);
    out.extend_from_slice(b"\",\"hash\":\"");
    push_hex(hash, out);
    out.extend_from_slice(b"\"}");
}

fn push_hex(h: &Hash, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + 64, 0);
    hex::encode_to_slice(h, &mut out[start..]).expect("64 bytes hold 32 in hex");
}

/// Why an event's chain field could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The text is not a JSON object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// The object has no chain field.
    #[error("no \"auditrail.integrity\" field")]
    Missing,
    /// The field is there but malformed.
    #[error("malformed \"auditrail.integrity\" field: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Wire {
    stream: String,
    seq: u64,
    prev: String,
    hash: String,
}

#[derive(Deserialize)]
struct Outer<'a> {
    #[serde(rename = "auditrail.integrity", borrow, default)]
    field: Option<&'a serde_json::value::RawValue>,
}

/// Reads the chain field of the event `text`.
pub fn read_field(text: &[u8]) -> Result<Integrity, FieldError> {
    let outer: Outer<'_> =
        serde_json::from_slice(text).map_err(|e| FieldError::NotJson(e.to_string()))?;
    let raw = outer.field.ok_or(FieldError::Missing)?;
    let w: Wire =
        serde_json::from_str(raw.get()).map_err(|e| FieldError::Malformed(e.to_string()))?;
    let parse = |s: &str, what: &str| -> Result<Hash, FieldError> {
        let mut h = [0u8; 32];
        hex::decode_to_slice(s, &mut h)
            .map_err(|e| FieldError::Malformed(format!("{what}: {e}")))?;
        Ok(h)
    };
    if w.seq == 0 {
        return Err(FieldError::Malformed("seq starts at 1".into()));
    }
    Ok(Integrity {
        prev: parse(&w.prev, "prev")?,
        hash: parse(&w.hash, "hash")?,
        stream: w.stream,
        seq: w.seq,
    })
}

/// Appends `,<member>` before the closing brace of the JSON object `raw` (or just the member if it is empty).
pub fn append_member(raw: &[u8], member: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + member.len() + 2);
    append_member_to(raw, |out| out.extend_from_slice(member), &mut out);
    out
}

/// Like [`append_member`], but writes the result at the end of `out`, the member written by `member`: many
/// events can share one allocation.
pub fn append_member_to(raw: &[u8], member: impl FnOnce(&mut Vec<u8>), out: &mut Vec<u8>) {
    let end = raw.iter().rposition(|&b| b == b'}').unwrap_or(raw.len());
    let body = &raw[..end];
    let empty = body
        .iter()
        .skip(1)
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    out.extend_from_slice(body);
    if !empty {
        out.push(b',');
    }
    member(out);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_round_trips_and_is_ignored_by_the_digest() {
        let raw = br#"{"event":"x","uid":"u","time":"2017-02-03T06:54:05Z"}"#;
        let mut scratch = Vec::new();
        let d = content_digest(raw, &mut scratch).unwrap();
        let f = Integrity {
            stream: "node-1/teleport".into(),
            seq: 7,
            prev: [1; 32],
            hash: link("node-1/teleport", 7, &[1; 32], &d),
        };
        let mut member = Vec::new();
        f.write_member(&mut member);
        let chained = append_member(raw, &member);
        assert!(chained.starts_with(&raw[..raw.len() - 1]));
        assert_eq!(read_field(&chained).unwrap(), f);
        assert_eq!(content_digest(&chained, &mut scratch).unwrap(), d);
        assert_eq!(append_member(b"{}", b"\"a\":1"), b"{\"a\":1}");
    }

    #[test]
    fn the_hash_binds_stream_seq_prev_and_content() {
        let d = [9; 32];
        let h = link("s", 1, &GENESIS, &d);
        assert_ne!(h, link("t", 1, &GENESIS, &d));
        assert_ne!(h, link("s", 2, &GENESIS, &d));
        assert_ne!(h, link("s", 1, &[1; 32], &d));
        assert_ne!(h, link("s", 1, &GENESIS, &[8; 32]));
    }

    #[test]
    fn malformed_fields_are_reported() {
        assert_eq!(read_field(b"{\"a\":1}"), Err(FieldError::Missing));
        assert!(matches!(
            read_field(b"{\"auditrail.integrity\":{\"stream\":\"s\",\"seq\":1,\"prev\":\"zz\",\"hash\":\"00\"}}"),
            Err(FieldError::Malformed(_))
        ));
        assert!(matches!(read_field(b"nope"), Err(FieldError::NotJson(_))));
    }
}
