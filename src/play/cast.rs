//! The asciicast reader: a `.cast` file (v2 or v3, as the recorder writes it, or any asciinema file) read as a
//! stream of events, one line at a time, so memory stays flat however long the session.
//!
//! Damage never stops the reader: a line that is not an event (not JSON, wrong shape, longer than
//! [`MAX_LINE`]) is skipped and reported as a [`Problem`] naming the file and line, a torn last line (no
//! newline, as when the recorder was killed mid-write) is reported as truncated, and a header that is not an
//! asciicast header makes [`CastReader::open`] fail with the same file:line shape. Times are absolute seconds
//! since the start for both versions (v3's intervals are summed here).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The longest line read; longer lines are skipped (and reported). The recorder writes events of at most
/// 64 KiB of terminal bytes, at most 6 bytes of JSON each, so its lines stay far below this.
pub const MAX_LINE: usize = 4 << 20;

/// What is wrong with a file, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {what}")]
pub struct Problem {
    /// The file, as given.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// What is wrong, and what was expected.
    pub what: String,
}

/// Why a file cannot be played at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The first line is not an asciicast v2/v3 header.
    #[error("{0} (expected an asciicast v2 or v3 header: {{\"version\": 2, \"width\": W, \"height\": H, ...}})")]
    Header(Problem),
}

/// The header line.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// 2 or 3.
    pub version: u8,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// Unix seconds at the start, when given.
    pub timestamp: Option<i64>,
    /// The recorded command, when given.
    pub command: Option<String>,
    /// The header's own `idle_time_limit`, when given.
    pub idle_time_limit: Option<f64>,
}

/// What an event is.
#[derive(Debug, Clone, PartialEq)]
pub enum Code {
    /// `"o"`: terminal output.
    Output,
    /// `"i"`: keystrokes.
    Input,
    /// `"r"`: a resize to columns × rows.
    Resize(u16, u16),
    /// `"m"`: a marker.
    Marker,
    /// `"x"`: the exit status (v3).
    Exit,
    /// Any other code (kept so a player can skip it knowingly).
    Other(String),
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the start.
    pub time: f64,
    /// What it is.
    pub code: Code,
    /// Its text (output, keystrokes, marker label, …).
    pub data: String,
}

/// Where a reader is: enough to start another reader there (the seek index stores these).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Position {
    /// Byte offset of the next line.
    pub offset: u64,
    /// 1-based number of the next line.
    pub line: u64,
    /// Time of the last event read (v3 adds the next interval to it).
    pub time: f64,
}

/// Reads events from a `.cast` stream.
pub struct CastReader<R> {
    input: R,
    name: String,
    header: Header,
    pos: Position,
    buf: Vec<u8>,
    problems: u64,
    ended: bool,
}

impl CastReader<BufReader<File>> {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let file = File::open(path).map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        CastReader::new(
            BufReader::with_capacity(256 << 10, file),
            path.display().to_string(),
        )
    }

    /// Opens `path` again at `at` (a position an earlier reader of the same file reported).
    pub fn open_at(path: &Path, header: Header, at: Position) -> Result<Self, OpenError> {
        let io = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        file.seek(SeekFrom::Start(at.offset)).map_err(io)?;
        Ok(CastReader {
            input: BufReader::with_capacity(256 << 10, file),
            name: path.display().to_string(),
            header,
            pos: at,
            buf: Vec::new(),
            problems: 0,
            ended: false,
        })
    }
}

/// How one line ended.
enum Line {
    /// A whole line (without its newline) is in the buffer.
    Whole,
    /// The last line had no newline.
    Torn,
    /// Longer than [`MAX_LINE`]; skipped.
    TooLong(u64),
    /// End of file.
    End,
}

