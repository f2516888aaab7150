//! libFuzzer entry of the `cast_reader` target: the body (what it feeds and asserts) is
//! `auditrail_fuzz_bodies::cast_reader`, which `cargo test` also runs over `fuzz/corpus/cast_reader/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditrail_fuzz_bodies::cast_reader(data));
