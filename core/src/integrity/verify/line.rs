//! What one stored line says: its chain field, whether its hash checks out, and its seal or crash window
//! announcement if it is one.
//!
//! This is the per-line work of verification (the expensive part: a scan of the object's members, the RFC 8785
//! digest and two SHA-256), written as a pure function of the line so that the [`super::Verifier`] can run it
//! on every core. Nothing here keeps the text: the result borrows the stream name at most.
//!
//! The chain field is found by walking the object's top-level members, not by position, so a store that
//! reorders members (Elasticsearch synthetic `_source`) still verifies; exactly one top-level
//! `"auditrail.integrity"` member is accepted, since the digest leaves out every member of that name and a
//! second one would be content nothing protects.

use std::borrow::Cow;

use serde::Deserialize;

use super::windows::{self, Announcement};
use crate::integrity::chain::{content_digest, link, open_content_digest, Hash};
use crate::integrity::seal::{Seal, CRASH_EVENT, SEAL_EVENT};
use crate::integrity::FIELD;

/// What one line turned out to be.
#[derive(Debug)]
pub(crate) enum Examined<'a> {
    /// Empty or whitespace only: skipped, not counted.
    Blank,
    /// Not a JSON object, or its chain field is malformed.
    Unreadable(String),
    /// A JSON object without a chain field.
    Unchained,
    /// A chained event.
    Chained(Chained<'a>),
}

/// A chained event, reduced to what the checks need.
#[derive(Debug)]
pub(crate) struct Chained<'a> {
    pub stream: Cow<'a, str>,
    pub seq: u64,
    pub prev: Hash,
    pub hash: Hash,
    /// Whether `hash` is what the chain field and the content give (`link(stream, seq, prev, digest)`).
    pub valid: bool,
    /// Why the content has no digest, when it has none (then `valid` is false).
    pub body_error: Option<String>,
    /// `Some` when the event is a seal event: its seal, or why it cannot be read.
    pub seal: Option<Box<Result<Seal, String>>>,
    /// `Some` when the event is a crash window announcement: what it declares, or why it cannot be read.
    pub crash: Option<Box<Result<Announcement, String>>>,
    /// The previous chained line of the same part has the same stream (see [`mark_same_streams`]).
    pub same_stream: bool,
}

/// Marks each chained line whose stream is the previous chained line's: the examining thread compares the
/// names while the text is in its cache, and the recording thread need not read them again.
pub(crate) fn mark_same_streams(exs: &mut [Examined<'_>]) {
    let mut prev: Option<usize> = None;
    for i in 0..exs.len() {
        if !matches!(exs[i], Examined::Chained(_)) {
            continue;
        }
        if let Some(p) = prev {
            let same = match (&exs[p], &exs[i]) {
                (Examined::Chained(a), Examined::Chained(b)) => a.stream == b.stream,
                _ => false,
            };
            if let Examined::Chained(c) = &mut exs[i] {
                c.same_stream = same;
            }
        }
        prev = Some(i);
    }
}

/// Examines one line (without its line terminator). `scratch` is reused between calls.
pub(crate) fn examine<'a>(line: &'a [u8], scratch: &mut Vec<u8>) -> Examined<'a> {
    let text = trim(line);
    if text.is_empty() {
        return Examined::Blank;
    }
    if let Some((field, body)) = fast_field(text) {
        // The digest's canonical form leaves the chain field out: here it is cut off instead of skipped.
        return chained(
            text,
            Content::Open(&text[..body]),
            field,
            Kind::Plain,
            scratch,
        );
    }
    let top = match scan_top(text) {
        Ok(t) => t,
        Err(e) => return Examined::Unreadable(format!("not a JSON object: {e}")),
    };
    let Some((start, end)) = top.chain else {
        // No chain field: still it must be a JSON object to be an event at all.
        return match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
            Ok(_) => Examined::Unchained,
            Err(e) => Examined::Unreadable(format!("not a JSON object: {e}")),
        };
    };
    if top.chain_members > 1 {
        return Examined::Unreadable(format!(
            "{} top-level \"{FIELD}\" members (exactly one is expected)",
            top.chain_members
        ));
    }
    let field = match parse_field(&text[start..end]) {
        Ok(f) => f,
        Err(e) => return Examined::Unreadable(format!("malformed \"{FIELD}\" field: {e}")),
    };
    chained(text, Content::Whole, field, top.kind, scratch)
}