impl<R: BufRead> CastReader<R> {
    /// Reads the header from `input`; `name` names the file in problems.
    pub fn new(input: R, name: String) -> Result<Self, OpenError> {
        let mut r = CastReader {
            input,
            name,
            header: Header {
                version: 2,
                cols: 80,
                rows: 24,
                timestamp: None,
                command: None,
                idle_time_limit: None,
            },
            pos: Position {
                offset: 0,
                line: 1,
                time: 0.0,
            },
            buf: Vec::new(),
            problems: 0,
            ended: false,
        };
        let line = r.read_line().map_err(|source| OpenError::Io {
            path: PathBuf::from(&r.name),
            source,
        })?;
        let what = match line {
            Line::End => Some("the file is empty".to_string()),
            Line::TooLong(n) => Some(format!("the first line is {n} bytes long")),
            Line::Whole | Line::Torn => match parse_header(&r.buf) {
                Ok(h) => {
                    r.header = h;
                    None
                }
                Err(e) => Some(e),
            },
        };
        if let Some(what) = what {
            return Err(OpenError::Header(Problem {
                file: r.name.clone(),
                line: 1,
                what,
            }));
        }
        r.pos.line = 2;
        Ok(r)
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Where the next event starts.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// How many problems were reported so far.
    pub fn problems(&self) -> u64 {
        self.problems
    }

    /// The next event, a problem with the next line (the reader goes on after it), or `None` at the end.
    pub fn next_event(&mut self) -> Option<Result<Event, Problem>> {
        loop {
            if self.ended {
                return None;
            }
            let line_no = self.pos.line;
            let line = match self.read_line() {
                Ok(l) => l,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(self.problem(line_no, format!("read error: {e}"))));
                }
            };
            self.pos.line += 1;
            let parsed = match line {
                Line::End => {
                    self.ended = true;
                    return None;
                }
                Line::TooLong(n) => Err(format!(
                    "line of {n} bytes skipped (longer than the {MAX_LINE} bytes an event may have)"
                )),
                Line::Whole if self.buf.iter().all(u8::is_ascii_whitespace) => continue,
                Line::Whole => self.parse_event(),
                Line::Torn => {
                    self.ended = true;
                    match self.parse_event() {
                        // A complete event that only lost its newline is whole: shown as it is.
                        Ok(e) => return Some(Ok(e)),
                        Err(_) => Err(format!(
                            "truncated: the last line ({} bytes) ends without a newline in the middle of an event; the recording ends here",
                            self.buf.len()
                        )),
                    }
                }
            };
            return Some(parsed.map_err(|what| self.problem(line_no, what)));
        }
    }

    fn problem(&mut self, line: u64, what: String) -> Problem {
        self.problems += 1;
        Problem {
            file: self.name.clone(),
            line,
            what,
        }
    }

    fn parse_event(&mut self) -> Result<Event, String> {
        let (t, code, data) = parse_event_line(&self.buf)?;
        let time = if self.header.version == 3 {
            self.pos.time + t
        } else {
            t
        };
        let code = match code.as_str() {
            "o" => Code::Output,
            "i" => Code::Input,
            "m" => Code::Marker,
            "x" => Code::Exit,
            "r" => {
                let (c, r) = parse_size(&data)
                    .ok_or_else(|| format!("resize event `{data}` is not COLSxROWS"))?;
                Code::Resize(c, r)
            }
            _ => Code::Other(code),
        };
        // Times that go backwards in v2 are kept in order: a player never waits a negative time.
        self.pos.time = time.max(self.pos.time);
        Ok(Event {
            time: self.pos.time,
            code,
            data,
        })
    }

    /// Reads one line into `buf` (without the newline), never holding more than [`MAX_LINE`] bytes.
    fn read_line(&mut self) -> std::io::Result<Line> {
        self.buf.clear();
        let mut total: u64 = 0;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                self.pos.offset += total;
                return Ok(if total == 0 {
                    Line::End
                } else if total as usize > MAX_LINE {
                    Line::TooLong(total)
                } else {
                    Line::Torn
                });
            }
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let body = if done { take - 1 } else { take };
            if total as usize + body <= MAX_LINE {
                self.buf.extend_from_slice(&chunk[..body]);
            } else {
                self.buf.clear();
            }
            total += take as u64;
            self.input.consume(take);
            if done {
                self.pos.offset += total;
                let len = total - 1;
                return Ok(if len as usize > MAX_LINE {
                    Line::TooLong(len)
                } else {
                    Line::Whole
                });
            }
        }
    }
}

