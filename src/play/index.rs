//! The seek index: time → byte offset in the `.cast`, with a keyframe of the screen every
//! [`KEYFRAME_SECONDS`] of recording or [`KEYFRAME_BYTES`] of file, whichever comes first.
//!
//! It is built once per recording, not once per playback: the first `play` streams the file through a
//! terminal emulator (`vt100`) on its own thread and keeps the result beside the recording
//! ([`super::index_file`], `<sid>.index`); later plays load it (checked against the recording, never
//! trusted blindly) and seek at once. A build stopped early (the player quit) keeps what it had, and a
//! recording that grew since (a live session) continues from the index's last keyframe instead of from the
//! start. Memory is the emulator's one screen plus the keyframes (a few KiB each), not the session. A seek
//! to time T starts from the last keyframe at or before T and replays at most one keyframe's span of
//! events: the cost of a seek is bounded by [`KEYFRAME_BYTES`], not by how long the session is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::cast::{CastReader, Code, Event, Header, OpenError, Position, Problem};
use super::index_file::{self, Fit, Saved};

/// Recorded seconds between keyframes.
pub const KEYFRAME_SECONDS: f64 = 30.0;
/// File bytes between keyframes (bounds a seek's replay on dense output).
pub const KEYFRAME_BYTES: u64 = 4 << 20;
/// Problems kept (the count goes on).
pub const MAX_PROBLEMS: usize = 100;
/// How long [`SeekIndex::finish`] waits for the index thread to keep what it built.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// A screen at a position of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Keyframe {
    /// Where the events after this screen start.
    pub at: Position,
    /// The terminal's size then.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// Problems the file has before this position (so an index continued from here counts on from it).
    pub problems_before: u64,
    /// The screen, as the bytes that redraw it on an empty terminal (`vt100`'s `state_formatted`).
    pub screen: Vec<u8>,
}

/// Where the index came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Origin {
    /// Built from the start of the file.
    Built,
    /// Loaded from `<sid>.index`, which covers the whole recording.
    Loaded,
    /// Loaded from `<sid>.index` for a prefix, and continued from its last keyframe.
    Continued,
}

/// What the index thread has found so far.
pub struct Progress {
    /// Keyframes, in file order (the first is the empty screen at the start).
    pub keyframes: Vec<Keyframe>,
    /// Recorded time read so far.
    pub covered: f64,
    /// The whole file is read (or the build was stopped: seeks wait no longer).
    pub done: bool,
    /// The index thread has ended (and kept the index, when it could).
    pub finished: bool,
    /// Problems found (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// All problems found.
    pub problem_count: u64,
    /// Where the index came from.
    pub origin: Origin,
    /// What happened to the stored index (stale, damaged, not writable), to tell the user afterwards.
    pub notes: Vec<String>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            keyframes: Vec::new(),
            covered: 0.0,
            done: false,
            finished: false,
            problems: Vec::new(),
            problem_count: 0,
            origin: Origin::Built,
            notes: Vec::new(),
        }
    }
}

/// The index, shared between the thread building it and the player.
#[derive(Clone)]
pub struct SeekIndex {
    path: PathBuf,
    header: Header,
    state: Arc<(Mutex<Progress>, Condvar)>,
    /// Asks the index thread to stop and keep what it has.
    stop: Arc<AtomicBool>,
    /// Whether the index is kept in (and loaded from) `<sid>.index`.
    persist: bool,
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

/// Where the index thread starts reading.
struct Start {
    reader: CastReader<std::io::BufReader<std::fs::File>>,
    vt: vt100::Parser,
    last: Position,
    /// Keyframes that came from the stored index (nothing new to keep if no more are found).
    loaded: usize,
}

impl SeekIndex {
    fn new(path: &Path, header: Header, persist: bool) -> SeekIndex {
        SeekIndex {
            path: path.to_path_buf(),
            header,
            state: Arc::new((Mutex::new(Progress::default()), Condvar::new())),
            stop: Arc::new(AtomicBool::new(false)),
            persist,
        }
    }

