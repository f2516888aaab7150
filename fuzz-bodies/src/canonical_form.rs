//! Untrusted bytes → the canonical form the integrity chain hashes (the verifier computes it on whatever a store
//! returns). It must never panic; a canonical form must be canonical again (idempotent) and, for valid JSON
//! input, valid JSON.

use auditrail_core::integrity::canonical::canonicalize_object;

/// The `canonical_form` target.
pub fn canonical_form(data: &[u8]) {
    let mut out = Vec::new();
    if canonicalize_object(data, Some("auditrail.integrity"), &mut out).is_ok() {
        let mut again = Vec::new();
        canonicalize_object(&out, None, &mut again).expect("a canonical form is canonicalizable");
        assert_eq!(out, again, "canonical form is idempotent");
        if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok() {
            serde_json::from_slice::<serde::de::IgnoredAny>(&out).expect("valid JSON stays valid");
        }
    }
}
