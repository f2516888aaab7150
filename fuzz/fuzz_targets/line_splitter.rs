//! libFuzzer entry of the `line_splitter` target: the body (what it feeds and asserts) is
//! `auditrail_fuzz_bodies::line_splitter`, which `cargo test` also runs over `fuzz/corpus/line_splitter/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditrail_fuzz_bodies::line_splitter(data));