/// Parses `[time, "code", "data"]`.
fn parse_event_line(line: &[u8]) -> Result<(f64, String, String), String> {
    let v: (f64, String, serde_json::Value) = serde_json::from_slice(line)
        .map_err(|e| format!("not an event (expected [seconds, \"code\", \"data\"]): {e}"))?;
    if !v.0.is_finite() || v.0 < 0.0 {
        return Err(format!("event time {} is not a non-negative number", v.0));
    }
    let data = match v.2 {
        serde_json::Value::String(s) => s,
        // v3's exit event may carry a number; keep any scalar as text.
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(format!("event data {other} is not a string")),
    };
    Ok((v.0, v.1, data))
}

/// `"WxH"`.
fn parse_size(s: &str) -> Option<(u16, u16)> {
    let (c, r) = s.split_once('x')?;
    let (c, r) = (c.trim().parse().ok()?, r.trim().parse().ok()?);
    (c > 0 && r > 0).then_some((c, r))
}

/// The terminal sizes a header may give: a real terminal, not a request for gigabytes of screen.
const MAX_COLS: u64 = 1000;
const MAX_ROWS: u64 = 500;

fn parse_header(line: &[u8]) -> Result<Header, String> {
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "the first line is not a JSON object".to_string())?;
    let version = obj.get("version").and_then(|v| v.as_u64());
    let dim = |v: Option<&serde_json::Value>, name: &str, max: u64| -> Result<u16, String> {
        let n = v
            .and_then(|v| v.as_u64())
            .ok_or_else(|| format!("`{name}` missing or not a number"))?;
        if n == 0 || n > max {
            return Err(format!("`{name}` = {n} is out of range (1..={max})"));
        }
        Ok(n as u16)
    };
    let (cols, rows) = match version {
        Some(2) => (
            dim(obj.get("width"), "width", MAX_COLS)?,
            dim(obj.get("height"), "height", MAX_ROWS)?,
        ),
        Some(3) => {
            let term = obj.get("term");
            (
                dim(term.and_then(|t| t.get("cols")), "term.cols", MAX_COLS)?,
                dim(term.and_then(|t| t.get("rows")), "term.rows", MAX_ROWS)?,
            )
        }
        Some(n) => return Err(format!("asciicast version {n} is not supported")),
        None => return Err("`version` missing or not a number".into()),
    };
    Ok(Header {
        version: version.unwrap_or(2) as u8,
        cols,
        rows,
        timestamp: obj.get("timestamp").and_then(|v| v.as_i64()),
        command: obj
            .get("command")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        idle_time_limit: obj
            .get("idle_time_limit")
            .and_then(|v| v.as_f64())
            .filter(|v| *v > 0.0),
    })
}

