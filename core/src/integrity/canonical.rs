//! The canonical form of an event that the integrity chain hashes: RFC 8785 (JSON Canonicalization Scheme).
//!
//! Why canonical JSON and not the raw bytes: the chain must verify on events as each sink's store gives them
//! back. The file sink and Kafka keep our bytes, but an Elasticsearch `_source` may come back re-serialized
//! (synthetic source reorders keys, other clients re-escape `\u003c` as `<`), and a SIEM that re-encodes
//! changes the bytes while keeping the values. RFC 8785 is defined on values: members sorted by the UTF-16 code
//! units of their names, strings with the minimal escapes, numbers as ECMAScript prints the IEEE 754 double.
//! Two texts with the same JSON values have the same canonical form, so re-encoding is not tampering, and any
//! change of a value is.
//!
//! Where RFC 8785 has no answer, this module decides (the verifier uses the same code, so both sides agree):
//! a number that is not a finite double (`1e999`) is kept as its literal text; a lone surrogate escape becomes
//! U+FFFD; duplicate member names are all kept, in their order (stable sort).
//!
//! Top-level members named [`super::FIELD`] are left out: the chain field is appended after hashing and is
//! not part of what it protects.
//!
//! The input may be untrusted (the verifier reads whatever a store holds): every path returns an error instead of
//! panicking, and nesting is limited to [`MAX_DEPTH`].

use std::borrow::Cow;

/// The deepest nesting accepted, so that hostile input cannot exhaust the stack.
pub const MAX_DEPTH: usize = 128;

/// Why a text has no canonical form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not canonicalizable JSON at byte {offset}: {what}")]
pub struct CanonicalError {
    /// Where in the text.
    pub offset: usize,
    /// What was expected or found.
    pub what: &'static str,
}

/// Appends the RFC 8785 form of the JSON object `text` to `out`, leaving out top-level members named `skip`.
pub fn canonicalize_object(
    text: &[u8],
    skip: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), CanonicalError> {
    canonicalize(text, skip, false, out)
}

/// Appends the RFC 8785 form of the JSON object whose text is `text` followed by a closing brace: the
/// members of an object cut short, e.g. before a member known to come last, without copying them.
pub fn canonicalize_open_object(
    text: &[u8],
    skip: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), CanonicalError> {
    canonicalize(text, skip, true, out)
}

fn canonicalize(
    text: &[u8],
    skip: Option<&str>,
    open: bool,
    out: &mut Vec<u8>,
) -> Result<(), CanonicalError> {
    canonicalize_with(text, skip, open, None, out).map(|_| ())
}

fn canonicalize_with(
    text: &[u8],
    skip: Option<&str>,
    open: bool,
    pick: Option<[&str; 3]>,
    out: &mut Vec<u8>,
) -> Result<Picked, CanonicalError> {
    // One vectorized check of the whole text (simdutf8: AVX2 where the CPU has it, several times the speed of the
    // standard library's check on mostly-ASCII text); strings are then sliced at quote boundaries, which are
    // char boundaries, without checking each again.
    if simdutf8::basic::from_utf8(text).is_err() {
        return Err(CanonicalError {
            offset: 0,
            what: "not UTF-8",
        });
    }
    thread_local! {
        // The parser's working lists, kept per thread: every event is canonicalized, and allocating them anew
        // each time costs more than a small event's scan.
        static LISTS: std::cell::Cell<(Vec<Member>, Vec<u128>)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
    }
    let (mut members, mut order) = LISTS.take();
    members.clear();
    order.clear();
    let mut p = Parser {
        s: text,
        i: 0,
        members,
        order,
        open_end: open,
        pick,
        picked: Picked::default(),
    };
    let result = p.top(out, skip);
    LISTS.set((p.members, p.order));
    result.map(|()| p.picked)
}

/// Where some top-level members' values are, learnt while canonicalizing (see [`canonicalize_picking`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Picked {
    /// For each name asked for, the span of its value in the text (quotes included for a string), if present.
    pub values: [Option<(usize, usize)>; 3],
    /// A name asked for is there more than once.
    pub repeated: bool,
    /// A top-level name has escapes or non-ASCII characters, so it was not compared with the names asked for.
    pub unplain_names: bool,
    /// The deepest nesting met: 0 for the top-level object alone.
    pub depth: usize,
}

