//! Untrusted bytes as a disk-buffer segment → the scanner used by recovery and `buffer inspect`: must never
//! panic, and what it reports must stay inside the input.
#![no_main]

use auditrail_core::buffer::disk::{scan_segment, Tail};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = scan_segment(data);
    assert!(r.end <= data.len() as u64);
    assert!(r.record_bytes <= data.len() as u64);
    match r.tail {
        Tail::Clean => assert_eq!(r.end, data.len() as u64),
        Tail::Torn { offset, bytes } | Tail::Garbage { offset, bytes } => {
            assert!(offset + bytes <= data.len() as u64)
        }
    }
});
