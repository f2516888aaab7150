//! Untrusted bytes → `auditrail verify`'s engine: whatever a store gives back, feeding it line by line and as
//! NDJSON must never panic, and both must give the same report. Each input is also tried behind the start of
//! a chain field, so that the field reader, the shortcut for the agent's layout and the seal reader get
//! bytes too.

use std::sync::OnceLock;

use auditrail_core::integrity::keys::EpochKey;
use auditrail_core::integrity::verify::{Report, Verifier};

fn root() -> &'static EpochKey {
    static KEY: OnceLock<EpochKey> = OnceLock::new();
    KEY.get_or_init(EpochKey::generate)
}

fn by_lines(text: &[u8]) -> Report {
    let mut v = Verifier::new(root().public()).with_threads(1);
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    // A trailing newline ends the last line rather than starting another.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for (i, line) in lines.into_iter().enumerate() {
        v.feed_line(line, "fuzz", i as u64 + 1);
    }
    v.finish()
}

fn as_ndjson(text: &[u8]) -> Report {
    let mut v = Verifier::new(root().public()).with_threads(2);
    v.feed_ndjson(text, "fuzz", 1);
    v.finish()
}

/// The `verify_lines` target.
pub fn verify_lines(data: &[u8]) {
    let mut framed =
        br#"{"event":"auditrail.seal","auditrail.integrity":{"stream":"n/s","seq":"#.to_vec();
    framed.extend_from_slice(data);
    for text in [data, &framed[..]] {
        let a = by_lines(text);
        let b = as_ndjson(text);
        assert_eq!(a, b);
        let _ = serde_json::to_string(&a).expect("reports serialize");
        let _ = a.to_string();
    }
}
