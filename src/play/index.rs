//! The seek index: time → byte offset in the `.cast`, with a keyframe of the screen every
//! [`KEYFRAME_SECONDS`] of recording or [`KEYFRAME_BYTES`] of file, whichever comes first.
//!
//! It is built once per playback by a thread that streams the file through a terminal emulator (`vt100`),
//! so memory is the emulator's one screen plus the keyframes (a few KiB each), not the session. A seek to
//! time T starts from the last keyframe at or before T and replays at most one keyframe's span of events:
//! the cost of a seek is bounded by [`KEYFRAME_BYTES`], not by how long the session is.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use super::cast::{CastReader, Code, Event, Header, OpenError, Position, Problem};

/// Recorded seconds between keyframes.
pub const KEYFRAME_SECONDS: f64 = 30.0;
/// File bytes between keyframes (bounds a seek's replay on dense output).
pub const KEYFRAME_BYTES: u64 = 4 << 20;
/// Problems kept (the count goes on).
pub const MAX_PROBLEMS: usize = 100;

/// A screen at a position of the file.
#[derive(Clone)]
pub struct Keyframe {
    /// Where the events after this screen start.
    pub at: Position,
    /// The terminal's size then.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// The screen, as the bytes that redraw it on an empty terminal (`vt100`'s `state_formatted`).
    pub screen: Vec<u8>,
}

/// What the index thread has found so far.
#[derive(Default)]
pub struct Progress {
    /// Keyframes, in file order (the first is the empty screen at the start).
    pub keyframes: Vec<Keyframe>,
    /// Recorded time read so far.
    pub covered: f64,
    /// The whole file is read.
    pub done: bool,
    /// Problems found (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// All problems found.
    pub problem_count: u64,
}

/// The index, shared between the thread building it and the player.
#[derive(Clone)]
pub struct SeekIndex {
    path: PathBuf,
    header: Header,
    state: Arc<(Mutex<Progress>, Condvar)>,
}

/// A terminal emulator of the recording's size.
pub fn emulator(cols: u16, rows: u16) -> vt100::Parser {
    vt100::Parser::new(rows, cols, 0)
}

/// Applies one event to the emulator.
pub fn apply(vt: &mut vt100::Parser, e: &Event) {
    match e.code {
        Code::Output => vt.process(e.data.as_bytes()),
        Code::Resize(c, r) => vt.screen_mut().set_size(r, c),
        _ => {}
    }
}

/// The screen at a time, and a reader for what follows.
pub struct Seeked {
    /// The emulator holding the screen at the time asked.
    pub vt: vt100::Parser,
    /// Reads on from there.
    pub reader: CastReader<std::io::BufReader<std::fs::File>>,
    /// The first event after the time asked (already read from `reader`).
    pub next: Option<Event>,
    /// Problems met on the way (also in the index).
    pub problems: Vec<Problem>,
}

impl SeekIndex {
    /// Starts building the index of `path` (whose header is `header`) on its own thread.
    pub fn build(path: &Path, header: Header) -> SeekIndex {
        let index = SeekIndex {
            path: path.to_path_buf(),
            header,
            state: Arc::new((Mutex::new(Progress::default()), Condvar::new())),
        };
        let worker = index.clone();
        let spawned = std::thread::Builder::new()
            .name("seek-index".into())
            .spawn(move || worker.run());
        if let Err(e) = spawned {
            // Without the thread, seeks replay from the start: slower, still right.
            tracing::warn!(error = %e, "cannot start the seek index thread");
            index.lock().done = true;
        }
        index
    }

