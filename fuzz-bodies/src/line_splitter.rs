//! Untrusted byte streams in arbitrary chunks → the line splitter shared by the file and unix sources: must
//! never panic, and the lines it yields joined with `\n` must equal the input up to its last newline (with
//! over-long lines accounted for by length).
//!
//! Input layout (see [`line_splitter_input`]): the longest line (one byte, 0 meaning 1), the number of cut points
//! (one byte, modulo 17), that many cut points (two bytes each), then the stream.

use arbitrary::Unstructured;
use auditrail::sources::lines::{Line, LineSplitter};
use bytes::Bytes;

/// At most this many cut points, so that a short input still has a stream.
const MAX_CUTS: u8 = 16;

/// The `line_splitter` target.
pub fn line_splitter(input: &[u8]) {
    let mut u = Unstructured::new(input);
    let max = usize::from(u.arbitrary::<u8>().unwrap_or(0)).max(1);
    let n = u.arbitrary::<u8>().unwrap_or(0) % (MAX_CUTS + 1);
    let cuts: Vec<u16> = (0..n).map(|_| u.arbitrary().unwrap_or(0)).collect();
    let data = u.take_rest();
    let mut s = LineSplitter::new(0, Some(0), max);
    let mut points: Vec<usize> = cuts
        .into_iter()
        .map(|c| usize::from(c).min(data.len()))
        .collect();
    points.push(data.len());
    points.sort_unstable();
    let mut prev = 0;
    let mut total = 0usize;
    let mut lines = 0u64;
    for p in points {
        let mut buf = s.buffer(p - prev);
        buf.extend_from_slice(&data[prev..p]);
        prev = p;
        s.feed(Bytes::from(buf), |line| {
            lines += 1;
            assert_eq!(
                line.position(),
                (total as u64, Some(lines)),
                "where the line starts"
            );
            match line {
                Line::Complete { bytes, .. } => {
                    assert_eq!(
                        &bytes[..],
                        &data[total..total + bytes.len()],
                        "the input's bytes"
                    );
                    assert_eq!(data[total + bytes.len()], b'\n', "a line ends at a newline");
                    total += bytes.len() + 1;
                }
                Line::TooLong { prefix, len, .. } => {
                    // Skipped only once its unfinished part outgrew the limit, never buffered whole.
                    assert!(len > max, "a line within the limit skipped as too long");
                    assert_eq!(
                        &prefix[..],
                        &data[total..total + prefix.len()],
                        "prefix of the line"
                    );
                    assert_eq!(data[total + len], b'\n');
                    total += len + 1;
                }
            }
        });
    }
    let expected = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    assert_eq!(
        total, expected,
        "every byte up to the last newline is in a line"
    );
    assert_eq!(s.line(), Some(lines));
    assert_eq!(s.offset() as usize, expected);
}

/// The input that [`line_splitter`] reads as `stream` cut at `cuts` (at most 16) with lines of at most `max`.
pub fn line_splitter_input(max: u8, cuts: &[u16], stream: &[u8]) -> Vec<u8> {
    assert!(cuts.len() <= usize::from(MAX_CUTS));
    let mut out = vec![max, cuts.len() as u8];
    for c in cuts {
        out.extend_from_slice(&c.to_le_bytes());
    }
    out.extend_from_slice(stream);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_reads_back() {
        let input = line_splitter_input(7, &[300, 2], b"ab\ncd\n");
        let mut u = Unstructured::new(&input);
        assert_eq!(u.arbitrary::<u8>().unwrap(), 7);
        assert_eq!(u.arbitrary::<u8>().unwrap(), 2);
        assert_eq!(u.arbitrary::<u16>().unwrap(), 300);
        assert_eq!(u.arbitrary::<u16>().unwrap(), 2);
        assert_eq!(u.take_rest(), b"ab\ncd\n");
    }
}
