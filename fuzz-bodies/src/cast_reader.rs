//! Untrusted `.cast` bytes → the players' asciicast reader: never panics; a bad header is an error naming
//! line 1; every problem names a line of the input; event times are finite, non-negative and never go
//! backwards; and the screen emulator the seek index feeds takes every output event without panicking.

use auditrail::play::cast::read_all;

/// See the module documentation.
pub fn cast_reader(data: &[u8]) {
    let lines = data.split(|&b| b == b'\n').count() as u64;
    let (header, events) = match read_all(data) {
        Ok(r) => r,
        Err(e) => {
            let text = e.to_string();
            assert!(text.starts_with("input:1: "), "{text}");
            return;
        }
    };
    assert!(header.cols > 0 && header.rows > 0);
    let mut vt = auditrail::play::index::emulator(header.cols, header.rows);
    let mut last = 0.0f64;
    for e in events {
        match e {
            Ok(e) => {
                assert!(
                    e.time.is_finite() && e.time >= last,
                    "{} after {last}",
                    e.time
                );
                last = e.time;
                auditrail::play::index::apply(&mut vt, &e);
            }
            Err(p) => assert!(p.line >= 2 && p.line <= lines, "{p} of {lines} lines"),
        }
    }
}
