//! libFuzzer entry of the `canonical_form` target: the body (what it feeds and asserts) is
//! `auditrail_fuzz_bodies::canonical_form`, which `cargo test` also runs over `fuzz/corpus/canonical_form/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditrail_fuzz_bodies::canonical_form(data));
