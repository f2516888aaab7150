//! Untrusted bytes as a disk-buffer segment → the scanner used by recovery and `buffer inspect`: must never
//! panic, and what it reports must stay inside the input.

use auditrail_core::buffer::disk::{scan_segment, Tail};

/// The `segment_scan` target.
pub fn segment_scan(data: &[u8]) {
    let r = scan_segment(data);
    assert!(r.end <= data.len() as u64);
    assert!(r.record_bytes <= data.len() as u64);
    match r.tail {
        Tail::Clean => assert_eq!(r.end, data.len() as u64),
        Tail::Torn { offset, bytes } | Tail::Garbage { offset, bytes } => {
            assert!(offset + bytes <= data.len() as u64)
        }
    }
}