/// [`canonicalize_object`], also telling where the values of the top-level members named `pick` are, so that a
/// caller that needs a few fields and the canonical form reads the text once.
pub fn canonicalize_picking(
    text: &[u8],
    skip: Option<&str>,
    pick: [&str; 3],
    out: &mut Vec<u8>,
) -> Result<Picked, CanonicalError> {
    canonicalize_with(text, skip, false, Some(pick), out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// Members of the objects being written, innermost last (one allocation for the whole text).
    members: Vec<Member>,
    /// For each object being written, the order of its members (indexes into its part of `members`).
    order: Vec<u128>,
    /// The text ends where the top-level object's closing brace would be.
    open_end: bool,
    /// Top-level names whose values to note in `picked`.
    pick: Option<[&'a str; 3]>,
    picked: Picked,
}

/// One object member found while scanning: where its name and value sit, and what the scan learnt of them.
/// Kept small and plain (no decoded strings) because sorting moves it around.
#[derive(Clone, Copy)]
struct Member {
    /// The name's first 8 bytes, big-endian and zero-padded: most comparisons end here.
    key: u64,
    /// The name's contents (between the quotes).
    name: (u32, u32),
    /// The value, quotes included for a string.
    value: (u32, u32),
    /// Whether the name has escapes or non-ASCII characters (then it is decoded to be ordered).
    name_slow: bool,
    /// 0: text that is its own canonical form (a string without escapes, an integer as ECMAScript prints it,
    /// `true`, `false`, `null`), 1: a string with escapes, 2: anything else.
    value_kind: u8,
}

/// The first 8 bytes of the name at `text[start..start + len]`, big-endian, zero-padded.
fn key_at(text: &[u8], start: usize, len: usize) -> u64 {
    // A name is followed by at least `":` and a value, so 8 bytes from its start are nearly always there:
    // one load, with the bytes past the name masked off.
    if let Some(chunk) = text.get(start..start + 8) {
        let word = u64::from_be_bytes(chunk.try_into().unwrap_or([0; 8]));
        return match len {
            0 => 0,
            1..=7 => word & !(u64::MAX >> (8 * len)),
            _ => word,
        };
    }
    let name = &text[start..start + len];
    let mut k = 0u64;
    for &b in name.iter().take(8) {
        k = (k << 8) | b as u64;
    }
    k.checked_shl(8 * (8 - name.len().min(8) as u32))
        .unwrap_or(0)
}

/// Where the first `"` or `\\` at or after `from` is. Names and most string values are short, so the search
/// looks at 16 bytes per step with SSE2 (part of every x86-64), which beats both a byte loop and the setup of
/// a longer vector search; elsewhere, and for the last bytes of the text, memchr.
#[inline(always)]
pub(crate) fn find_quote_or_backslash(s: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        let mut i = from;
        while i + 16 <= s.len() {
            // SAFETY: SSE2 is part of x86-64, and `i + 16 <= s.len()` keeps the unaligned load inside `s`.
            let mask = unsafe {
                let v = _mm_loadu_si128(s.as_ptr().add(i).cast::<__m128i>());
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                _mm_movemask_epi8(_mm_or_si128(quote, backslash)) as u32
            };
            if mask != 0 {
                return Some(i + mask.trailing_zeros() as usize);
            }
            i += 16;
        }
        memchr::memchr2(b'"', b'\\', s.get(i..)?).map(|n| i + n)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        memchr::memchr2(b'"', b'\\', s.get(from..)?).map(|n| from + n)
    }
}

/// Writes a string [`Parser::string`] returned: a borrowed one had no escapes in valid JSON, so it holds no
/// quote, backslash or control character and its canonical form is its own bytes.
#[allow(clippy::ptr_arg)] // the variant tells whether the text can be copied as it is
fn write_decoded(s: &Cow<'_, str>, out: &mut Vec<u8>) {
    match s {
        Cow::Borrowed(b) => {
            out.push(b'"');
            out.extend_from_slice(b.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(o) => write_string(o, out),
    }
}

impl<'a> Parser<'a> {
    fn top(&mut self, out: &mut Vec<u8>, skip: Option<&str>) -> Result<(), CanonicalError> {
        self.ws();
        if self.peek() != Some(b'{') {
            return Err(self.err("expected a JSON object"));
        }
        self.object(out, skip, 0)?;
        self.ws();
        if self.i != self.s.len() {
            return Err(self.err("trailing characters after the object"));
        }
        Ok(())
    }

    fn err(&self, what: &'static str) -> CanonicalError {
        CanonicalError {
            offset: self.i,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), CanonicalError> {
        self.ws();
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonicalError> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(out, None, depth + 1),
            Some(b'[') => self.array(out, depth + 1),
            Some(b'"') => {
                let s = self.string()?;
                write_decoded(&s, out);
                Ok(())
            }
            Some(b't') => self.literal(b"true", out),
            Some(b'f') => self.literal(b"false", out),
            Some(b'n') => self.literal(b"null", out),
            Some(b'-' | b'0'..=b'9') => self.number(out),
            _ => Err(self.err("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &'static [u8], out: &mut Vec<u8>) -> Result<(), CanonicalError> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            out.extend_from_slice(word);
            Ok(())
        } else {
            Err(self.err("expected true, false or null"))
        }
    }

    fn object(
        &mut self,
        out: &mut Vec<u8>,
        skip: Option<&str>,
        depth: usize,
    ) -> Result<(), CanonicalError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.picked.depth = self.picked.depth.max(depth);
        self.i += 1; // '{'
        let base = self.members.len();
        // Where the top-level object of an open text ends: at the end of the text, without a brace.
        let open_end = self.open_end && depth == 0;
        self.ws();
        let empty = if open_end {
            self.peek().is_none()
        } else if self.peek() == Some(b'}') {
            self.i += 1;
            true
        } else {
            false
        };
        if !empty {
            loop {
                self.ws();
                if self.peek() != Some(b'"') {
                    return Err(self.err("expected a member name"));
                }
                let name_start = self.i + 1;
                let escaped = self.scan_string()?;
                let name = (name_start as u32, (self.i - 1) as u32);
                let name_bytes = &self.s[name.0 as usize..name.1 as usize];
                let name_slow = escaped || !name_bytes.is_ascii();
                self.expect(b':', "expected ':' after a member name")?;
                self.ws();
                let start = self.i;
                let value_kind = match self.peek() {
                    Some(b'"') => u8::from(self.scan_string()?),
                    Some(b'-' | b'0'..=b'9') => {
                        let (from, to) = self.number_span()?;
                        if is_plain_integer(&self.s[from..to]) {
                            0
                        } else {
                            2
                        }
                    }
                    Some(b't') => self.skip_literal(b"true").map(|()| 0)?,
                    Some(b'f') => self.skip_literal(b"false").map(|()| 0)?,
                    Some(b'n') => self.skip_literal(b"null").map(|()| 0)?,
                    _ => {
                        self.skip_value(depth)?;
                        2
                    }
                };
                self.members.push(Member {
                    key: key_at(self.s, name.0 as usize, name_bytes.len()),
                    name,
                    value: (start as u32, self.i as u32),
                    name_slow,
                    value_kind,
                });
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') if !open_end => {
                        self.i += 1;
                        break;
                    }
                    None if open_end => break,
                    _ => return Err(self.err("expected ',' or '}' in an object")),
                }
            }
        }
        let end = self.i;
        let text = self.s;
        let raw = |r: (u32, u32)| &text[r.0 as usize..r.1 as usize];
        if let (Some(pick), 0) = (self.pick, depth) {
            for m in &self.members[base..] {
                if m.name_slow {
                    self.picked.unplain_names = true;
                    continue;
                }
                if let Some(k) = pick.iter().position(|p| p.as_bytes() == raw(m.name)) {
                    let slot = &mut self.picked.values[k];
                    self.picked.repeated |= slot.is_some();
                    *slot = Some((m.value.0 as usize, m.value.1 as usize));
                }
            }
        }
        if let Some(skip) = skip {
            let mut n = base;
            while n < self.members.len() {
                let m = self.members[n];
                let is_skip = if m.name_slow {
                    self.decode_at(m.name.0 as usize - 1)? == skip
                } else {
                    raw(m.name) == skip.as_bytes()
                };
                if is_skip {
                    self.members.remove(n);
                } else {
                    n += 1;
                }
            }
        }
        // Names are ordered by their UTF-16 code units (RFC 8785 §3.2.3); for plain ASCII names, the usual case,
        // that is byte order. The order is found by sorting one integer per member, the name's first 8 bytes
        // above its position: cheap comparisons, small moves, and ties (duplicate names) keep their order.
        let count = self.members.len() - base;
        let ob = self.order.len();
        let members = &mut self.members[base..];
        let mut plain = members.iter().all(|m| !m.name_slow);
        if plain {
            self.order.extend(
                members
                    .iter()
                    .enumerate()
                    .map(|(k, m)| (u128::from(m.key) << 64) | k as u128),
            );
            let order = &mut self.order[ob..];
            order.sort_unstable();
            // Names sharing their first 8 bytes (rare) need the whole comparison below.
            plain = order.windows(2).all(|w| (w[0] >> 64) != (w[1] >> 64));
            if !plain {
                self.order.truncate(ob);
                members
                    .sort_by(|a, b| a.key.cmp(&b.key).then_with(|| raw(a.name).cmp(raw(b.name))));
            }
        } else {
            let mut decoded: Vec<(Vec<u16>, Member)> = Vec::with_capacity(members.len());
            for m in members.iter() {
                let mut p = Parser {
                    s: text,
                    i: m.name.0 as usize - 1,
                    members: Vec::new(),
                    order: Vec::new(),
                    open_end: false,
                    pick: None,
                    picked: Picked::default(),
                };
                decoded.push((p.string()?.encode_utf16().collect(), *m));
            }
            decoded.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.value.0.cmp(&b.1.value.0)));
            for (slot, (_, m)) in members.iter_mut().zip(decoded) {
                *slot = m;
            }
        }
        if !plain {
            // The members themselves are in order now.
            self.order.extend((0..count).map(|k| k as u128));
        }
        out.push(b'{');
        for n in 0..count {
            if n > 0 {
                out.push(b',');
            }
            let m = self.members[base + self.order[ob + n] as u32 as usize];
            if m.value_kind == 0 && !m.name_slow && m.value.0 == m.name.1 + 2 {
                // Compact text: `"name":value` is already canonical, one copy.
                out.extend_from_slice(&text[m.name.0 as usize - 1..m.value.1 as usize]);
                continue;
            }
            if m.name_slow {
                let name = self.decode_at(m.name.0 as usize - 1)?;
                write_string(&name, out);
            } else {
                out.push(b'"');
                out.extend_from_slice(raw(m.name));
                out.push(b'"');
            }
            out.push(b':');
            match m.value_kind {
                0 => out.extend_from_slice(raw(m.value)),
                1 => {
                    let v = self.decode_at(m.value.0 as usize)?;
                    write_string(&v, out);
                }
                _ => {
                    self.i = m.value.0 as usize;
                    self.value(out, depth)?;
                }
            }
        }
        self.order.truncate(ob);
        self.members.truncate(base);
        self.i = end;
        out.push(b'}');
        Ok(())
    }

    /// Decodes the string whose opening quote is at `at`, leaving the position as it was.
    fn decode_at(&mut self, at: usize) -> Result<Cow<'a, str>, CanonicalError> {
        let save = self.i;
        self.i = at;
        let s = self.string();
        self.i = save;
        s
    }

    /// Moves past a string (at its opening quote) and tells whether it has escapes.
    fn scan_string(&mut self) -> Result<bool, CanonicalError> {
        self.i += 1;
        let mut escaped = false;
        loop {
            match find_quote_or_backslash(self.s, self.i) {
                None => {
                    self.i = self.s.len();
                    return Err(self.err("unterminated string"));
                }
                Some(at) => {
                    self.i = at;
                    if self.s[at] == b'"' {
                        self.i += 1;
                        return Ok(escaped);
                    }
                    escaped = true;
                    self.i += 2;
                    if self.i > self.s.len() {
                        self.i = self.s.len();
                        return Err(self.err("unterminated escape"));
                    }
                }
            }
        }
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonicalError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.picked.depth = self.picked.depth.max(depth);
        self.i += 1; // '['
        out.push(b'[');
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            out.push(b']');
            return Ok(());
        }
        let mut first = true;
        loop {
            if !first {
                out.push(b',');
            }
            first = false;
            self.value(out, depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    out.push(b']');
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or ']' in an array")),
            }
        }
    }

    /// Moves past one value without producing output (objects are scanned first to sort their members).
    fn skip_value(&mut self, depth: usize) -> Result<(), CanonicalError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.peek() {
            Some(b'"') => self.scan_string().map(|_| ()),
            Some(b'{') | Some(b'[') => {
                let close = if self.peek() == Some(b'{') {
                    b'}'
                } else {
                    b']'
                };
                let is_object = close == b'}';
                self.i += 1;
                self.ws();
                if self.peek() == Some(close) {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    if is_object {
                        self.ws();
                        if self.peek() != Some(b'"') {
                            return Err(self.err("expected a member name"));
                        }
                        self.scan_string()?;
                        self.expect(b':', "expected ':' after a member name")?;
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err("expected ',' or a closing bracket")),
                    }
                }
            }
            Some(b't') => self.skip_literal(b"true"),
            Some(b'f') => self.skip_literal(b"false"),
            Some(b'n') => self.skip_literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number_span().map(|_| ()),
            _ => Err(self.err("expected a JSON value")),
        }
    }

    fn skip_literal(&mut self, word: &'static [u8]) -> Result<(), CanonicalError> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("expected true, false or null"))
        }
    }

    /// Reads a string (at its opening quote) and returns its decoded value, borrowed when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, CanonicalError> {
        let start = self.i + 1;
        let rest = &self.s[start..];
        if let Some(n) = find_quote_or_backslash(self.s, start).map(|at| at - start) {
            let body = &rest[..n];
            // A raw control character is not valid JSON and is passed through as it is: no store returns such
            // text for an event the agent hashed, so it can only make a copy differ, never match.
            if rest[n] == b'"' {
                // SAFETY: the whole text was checked to be UTF-8 and `body` lies between two ASCII quotes.
                let text = unsafe { std::str::from_utf8_unchecked(body) };
                self.i = start + n + 1;
                return Ok(Cow::Borrowed(text));
            }
        }
        self.i = start;
        let mut buf: Vec<u8> = Vec::with_capacity(rest.len().min(256));
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return Err(self.err("unterminated string"));
            };
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(self.err("unterminated escape"));
                    };
                    self.i += 1;
                    match e {
                        b'"' => buf.push(b'"'),
                        b'\\' => buf.push(b'\\'),
                        b'/' => buf.push(b'/'),
                        b'b' => buf.push(0x08),
                        b'f' => buf.push(0x0c),
                        b'n' => buf.push(b'\n'),
                        b'r' => buf.push(b'\r'),
                        b't' => buf.push(b'\t'),
                        b'u' => {
                            let c = self.unicode_escape()?;
                            let mut tmp = [0u8; 4];
                            buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                _ => buf.push(b),
            }
        }
        String::from_utf8(buf)
            .map(Cow::Owned)
            .map_err(|_| self.err("string is not UTF-8"))
    }

    fn hex4(&mut self) -> Result<u16, CanonicalError> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.err("bad \\u escape"))?;
        let v = u16::from_str_radix(text, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    /// Decodes the code point after `\u`, joining surrogate pairs; a lone surrogate becomes U+FFFD.
    fn unicode_escape(&mut self) -> Result<char, CanonicalError> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) {
            if self.s.get(self.i..self.i + 2) == Some(b"\\u") {
                let save = self.i;
                self.i += 2;
                let lo = self.hex4()?;
                if (0xDC00..0xE000).contains(&lo) {
                    let c = 0x10000 + (((hi as u32) - 0xD800) << 10) + ((lo as u32) - 0xDC00);
                    return Ok(char::from_u32(c).unwrap_or('\u{FFFD}'));
                }
                self.i = save;
            }
            return Ok('\u{FFFD}');
        }
        Ok(char::from_u32(hi as u32).unwrap_or('\u{FFFD}'))
    }

    fn number_span(&mut self) -> Result<(usize, usize), CanonicalError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.i;
            while let Some(b'0'..=b'9') = p.peek() {
                p.i += 1;
            }
            p.i - s
        };
        let int_start = self.i;
        let int_digits = digits(self);
        if int_digits == 0 {
            return Err(self.err("expected digits"));
        }
        // JSON (RFC 8259 §6) has no leading zeros: `01` is not a number.
        if int_digits > 1 && self.s[int_start] == b'0' {
            return Err(self.err("leading zero in a number"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(self.err("expected digits after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.err("expected exponent digits"));
            }
        }
        Ok((start, self.i))
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
        let (start, end) = self.number_span()?;
        let text = &self.s[start..end];
        if is_plain_integer(text) {
            out.extend_from_slice(text);
            return Ok(());
        }
        let as_str = std::str::from_utf8(text).map_err(|_| self.err("number is not ASCII"))?;
        let v: f64 = as_str.parse().map_err(|_| self.err("bad number"))?;
        if !v.is_finite() {
            out.extend_from_slice(text);
        } else if v == 0.0 {
            out.push(b'0');
        } else {
            let mut b = ryu_js::Buffer::new();
            out.extend_from_slice(b.format_finite(v).as_bytes());
        }
        Ok(())
    }
}

/// Whether the number `text` is its own canonical form: an integer of up to 15 digits is an exact double that
/// ECMAScript prints as it is (but "-0" is "0", and a leading zero is not a JSON integer anyway).
fn is_plain_integer(text: &[u8]) -> bool {
    let (neg, digits) = match text.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, text),
    };
    !digits.is_empty()
        && digits.len() <= 15
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1)
        && !(neg && digits == b"0")
}