/// Reads all of `input` for the fuzz target and the tests: the header (or the error) and every event and
/// problem, never panicking whatever the bytes.
pub fn read_all<R: Read>(input: R) -> Result<(Header, Vec<Result<Event, Problem>>), OpenError> {
    let mut r = CastReader::new(BufReader::new(input), "input".into())?;
    let mut out = Vec::new();
    while let Some(e) = r.next_event() {
        out.push(e);
    }
    Ok((r.header.clone(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Header, Vec<Result<Event, Problem>>) {
        read_all(text.as_bytes()).unwrap()
    }

    #[test]
    fn reads_v2_and_v3_with_absolute_times() {
        let (h, ev) = read("{\"version\": 2, \"width\": 100, \"height\": 30, \"timestamp\": 7}\n[0.5, \"o\", \"a\"]\n[1.25, \"r\", \"90x20\"]\n");
        assert_eq!(
            (h.version, h.cols, h.rows, h.timestamp),
            (2, 100, 30, Some(7))
        );
        let ev: Vec<Event> = ev.into_iter().map(Result::unwrap).collect();
        assert_eq!(ev[0].time, 0.5);
        assert_eq!(ev[1].code, Code::Resize(90, 20));
        let (h, ev) = read("{\"version\": 3, \"term\": {\"cols\": 80, \"rows\": 24}}\n[0.5, \"o\", \"a\"]\n[1.0, \"o\", \"b\"]\n[0.25, \"x\", \"0\"]\n");
        assert_eq!(h.version, 3);
        let t: Vec<f64> = ev.into_iter().map(|e| e.unwrap().time).collect();
        assert_eq!(t, vec![0.5, 1.5, 1.75]);
    }

    #[test]
    fn a_bad_line_is_reported_with_its_line_and_the_rest_is_read() {
        let (_, ev) =
            read("{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\", \"a\"]\nnot json\n\n[0.3, \"o\", \"c\"]\n[0.4, \"o\"");
        let p = ev[1].as_ref().unwrap_err();
        assert_eq!((p.file.as_str(), p.line), ("input", 3));
        assert!(p.to_string().starts_with("input:3: not an event"), "{p}");
        assert_eq!(ev[2].as_ref().unwrap().data, "c");
        let torn = ev[3].as_ref().unwrap_err();
        assert_eq!(torn.line, 6);
        assert!(torn.what.starts_with("truncated"), "{torn}");
        assert_eq!(ev.len(), 4);
    }

    #[test]
    fn a_wrong_header_names_line_1() {
        for (text, want) in [
            ("", "empty"),
            ("{\"version\": 1}\n", "version 1 is not supported"),
            ("[0.1, \"o\", \"a\"]\n", "not a JSON object"),
            (
                "{\"version\": 2, \"width\": 0, \"height\": 2}\n",
                "`width` = 0",
            ),
            (
                "{\"version\": 2, \"width\": 80, \"height\": 99999}\n",
                "out of range",
            ),
        ] {
            let e = read_all(text.as_bytes()).err().unwrap().to_string();
            assert!(
                e.starts_with("input:1: ") && e.contains(want),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn positions_restart_a_reader_where_an_earlier_one_was() {
        let text = "{\"version\": 3, \"term\": {\"cols\": 80, \"rows\": 24}}\n[1.0, \"o\", \"a\"]\n[1.0, \"o\", \"b\"]\n[1.0, \"o\", \"c\"]\n";
        let mut r = CastReader::new(text.as_bytes(), "t".into()).unwrap();
        r.next_event().unwrap().unwrap();
        let at = r.position();
        assert_eq!((at.line, at.time), (3, 1.0));
        let rest = &text.as_bytes()[at.offset as usize..];
        let mut r2 = CastReader {
            pos: at,
            ..CastReader::new(text.as_bytes(), "t".into()).unwrap()
        };
        r2.input = rest;
        let e = r2.next_event().unwrap().unwrap();
        assert_eq!((e.time, e.data.as_str()), (2.0, "b"));
        assert_eq!(r2.next_event().unwrap().unwrap().time, 3.0);
    }

    #[test]
    fn an_overlong_line_is_skipped_in_bounded_memory() {
        let mut text =
            "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\", \"".to_string();
        text.push_str(&"x".repeat(MAX_LINE + 10));
        text.push_str("\"]\n[0.2, \"o\", \"y\"]\n");
        let mut r = CastReader::new(text.as_bytes(), "t".into()).unwrap();
        let p = r.next_event().unwrap().unwrap_err();
        assert!(p.what.contains("skipped"), "{p}");
        assert!(
            r.buf.capacity() <= MAX_LINE + (256 << 10),
            "{}",
            r.buf.capacity()
        );
        assert_eq!(r.next_event().unwrap().unwrap().data, "y");
    }

    proptest::proptest! {
        /// Whatever bytes follow a valid header, reading never panics and every line is either an event or
        /// a problem naming a line of the file.
        #[test]
        fn any_bytes_read_without_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut text = b"{\"version\": 2, \"width\": 80, \"height\": 24}\n".to_vec();
            text.extend_from_slice(&body);
            let lines = text.split(|&b| b == b'\n').count() as u64;
            let (_, ev) = read_all(&text[..]).unwrap();
            for e in ev {
                if let Err(p) = e {
                    proptest::prop_assert!(p.line >= 2 && p.line <= lines, "{}", p);
                }
            }
        }
    }
}
