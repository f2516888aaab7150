//! Untrusted bytes → `Event::parse`: must never panic, and an accepted event must be one line of valid JSON
//! whose `uid`, `event` and `time` read back. `Event::parse_digested` (what sources run with integrity on) must
//! come to the same outcome as `Event::parse` followed by `compute_digest`.

use auditrail_core::Event;
use bytes::Bytes;

/// The `event_parse` target.
pub fn event_parse(data: &[u8]) {
    let mut scratch = Vec::new();
    let one = Event::parse_digested(Bytes::copy_from_slice(data), 1 << 16, &mut scratch);
    let two = Event::parse(Bytes::copy_from_slice(data), 1 << 16).map(|mut e| {
        e.compute_digest(&mut scratch);
        e
    });
    match (&one, &two) {
        (Ok(a), Ok(b)) => {
            // A uid the event lacked is made up anew each time, and changes the bytes.
            if a.raw() == b.raw() {
                assert_eq!(a.uid_raw(), b.uid_raw());
                assert_eq!(a.digest(), b.digest());
            }
            assert_eq!(a.kind(), b.kind());
            assert_eq!(a.timestamp_nanos(), b.timestamp_nanos());
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!(
            "parse_digested and parse disagree: {:?} / {:?}",
            one.is_ok(),
            two.is_ok()
        ),
    }
    if let Ok(e) = two {
        assert!(!e.raw().contains(&b'\n'));
        // Grammar check only: numbers such as 1e999 are valid JSON that a Value cannot hold, and pass verbatim.
        serde_json::from_slice::<serde::de::IgnoredAny>(e.raw()).expect("accepted events are JSON");
        assert!(e.raw().starts_with(b"{") && e.raw().ends_with(b"}"));
        assert!(!e.uid().is_empty());
        assert!(!e.kind().is_empty());
        let _ = e.time_raw();
    }
}
