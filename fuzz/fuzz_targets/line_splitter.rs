//! Untrusted byte streams in arbitrary chunks → the line splitter shared by the file and unix sources: must
//! never panic, and the lines it yields joined with `\n` must equal the input up to its last newline (with
//! over-long lines accounted for by length).
#![no_main]

use auditrail::sources::lines::{Line, LineSplitter};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, Vec<u16>, &[u8])| {
    let (max, cuts, data) = input;
    let max = usize::from(max).max(1);
    let mut s = LineSplitter::new(0, Some(0), max);
    let mut points: Vec<usize> = cuts.into_iter().map(|c| usize::from(c).min(data.len())).collect();
    points.push(data.len());
    points.sort_unstable();
    let mut prev = 0;
    let mut total = 0usize;
    for p in points {
        let mut buf = s.buffer(p - prev);
        buf.extend_from_slice(&data[prev..p]);
        prev = p;
        s.feed(Bytes::from(buf), |line| match line {
            Line::Complete { bytes, .. } => total += bytes.len() + 1,
            Line::TooLong { len, .. } => total += len + 1,
        });
    }
    let expected = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    assert_eq!(total, expected);
    assert_eq!(s.offset() as usize, expected);
});
