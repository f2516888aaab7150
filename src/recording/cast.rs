//! The asciicast encoder: terminal bytes → `.cast` lines (v2 or v3), the part of the hot path that is not
//! hashing.
//!
//! Output is decoded as UTF-8 the way asciinema decodes it (an incremental decoder with `errors="replace"`:
//! each maximal invalid subpart becomes one U+FFFD, which is also what Rust's `from_utf8_lossy` does), and an
//! incomplete sequence at the end of a read is held back until the next read, so no event ever splits a
//! character. Strings are escaped as asciinema's `json.dumps(..., ensure_ascii=False)` escapes them: `"`,
//! `\`, and the C0 controls (`\b \f \n \r \t`, others `\u00XX`); everything else is copied as UTF-8 in runs,
//! through a lookup table, never byte by byte into a formatter.

use std::io::Write;
use std::time::Duration;

use super::config::CastFormat;

/// What the `.cast` header says about the session.
pub struct Header<'a> {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
    /// Unix seconds at the start.
    pub timestamp: i64,
    /// `$TERM`.
    pub term: Option<&'a str>,
    /// `$SHELL`.
    pub shell: Option<&'a str>,
    /// The command recorded, as one string.
    pub command: &'a str,
}

/// One stream's incremental decoder: the incomplete UTF-8 tail of the last chunk.
#[derive(Default)]
struct Utf8Tail {
    bytes: [u8; 4],
    len: usize,
}

/// Encodes events of one session into `.cast` lines.
pub struct CastEncoder {
    format: CastFormat,
    output: Utf8Tail,
    input: Utf8Tail,
    /// v3 writes intervals: the time of the previous event.
    last: Duration,
}

impl CastEncoder {
    /// An encoder for `format`.
    pub fn new(format: CastFormat) -> CastEncoder {
        CastEncoder {
            format,
            output: Utf8Tail::default(),
            input: Utf8Tail::default(),
            last: Duration::ZERO,
        }
    }

    /// Appends the header line to `out`.
    pub fn header(&self, h: &Header<'_>, out: &mut Vec<u8>) {
        let string = |out: &mut Vec<u8>, s: &str| {
            out.push(b'"');
            escape_str(s, out);
            out.push(b'"');
        };
        match self.format {
            CastFormat::V2 => {
                let _ = write!(
                    out,
                    "{{\"version\": 2, \"width\": {}, \"height\": {}, \"timestamp\": {}, \"command\": ",
                    h.width, h.height, h.timestamp
                );
                string(out, h.command);
                out.extend_from_slice(b", \"env\": {");
                let mut first = true;
                for (k, v) in [("TERM", h.term), ("SHELL", h.shell)] {
                    if let Some(v) = v {
                        if !first {
                            out.extend_from_slice(b", ");
                        }
                        first = false;
                        let _ = write!(out, "\"{k}\": ");
                        string(out, v);
                    }
                }
                out.extend_from_slice(b"}}\n");
            }
            CastFormat::V3 => {
                let _ = write!(
                    out,
                    "{{\"version\": 3, \"term\": {{\"cols\": {}, \"rows\": {}",
                    h.width, h.height
                );
                if let Some(t) = h.term {
                    out.extend_from_slice(b", \"type\": ");
                    string(out, t);
                }
                let _ = write!(out, "}}, \"timestamp\": {}, \"command\": ", h.timestamp);
                string(out, h.command);
                out.extend_from_slice(b", \"env\": {");
                if let Some(s) = h.shell {
                    out.extend_from_slice(b"\"SHELL\": ");
                    string(out, s);
                }
                out.extend_from_slice(b"}}\n");
            }
        }
    }

    fn time(&mut self, at: Duration, out: &mut Vec<u8>) {
        let t = match self.format {
            CastFormat::V2 => at,
            CastFormat::V3 => {
                let d = at.saturating_sub(self.last);
                self.last = self.last.max(at);
                d
            }
        };
        let _ = write!(out, "[{}.{:06}, ", t.as_secs(), t.subsec_micros());
    }

    /// Appends an `"o"` event for `data` at `at` (since the start) to `out`; nothing when `data` only
    /// continues an incomplete character.
    pub fn output(&mut self, at: Duration, data: &[u8], out: &mut Vec<u8>) {
        let mut tail = std::mem::take(&mut self.output);
        self.text_event(at, b"\"o\"", data, &mut tail, out);
        self.output = tail;
    }

    /// Appends an `"i"` event (keystrokes) for `data`.
    pub fn input(&mut self, at: Duration, data: &[u8], out: &mut Vec<u8>) {
        let mut tail = std::mem::take(&mut self.input);
        self.text_event(at, b"\"i\"", data, &mut tail, out);
        self.input = tail;
    }

