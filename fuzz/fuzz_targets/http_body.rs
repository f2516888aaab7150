//! libFuzzer entry of the `http_body` target: the body (what it feeds and asserts) is
//! `auditrail_fuzz_bodies::http_body`, which `cargo test` also runs over `fuzz/corpus/http_body/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditrail_fuzz_bodies::http_body(data));