/// What the digest is computed over.
enum Content<'a> {
    /// The line, whose chain field the canonical form leaves out.
    Whole,
    /// The members of the line before its chain field, which was the last.
    Open(&'a [u8]),
}

/// The result for a chained line whose field was read.
fn chained<'a>(
    text: &'a [u8],
    content: Content<'_>,
    field: Field<'a>,
    kind: Kind,
    scratch: &mut Vec<u8>,
) -> Examined<'a> {
    let digest = match content {
        Content::Whole => content_digest(text, scratch),
        Content::Open(members) => open_content_digest(members, scratch),
    };
    let (valid, body_error) = match digest {
        Ok(digest) => (
            link(&field.stream, field.seq, &field.prev, &digest) == field.hash,
            None,
        ),
        Err(e) => (false, Some(e.to_string())),
    };
    let seal = if kind == Kind::Seal {
        match Seal::from_event(text) {
            Ok(Some(s)) => Some(Box::new(Ok(s))),
            Ok(None) => None,
            Err(e) => Some(Box::new(Err(e))),
        }
    } else {
        None
    };
    let crash = (kind == Kind::Crash).then(|| Box::new(windows::read(text)));
    Examined::Chained(Chained {
        stream: field.stream,
        seq: field.seq,
        prev: field.prev,
        hash: field.hash,
        valid,
        body_error,
        seal,
        crash,
        same_stream: false,
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

struct Field<'a> {
    stream: Cow<'a, str>,
    seq: u64,
    prev: Hash,
    hash: Hash,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    stream: Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
}

fn parse_field(value: &[u8]) -> Result<Field<'_>, String> {
    if let Some(f) = parse_field_fast(value) {
        return Ok(f);
    }
    let w: Wire<'_> = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if w.seq == 0 {
        return Err("seq starts at 1".into());
    }
    let hex32 = |s: &str, what: &str| -> Result<Hash, String> {
        decode_hash(s.as_bytes()).ok_or_else(|| format!("{what} is not 64 hex digits"))
    };
    Ok(Field {
        prev: hex32(&w.prev, "prev")?,
        hash: hex32(&w.hash, "hash")?,
        stream: w.stream,
        seq: w.seq,
    })
}

/// The field exactly as [`crate::integrity::chain::Integrity::write_member`] writes it, read without a JSON
/// parser; `None` for anything else (which then goes through serde).
fn parse_field_fast(v: &[u8]) -> Option<Field<'_>> {
    let rest = v.strip_prefix(b"{\"stream\":\"")?;
    let q = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[q] != b'"' {
        return None;
    }
    let stream = std::str::from_utf8(&rest[..q]).ok()?;
    let rest = rest[q + 1..].strip_prefix(b",\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let seq: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b",\"prev\":\"")?;
    let prev = decode_hash(rest.get(..64)?)?;
    let rest = rest[64..].strip_prefix(b"\",\"hash\":\"")?;
    let hash = decode_hash(rest.get(..64)?)?;
    if &rest[64..] != b"\"}" || seq == 0 {
        return None;
    }
    Some(Field {
        stream: Cow::Borrowed(stream),
        seq,
        prev,
        hash,
    })
}

/// 64 hex digits (either case) to 32 bytes.
///
/// Eight digits at a time in a u64 (every line has two hashes to read): each byte is range-checked and turned
/// into its nibble with adds and masks, then the nibbles are packed in pairs.
fn decode_hash(hex: &[u8]) -> Option<Hash> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, chunk) in out.chunks_exact_mut(4).zip(hex.chunks_exact(8)) {
        let v = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        // With every byte below 0x80, adding at most 0x7f to each never carries into the next.
        if v & HIGH != 0 {
            return None;
        }
        let digit = (v + (0x80 - 0x30) * ONES) & !(v + (0x7f - 0x39) * ONES) & HIGH;
        let lower = v | (0x20 * ONES);
        let letter = (lower + (0x80 - 0x61) * ONES) & !(lower + (0x7f - 0x66) * ONES) & HIGH;
        if digit | letter != HIGH {
            return None;
        }
        // '0'..'9' -> low nibble; 'a'..'f' and 'A'..'F' -> low nibble + 9.
        let nibbles = (v & (0x0f * ONES)) + (letter >> 7) * 9;
        // Byte 2k holds the high nibble of output byte k, byte 2k+1 its low nibble.
        let pairs =
            ((nibbles & 0x00ff_00ff_00ff_00ff) << 4) | ((nibbles >> 8) & 0x00ff_00ff_00ff_00ff);
        let packed = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
        let packed = (packed | (packed >> 16)) as u32;
        o.copy_from_slice(&packed.to_le_bytes());
    }
    Some(out)
}

