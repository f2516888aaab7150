//! [`Secret`]: a credential read from the configuration (a password, an API key, a bearer token) that must
//! never reach a log line, an error message or a core dump longer than needed.
//!
//! `Debug` prints `"<redacted>"` and there is no `Display`, so `{:?}` of a whole config is safe to log; the
//! value is zeroed when dropped; [`Secret::matches`] compares in constant time, so checking a token a client
//! sent does not tell by its timing how much of a guess was right.

use std::fmt;

use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// A value that must never reach a log line: `Debug` prints `"<redacted>"`, and there is no `Display`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for building a request header or comparing, only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (a config mistake the callers refuse).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `given` equals the secret, in time that depends only on the lengths (never on where the first
    /// differing byte is).
    pub fn matches(&self, given: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(given).into()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_serde_is_transparent() {
        let s: Secret = serde_json::from_str(r#""hunter2""#).unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Holder {
            token: Secret,
        }
        let h: Holder = serde_json::from_str(r#"{"token":"hunter2"}"#).unwrap();
        assert!(!format!("{h:?}").contains("hunter2"));
    }

    #[test]
    fn matches_only_the_exact_value() {
        let s = Secret::new("s3cr3t");
        assert!(s.matches(b"s3cr3t"));
        assert!(!s.matches(b"s3cr3"));
        assert!(!s.matches(b"s3cr3t!"));
        assert!(!s.matches(b"S3cr3t"));
        assert!(!s.matches(b""));
        assert!(Secret::new("").is_empty());
        assert_eq!(s, Secret::new("s3cr3t"));
        assert_ne!(s, Secret::new("other"));
    }
}