    fn text_event(
        &mut self,
        at: Duration,
        code: &[u8],
        data: &[u8],
        tail: &mut Utf8Tail,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        let saved = self.last;
        self.time(at, out);
        out.extend_from_slice(code);
        out.extend_from_slice(b", \"");
        let body = out.len();
        decode_into(tail, data, false, out);
        if out.len() == body {
            // Only part of a character: no event (and v3's clock does not move).
            out.truncate(start);
            self.last = saved;
            return;
        }
        out.extend_from_slice(b"\"]\n");
    }

    /// Appends an `"r"` event.
    pub fn resize(&mut self, at: Duration, width: u16, height: u16, out: &mut Vec<u8>) {
        self.time(at, out);
        let _ = writeln!(out, "\"r\", \"{width}x{height}\"]");
    }

    /// Flushes held-back bytes (as U+FFFD, they never completed) and, for v3, writes the `"x"` exit event.
    pub fn finish(&mut self, at: Duration, exit_code: i32, out: &mut Vec<u8>) {
        for which in [0, 1] {
            let tail = if which == 0 {
                &mut self.output
            } else {
                &mut self.input
            };
            if tail.len > 0 {
                tail.len = 0;
                let code = if which == 0 { "o" } else { "i" };
                self.time(at, out);
                let _ = writeln!(out, "\"{code}\", \"\u{FFFD}\"]");
            }
        }
        if self.format == CastFormat::V3 {
            self.time(at, out);
            let _ = writeln!(out, "\"x\", \"{exit_code}\"]");
        }
    }
}

/// Decodes `data` after the held-back `tail` into escaped JSON string content in `out`; keeps a new
/// incomplete tail unless `last`.
fn decode_into(tail: &mut Utf8Tail, mut data: &[u8], last: bool, out: &mut Vec<u8>) {
    if tail.len > 0 {
        let width = utf8_width(tail.bytes[0]);
        let need = width - tail.len;
        let k = need.min(data.len());
        let mut tmp = [0u8; 8];
        tmp[..tail.len].copy_from_slice(&tail.bytes[..tail.len]);
        tmp[tail.len..tail.len + k].copy_from_slice(&data[..k]);
        let n = tail.len + k;
        let used = decode_lossy(&tmp[..n], last, out);
        let left = n - used;
        tail.len = 0;
        if k == data.len() {
            tail.bytes[..left].copy_from_slice(&tmp[used..n]);
            tail.len = left;
            return;
        }
        // The held-back prefix is resolved (a character or U+FFFD); what is left came from `data`.
        data = &data[k - left..];
    }
    let used = decode_lossy(data, last, out);
    let left = data.len() - used;
    tail.bytes[..left].copy_from_slice(&data[used..]);
    tail.len = left;
}

/// Escapes the valid parts of `bytes`, one U+FFFD per maximal invalid subpart; returns how many bytes it
/// used (all, unless an incomplete sequence ends `bytes` and not `last`).
fn decode_lossy(mut bytes: &[u8], last: bool, out: &mut Vec<u8>) -> usize {
    let total = bytes.len();
    loop {
        // simdutf8's `compat` API: std's error positions (valid_up_to, error_len) at SIMD speed; validation
        // is a third of the encoder's time with std's.
        match simdutf8::compat::from_utf8(bytes) {
            Ok(s) => {
                escape_str(s, out);
                return total;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // SAFETY: `valid_up_to` bytes were just validated as UTF-8.
                escape_str(
                    unsafe { std::str::from_utf8_unchecked(&bytes[..valid]) },
                    out,
                );
                match e.error_len() {
                    Some(n) => {
                        out.extend_from_slice("\u{FFFD}".as_bytes());
                        bytes = &bytes[valid + n..];
                    }
                    None if last => {
                        out.extend_from_slice("\u{FFFD}".as_bytes());
                        return total;
                    }
                    None => return total - (bytes.len() - valid),
                }
            }
        }
    }
}

/// The length of the sequence a lead byte starts (only called on the lead of a valid incomplete prefix).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// For each byte: 0 = copy, else the escape's second character (`u` = `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Whether any of the 8 bytes of `w` needs escaping: below 0x20, `"` or `\\`. Exact as a yes/no (the
/// classic "has a byte less than n / equal to c" word tricks); which byte is left to the byte loop.
#[inline]
fn word_needs_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let below_space = w.wrapping_sub(LO * 0x20) & !w & HI;
    let q = w ^ (LO * b'"' as u64);
    let quote = q.wrapping_sub(LO) & !q & HI;
    let b = w ^ (LO * b'\\' as u64);
    let backslash = b.wrapping_sub(LO) & !b & HI;
    (below_space | quote | backslash) != 0
}

