//! `auditrail verify`'s engine: reads chained events back in any order and says, per stream, what is intact,
//! missing, altered, reordered, duplicated or forged, and whether the seals prove it.
//!
//! Feed it lines ([`Verifier::feed_ndjson`], [`Verifier::feed_items`], [`Verifier::feed_line`]), each with
//! a location for messages, then call [`Verifier::finish`] for the [`Report`]. Storage order is not evidence
//! (Elasticsearch and Kafka partitions reorder), so everything is keyed by `(stream, seq)`, never by position.
//!
//! Per line (on every core, see [`line`]): the chain field is read, the hash recomputed from the content, a
//! seal parsed. Per stream (sequentially): each seq's claims are recorded in 33 bytes ([`slots`]); the event
//! texts are never kept, so millions of events need tens of megabytes. At the end, in seq order:
//!
//! - a copy whose recomputed hash differs from its claimed one is *altered* (a seal: a *bad seal*);
//! - identical copies are *duplicates* (normal under at-least-once delivery, not an error); two copies of one
//!   seq whose hashes both check out but differ are a *conflict*: one of them is forged;
//! - seq `s` must claim `prev` = the claimed hash of seq `s−1` (zeros for seq 1), else a *broken link* (an
//!   event moved or inserted). Claimed hashes are used, so an altered body under its original chain field is
//!   reported once, as altered;
//! - missing seqs in `1..=max` are *gaps*, but those within a crash window that an `auditrail.integrity_crash`
//!   announcement declares and that is honoured ([`windows`]): a crash, not tampering, listed with its window;
//! - seals are checked against the epoch keys established from the auditors' root key ([`seals`]);
//! - events after the last good seal are the *unsealed* tail: intact as far as the chain shows, not yet signed.
//!
//! What cannot be seen: events deleted from the end of a stream together with every seal after them (the
//! stream just looks shorter; compare the last seal's epoch with other streams' and with the time), and an
//! event deleted within an honoured crash window (it looks like one the crash took).

mod line;
mod report;
mod seals;
mod slots;
#[cfg(test)]
mod tests;
mod windows;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use ed25519_dalek::VerifyingKey;

pub use report::{BadCrashWindow, BadSeal, CrashWindow, Report, StreamReport};

use line::{examine, mark_same_streams, Examined};
use seals::SealCopy;
use slots::{trunc, Kind, Recorded, Slots, ALTERED, CONFLICT, VALID};
use windows::AnnouncementCopy;

use super::chain::GENESIS;

/// How many located findings (unreadable lines, altered or conflicting copies) the report lists.
pub const MAX_PROBLEMS: usize = 50;

/// Below this many lines, one thread examines them all.
const PARALLEL_MIN: usize = 256;
/// Parts per thread that the lines of one feed are cut into.
const PARTS_PER_THREAD: usize = 8;

/// One line to verify and where it came from.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    /// The line, without or with its line terminator.
    pub text: &'a [u8],
    /// The file, `-` for stdin, `index/_doc/id`, ...
    pub source: &'a str,
    /// Line number within `source` (from 1); 0 when lines are not numbered.
    pub line: u64,
}

impl Item<'_> {
    fn location(&self) -> String {
        if self.line == 0 {
            self.source.to_string()
        } else {
            format!("{}:{}", self.source, self.line)
        }
    }
}

struct Stream {
    name: String,
    slots: Slots,
    duplicates: u64,
    seals: Vec<SealCopy>,
    /// Every copy of a crash window announcement (rare; deduplicated when checked).
    crashes: Vec<AnnouncementCopy>,
}

/// Verifies chained events fed to it in any order. See the module documentation.
pub struct Verifier {
    root: VerifyingKey,
    streams: Vec<Stream>,
    index: HashMap<String, usize>,
    last: usize,
    unchained: u64,
    unreadable: u64,
    problems: Vec<String>,
    scratch: Vec<u8>,
    threads: usize,
}