/// Writes `s` as RFC 8785 prescribes: quotes, `\"`, `\\`, the five short control escapes, `\u00xx` for the other
/// control characters, everything else as UTF-8.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[run..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]);
                run = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(esc);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(s: &str) -> String {
        let mut out = Vec::new();
        canonicalize_object(s.as_bytes(), Some("auditrail.integrity"), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc8785_examples() {
        // The example of RFC 8785 §3.2.2 (numbers, literals, string escapes).
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn sorts_by_utf16_code_units() {
        // RFC 8785 §3.2.3: U+FB33 sorts after the emoji U+1F600 (a surrogate pair, 0xD83D…) in UTF-16
        // although its UTF-8 bytes sort first.
        let input = "{\"\u{20ac}\":1,\"\u{fb33}\":7,\"\u{1F600}\":2,\"\\r\":3,\"1\":4,\"\u{0080}\":5,\"\u{00f6}\":6}";
        assert_eq!(
            canon(input),
            "{\"\\r\":3,\"1\":4,\"\u{0080}\":5,\"\u{00f6}\":6,\"\u{20ac}\":1,\"\u{1F600}\":2,\"\u{fb33}\":7}"
        );
    }

    #[test]
    fn go_escapes_and_key_order_do_not_matter() {
        let go = r#"{"uid":"1","event":"x","cmd":"a \u003c b \u0026\u0026 c \u003e d","n":12}"#;
        let plain = r#"{"n":12,"cmd":"a < b && c > d","event":"x","uid":"1"}"#;
        assert_eq!(canon(go), canon(plain));
    }

    #[test]
    fn the_chain_field_is_left_out_at_the_top_only() {
        let a = r#"{"event":"x","auditrail.integrity":{"seq":1},"o":{"auditrail.integrity":1}}"#;
        assert_eq!(canon(a), r#"{"event":"x","o":{"auditrail.integrity":1}}"#);
    }

    #[test]
    fn an_open_object_is_the_object_with_its_brace() {
        for text in [
            r#"{"b":1,"a":{"y":[1,{"z":2}],"x":"s"}"#,
            r#"{"#,
            r#"{ "a" : 1 "#,
            r#"{"auditrail.integrity":1,"a":2"#,
        ] {
            let (mut open, mut closed) = (Vec::new(), Vec::new());
            canonicalize_open_object(text.as_bytes(), Some("auditrail.integrity"), &mut open)
                .unwrap();
            canonicalize_object(
                format!("{text}}}").as_bytes(),
                Some("auditrail.integrity"),
                &mut closed,
            )
            .unwrap();
            assert_eq!(open, closed, "{text}");
        }
        for bad in [r#"{"a":1}"#, r#"{"a":1,"#, r#"{"a":"#, "", r#"{"a":{"#] {
            assert!(
                canonicalize_open_object(bad.as_bytes(), None, &mut Vec::new()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(canon(r#"{"a":-0}"#), r#"{"a":0}"#);
        assert_eq!(canon(r#"{"a":-0.0}"#), r#"{"a":0}"#);
        assert_eq!(canon(r#"{"a":1.0}"#), r#"{"a":1}"#);
        assert_eq!(canon(r#"{"a":1e999}"#), r#"{"a":1e999}"#);
        assert_eq!(
            canon(r#"{"a":12345678901234567890}"#),
            r#"{"a":12345678901234567000}"#
        );
        assert_eq!(
            canon(r#"{"a":123456789012345}"#),
            r#"{"a":123456789012345}"#
        );
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "[1]",
            "{",
            "{\"a\"",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":tru}",
            "{\"a\":\"x\\",
            "{\"a\\",
            "{\"a\":-}",
            "{\"a\":1.}",
            "{\"a\":1e}",
            "{} x",
        ] {
            let mut out = Vec::new();
            assert!(
                canonicalize_object(bad.as_bytes(), None, &mut out).is_err(),
                "{bad:?}"
            );
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(canonicalize_object(deep.as_bytes(), None, &mut Vec::new()).is_err());
        let mut out = Vec::new();
        canonicalize_object(b"{\"a\":\"\\ud800x\"}", None, &mut out).unwrap();
        assert_eq!(out, "{\"a\":\"\u{FFFD}x\"}".as_bytes());
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".{0,6}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Re-encoding with other escapes, whitespace and member order keeps the canonical form; the canonical
        /// form is itself canonical and parses back to the same values.
        #[test]
        fn reencoding_keeps_the_form(m in prop::collection::btree_map(".{0,8}", json_value(), 0..8)) {
            let v = serde_json::Value::Object(m.into_iter().collect());
            let compact = serde_json::to_string(&v).unwrap();
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            // Escape every non-ASCII character and reverse member order, as another encoder might.
            let mut escaped = String::new();
            for c in compact.chars() {
                if c.is_ascii() { escaped.push(c) } else {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) { escaped.push_str(&format!("\\u{u:04X}")) }
                }
            }
            let a = canon(&compact);
            prop_assert_eq!(&a, &canon(&pretty));
            prop_assert_eq!(&a, &canon(&escaped));
            prop_assert_eq!(&a, &canon(&a));
            // (Not compared with a serde_json parse of `a`: without its float_roundtrip feature serde_json
            // may parse a double one ulp off, which is the reader's imprecision, not a different value.)
            let back: serde_json::Value = serde_json::from_str(&a).unwrap();
            prop_assert!(back.is_object());
        }

        /// Members come out in UTF-16 code-unit order whatever their input order, also when many keys share a
        /// long prefix (the fast path orders by the first eight bytes and must fall back on the whole key).
        #[test]
        fn members_sort_by_whole_keys(
            keys in prop::collection::btree_set(prop_oneof!["[a-c]{0,10}", "abcdefgh[\\x{0}-\\x{10FFFF}]{0,3}", ".{0,4}"], 0..12),
            prefix in prop_oneof![Just(String::new()), Just("abcdefgh".to_string())],
            rotate in 0usize..12,
        ) {
            let mut members: Vec<(String, usize)> =
                keys.into_iter().enumerate().map(|(i, k)| (format!("{prefix}{k}"), i)).collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            members.dedup_by(|a, b| a.0 == b.0);
            let mut input = members.clone();
            if !input.is_empty() {
                let r = rotate % input.len();
                input.rotate_left(r);
                input.reverse();
            }
            let body: Vec<String> = input
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
                .collect();
            let got = canon(&format!("{{{}}}", body.join(",")));
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            let mut want = Vec::new();
            want.push(b'{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 { want.push(b',') }
                write_string(k, &mut want);
                want.extend_from_slice(format!(":{v}").as_bytes());
            }
            want.push(b'}');
            prop_assert_eq!(got, String::from_utf8(want).unwrap());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = canonicalize_object(&bytes, Some("x"), &mut Vec::new());
        }
    }
}
