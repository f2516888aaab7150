//! Rules for names rendered from untrusted event fields (a file sink's path components, an Elasticsearch
//! index name, later a Kafka topic): what happens when a rendering would be too long or unsafe.
//!
//! Field values come from whoever writes audit events, so one crafted value must not make a name the
//! destination refuses forever (the batch would be retried for good and the source stalled behind it). A sink
//! checks each rendering after it is complete (not each value alone, so that adjacent placeholders such as
//! `{a}{b}` are covered) and, as its [`UnsafeNames`] option says, either refuses the event (it goes to the
//! dead-letter file with the reason, and the rest of its batch is delivered) or rewrites the name: an
//! over-long one is cut at a UTF-8 boundary and suffixed with a hash of the whole rendering, so that distinct
//! long values stay distinct.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a sink does with an event whose rendered name breaks a rule (too long, or an unsafe path component).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnsafeNames {
    /// The event goes to the sink's dead-letter file with the reason; the rest of its batch is delivered
    /// (default): nothing is written under a name nobody chose.
    #[default]
    DeadLetter,
    /// The name is made safe: cut (with a hash suffix) when too long, `_` for an unsafe component. Nothing is
    /// dead-lettered for its name.
    Rewrite,
}

/// Why a rendered name cannot be used: a stable reason label (as in the metrics and the dead-letter record)
/// and a message for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRefused {
    /// Stable reason label.
    pub reason: &'static str,
    /// What was wrong and what was expected.
    pub message: String,
}

/// Bytes [`shorten`] appends: `~` and 16 hex digits (64 bits of SHA-256 of the whole text).
pub const HASH_SUFFIX_BYTES: usize = 17;

/// `text` in at most `max` bytes (`max` > [`HASH_SUFFIX_BYTES`]): cut at a UTF-8 boundary and followed by
/// `~` and a hash of the whole of `text`, then `keep_end` if `text` ends with it and it leaves room (so that
/// `{user}.ndjson` keeps its extension). Returns `text` itself when it already fits.
pub fn shorten(text: &str, max: usize, keep_end: &str) -> String {
    debug_assert!(max > HASH_SUFFIX_BYTES);
    if text.len() <= max {
        return text.to_string();
    }
    let keep_end = if text.ends_with(keep_end) && keep_end.len() + HASH_SUFFIX_BYTES < max / 2 {
        keep_end
    } else {
        ""
    };
    let head = &text[..text.len() - keep_end.len()];
    let head = cut(head, max - keep_end.len() - HASH_SUFFIX_BYTES);
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(max);
    out.push_str(head);
    out.push('~');
    for b in &digest[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out.push_str(keep_end);
    out
}

/// The longest start of `text` of at most `max` bytes that ends on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The start of `text` for a message (a 10,000-byte value would drown it; the dead-letter record has it all).
pub fn preview(text: &str) -> String {
    const PREVIEW: usize = 64;
    if text.len() <= PREVIEW {
        text.to_string()
    } else {
        format!("{}…", cut(text, PREVIEW))
    }
}

/// `a`, `b` and `c` as "`a`, `b` and `c`" for messages.
pub fn list_fields(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shortening_keeps_the_end_and_marks_the_cut() {
        let long = format!("{}.ndjson", "é".repeat(200));
        let s = shorten(&long, 100, ".ndjson");
        assert!(s.len() <= 100, "{}", s.len());
        assert!(s.starts_with("éé") && s.ends_with(".ndjson"), "{s}");
        assert!(s.contains('~'));
        assert_eq!(shorten("short", 100, ""), "short");
        assert_eq!(list_fields(&["a", "b", "c"]), "`a`, `b` and `c`");
        assert_eq!(list_fields(&["a"]), "`a`");
    }

    proptest! {
        #[test]
        fn shortened_texts_fit_and_stay_distinct(a in "\\PC{0,400}", b in "\\PC{0,400}", max in 18usize..300) {
            let (sa, sb) = (shorten(&a, max, ".x"), shorten(&b, max, ".x"));
            prop_assert!(sa.len() <= max);
            prop_assert!(sb.len() <= max);
            if a != b && a.len() > max && b.len() > max {
                prop_assert_ne!(sa, sb);
            }
        }
    }
}