/// What the `event` member names, for the kinds of event the verifier reads further.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    #[default]
    Plain,
    /// `"auditrail.seal"`.
    Seal,
    /// `"auditrail.integrity_crash"`.
    Crash,
}

/// What the walk over the top-level members found.
#[derive(Debug, Default)]
struct Top {
    /// The span of the (last) chain member's value.
    chain: Option<(usize, usize)>,
    chain_members: u32,
    /// What the (last) `event` member names.
    kind: Kind,
}

/// The common case, without a walk over the members: the chain field last, exactly as the agent writes it,
/// and no backslash anywhere. Without escapes every quote delimits a string and every name is spelled
/// literally, so the field is read from the end at fixed offsets (a name, since a colon follows; top-level,
/// since the closing brace after its value ends the text), a search of the rest rules out a second one, and
/// a seal or a crash announcement would have to contain `auditrail.seal` or `auditrail.integrity_crash`
/// literally. Anything else (escapes, another layout, a possible seal or announcement) returns `None` and
/// takes the walk. A text that is not valid JSON passes here only to fail the digest. Also returns where the
/// members before the chain field end (before its comma).
fn fast_field(s: &[u8]) -> Option<(Field<'_>, usize)> {
    use std::sync::OnceLock;
    static FINDER: OnceLock<memchr::memmem::Finder<'static>> = OnceLock::new();
    fn cut<'a>(s: &'a [u8], suffix: &[u8]) -> Option<&'a [u8]> {
        s.strip_suffix(suffix)
    }
    fn hex_tail(s: &[u8]) -> Option<(&[u8], Hash)> {
        let at = s.len().checked_sub(64)?;
        Some((&s[..at], decode_hash(&s[at..])?))
    }
    let (rest, hash) = hex_tail(cut(s, b"\"}}")?)?;
    let (rest, prev) = hex_tail(cut(rest, b"\",\"hash\":\"")?)?;
    let rest = cut(rest, b",\"prev\":\"")?;
    let digits = rest.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let (rest, seq) = rest.split_at(rest.len() - digits);
    if digits == 0 || digits > 19 || (digits > 1 && seq[0] == b'0') {
        return None;
    }
    let seq: u64 = std::str::from_utf8(seq).ok()?.parse().ok()?;
    let rest = cut(cut(rest, b",\"seq\":")?, b"\"")?;
    let open = memchr::memrchr(b'"', rest)?;
    let stream = std::str::from_utf8(&rest[open + 1..]).ok()?;
    let before = cut(&rest[..=open], b",\"auditrail.integrity\":{\"stream\":\"")?;
    if seq == 0 || memchr::memchr(b'\\', s).is_some() {
        return None;
    }
    // One search rules out a second chain field, a seal and a crash announcement: none can be spelled
    // without this.
    let finder = FINDER.get_or_init(|| memchr::memmem::Finder::new(b"auditrail."));
    if finder.find(before).is_some() {
        return None;
    }
    Some((
        Field {
            stream: Cow::Borrowed(stream),
            seq,
            prev,
            hash,
        },
        before.len(),
    ))
}

/// Walks the members of the object `s` without decoding values. It accepts every valid JSON object (and
/// some invalid ones, which the digest then refuses); it never panics and never recurses.
fn scan_top(s: &[u8]) -> Result<Top, &'static str> {
    let mut top = Top::default();
    let mut i = ws(s, 0);
    if s.get(i) != Some(&b'{') {
        return Err("does not start with '{'");
    }
    i = ws(s, i + 1);
    if s.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            i = ws(s, i);
            if s.get(i) != Some(&b'"') {
                return Err("expected a member name");
            }
            let name_start = i;
            i = skip_string(s, i)?;
            let name = &s[name_start..i];
            i = ws(s, i);
            if s.get(i) != Some(&b':') {
                return Err("expected ':' after a member name");
            }
            i = ws(s, i + 1);
            let value_start = i;
            i = skip_value(s, i)?;
            if string_is(name, FIELD) {
                top.chain = Some((value_start, i));
                top.chain_members += 1;
            } else if string_is(name, "event") {
                let value = &s[value_start..i];
                top.kind = if string_is(value, SEAL_EVENT) {
                    Kind::Seal
                } else if string_is(value, CRASH_EVENT) {
                    Kind::Crash
                } else {
                    Kind::Plain
                };
            }
            i = ws(s, i);
            match s.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err("expected ',' or '}' after a member"),
            }
        }
    }
    if ws(s, i) != s.len() {
        return Err("trailing characters after the object");
    }
    Ok(top)
}

