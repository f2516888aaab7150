//! libFuzzer entry of the `hec_answer` target: the body (what it feeds and asserts) is
//! `auditrail_fuzz_bodies::hec_answer`, which `cargo test` also runs over `fuzz/corpus/hec_answer/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditrail_fuzz_bodies::hec_answer(data));