    /// The index of `path` (whose header is `header`): loaded from `<sid>.index` when that is there and
    /// fits the recording; else built (or continued from a stored prefix) on its own thread and kept there
    /// once built, or when [`SeekIndex::finish`] stops it. A stale or damaged stored index is rebuilt, and
    /// a note says so.
    pub fn open(path: &Path, header: Header) -> SeekIndex {
        let index = SeekIndex::new(path, header, true);
        let Some(resume) = index.load() else {
            return index;
        };
        let worker = index.clone();
        let spawned = std::thread::Builder::new()
            .name("seek-index".into())
            .spawn(move || worker.run(resume));
        if let Err(e) = spawned {
            // Without the thread, seeks replay from the start: slower, still right.
            tracing::warn!(error = %e, "cannot start the seek index thread");
            let mut p = index.lock();
            p.done = true;
            p.finished = true;
        }
        index
    }

    /// Builds the whole index on this thread, without the stored one (benchmarks and tests).
    pub fn build_here(path: &Path, header: Header) -> SeekIndex {
        let index = SeekIndex::new(path, header, false);
        index.run(None);
        index
    }

    /// [`SeekIndex::open`] on this thread: loads the stored index or builds (and keeps) it before
    /// returning.
    pub fn open_here(path: &Path, header: Header) -> SeekIndex {
        let index = SeekIndex::new(path, header, true);
        if let Some(resume) = index.load() {
            index.run(resume);
        }
        index
    }

    /// Loads the stored index into the progress: `None` when it covers everything (nothing to build),
    /// else what to build from (`Some(None)`: from the start).
    fn load(&self) -> Option<Option<Saved>> {
        let note = |n: String| self.lock().notes.push(n);
        match index_file::load(&self.path) {
            Ok(Some(Fit::Whole(s))) => {
                let mut p = self.lock();
                p.covered = s.covered;
                p.problem_count = s.problem_count;
                p.problems = self.problems_of(s.problems);
                p.keyframes = s.keyframes;
                p.origin = Origin::Loaded;
                p.done = true;
                p.finished = true;
                None
            }
            Ok(Some(Fit::Prefix(s))) => Some(Some(s)),
            Ok(None) => Some(None),
            Err(e) => {
                note(format!("{e}; rebuilt it"));
                Some(None)
            }
        }
    }

    fn problems_of(&self, stored: Vec<(u64, String)>) -> Vec<Problem> {
        let file = self.path.display().to_string();
        stored
            .into_iter()
            .map(|(line, what)| Problem {
                file: file.clone(),
                line,
                what,
            })
            .collect()
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

    /// Where the index thread starts: after the header, or at the last keyframe of a stored prefix.
    fn start(&self, resume: Option<Saved>) -> Result<Start, OpenError> {
        if let Some(s) = resume {
            let kf = s
                .keyframes
                .last()
                .cloned()
                .expect("a stored index has keyframes");
            let reader = CastReader::open_at(&self.path, self.header.clone(), kf.at)?;
            let mut vt = emulator(kf.cols, kf.rows);
            vt.process(&kf.screen);
            let loaded = s.keyframes.len();
            let mut p = self.lock();
            p.problems = self.problems_of(s.problems);
            p.problems.retain(|q| q.line < kf.at.line);
            p.problem_count = kf.problems_before;
            p.covered = kf.at.time;
            p.keyframes = s.keyframes;
            p.origin = Origin::Continued;
            self.state.1.notify_all();
            return Ok(Start {
                reader,
                vt,
                last: kf.at,
                loaded,
            });
        }
        let reader = CastReader::open(&self.path)?;
        let first = Keyframe {
            at: reader.position(),
            cols: self.header.cols,
            rows: self.header.rows,
            problems_before: 0,
            screen: Vec::new(),
        };
        self.lock().keyframes.push(first);
        Ok(Start {
            last: reader.position(),
            reader,
            vt: emulator(self.header.cols, self.header.rows),
            loaded: 0,
        })
    }

    fn run(&self, resume: Option<Saved>) {
        let Start {
            mut reader,
            mut vt,
            mut last,
            loaded,
        } = match self.start(resume) {
            Ok(s) => s,
            Err(e) => {
                let mut p = self.lock();
                if let OpenError::Header(problem) = e {
                    p.problems.push(problem);
                }
                p.problem_count += 1;
                p.done = true;
                p.finished = true;
                self.state.1.notify_all();
                return;
            }
        };
        let mut batch = 0u32;
        let mut stopped = false;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                stopped = true;
                break;
            }
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
                        let screen = vt.screen().state_formatted();
                        last = before;
                        let mut p = self.lock();
                        let kf = Keyframe {
                            at: before,
                            cols,
                            rows,
                            problems_before: p.problem_count,
                            screen,
                        };
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
        let end = reader.position();
        drop(reader);
        {
            let mut p = self.lock();
            if !stopped {
                p.covered = end.time;
            }
            // Seeks wait no longer: after a stop they replay from the last keyframe.
            p.done = true;
            self.state.1.notify_all();
        }
        if self.persist {
            if let Err(e) = self.keep(stopped, end, loaded) {
                self.lock().notes.push(e.to_string());
            }
        }
        self.lock().finished = true;
        self.state.1.notify_all();
    }