impl Verifier {
    /// A verifier trusting `root`, epoch 0's public key (`auditrail.pub`, see
    /// [`crate::integrity::keys::load_public`]). Examines lines on every core.
    pub fn new(root: VerifyingKey) -> Verifier {
        Verifier {
            root,
            streams: Vec::new(),
            index: HashMap::new(),
            last: usize::MAX,
            unchained: 0,
            unreadable: 0,
            problems: Vec::new(),
            scratch: Vec::with_capacity(4096),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(16)),
        }
    }

    /// Uses at most `n` threads (at least 1) to examine lines.
    pub fn with_threads(mut self, n: usize) -> Verifier {
        self.threads = n.max(1);
        self
    }

    /// Feeds one line.
    pub fn feed_line(&mut self, text: &[u8], source: &str, line: u64) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let item = Item { text, source, line };
        let ex = examine(text, &mut scratch);
        self.merge(ex, &item);
        self.scratch = scratch;
    }

    /// Feeds NDJSON text holding whole lines (a last line without `\n` counts as one), numbering them from
    /// `first_line`. Returns how many lines it held.
    ///
    /// The text is cut at line ends into parts, and each part is split into lines by the thread that examines
    /// it: the cutting is the only work on the text before the threads start.
    pub fn feed_ndjson(&mut self, text: &[u8], source: &str, first_line: u64) -> u64 {
        fn lines(part: &[u8]) -> impl Iterator<Item = &[u8]> {
            // A last line without `\n` is a line; the empty rest after a final `\n` is not.
            let mut start = 0;
            let mut ends = memchr::memchr_iter(b'\n', part);
            std::iter::from_fn(move || {
                let end = ends.next().or((start < part.len()).then_some(part.len()))?;
                let line = &part[start..end];
                start = end + 1;
                Some(line)
            })
        }
        // Text of about 256-byte lines, as many as PARALLEL_MIN of them at least.
        let threads = self.threads.min(text.len() / (PARALLEL_MIN * 256)).max(1);
        let mut line = first_line;
        if threads == 1 {
            let mut scratch = std::mem::take(&mut self.scratch);
            for text in lines(text) {
                let ex = examine(text, &mut scratch);
                self.merge(ex, &Item { text, source, line });
                line += 1;
            }
            self.scratch = scratch;
            return line - first_line;
        }
        let wanted = threads * PARTS_PER_THREAD;
        let mut parts: Vec<&[u8]> = Vec::with_capacity(wanted);
        let mut start = 0;
        while start < text.len() {
            let at = (start + text.len().div_ceil(wanted)).min(text.len());
            let end = match memchr::memchr(b'\n', &text[at..]) {
                Some(n) => at + n + 1,
                None => text.len(),
            };
            parts.push(&text[start..end]);
            start = end;
        }
        self.in_parallel(
            threads,
            parts.len(),
            |i, scratch| {
                let mut exs: Vec<_> = lines(parts[i]).map(|l| examine(l, scratch)).collect();
                mark_same_streams(&mut exs);
                exs
            },
            |v, _, exs| {
                for ex in exs {
                    v.merge(
                        ex,
                        &Item {
                            text: b"",
                            source,
                            line,
                        },
                    );
                    line += 1;
                }
            },
        );
        line - first_line
    }

    /// Feeds many lines, examining them on every core; what they show is recorded in their order.
    pub fn feed_items(&mut self, items: &[Item<'_>]) {
        let threads = self.threads.min(items.len() / PARALLEL_MIN).max(1);
        if threads == 1 {
            for item in items {
                let ex = examine(item.text, &mut self.scratch);
                self.merge(ex, item);
            }
            return;
        }
        let per = items.len().div_ceil(threads * PARTS_PER_THREAD);
        let parts: Vec<&[Item<'_>]> = items.chunks(per).collect();
        self.in_parallel(
            threads,
            parts.len(),
            |i, scratch| {
                let mut exs: Vec<_> = parts[i]
                    .iter()
                    .map(|it| examine(it.text, scratch))
                    .collect();
                mark_same_streams(&mut exs);
                exs
            },
            |v, i, exs| {
                for (item, ex) in parts[i].iter().zip(exs) {
                    v.merge(ex, item);
                }
            },
        );
    }

    /// Examines `parts` parts on `threads` threads and records each, in order, with `record`.
    ///
    /// Every thread, this one included, takes the next part when it is done with one, and this thread records
    /// finished parts in order between its own, so that no core waits for a slow part or for the recording.
    fn in_parallel<'t>(
        &mut self,
        threads: usize,
        parts: usize,
        examine_part: impl Fn(usize, &mut Vec<u8>) -> Vec<Examined<'t>> + Sync,
        mut record: impl FnMut(&mut Self, usize, Vec<Examined<'t>>),
    ) {
        let next = AtomicUsize::new(0);
        let take = || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            (i < parts).then_some(i)
        };
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<Examined<'t>>)>();
            for _ in 1..threads {
                let tx = tx.clone();
                let (take, examine_part) = (&take, &examine_part);
                scope.spawn(move || {
                    let mut scratch = Vec::with_capacity(4096);
                    while let Some(i) = take() {
                        if tx.send((i, examine_part(i, &mut scratch))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            let mut done: BTreeMap<usize, Vec<Examined<'t>>> = BTreeMap::new();
            let mut scratch = std::mem::take(&mut self.scratch);
            let mut recorded = 0;
            while recorded < parts {
                while let Ok((i, exs)) = rx.try_recv() {
                    done.insert(i, exs);
                }
                if let Some(exs) = done.remove(&recorded) {
                    record(self, recorded, exs);
                    recorded += 1;
                } else if let Some(i) = take() {
                    done.insert(i, examine_part(i, &mut scratch));
                } else {
                    let (i, exs) = rx.recv().expect("a part is still being examined");
                    done.insert(i, exs);
                }
            }
            self.scratch = scratch;
        });
    }

    /// Counts a line that could not even be handed over (too long, a document without its source) as
    /// unreadable, with why.
    pub fn note_unreadable(&mut self, source: &str, line: u64, why: &str) {
        self.unreadable += 1;
        let at = Item {
            text: b"",
            source,
            line,
        }
        .location();
        self.problem(|| format!("{at}: {why}"));
    }

    fn problem(&mut self, what: impl FnOnce() -> String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(what());
        }
    }

    fn stream_index(&mut self, name: &str) -> usize {
        if let Some(s) = self.streams.get(self.last) {
            if s.name == name {
                return self.last;
            }
        }
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let i = self.streams.len();
                self.streams.push(Stream {
                    name: name.to_string(),
                    slots: Slots::default(),
                    duplicates: 0,
                    seals: Vec::new(),
                    crashes: Vec::new(),
                });
                self.index.insert(name.to_string(), i);
                i
            }
        };
        self.last = i;
        i
    }

    fn merge(&mut self, ex: Examined<'_>, item: &Item<'_>) {
        let c = match ex {
            Examined::Blank => return,
            Examined::Unchained => {
                self.unchained += 1;
                return;
            }
            Examined::Unreadable(why) => {
                self.unreadable += 1;
                self.problem(|| format!("{}: {why}", item.location()));
                return;
            }
            Examined::Chained(c) => c,
        };
        // `same_stream` holds within a part, and parts are recorded in order: the last stream recorded is the
        // previous chained line's.
        let i = if c.same_stream && self.last < self.streams.len() {
            self.last
        } else {
            self.stream_index(&c.stream)
        };
        let st = &mut self.streams[i];
        let kind = match (&c.seal, &c.crash) {
            (Some(_), _) => Kind::Seal,
            (None, Some(_)) => Kind::Announcement,
            (None, None) => Kind::Plain,
        };
        let recorded = st
            .slots
            .record(c.seq, trunc(&c.hash), trunc(&c.prev), c.valid, kind);
        if recorded == Recorded::Duplicate {
            st.duplicates += 1;
        }
        if let Some(seal) = c.seal {
            let seal = *seal;
            let seen = st
                .seals
                .iter()
                .any(|o| o.seq == c.seq && o.valid_chain == c.valid && o.seal == seal);
            if !seen {
                st.seals.push(SealCopy {
                    seq: c.seq,
                    valid_chain: c.valid,
                    seal,
                });
            }
        }
        if let Some(announcement) = c.crash {
            st.crashes.push(AnnouncementCopy {
                seq: c.seq,
                valid_chain: c.valid,
                hash: trunc(&c.hash),
                prev: trunc(&c.prev),
                announcement: *announcement,
            });
        }
        if !c.valid || recorded == Recorded::Conflict {
            let why = match (&c.body_error, recorded) {
                (Some(e), _) => format!("content is not valid JSON ({e})"),
                (None, Recorded::Conflict) => {
                    "a second copy whose hash checks out but differs from the first".into()
                }
                (None, _) => "hash does not match the content".into(),
            };
            let stream = c.stream;
            let seq = c.seq;
            self.problem(|| format!("{}: stream {stream} seq {seq}: {why}", item.location()));
        }
    }

    /// Runs the checks over everything fed and returns the verdict.
    pub fn finish(self) -> Report {
        let inputs: Vec<(&str, &[SealCopy], &Slots)> = self
            .streams
            .iter()
            .map(|s| (s.name.as_str(), s.seals.as_slice(), &s.slots))
            .collect();
        let verdicts = seals::check(self.root, &inputs);
        let mut streams: Vec<StreamReport> = self
            .streams
            .iter()
            .zip(verdicts.reasons)
            .map(|(s, reasons)| stream_report(s, reasons))
            .collect();
        streams.sort_by(|a, b| a.stream.cmp(&b.stream));
        Report {
            ok: self.unreadable == 0 && !streams.iter().any(StreamReport::tampered),
            streams,
            unchained: self.unchained,
            unreadable: self.unreadable,
            problems: self.problems,
        }
    }
}

