//! What every source does with the bytes it received: parse each event once, count it, and turn anything
//! invalid into a counted, logged, dead-lettered record instead of an error that could stop other events.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrail_core::dead_letter::{DeadLetter, DeadLetterRecord};
use auditrail_core::{Event, InvalidEvent};
use bytes::Bytes;
use metrics::Counter;

use super::lines::Line;

/// How many invalid inputs are logged one by one per window; the rest are summed up.
const LOG_BURST: u32 = 20;
const LOG_WINDOW: Duration = Duration::from_secs(10);
/// Below this many lines, parsing on one thread is cheaper than handing work to another.
const PARALLEL_MIN_LINES: usize = 512;
/// Parts per thread that a read's lines are cut into for parsing.
const PARTS_PER_THREAD: usize = 8;

/// Threads used to parse one read: the machine's cores, capped at 4.
fn parse_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
}

/// Where source `name`'s dead letters go: `data_dir/dead-letter/sources/<name>.ndjson`.
pub fn dead_letter_path(data_dir: &Path, name: &str) -> std::path::PathBuf {
    data_dir
        .join("dead-letter")
        .join("sources")
        .join(format!("{name}.ndjson"))
}

/// Input that was not accepted, with where it came from.
pub struct Rejected {
    /// `file:line`, `http request 12 line 3`, ...
    pub location: String,
    /// Why.
    pub error: InvalidEvent,
    /// The bytes (possibly only a prefix, for over-long lines).
    pub raw: Bytes,
}

