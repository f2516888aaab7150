//! libFuzzer entry of the `verify_lines` target: the body (what it feeds and asserts) is
//! `auditrail_fuzz_bodies::verify_lines`, which `cargo test` also runs over `fuzz/corpus/verify_lines/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditrail_fuzz_bodies::verify_lines(data));