fn stream_report(s: &Stream, reasons: Vec<Vec<String>>) -> StreamReport {
    let mut bad: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut good_seals = Vec::new();
    for (c, r) in s.seals.iter().zip(reasons) {
        if r.is_empty() {
            good_seals.push(c.seq);
            continue;
        }
        let v = bad.entry(c.seq).or_default();
        for x in r {
            if !v.contains(&x) {
                v.push(x);
            }
        }
    }
    let last_good = good_seals
        .into_iter()
        .filter(|q| !bad.contains_key(q))
        .max()
        .unwrap_or(0);
    let crash = windows::check(&s.name, &s.crashes, &s.seals, &s.slots);
    let mut r = StreamReport {
        stream: s.name.clone(),
        crash_windows: crash.honoured,
        bad_crash_windows: crash.refused,
        duplicates: s.duplicates,
        bad_seals: bad
            .into_iter()
            .map(|(seq, v)| BadSeal {
                seq,
                reason: v.join("; "),
            })
            .collect(),
        ..StreamReport::default()
    };
    let genesis = trunc(&GENESIS);
    let mut last: u64 = 0;
    let slots = &s.slots;
    let mut prev_slot = None;
    slots.for_each(|seq, slot| {
        if seq > last + 1 {
            r.gaps.push([last + 1, seq - 1]);
        }
        let linked = if seq == 1 {
            slots.claims(1, slot).any(|(_, p)| p == genesis)
        } else if let (true, Some(before)) = (last == seq - 1, prev_slot) {
            slots
                .claims(seq, slot)
                .any(|(_, p)| slots.claims(seq - 1, &before).any(|(h, _)| h == p))
        } else {
            true
        };
        if !linked {
            r.broken_links.push(seq);
        }
        if slot.has(VALID) {
            r.verified += 1;
        }
        if slot.has(ALTERED) {
            r.altered.push(seq);
        }
        if slot.has(CONFLICT) {
            r.conflicts.push(seq);
        }
        if seq > last_good {
            r.unsealed += 1;
        }
        last = seq;
        prev_slot = Some(*slot);
    });
    r.gaps = windows::excuse(std::mem::take(&mut r.gaps), &mut r.crash_windows);
    r
}
