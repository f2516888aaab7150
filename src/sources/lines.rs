//! Splits a byte stream into lines without copying them: each complete line is a slice of the buffer it was
//! read into. Tracks the stream offset after each line (for checkpoints) and the line number (for error
//! messages), and skips a line longer than the limit without ever buffering it whole.

use bytes::{Bytes, BytesMut};

/// How much of an over-long line is kept for the dead-letter record.
const TOO_LONG_PREFIX: usize = 4096;

/// One item of the stream.
pub enum Line {
    /// A complete line, without its `\n`.
    Complete {
        /// The line.
        bytes: Bytes,
        /// Its 1-based number, when known.
        number: Option<u64>,
        /// Stream offset of its first byte.
        start: u64,
    },
    /// A line over the limit, skipped.
    TooLong {
        /// Its first bytes.
        prefix: Bytes,
        /// Its full length.
        len: usize,
        /// Its 1-based number, when known.
        number: Option<u64>,
        /// Stream offset of its first byte.
        start: u64,
    },
}

impl Line {
    /// Where the line starts in the stream and its 1-based number (when known).
    pub fn position(&self) -> (u64, Option<u64>) {
        match self {
            Line::Complete { start, number, .. } | Line::TooLong { start, number, .. } => {
                (*start, *number)
            }
        }
    }
}

struct Discarding {
    start: u64,
    number: Option<u64>,
    len: usize,
    prefix: Bytes,
}

/// See the module documentation.
pub struct LineSplitter {
    /// Offset just after the last complete line.
    offset: u64,
    /// Lines before `offset`, when known.
    line: Option<u64>,
    /// Offset of the first byte of `partial` (or of the next fed byte while discarding).
    partial_start: u64,
    partial: BytesMut,
    discarding: Option<Discarding>,
    max: usize,
}

impl LineSplitter {
    /// A splitter for a stream positioned at `offset`, line number `line`, with lines of at most `max` bytes.
    pub fn new(offset: u64, line: Option<u64>, max: usize) -> LineSplitter {
        LineSplitter {
            offset,
            line,
            partial_start: offset,
            partial: BytesMut::new(),
            discarding: None,
            max,
        }
    }

    /// Offset just after the last complete line.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Lines before [`Self::offset`], when known.
    pub fn line(&self) -> Option<u64> {
        self.line
    }

    /// A buffer holding the incomplete last line, with room for `extra` more bytes. Read into it, then
    /// [`Self::feed`] it back.
    pub fn buffer(&mut self, extra: usize) -> BytesMut {
        let mut buf = BytesMut::with_capacity(self.partial.len() + extra);
        buf.extend_from_slice(&self.partial);
        self.partial.clear();
        buf
    }

    /// Splits `data` (as returned by [`Self::buffer`], plus new bytes) and calls `f` for each line.
    pub fn feed(&mut self, data: Bytes, mut f: impl FnMut(Line)) {
        let base = self.partial_start;
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &data[start..]) {
            let end = start + nl;
            let number = self.line.map(|l| l + 1);
            match self.discarding.take() {
                Some(d) => f(Line::TooLong {
                    prefix: d.prefix,
                    len: d.len + (end - start),
                    number: d.number,
                    start: d.start,
                }),
                None => f(Line::Complete {
                    bytes: data.slice(start..end),
                    number,
                    start: base + start as u64,
                }),
            }
            self.offset = base + end as u64 + 1;
            self.line = number;
            start = end + 1;
        }
        let rest = data.slice(start..);
        self.partial_start = base + data.len() as u64;
        if let Some(d) = self.discarding.as_mut() {
            d.len += rest.len();
        } else if rest.len() > self.max {
            self.discarding = Some(Discarding {
                start: base + start as u64,
                number: self.line.map(|l| l + 1),
                len: rest.len(),
                prefix: rest.slice(..TOO_LONG_PREFIX.min(rest.len())),
            });
        } else {
            self.partial_start = base + start as u64;
            self.partial = BytesMut::from(rest.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (text, number, start) of each complete line.
    type Lines = Vec<(String, Option<u64>, u64)>;

    fn run(chunks: &[&[u8]], max: usize) -> (Lines, Vec<usize>, u64) {
        let mut s = LineSplitter::new(0, Some(0), max);
        let mut lines = Vec::new();
        let mut long = Vec::new();
        for c in chunks {
            let mut b = s.buffer(c.len());
            b.extend_from_slice(c);
            s.feed(b.freeze(), |l| match l {
                Line::Complete {
                    bytes,
                    number,
                    start,
                } => lines.push((String::from_utf8_lossy(&bytes).into_owned(), number, start)),
                Line::TooLong { len, .. } => long.push(len),
            });
        }
        (lines, long, s.offset())
    }

    #[test]
    fn splits_across_chunks() {
        let (lines, long, offset) = run(&[b"ab\ncd", b"e\n\nf"], 10);
        assert_eq!(
            lines,
            [
                ("ab".into(), Some(1), 0),
                ("cde".into(), Some(2), 3),
                ("".into(), Some(3), 7)
            ]
        );
        assert!(long.is_empty());
        assert_eq!(offset, 8);
    }

    #[test]
    fn skips_long_lines_whole() {
        let (lines, long, offset) = run(&[b"0123456", b"789abc", b"de\nok\n"], 5);
        assert_eq!(long, [15]);
        assert_eq!(lines, [("ok".into(), Some(2), 16)]);
        assert_eq!(offset, 19);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_lines(text in "[a-c\n]{0,200}", cuts in prop::collection::vec(0usize..200, 0..8)) {
            let bytes = text.as_bytes();
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            points.sort();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for p in points.into_iter().chain([bytes.len()]) {
                chunks.push(&bytes[prev..p]);
                prev = p;
            }
            let (lines, _, offset) = run(&chunks, 1000);
            let expected: Vec<&str> = text.split('\n').collect();
            let complete = &expected[..expected.len() - 1];
            prop_assert_eq!(lines.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(), complete.to_vec());
            prop_assert_eq!(offset as usize, text.rfind('\n').map_or(0, |p| p + 1));
        }
    }
}
