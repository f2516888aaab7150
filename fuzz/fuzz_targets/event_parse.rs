//! libFuzzer entry of the `event_parse` target: the body (what it feeds and asserts) is
//! `auditrail_fuzz_bodies::event_parse`, which `cargo test` also runs over `fuzz/corpus/event_parse/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditrail_fuzz_bodies::event_parse(data));