/// Whether the JSON string token `quoted` (with its quotes) decodes to `want`.
fn string_is(quoted: &[u8], want: &str) -> bool {
    // Without escapes the token is the name in quotes; with them it is longer.
    if quoted.len() < want.len() + 2 {
        return false;
    }
    if quoted.len() == want.len() + 2 {
        return &quoted[1..quoted.len() - 1] == want.as_bytes();
    }
    let Some(body) = quoted
        .strip_prefix(b"\"")
        .and_then(|q| q.strip_suffix(b"\""))
    else {
        return false;
    };
    if !body.contains(&b'\\') {
        return false;
    }
    serde_json::from_slice::<String>(quoted).is_ok_and(|d| d == want)
}

fn ws(s: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\r' | b'\n') = s.get(i) {
        i += 1;
    }
    i
}

/// `s[i]` is an opening quote; returns the index after the closing one.
fn skip_string(s: &[u8], mut i: usize) -> Result<usize, &'static str> {
    i += 1;
    // Most strings of an event are short: a plain loop beats setting up a vector search.
    let short_end = s.len().min(i + 32);
    while i < short_end {
        match s[i] {
            b'"' => return Ok(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    loop {
        match memchr::memchr2(b'"', b'\\', &s[i.min(s.len())..]) {
            None => return Err("unterminated string"),
            Some(n) => {
                i += n;
                if s[i] == b'"' {
                    return Ok(i + 1);
                }
                i += 2;
            }
        }
    }
}

/// Skips the value at `s[i]`; returns the index after it.
fn skip_value(s: &[u8], mut i: usize) -> Result<usize, &'static str> {
    match s.get(i) {
        None => Err("expected a value"),
        Some(b'"') => skip_string(s, i),
        Some(b'{' | b'[') => {
            // Brackets are only counted, not matched by kind: the digest's parser checks the structure.
            let mut depth = 0usize;
            while let Some(&b) = s.get(i) {
                match b {
                    b'"' => {
                        i = skip_string(s, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            Err("unterminated object or array")
        }
        Some(_) => {
            let start = i;
            while let Some(&b) = s.get(i) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                    break;
                }
                i += 1;
            }
            if i == start {
                Err("expected a value")
            } else {
                Ok(i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::chain::{append_member, read_field, Integrity, GENESIS};

    fn chained(body: &str, stream: &str, seq: u64, prev: Hash) -> Vec<u8> {
        let d = content_digest(body.as_bytes(), &mut Vec::new()).unwrap();
        let f = Integrity {
            stream: stream.into(),
            seq,
            prev,
            hash: link(stream, seq, &prev, &d),
        };
        let mut m = Vec::new();
        f.write_member(&mut m);
        append_member(body.as_bytes(), &m)
    }

    fn ex(line: &[u8]) -> Examined<'_> {
        examine(line, &mut Vec::new())
    }

    #[test]
    fn a_chained_line_checks_out_wherever_its_field_is() {
        let line = chained(
            r#"{"event":"x","uid":"1","a":[1,{"b":"}"}]}"#,
            "n/s",
            1,
            GENESIS,
        );
        let Examined::Chained(c) = ex(&line) else {
            panic!()
        };
        assert!(c.valid && c.seal.is_none() && c.body_error.is_none());
        assert_eq!((c.stream.as_ref(), c.seq), ("n/s", 1));
        // The same values with members reordered and re-encoded, as a store may give them back.
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let mut moved = serde_json::Map::new();
        moved.insert(FIELD.into(), v[FIELD].clone());
        for (k, x) in v.as_object().unwrap() {
            if k != FIELD {
                moved.insert(k.clone(), x.clone());
            }
        }
        let text = serde_json::to_vec_pretty(&serde_json::Value::Object(moved)).unwrap();
        let Examined::Chained(c) = ex(&text) else {
            panic!()
        };
        assert!(c.valid);
    }

    #[test]
    fn a_changed_value_fails_the_hash() {
        let line = chained(r#"{"event":"x","user":"alice"}"#, "n/s", 1, GENESIS);
        let text = String::from_utf8(line).unwrap().replace("alice", "mallory");
        let Examined::Chained(c) = ex(text.as_bytes()) else {
            panic!()
        };
        assert!(!c.valid);
    }

    #[test]
    fn lines_without_a_usable_field() {
        assert!(matches!(ex(b"  \r"), Examined::Blank));
        assert!(matches!(
            ex(br#"{"event":"auditrail.dropped","n":3}"#),
            Examined::Unchained
        ));
        assert!(matches!(ex(b"[1,2]"), Examined::Unreadable(_)));
        assert!(matches!(ex(b"{\"a\":1"), Examined::Unreadable(_)));
        assert!(matches!(ex(b"{\"a\":1} x"), Examined::Unreadable(_)));
        assert!(matches!(ex(b"{\"a\":tru e}"), Examined::Unreadable(_)));
        let line = chained(r#"{"event":"x"}"#, "n/s", 1, GENESIS);
        let text = String::from_utf8(line).unwrap();
        // A torn line.
        assert!(matches!(
            ex(&text.as_bytes()[..text.len() - 10]),
            Examined::Unreadable(_)
        ));
        // A second chain member, spelled with an escape, would be left out of the digest.
        let doubled = text.replacen('{', "{\"auditrail\\u002eintegrity\":{\"evil\":1},", 1);
        let Examined::Unreadable(why) = ex(doubled.as_bytes()) else {
            panic!()
        };
        assert!(why.contains("2 top-level"), "{why}");
        let bad_seq = text.replace("\"seq\":1", "\"seq\":0");
        assert!(matches!(ex(bad_seq.as_bytes()), Examined::Unreadable(_)));
        let bad_hex = text.replace("\"prev\":\"00", "\"prev\":\"zz");
        assert!(matches!(ex(bad_hex.as_bytes()), Examined::Unreadable(_)));
    }

    #[test]
    fn a_body_that_is_not_json_with_a_good_field_is_an_altered_copy() {
        let line = chained(r#"{"event":"x","n":1}"#, "n/s", 1, GENESIS);
        let text = String::from_utf8(line)
            .unwrap()
            .replace("\"n\":1", "\"n\":tru");
        let Examined::Chained(c) = ex(text.as_bytes()) else {
            panic!()
        };
        assert!(!c.valid && c.body_error.is_some());
    }

    #[test]
    fn the_fast_field_reader_agrees_with_serde() {
        let f = Integrity {
            stream: "n/s".into(),
            seq: 42,
            prev: [0xab; 32],
            hash: [0x3c; 32],
        };
        let mut m = Vec::new();
        f.write_member(&mut m);
        let value = &m[FIELD.len() + 3..];
        let fast = parse_field_fast(value).expect("the agent's own layout");
        assert_eq!(
            (fast.stream.as_ref(), fast.seq, fast.prev, fast.hash),
            ("n/s", 42, f.prev, f.hash)
        );
        let spaced = String::from_utf8(value.to_vec())
            .unwrap()
            .replace(",", " , ")
            .to_uppercase()
            .replace("\"STREAM\"", "\"stream\"")
            .replace("\"SEQ\"", "\"seq\"")
            .replace("\"PREV\"", "\"prev\"")
            .replace("\"HASH\"", "\"hash\"")
            .replace("N/S", "n/s");
        assert!(parse_field_fast(spaced.as_bytes()).is_none());
        let slow = parse_field(spaced.as_bytes()).unwrap();
        assert_eq!(
            (slow.stream.as_ref(), slow.seq, slow.prev, slow.hash),
            ("n/s", 42, f.prev, f.hash)
        );
        assert!(decode_hash(&[b'g'; 64]).is_none());
        assert!(decode_hash(&[b'0'; 63]).is_none());
        assert!(parse_field_fast(br#"{"stream":"s","seq":01,"prev":"00","hash":"00"}"#).is_none());
    }

    proptest::proptest! {
        #[test]
        fn hashes_decode_as_the_hex_crate_does(
            bytes in proptest::collection::vec(proptest::sample::select(b"0123456789abcdefABCDEFgG/:@`xX \x7f\x80\xff".to_vec()), 64),
            upper in proptest::bool::ANY,
        ) {
            let mut want = [0u8; 32];
            let ok = hex::decode_to_slice(&bytes, &mut want).is_ok();
            proptest::prop_assert_eq!(decode_hash(&bytes), ok.then_some(want));
            let h: [u8; 32] = std::array::from_fn(|i| bytes[i].wrapping_mul(7));
            let text = if upper { hex::encode_upper(h) } else { hex::encode(h) };
            proptest::prop_assert_eq!(decode_hash(text.as_bytes()), Some(h));
        }
    }

    #[test]
    fn the_shortcut_agrees_with_the_walk() {
        let plain = chained(
            r#"{"event":"x","uid":"1","o":{"a":[1,2]}}"#,
            "n/s",
            3,
            [1; 32],
        );
        let (fast, body) = fast_field(&plain).expect("the agent's layout without escapes");
        assert_eq!(&plain[..body], br#"{"event":"x","uid":"1","o":{"a":[1,2]}"#);
        let v = serde_json::from_slice::<serde_json::Value>(&plain).unwrap();
        let walk = read_field(&plain).unwrap();
        assert_eq!(
            (fast.stream.as_ref(), fast.seq, fast.prev, fast.hash),
            ("n/s", 3, walk.prev, walk.hash)
        );
        assert_eq!(v[FIELD]["seq"], 3);
        // Escapes, a second field, a possible seal, another layout: all take the walk.
        let escaped = chained(r#"{"event":"x","cmd":"a \u003c b"}"#, "n/s", 3, [1; 32]);
        assert!(fast_field(&escaped).is_none());
        let text = String::from_utf8(plain.clone()).unwrap();
        for other in [
            text.replacen("{", "{\"auditrail.integrity\":1,", 1),
            text.replacen("\"x\"", "\"auditrail.seal\"", 1),
            text.replacen("\"x\"", "\"auditrail.integrity_crash\"", 1),
            format!("{text} "),
            text.replace(",\"auditrail", ", \"auditrail"),
            text.replace("\"seq\":3", "\"seq\":03"),
            text.replace("\"seq\":3", "\"seq\":0"),
        ] {
            assert!(fast_field(other.as_bytes()).is_none(), "{other}");
        }
        // Not JSON before a good field: the shortcut reads the field, the digest refuses the content.
        let headless = text.replacen("{", "", 1);
        assert!(fast_field(headless.as_bytes()).is_some());
        let Examined::Chained(c) = ex(headless.as_bytes()) else {
            panic!()
        };
        assert!(!c.valid && c.body_error.is_some());
        assert!(fast_field(b"\"}}").is_none());
        let Examined::Chained(c) = ex(&plain) else {
            panic!()
        };
        assert!(c.valid);
    }

    #[test]
    fn a_crash_announcement_is_read_however_its_name_is_spelled() {
        let body = r#"{"event":"auditrail.integrity_crash","uid":"1","stream":"n/s","window":{"from":2,"to":4}}"#;
        for body in [
            body.to_string(),
            body.replace(".integrity_crash", "\\u002eintegrity_crash"),
        ] {
            let line = chained(&body, "n/s", 5, [1; 32]);
            let Examined::Chained(c) = ex(&line) else {
                panic!()
            };
            assert!(c.valid && c.seal.is_none(), "{body}");
            let a = c.crash.expect("an announcement").expect("readable");
            assert_eq!((a.stream.as_str(), a.from, a.to), ("n/s", 2, 4));
        }
        let line = chained(
            r#"{"event":"auditrail.integrity_crash"}"#,
            "n/s",
            5,
            [1; 32],
        );
        let Examined::Chained(c) = ex(&line) else {
            panic!()
        };
        assert!(c.crash.expect("an announcement").is_err());
        let plain = chained(r#"{"event":"x"}"#, "n/s", 5, [1; 32]);
        let Examined::Chained(c) = ex(&plain) else {
            panic!()
        };
        assert!(c.crash.is_none());
    }

    #[test]
    fn the_scanner_accepts_what_json_accepts() {
        for ok in [
            "{}",
            " { } ",
            r#"{"a":{"b":[[],{}]},"c":"\\\"","d":-1.5e3,"e":null,"f":true}"#,
            r#"{"a\"b":"x"}"#,
        ] {
            assert!(scan_top(ok.as_bytes()).is_ok(), "{ok}");
        }
        assert!(string_is(br#""auditrail\u002eseal""#, SEAL_EVENT));
        assert!(!string_is(br#""auditrail.sea""#, SEAL_EVENT));
    }
}