struct LogWindow {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

/// Per-source parsing, counting and dead-lettering.
pub struct Ingest {
    source: Arc<str>,
    max_line: usize,
    dead_letter: Arc<DeadLetter>,
    invalid: Vec<(&'static str, Counter)>,
    events: Counter,
    bytes: Counter,
    window: Mutex<LogWindow>,
    digests: bool,
    sessions: Option<crate::sessions::directory::Directory>,
}

impl Ingest {
    /// Registers the source's counters; dead letters go to `data_dir/dead-letter/sources/<name>.ndjson`.
    pub fn new(source: &str, max_line: usize, data_dir: &Path) -> Ingest {
        let invalid = InvalidEvent::REASONS
            .iter()
            .map(|r| {
                let c = metrics::counter!("auditrail_source_invalid_total", "source" => source.to_string(), "reason" => *r);
                c.increment(0);
                (*r, c)
            })
            .collect();
        let events =
            metrics::counter!("auditrail_source_events_total", "source" => source.to_string());
        let bytes =
            metrics::counter!("auditrail_source_bytes_total", "source" => source.to_string());
        events.increment(0);
        bytes.increment(0);
        Ingest {
            source: source.into(),
            max_line,
            dead_letter: Arc::new(DeadLetter::new(dead_letter_path(data_dir, source))),
            invalid,
            events,
            bytes,
            window: Mutex::new(LogWindow {
                started: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
            digests: false,
            sessions: None,
        }
    }

    /// Shows every accepted batch to `directory`, which keeps the cgroup → session map host events are tied
    /// with ([`crate::sessions::directory`]).
    pub fn with_sessions(mut self, directory: crate::sessions::directory::Directory) -> Ingest {
        self.sessions = Some(directory);
        self
    }

    /// Shows accepted events to the session directory (done by [`Self::count`]; sources that count by totals
    /// call it themselves, before sending).
    pub fn observe(&self, events: &[Event]) {
        if let Some(d) = &self.sessions {
            d.observe(events);
        }
    }

    /// Makes it write its dead letters to `dead_letter` (bounded by the config's `[dead_letter]`) instead of
    /// a default one at [`dead_letter_path`].
    pub fn with_dead_letter(mut self, dead_letter: Arc<DeadLetter>) -> Ingest {
        self.dead_letter = dead_letter;
        self
    }

    /// Its dead-letter file (the pipeline sends its loss reports).
    pub fn dead_letter(&self) -> &Arc<DeadLetter> {
        &self.dead_letter
    }

    /// Makes [`Self::parse`] also compute each event's integrity digest, where parsing runs on all cores, so
    /// that the chain's sequential step only links.
    pub fn with_digests(mut self, on: bool) -> Ingest {
        self.digests = on;
        self
    }

    /// The source's name.
    pub fn source(&self) -> &Arc<str> {
        &self.source
    }

    /// The most bytes one event may have.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Parses one event and tags it with the source; does not count it (see [`Self::count`]).
    pub fn parse(&self, raw: Bytes) -> Result<Event, InvalidEvent> {
        let mut e = if self.digests {
            thread_local! {
                static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            SCRATCH.with_borrow_mut(|scratch| Event::parse_digested(raw, self.max_line, scratch))?
        } else {
            Event::parse(raw, self.max_line)?
        };
        e.set_source(Arc::clone(&self.source));
        Ok(e)
    }

    /// Turns one line of a stream into an event or a refusal; blank lines are skipped. `location` names the
    /// line from its number (when known) and stream offset.
    pub fn take_line(
        &self,
        line: Line,
        location: &impl Fn(Option<u64>, u64) -> String,
        events: &mut Vec<Event>,
        rejected: &mut Vec<Rejected>,
    ) {
        match line {
            Line::Complete {
                bytes,
                number,
                start,
            } => {
                if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                    return;
                }
                match self.parse(bytes.clone()) {
                    Ok(e) => events.push(e),
                    Err(error) => rejected.push(Rejected {
                        location: location(number, start),
                        error,
                        raw: bytes,
                    }),
                }
            }
            Line::TooLong {
                prefix,
                len,
                number,
                start,
            } => rejected.push(Rejected {
                location: location(number, start),
                error: InvalidEvent::TooLong {
                    len,
                    max: self.max_line,
                },
                raw: prefix,
            }),
        }
    }

    /// [`Self::take_line`] for many lines, parsed on every core when there are enough of them: parsing is the
    /// most expensive step of the hot path, and results keep the lines' order.
    pub fn take_lines(
        &self,
        lines: Vec<Line>,
        location: impl Fn(Option<u64>, u64) -> String + Sync,
        events: &mut Vec<Event>,
        rejected: &mut Vec<Rejected>,
    ) {
        self.take_lines_noting(lines, location, events, rejected, None);
    }

    /// [`Self::take_lines`], also pushing to `made`, for each line in order, whether it made an event (rather
    /// than being refused or blank): the file source needs to know which line each event ends.
    pub fn take_lines_noting(
        &self,
        lines: Vec<Line>,
        location: impl Fn(Option<u64>, u64) -> String + Sync,
        events: &mut Vec<Event>,
        rejected: &mut Vec<Rejected>,
        mut made: Option<&mut Vec<bool>>,
    ) {
        let noting = made.is_some();
        let threads = parse_threads();
        if threads < 2 || lines.len() < PARALLEL_MIN_LINES {
            for line in lines {
                let before = events.len();
                self.take_line(line, &location, events, rejected);
                if let Some(m) = made.as_deref_mut() {
                    m.push(events.len() > before);
                }
            }
            return;
        }
        // Parts several times more numerous than the threads, taken one after the other by whichever thread
        // is free: a thread that loses its core to the sink or the chain for a while does not hold up the read.
        let per = lines.len().div_ceil(threads * PARTS_PER_THREAD);
        let mut parts: Vec<Mutex<Vec<Line>>> = Vec::with_capacity(threads * PARTS_PER_THREAD);
        let mut lines = lines.into_iter();
        loop {
            let part: Vec<Line> = lines.by_ref().take(per).collect();
            if part.is_empty() {
                break;
            }
            parts.push(Mutex::new(part));
        }
        let next = AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(part) = parts.get(i) else {
                    return done;
                };
                let part = std::mem::take(&mut *part.lock().unwrap_or_else(|p| p.into_inner()));
                let (mut ev, mut rej) = (Vec::with_capacity(part.len()), Vec::new());
                let mut part_made = Vec::with_capacity(if noting { part.len() } else { 0 });
                for line in part {
                    let before = ev.len();
                    self.take_line(line, &location, &mut ev, &mut rej);
                    if noting {
                        part_made.push(ev.len() > before);
                    }
                }
                done.push((i, ev, rej, part_made));
            }
        };
        let mut results = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
            let mut all = work();
            for h in handles {
                all.extend(h.join().expect("parsing never panics"));
            }
            all
        });
        results.sort_unstable_by_key(|r| r.0);
        for (_, mut ev, mut rej, part_made) in results {
            events.append(&mut ev);
            rejected.append(&mut rej);
            if let Some(m) = made.as_deref_mut() {
                m.extend(part_made);
            }
        }
    }