    /// Writes what was built to `<sid>.index`: the whole file when it was read to its end and has not
    /// grown since, else the prefix up to the last keyframe (when that is more than was loaded).
    fn keep(
        &self,
        stopped: bool,
        end: Position,
        loaded: usize,
    ) -> Result<(), index_file::IndexFileError> {
        let write = |source| index_file::IndexFileError::Write {
            path: index_file::path_for(&self.path),
            source,
        };
        let cast = std::fs::File::open(&self.path).map_err(write)?;
        let meta = cast.metadata().map_err(write)?;
        let complete = !stopped && meta.len() == end.offset;
        let saved = {
            let p = self.lock();
            if !complete && p.keyframes.len() <= loaded.max(1) {
                // Nothing beyond what is stored (or nothing at all) to keep.
                return Ok(());
            }
            let (prefix, covered, count, problems) = if complete {
                (end.offset, p.covered, p.problem_count, p.problems.clone())
            } else {
                let last = p.keyframes.last().expect("more than one keyframe");
                let before: Vec<Problem> = p
                    .problems
                    .iter()
                    .filter(|q| q.line < last.at.line)
                    .cloned()
                    .collect();
                (last.at.offset, last.at.time, last.problems_before, before)
            };
            use std::os::unix::fs::MetadataExt;
            Saved {
                cast_len: meta.len(),
                cast_mtime: (meta.mtime(), meta.mtime_nsec() as u32),
                prefix,
                complete,
                fingerprint: [0; 32],
                covered,
                problem_count: count,
                problems: problems.into_iter().map(|q| (q.line, q.what)).collect(),
                keyframes: p.keyframes.clone(),
            }
        };
        let mut saved = saved;
        saved.fingerprint = index_file::fingerprint(
            &cast,
            saved.prefix,
            saved.keyframes.iter().map(|k| k.at.offset),
        )
        .map_err(write)?;
        index_file::save(&self.path, &saved)
    }

