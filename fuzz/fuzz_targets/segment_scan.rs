//! libFuzzer entry of the `segment_scan` target: the body (what it feeds and asserts) is
//! `auditrail_fuzz_bodies::segment_scan`, which `cargo test` also runs over `fuzz/corpus/segment_scan/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditrail_fuzz_bodies::segment_scan(data));