    /// Counts accepted events.
    pub fn count(&self, events: &[Event]) {
        self.observe(events);
        self.count_totals(
            events.len() as u64,
            events.iter().map(|e| e.raw().len() as u64).sum(),
        );
    }

    /// Counts accepted events by their totals.
    pub fn count_totals(&self, events: u64, bytes: u64) {
        self.events.increment(events);
        self.bytes.increment(bytes);
    }

    /// Counts, logs and dead-letters what was refused. Never fails: a dead-letter file that cannot be written
    /// is itself logged as an error, and the counters still move.
    pub fn reject<'a>(&self, rejected: impl IntoIterator<Item = &'a Rejected>) {
        let mut records = Vec::new();
        for r in rejected {
            let reason = r.error.reason();
            if let Some((_, c)) = self.invalid.iter().find(|(n, _)| *n == reason) {
                c.increment(1);
            }
            self.log(r);
            records.push(DeadLetterRecord::new(
                &self.source,
                r.location.clone(),
                reason,
                r.error.to_string(),
                &r.raw,
            ));
        }
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.dead_letter.write(&records) {
            tracing::error!(
                source = %self.source,
                path = %self.dead_letter.path().display(),
                error = %e,
                records = records.len(),
                "cannot write the dead-letter file; the invalid input is counted but not kept"
            );
        }
    }

    fn log(&self, r: &Rejected) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.started.elapsed() >= LOG_WINDOW {
            if w.suppressed > 0 {
                tracing::warn!(source = %self.source, suppressed = w.suppressed, "more invalid input was counted and dead-lettered without a log line each");
            }
            *w = LogWindow {
                started: Instant::now(),
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < LOG_BURST {
            w.logged += 1;
            tracing::warn!(
                source = %self.source,
                location = %r.location,
                reason = r.error.reason(),
                error = %r.error,
                dead_letter = %self.dead_letter.path().display(),
                "invalid input"
            );
        } else {
            w.suppressed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_on_every_core_keeps_the_order_of_events_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Ingest::new("t", 1 << 16, dir.path()).with_digests(true);
        let n = 5_000u64;
        let lines: Vec<Line> = (1..=n)
            .map(|i| {
                let text = if i % 97 == 0 {
                    format!("not json {i}")
                } else {
                    format!(r#"{{"event":"x","uid":"{i}","time":"2017-02-03T06:54:05Z"}}"#)
                };
                Line::Complete {
                    bytes: Bytes::from(text),
                    number: Some(i),
                    start: 0,
                }
            })
            .collect();
        let (mut events, mut rejected, mut made) = (Vec::new(), Vec::new(), Vec::new());
        ingest.take_lines_noting(
            lines,
            |number, _| format!("line {}", number.unwrap()),
            &mut events,
            &mut rejected,
            Some(&mut made),
        );
        let want_made: Vec<bool> = (1..=n).map(|i| i % 97 != 0).collect();
        assert_eq!(made, want_made);
        let want: Vec<String> = (1..=n)
            .filter(|i| i % 97 != 0)
            .map(|i| i.to_string())
            .collect();
        let got: Vec<String> = events.iter().map(|e| e.uid().into_owned()).collect();
        assert_eq!(got, want);
        assert!(events.iter().all(|e| e.digest().is_some()));
        let at: Vec<String> = rejected.iter().map(|r| r.location.clone()).collect();
        let want_at: Vec<String> = (1..=n)
            .filter(|i| i % 97 == 0)
            .map(|i| format!("line {i}"))
            .collect();
        assert_eq!(at, want_at);
    }
}