    /// Stops the index thread, which keeps what it built so far in `<sid>.index` (the next play goes on
    /// from there), and waits a little for it to have done so.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + FINISH_WAIT;
        let mut p = self.lock();
        while !p.finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            p = self
                .state
                .1
                .wait_timeout(p, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
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
                problems_before: 0,
                screen: Vec::new(),
            },
        }
    }

    /// The duration when the index is done.
    pub fn duration(&self) -> Option<f64> {
        let p = self.lock();
        (p.done && !self.stop.load(Ordering::Relaxed)).then_some(p.covered)
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

    /// A v2 cast in `dir` printing line N in colour at second N, with a clear screen every 50 lines and a
    /// resize at line 120.
    fn cast_in(dir: &Path, name: &str, lines: usize) -> PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "{{\"version\": 2, \"width\": 40, \"height\": 10}}").unwrap();
        for i in 0..lines {
            if i % 50 == 0 {
                writeln!(f, "[{i}.0, \"o\", \"\\u001b[H\\u001b[2J\"]").unwrap();
            }
            if i == 120 {
                writeln!(f, "[{i}.1, \"r\", \"50x12\"]").unwrap();
            }
            writeln!(
                f,
                "[{i}.5, \"o\", \"\\u001b[3{}mline {i}\\u001b[0m\\r\\n\"]",
                i % 8
            )
            .unwrap();
        }
        path
    }

    fn header(path: &Path) -> Header {
        CastReader::open(path).unwrap().header().clone()
    }

    /// The screen (text, colours, cursor) a full replay from the start shows at `time`.
    fn replayed(path: &Path, time: f64) -> (String, Vec<u8>, (u16, u16)) {
        let mut r = CastReader::open(path).unwrap();
        let h = r.header().clone();
        let mut vt = emulator(h.cols, h.rows);
        while let Some(Ok(e)) = r.next_event() {
            if e.time > time {
                break;
            }
            apply(&mut vt, &e);
        }
        screen(&vt)
    }

    fn screen(vt: &vt100::Parser) -> (String, Vec<u8>, (u16, u16)) {
        let s = vt.screen();
        (s.contents(), s.contents_formatted(), s.cursor_position())
    }

    const TIMES: [f64; 12] = [
        0.0, 0.4, 0.5, 29.9, 30.5, 61.0, 119.9, 121.0, 137.25, 250.5, 399.9, 1000.0,
    ];

    /// Every seek of `index` shows the screen a replay from the start shows.
    fn seeks_match_replay(index: &SeekIndex, path: &Path) {
        for t in TIMES {
            let s = index.seek(t).unwrap();
            assert_eq!(screen(&s.vt), replayed(path, t), "at {t}");
        }
    }

    #[test]
    fn a_seek_shows_what_a_replay_from_the_start_shows() {
        let d = tempfile::tempdir().unwrap();
        let f = cast_in(d.path(), "a.cast", 400);
        let index = SeekIndex::build_here(&f, header(&f));
        let kfs = index.with(|p| p.keyframes.len());
        assert!(kfs >= 400 / 30, "{kfs} keyframes");
        seeks_match_replay(&index, &f);
        for t in TIMES {
            let s = index.seek(t).unwrap();
            if t < 399.5 {
                assert!(s.next.as_ref().unwrap().time > t);
            } else {
                assert!(s.next.is_none());
            }
        }
        assert_eq!(index.duration(), Some(399.5));
        assert!(
            !index_file::path_for(&f).exists(),
            "build_here keeps nothing"
        );
    }

    #[test]
    fn the_background_index_answers_seeks_while_it_builds() {
        let d = tempfile::tempdir().unwrap();
        let f = cast_in(d.path(), "b.cast", 200);
        let index = SeekIndex::open(&f, header(&f));
        let s = index.seek(150.5).unwrap();
        assert!(s.vt.screen().contents().contains("line 150"));
        assert_eq!(index.wait_done(), 199.5);
        index.finish();
        assert!(index.with(|p| p.finished));
    }

    #[test]
    fn the_first_open_keeps_the_index_and_later_ones_load_it() {
        let d = tempfile::tempdir().unwrap();
        let f = cast_in(d.path(), "c.cast", 400);
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        let first = SeekIndex::open_here(&f, header(&f));
        assert_eq!(first.with(|p| p.origin), Origin::Built);
        let stored = index_file::path_for(&f);
        let meta = std::fs::metadata(&stored).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o640
        );
        let second = SeekIndex::open_here(&f, header(&f));
        assert_eq!(
            second.with(|p| (p.origin, p.notes.len())),
            (Origin::Loaded, 0)
        );
        assert_eq!(
            second.with(|p| p.keyframes.clone()),
            first.with(|p| p.keyframes.clone())
        );
        assert_eq!(second.duration(), Some(399.5));
        seeks_match_replay(&second, &f);
        // Not rewritten by a play that loaded it.
        assert_eq!(
            std::fs::metadata(&stored).unwrap().modified().unwrap(),
            meta.modified().unwrap()
        );
    }

    #[test]
    fn a_stored_index_keeps_the_problems_of_the_recording() {
        let d = tempfile::tempdir().unwrap();
        let f = cast_in(d.path(), "p.cast", 100);
        let mut text = std::fs::read_to_string(&f).unwrap();
        text.insert_str(text.find("[5.5").unwrap(), "not json\n");
        std::fs::write(&f, &text).unwrap();
        let first = SeekIndex::open_here(&f, header(&f));
        let second = SeekIndex::open_here(&f, header(&f));
        assert_eq!(second.with(|p| p.origin), Origin::Loaded);
        let problems = |i: &SeekIndex| i.with(|p| (p.problem_count, p.problems.clone()));
        assert_eq!(problems(&second), problems(&first));
        assert_eq!(second.with(|p| p.problem_count), 1);
        assert!(second
            .with(|p| p.problems[0].to_string())
            .contains("not an event"));
    }

    #[test]
    fn a_recording_that_grew_continues_from_the_last_keyframe() {
        let d = tempfile::tempdir().unwrap();
        let f = cast_in(d.path(), "g.cast", 200);
        SeekIndex::open_here(&f, header(&f));
        // The session went on (a live recording played again).
        let mut more = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        for i in 200..400 {
            writeln!(more, "[{i}.5, \"o\", \"line {i}\\r\\n\"]").unwrap();
        }
        drop(more);
        let grown = SeekIndex::open_here(&f, header(&f));
        assert_eq!(
            grown.with(|p| (p.origin, p.notes.clone())),
            (Origin::Continued, vec![])
        );
        assert_eq!(grown.duration(), Some(399.5));
        seeks_match_replay(&grown, &f);
        // And what it continued to is kept whole.
        let again = SeekIndex::open_here(&f, header(&f));
        assert_eq!(again.with(|p| p.origin), Origin::Loaded);
        seeks_match_replay(&again, &f);
    }

    #[test]
    fn a_stopped_build_keeps_its_prefix_and_the_next_open_goes_on() {
        let d = tempfile::tempdir().unwrap();
        let f = cast_in(d.path(), "s.cast", 400);
        let index = SeekIndex::new(&f, header(&f), true);
        index.run(None);
        // What `finish` makes a build that is stopped at 400 s do.
        let end = index.with(|p| p.keyframes.last().unwrap().at);
        index.keep(true, end, 0).unwrap();
        let stored = index_file::decode(&std::fs::read(index_file::path_for(&f)).unwrap()).unwrap();
        assert!(!stored.complete);
        assert_eq!(stored.prefix, end.offset);
        let next = SeekIndex::open_here(&f, header(&f));
        assert_eq!(next.with(|p| p.origin), Origin::Continued);
        seeks_match_replay(&next, &f);
    }

    #[test]
    fn a_changed_recording_makes_the_index_stale_and_it_is_rebuilt() {
        let d = tempfile::tempdir().unwrap();
        let f = cast_in(d.path(), "x.cast", 400);
        SeekIndex::open_here(&f, header(&f));
        // Same length, same mtime, other contents: only the fingerprint can tell.
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let text = std::fs::read_to_string(&f)
            .unwrap()
            .replace("line 3", "LINE 3");
        std::fs::write(&f, &text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let rebuilt = SeekIndex::open_here(&f, header(&f));
        let (origin, notes) = rebuilt.with(|p| (p.origin, p.notes.clone()));
        assert_eq!(origin, Origin::Built);
        assert!(
            notes.len() == 1 && notes[0].contains("is stale") && notes[0].contains("rebuilt it"),
            "{notes:?}"
        );
        seeks_match_replay(&rebuilt, &f);
        assert!(rebuilt
            .seek(33.6)
            .unwrap()
            .vt
            .screen()
            .contents()
            .contains("LINE 33"));
        // A shorter recording is stale too.
        std::fs::write(&f, &text[..text.len() / 2]).unwrap();
        let shorter = SeekIndex::open_here(&f, header(&f));
        assert!(
            shorter.with(|p| p.notes[0].contains("shorter") || p.notes[0].contains("not those"))
        );
        seeks_match_replay(&shorter, &f);
    }

    #[test]
    fn a_damaged_index_is_rebuilt_with_a_note() {
        let d = tempfile::tempdir().unwrap();
        let f = cast_in(d.path(), "y.cast", 400);
        SeekIndex::open_here(&f, header(&f));
        let stored = index_file::path_for(&f);
        let mut bytes = std::fs::read(&stored).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&stored, &bytes).unwrap();
        let rebuilt = SeekIndex::open_here(&f, header(&f));
        let notes = rebuilt.with(|p| p.notes.clone());
        assert!(
            notes.len() == 1 && notes[0].contains("is damaged: its checksum"),
            "{notes:?}"
        );
        seeks_match_replay(&rebuilt, &f);
        // Rewritten whole: the next open loads it.
        assert_eq!(
            SeekIndex::open_here(&f, header(&f)).with(|p| p.origin),
            Origin::Loaded
        );
        // Garbage, and a symlink in its place, are refused the same way.
        std::fs::write(&stored, b"garbage").unwrap();
        let g = SeekIndex::open_here(&f, header(&f));
        assert!(g.with(|p| p.notes[0].contains("does not start with")));
        std::fs::remove_file(&stored).unwrap();
        std::os::unix::fs::symlink(&f, &stored).unwrap();
        let l = SeekIndex::open_here(&f, header(&f));
        assert!(
            l.with(|p| p.notes[0].contains("cannot read the seek index")),
            "{:?}",
            l.with(|p| p.notes.clone())
        );
        seeks_match_replay(&l, &f);
    }
}
