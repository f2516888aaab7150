//! Untrusted bytes → `Event::parse`: must never panic, and an accepted event must be one line of valid JSON
//! whose `uid`, `event` and `time` read back.
#![no_main]

use auditrail_core::Event;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Event::parse(Bytes::copy_from_slice(data), 1 << 16) {
        assert!(!e.raw().contains(&b'\n'));
        // Grammar check only: numbers such as 1e999 are valid JSON that a Value cannot hold, and pass verbatim.
        serde_json::from_slice::<serde::de::IgnoredAny>(e.raw()).expect("accepted events are JSON");
        assert!(e.raw().starts_with(b"{") && e.raw().ends_with(b"}"));
        assert!(!e.uid().is_empty());
        assert!(!e.kind().is_empty());
        let _ = e.time_raw();
    }
});