/// Appends `s` escaped as JSON string content. Terminal output is mostly runs of plain text between escape
/// sequences, so it is scanned 8 bytes at a time and only words holding a byte to escape are looked at
/// byte by byte: the encoder is on the recorder's hot path, beside the SHA-256 of both files.
pub fn escape_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 8);
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if i + 8 <= bytes.len() {
            let w = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
            if !word_needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(bytes.len());
        for (j, &b) in bytes[i..end].iter().enumerate() {
            let e = ESCAPE[b as usize];
            if e == 0 {
                continue;
            }
            out.extend_from_slice(&bytes[run..i + j]);
            run = i + j + 1;
            if e == b'u' {
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]);
            } else {
                out.extend_from_slice(&[b'\\', e]);
            }
        }
        i = end;
    }
    out.extend_from_slice(&bytes[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output_text(cast: &[u8]) -> String {
        let mut s = String::new();
        for line in cast.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            if v[1] == "o" {
                s.push_str(v[2].as_str().unwrap());
            }
        }
        s
    }

    fn encode_in_chunks(data: &[u8], chunk: usize) -> Vec<u8> {
        let mut e = CastEncoder::new(CastFormat::V2);
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            e.output(Duration::from_millis(5), c, &mut out);
        }
        e.finish(Duration::from_millis(6), 0, &mut out);
        out
    }

    #[test]
    fn any_split_decodes_as_from_utf8_lossy_of_the_whole() {
        let samples: Vec<Vec<u8>> = vec![
            "héllo €uro 😀 \u{1b}[31mred\u{1b}[0m \"q\" \\ \t\r\n".as_bytes().to_vec(),
            b"\xe2\x82\xac\xe2\x82\xff\xf0\x9f\x98\x80\xc3\x28\xa0\xa1\xed\xa0\x80\xf4\x90\x80\x80x\xe2".to_vec(),
            (0u8..=255).collect(),
        ];
        for data in &samples {
            let want = String::from_utf8_lossy(data);
            for chunk in 1..=9 {
                let cast = encode_in_chunks(data, chunk);
                assert_eq!(output_text(&cast), want, "chunk size {chunk}");
            }
        }
    }

    #[test]
    fn no_event_splits_a_character() {
        let mut e = CastEncoder::new(CastFormat::V2);
        let mut out = Vec::new();
        e.output(Duration::from_millis(1), b"a\xe2\x82", &mut out);
        e.output(Duration::from_millis(2), b"\xac", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "[0.001000, \"o\", \"a\"]\n[0.002000, \"o\", \"€\"]\n");
    }

    #[test]
    fn escapes_as_python_json_dumps() {
        let mut out = Vec::new();
        escape_str("a\"b\\c\u{1b}[0m\u{7f}\u{0}\u{8}\u{c}é", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\\"b\\\\c\\u001b[0m\u{7f}\\u0000\\b\\fé"
        );
    }

    proptest::proptest! {
        /// The word-at-a-time scan escapes exactly what a JSON encoder does, wherever the bytes to escape
        /// fall relative to the 8-byte words.
        #[test]
        fn escaping_matches_serde_json(
            s in proptest::string::string_regex("[\\x00-\\x7f\"\\\\é€]{0,40}").unwrap(),
            pad in 0usize..8,
        ) {
            let s = format!("{}{s}", "x".repeat(pad));
            let mut out = Vec::new();
            escape_str(&s, &mut out);
            let json = serde_json::to_string(&s).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), &json[1..json.len() - 1]);
        }
    }

    #[test]
    fn v3_writes_intervals_and_the_exit() {
        let mut e = CastEncoder::new(CastFormat::V3);
        let mut out = Vec::new();
        e.header(
            &Header {
                width: 80,
                height: 24,
                timestamp: 1,
                term: Some("xterm"),
                shell: Some("/bin/sh"),
                command: "sh",
            },
            &mut out,
        );
        e.output(Duration::from_millis(1500), b"x", &mut out);
        e.resize(Duration::from_millis(2000), 100, 30, &mut out);
        e.finish(Duration::from_millis(2250), 3, &mut out);
        let lines: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 3);
        assert_eq!(lines[0]["term"]["cols"], 80);
        assert_eq!(lines[0]["term"]["type"], "xterm");
        assert_eq!(lines[1][0], 1.5);
        assert_eq!(lines[2][0], 0.5);
        assert_eq!(lines[2][2], "100x30");
        assert_eq!(lines[3][0], 0.25);
        assert_eq!(lines[3][1], "x");
        assert_eq!(lines[3][2], "3");
    }
}
