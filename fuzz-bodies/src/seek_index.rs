//! Untrusted `<sid>.index` bytes → the players' stored seek index: decoding never panics and allocates only
//! what the bytes hold; and since random bytes almost never carry a valid checksum, the same bytes are also
//! sealed with one, to reach the checks behind it: whatever decodes is within the bounds, in file order,
//! and encodes back to exactly the bytes it came from (nothing read is ignored, nothing is made up).

use auditrail::play::index_file::{decode, encode, seal, MAX_KEYFRAMES, MAX_SCREEN};

/// See the module documentation.
pub fn seek_index(data: &[u8]) {
    let _ = decode(data);
    let mut sealed = data.to_vec();
    seal(&mut sealed);
    let Ok(s) = decode(&sealed) else { return };
    assert!(!s.keyframes.is_empty() && s.keyframes.len() <= MAX_KEYFRAMES);
    assert!(s.prefix <= s.cast_len && (!s.complete || s.prefix == s.cast_len));
    for w in s.keyframes.windows(2) {
        assert!(w[0].at.offset <= w[1].at.offset && w[0].at.time <= w[1].at.time);
    }
    for k in &s.keyframes {
        assert!(k.at.offset <= s.prefix && k.screen.len() <= MAX_SCREEN);
        assert!(k.cols >= 1 && k.rows >= 1);
    }
    assert_eq!(encode(&s), sealed);
}
