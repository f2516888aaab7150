//! libFuzzer entry of the `seek_index` target: the body (what it feeds and asserts) is
//! `auditrail_fuzz_bodies::seek_index`, which `cargo test` also runs over `fuzz/corpus/seek_index/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditrail_fuzz_bodies::seek_index(data));