    /// Builds the whole index on this thread (benchmarks and tests).
    pub fn build_here(path: &Path, header: Header) -> SeekIndex {
        let index = SeekIndex {
            path: path.to_path_buf(),
            header,
            state: Arc::new((Mutex::new(Progress::default()), Condvar::new())),
        };
        index.run();
        index
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The header of the file.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Runs `f` on the progress so far.
    pub fn with<T>(&self, f: impl FnOnce(&Progress) -> T) -> T {
        f(&self.lock())
    }

    fn run(&self) {
        let first = Keyframe {
            at: Position {
                offset: 0,
                line: 1,
                time: 0.0,
            },
            cols: self.header.cols,
            rows: self.header.rows,
            screen: Vec::new(),
        };
        let mut reader = match CastReader::open(&self.path) {
            Ok(r) => r,
            Err(e) => {
                let mut p = self.lock();
                if let OpenError::Header(problem) = e {
                    p.problems.push(problem);
                }
                p.problem_count += 1;
                p.done = true;
                self.state.1.notify_all();
                return;
            }
        };
        let mut first = first;
        first.at = reader.position();
        self.lock().keyframes.push(first);
        let mut vt = emulator(self.header.cols, self.header.rows);
        let mut last = reader.position();
        let mut batch = 0u32;
        loop {
            let before = reader.position();
            let Some(next) = reader.next_event() else {
                break;
            };
            match next {
                Ok(e) => {
                    if e.time - last.time >= KEYFRAME_SECONDS
                        || before.offset - last.offset >= KEYFRAME_BYTES
                    {
                        let (rows, cols) = vt.screen().size();
                        let kf = Keyframe {
                            at: before,
                            cols,
                            rows,
                            screen: vt.screen().state_formatted(),
                        };
                        last = before;
                        let mut p = self.lock();
                        p.keyframes.push(kf);
                        p.covered = before.time;
                        self.state.1.notify_all();
                    }
                    apply(&mut vt, &e);
                    batch += 1;
                    if batch >= 4096 {
                        batch = 0;
                        self.lock().covered = e.time;
                        self.state.1.notify_all();
                    }
                }
                Err(problem) => {
                    let mut p = self.lock();
                    p.problem_count += 1;
                    if p.problems.len() < MAX_PROBLEMS {
                        p.problems.push(problem);
                    }
                }
            }
        }
        let mut p = self.lock();
        p.covered = reader.position().time;
        p.done = true;
        self.state.1.notify_all();
    }

    /// Waits until the index covers `time` (or is done) and gives the last keyframe at or before it.
    pub fn keyframe_for(&self, time: f64) -> Keyframe {
        let mut p = self.lock();
        while !p.done && p.covered < time {
            p = self
                .state
                .1
                .wait(p)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        let i = p.keyframes.partition_point(|k| k.at.time <= time);
        match i.checked_sub(1).and_then(|i| p.keyframes.get(i)) {
            Some(k) => k.clone(),
            None => Keyframe {
                at: Position {
                    offset: 0,
                    line: 1,
                    time: 0.0,
                },
                cols: self.header.cols,
                rows: self.header.rows,
                screen: Vec::new(),
            },
        }
    }

    /// The duration when the index is done.
    pub fn duration(&self) -> Option<f64> {
        let p = self.lock();
        p.done.then_some(p.covered)
    }

    /// Waits for the whole index.
    pub fn wait_done(&self) -> f64 {
        let mut p = self.lock();
        while !p.done {
            p = self
                .state
                .1
                .wait(p)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        p.covered
    }

    /// The screen after every event at or before `time`, and a reader positioned after it.
    pub fn seek(&self, time: f64) -> Result<Seeked, OpenError> {
        let kf = self.keyframe_for(time);
        let mut vt = emulator(kf.cols, kf.rows);
        vt.process(&kf.screen);
        let mut reader = if kf.at.offset == 0 {
            CastReader::open(&self.path)?
        } else {
            CastReader::open_at(&self.path, self.header.clone(), kf.at)?
        };
        let mut problems = Vec::new();
        let mut next = None;
        while let Some(e) = reader.next_event() {
            match e {
                Ok(e) if e.time > time => {
                    next = Some(e);
                    break;
                }
                Ok(e) => apply(&mut vt, &e),
                Err(p) => {
                    if problems.len() < MAX_PROBLEMS {
                        problems.push(p);
                    }
                }
            }
        }
        Ok(Seeked {
            vt,
            reader,
            next,
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A v2 cast printing line N at second N, with a clear screen every 50 lines.
    fn cast(lines: usize) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{{\"version\": 2, \"width\": 40, \"height\": 10}}").unwrap();
        for i in 0..lines {
            if i % 50 == 0 {
                writeln!(f, "[{i}.0, \"o\", \"\\u001b[H\\u001b[2J\"]").unwrap();
            }
            writeln!(f, "[{i}.5, \"o\", \"line {i}\\r\\n\"]").unwrap();
        }
        f.flush().unwrap();
        f
    }

    fn header(f: &tempfile::NamedTempFile) -> Header {
        CastReader::open(f.path()).unwrap().header().clone()
    }

    /// The screen a full replay from the start shows at `time`.
    fn replayed(path: &Path, time: f64) -> String {
        let mut r = CastReader::open(path).unwrap();
        let h = r.header().clone();
        let mut vt = emulator(h.cols, h.rows);
        while let Some(Ok(e)) = r.next_event() {
            if e.time > time {
                break;
            }
            apply(&mut vt, &e);
        }
        vt.screen().contents()
    }

    #[test]
    fn a_seek_shows_what_a_replay_from_the_start_shows() {
        let f = cast(400);
        let index = SeekIndex::build_here(f.path(), header(&f));
        let kfs = index.with(|p| p.keyframes.len());
        assert!(kfs >= 400 / 30, "{kfs} keyframes");
        for t in [
            0.0, 0.4, 0.5, 29.9, 30.5, 61.0, 137.25, 250.5, 399.9, 1000.0,
        ] {
            let s = index.seek(t).unwrap();
            assert_eq!(s.vt.screen().contents(), replayed(f.path(), t), "at {t}");
            if t < 399.5 {
                assert!(s.next.as_ref().unwrap().time > t);
            } else {
                assert!(s.next.is_none());
            }
        }
        assert_eq!(index.duration(), Some(399.5));
    }

    #[test]
    fn the_background_index_answers_seeks_while_it_builds() {
        let f = cast(200);
        let index = SeekIndex::build(f.path(), header(&f));
        let s = index.seek(150.5).unwrap();
        assert!(s.vt.screen().contents().contains("line 150"));
        assert_eq!(index.wait_done(), 199.5);
    }
}
