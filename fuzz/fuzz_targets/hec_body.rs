//! libFuzzer entry of the `hec_body` target: the body (what it feeds and asserts) is
//! `auditrail_fuzz_bodies::hec_body`, which `cargo test` also runs over `fuzz/corpus/hec_body/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditrail_fuzz_bodies::hec_body(data));
