//! Where a file source may resume after a crash beyond its checkpoints: after what every sink's disk buffer
//! already holds.
//!
//! A disk buffer acknowledges the source only after its fsync, and the checkpoint follows the acknowledgements,
//! so after kill -9 the buffers hold more than the checkpoints say: records written since the last fsync (they
//! survive in the page cache, are replayed, and `open` fsyncs them before any source starts) and records whose
//! acknowledgement had not yet reached a checkpoint write. Reading those lines again only makes duplicates.
//! The last event of every read batch, and every 64th within one, carries an [`Origin`] into the buffer; at
//! start, [`gather`] walks the buffers ([`disk::for_each_origin`]) and keeps, per sink and file, the stretches
//! held without a gap (each stamp's stretch starts where the previous stamp of that file ended). The tailer then
//! resumes each file, from its checkpoint `c`, at the least over the sinks of the end of the stretch that
//! contains `c`.
//!
//! The checkpoint may also lie before the first stretch a buffer still holds of a file: the sink took and
//! acknowledged what came between, and the buffer deleted those segments, faster than the checkpoint moved.
//! Segments are deleted only once acknowledged, so when nothing in the buffer before that first stretch is
//! unreadable, what lies between reached the sink, and the file resumes after the first stretch too.
//!
//! What this must never do is skip a line that is neither in every sink's buffer nor already taken by it:
//! - a source with any sink that has no disk buffer gets no hints (a memory buffer cannot be read back);
//! - a sink whose buffer holds nothing of a file, or nothing reaching back to its checkpoint, gives no hint;
//! - a gap between stamps (a dropped batch) ends a stretch; damage (a failed checksum, zeros a power cut left,
//!   a segment missing or cut short) ends every stretch and makes the next stamp a mere boundary, since the
//!   records it covers may be in the damage; a stretch after a gap or after damage is used only when it
//!   contains the checkpoint;
//! - a stretch is used only for the file whose head still has the stretch's fingerprint and which is long enough
//!   (the same rules as a checkpoint: inode reuse and truncation are not resumed from a stale position).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use auditrail_core::buffer::{self, disk, BufferConfig};
use auditrail_core::Origin;

use super::checkpoint::{FileKey, Fingerprint, FINGERPRINT_BYTES};
use crate::config::Config;
use crate::sources::SourceConfig;

/// Stretches kept per sink and file, the newest: the position a restart starts from lies in the newest ones,
/// and a buffer that drops events (`drop_newest`) could otherwise make one stretch per gap.
const MAX_STRETCHES: usize = 16;

/// One stretch of a file that a sink's buffer holds without a gap: stamped stretches, each starting where the
/// previous ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// Where the first stamp's stretch starts.
    pub start: u64,
    /// Where the newest stamp's stretch ends.
    pub end: u64,
    /// The line number at `end`, when known.
    pub end_line: Option<u64>,
    /// The file's head as the newest stamp saw it.
    pub fingerprint: Fingerprint,
    /// The file's first stretch in the buffer, with nothing unreadable before it: whatever of the file came
    /// before `start` was in segments the sink acknowledged (they are deleted only then), so it reached the
    /// sink.
    pub clean_start: bool,
}

/// What one sink's buffer holds of one file.
#[derive(Clone, Debug, Default)]
struct FileHeld {
    stretches: Vec<Held>,
    /// Damage was met since this file's last stamp: the next stamp's stretch may have lost records.
    tainted: bool,
}

/// What one sink's disk buffer holds of the files of one source, built from its records in write order.
#[derive(Clone, Debug, Default)]
pub struct SinkHeld {
    files: HashMap<FileKey, FileHeld>,
    /// Damage was met somewhere before.
    damaged: bool,
}

impl SinkHeld {
    /// Takes in the origin of the next stamped record of this source.
    pub fn add(&mut self, o: &Origin) {
        let key = FileKey {
            dev: o.dev,
            ino: o.ino,
        };
        let fingerprint = Fingerprint {
            len: o.fingerprint_len,
            hash: o.fingerprint_hash,
        };
        let damaged = self.damaged;
        let file = self.files.entry(key).or_insert_with(|| FileHeld {
            stretches: Vec::new(),
            tainted: damaged,
        });
        if std::mem::take(&mut file.tainted) {
            // The records of this stamp's stretch may be in the damage; only where it ends is known, and the
            // next stamp can continue from there.
            push(
                &mut file.stretches,
                Held {
                    start: o.end,
                    end: o.end,
                    end_line: o.end_line,
                    fingerprint,
                    clean_start: false,
                },
            );
            return;
        }
        if let Some(last) = file.stretches.last_mut() {
            // A head that grew (a file shorter than the fingerprint) is still the same file; any other change
            // of head is another file on the same inode.
            let same_file = fingerprint == last.fingerprint
                || (last.fingerprint.len < FINGERPRINT_BYTES
                    && fingerprint.len > last.fingerprint.len);
            if same_file && o.start <= last.end {
                // The newest stamp decides where the stretch ends: a file read again from an earlier point
                // (truncated, or resumed at an older checkpoint) holds again only what was read again.
                last.start = last.start.min(o.start);
                last.end = o.end;
                last.end_line = o.end_line;
                last.fingerprint = fingerprint;
                return;
            }
        }
        let clean_start = file.stretches.is_empty();
        push(
            &mut file.stretches,
            Held {
                start: o.start,
                end: o.end,
                end_line: o.end_line,
                fingerprint,
                clean_start,
            },
        );
    }

    /// Takes in a place where records could not be read: every file's stretch ends there, and the stamp after
    /// it only tells where the next stretch starts.
    pub fn damage(&mut self) {
        self.damaged = true;
        for file in self.files.values_mut() {
            file.tainted = true;
        }
    }

    /// How far this buffer holds `key` from `from` on, for the file whose head `matches`: the end of the newest
    /// stretch that contains `from`, or of the first stretch when `from` lies before it and it is
    /// [`Held::clean_start`] (what lies between reached the sink).
    fn reach(
        &self,
        key: FileKey,
        from: u64,
        matches: &dyn Fn(&Fingerprint) -> bool,
    ) -> Option<(u64, Option<u64>)> {
        let stretches = &self.files.get(&key)?.stretches;
        let within = stretches
            .iter()
            .rev()
            .find(|h| h.start <= from && from <= h.end && matches(&h.fingerprint));
        let before = stretches
            .first()
            .filter(|h| h.clean_start && from < h.start && matches(&h.fingerprint));
        within.or(before).map(|h| (h.end, h.end_line))
    }

    /// The stretches held of `key`, oldest first.
    pub fn stretches(&self, key: FileKey) -> &[Held] {
        self.files.get(&key).map_or(&[], |f| f.stretches.as_slice())
    }
}

/// Appends a stretch, keeping the newest [`MAX_STRETCHES`].
fn push(stretches: &mut Vec<Held>, held: Held) {
    stretches.push(held);
    if stretches.len() > MAX_STRETCHES {
        stretches.remove(0);
    }
}

/// What the disk buffers of every sink of one file source hold of its files, read at start.
#[derive(Clone, Debug, Default)]
pub struct ResumeHints {
    sinks: Vec<SinkHeld>,
}

impl ResumeHints {
    /// Hints from what each of the source's sinks holds (one entry per sink, every sink included).
    pub fn new(sinks: Vec<SinkHeld>) -> ResumeHints {
        ResumeHints { sinks }
    }

    /// Drops what is known of `key`: used once, when the file is first opened.
    pub fn forget(&mut self, key: FileKey) {
        for sink in &mut self.sinks {
            sink.files.remove(&key);
        }
    }

    /// Where file `key` (`len` bytes long now) may resume instead of `from` (its checkpoint, or where it would
    /// start without one), and the line number there: the least, over the sinks, of how far each holds the file
    /// from `from` on (see [`SinkHeld`]), for stretches whose fingerprint `matches` the file. `None` when some
    /// sink holds no such stretch, or the result is not past `from`, or past the end of the file.
    pub fn resume_point(
        &self,
        key: FileKey,
        from: u64,
        len: u64,
        matches: &dyn Fn(&Fingerprint) -> bool,
    ) -> Option<(u64, Option<u64>)> {
        let mut least: Option<(u64, Option<u64>)> = None;
        for sink in &self.sinks {
            let reach = sink.reach(key, from, matches)?;
            if least.is_none_or(|l| reach.0 < l.0) {
                least = Some(reach);
            }
        }
        least.filter(|(end, _)| *end > from && *end <= len)
    }
}

/// For every file source whose sinks all have disk buffers, what those buffers hold of its files. Call after
/// the sinks' buffers are opened (which fsyncs what they recovered) and before the sources are built.
///
/// A buffer that cannot be read leaves its sources without hints (they resume at their checkpoints) and says
/// so; it never stops the start.
pub fn gather(config: &Config) -> HashMap<String, ResumeHints> {
    let mut wanted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, source) in &config.sources {
        if !matches!(source, SourceConfig::File(_)) {
            continue;
        }
        let sinks: Vec<(&str, &BufferConfig)> = config
            .sinks
            .iter()
            .filter(|(_, s)| s.inputs.iter().any(|i| i == name))
            .map(|(n, s)| (n.as_str(), &s.buffer))
            .collect();
        if sinks.is_empty()
            || !sinks
                .iter()
                .all(|(_, b)| matches!(b, BufferConfig::Disk(_)))
        {
            continue;
        }
        wanted.insert(name, sinks.into_iter().map(|(n, _)| n).collect());
    }
    let mut sinks: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (source, its_sinks) in &wanted {
        for sink in its_sinks {
            sinks.entry(sink).or_default().push(source);
        }
    }
    let mut held: HashMap<(&str, &str), SinkHeld> = HashMap::new();
    let mut unreadable: Vec<&str> = Vec::new();
    for (sink, sources) in &sinks {
        let dir = buffer::disk_dir(&config.data_dir, sink);
        match read_buffer(&dir, sources) {
            Ok(per_source) => {
                for (source, h) in per_source {
                    held.insert((source, sink), h);
                }
            }
            Err(e) => {
                tracing::warn!(
                    sink = %sink,
                    dir = %dir.display(),
                    error = %e,
                    "cannot read the disk buffer for file positions; its file sources resume at their checkpoints"
                );
                unreadable.push(sink);
            }
        }
    }
    let mut out = HashMap::new();
    for (source, its_sinks) in wanted {
        if its_sinks.iter().any(|s| unreadable.contains(s)) {
            continue;
        }
        let per_sink: Vec<SinkHeld> = its_sinks
            .iter()
            .map(|sink| held.remove(&(source, *sink)).unwrap_or_default())
            .collect();
        tracing::debug!(
            source,
            sinks = per_sink.len(),
            files = per_sink.iter().map(|h| h.files.len()).max().unwrap_or(0),
            "file positions read from the disk buffers"
        );
        out.insert(source.to_string(), ResumeHints::new(per_sink));
    }
    out
}

/// What the buffer in `dir` holds of the files of each of `sources`.
fn read_buffer<'a>(
    dir: &Path,
    sources: &[&'a str],
) -> Result<Vec<(&'a str, SinkHeld)>, disk::DiskBufferError> {
    let mut per_source: Vec<(&'a str, SinkHeld)> =
        sources.iter().map(|s| (*s, SinkHeld::default())).collect();
    disk::for_each_origin(dir, |walked| match walked {
        disk::Walked::Origin { source, origin } => {
            if let Some((_, h)) = per_source.iter_mut().find(|(s, _)| *s == source) {
                h.add(origin);
            }
        }
        // Records of any source may have been there.
        disk::Walked::Damage => {
            for (_, h) in &mut per_source {
                h.damage();
            }
        }
    })?;
    Ok(per_source)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: FileKey = FileKey { dev: 3, ino: 4 };
    const FP: Fingerprint = Fingerprint { len: 256, hash: 9 };

    fn origin(start: u64, end: u64) -> Origin {
        Origin {
            dev: KEY.dev,
            ino: KEY.ino,
            fingerprint_len: FP.len,
            fingerprint_hash: FP.hash,
            start,
            end,
            end_line: Some(end / 10),
        }
    }

    fn held(batches: &[(u64, u64)]) -> SinkHeld {
        let mut h = SinkHeld::default();
        for &(start, end) in batches {
            h.add(&origin(start, end));
        }
        h
    }

    fn same(fp: &Fingerprint) -> bool {
        *fp == FP
    }

    #[test]
    fn batches_one_after_the_other_make_one_stretch_and_a_gap_starts_another() {
        let h = held(&[(0, 100), (100, 250), (250, 300), (400, 500), (500, 520)]);
        let s = |start, end, clean_start| Held {
            start,
            end,
            end_line: Some(end / 10),
            fingerprint: FP,
            clean_start,
        };
        assert_eq!(h.stretches(KEY), [s(0, 300, true), s(400, 520, false)]);
        let hints = ResumeHints::new(vec![h]);
        assert_eq!(
            hints.resume_point(KEY, 120, 1000, &same),
            Some((300, Some(30)))
        );
        assert_eq!(
            hints.resume_point(KEY, 300, 1000, &same),
            None,
            "nothing held past it"
        );
        assert_eq!(
            hints.resume_point(KEY, 350, 1000, &same),
            None,
            "the lines between 350 and 400 are nowhere: no skipping over them"
        );
        assert_eq!(
            hints.resume_point(KEY, 450, 1000, &same),
            Some((520, Some(52)))
        );
    }

    #[test]
    fn the_least_over_the_sinks_and_none_when_a_sink_holds_nothing() {
        let a = held(&[(0, 100), (100, 400)]);
        let b = held(&[(0, 100), (100, 250)]);
        let hints = ResumeHints::new(vec![a.clone(), b]);
        assert_eq!(
            hints.resume_point(KEY, 100, 1000, &same),
            Some((250, Some(25)))
        );
        // A sink whose buffer holds nothing of the file (delivered and deleted, or never written): no hint.
        let hints = ResumeHints::new(vec![a.clone(), SinkHeld::default()]);
        assert_eq!(hints.resume_point(KEY, 100, 1000, &same), None);
        // A sink whose first stretch starts after the checkpoint, nothing unreadable before it: the sink took
        // what came between (those segments were acknowledged and deleted).
        let late = held(&[(200, 300), (300, 350)]);
        let hints = ResumeHints::new(vec![a.clone(), late]);
        assert_eq!(
            hints.resume_point(KEY, 100, 1000, &same),
            Some((350, Some(35)))
        );
        // The same, with damage before that first stretch: what came between may have been in it. No hint.
        let mut damaged = SinkHeld::default();
        damaged.damage();
        damaged.add(&origin(200, 300));
        damaged.add(&origin(300, 350));
        let hints = ResumeHints::new(vec![a.clone(), damaged]);
        assert_eq!(hints.resume_point(KEY, 100, 1000, &same), None);
        // No sinks: no hint.
        assert_eq!(
            ResumeHints::default().resume_point(KEY, 100, 1000, &same),
            None
        );
        let other = FileKey { dev: 3, ino: 5 };
        assert_eq!(
            ResumeHints::new(vec![a]).resume_point(other, 100, 1000, &same),
            None
        );
    }

    #[test]
    fn damage_ends_every_stretch_and_the_next_stamp_only_marks_a_boundary() {
        // Damage before the first stamp: its stretch may have lost records; the next one continues from it.
        let mut h = SinkHeld::default();
        h.damage();
        h.add(&origin(0, 100));
        h.add(&origin(100, 200));
        let hints = ResumeHints::new(vec![h]);
        assert_eq!(hints.resume_point(KEY, 50, 1000, &same), None);
        assert_eq!(
            hints.resume_point(KEY, 100, 1000, &same),
            Some((200, Some(20)))
        );
        // Damage between stamps: the stretch before it holds, the stamp after it is a boundary.
        let mut h = held(&[(0, 100)]);
        h.damage();
        h.add(&origin(100, 200));
        h.add(&origin(200, 300));
        let hints = ResumeHints::new(vec![h]);
        assert_eq!(
            hints.resume_point(KEY, 50, 1000, &same),
            Some((100, Some(10)))
        );
        assert_eq!(hints.resume_point(KEY, 150, 1000, &same), None);
        assert_eq!(
            hints.resume_point(KEY, 250, 1000, &same),
            Some((300, Some(30)))
        );
    }

    #[test]
    fn a_stale_identity_or_a_shorter_file_is_not_resumed() {
        let hints = ResumeHints::new(vec![held(&[(0, 100), (100, 400)])]);
        // The inode now holds another file (its head differs).
        assert_eq!(hints.resume_point(KEY, 0, 1000, &|_| false), None);
        // The file is shorter than the position: truncated since.
        assert_eq!(hints.resume_point(KEY, 0, 399, &same), None);
        assert_eq!(
            hints.resume_point(KEY, 0, 400, &same),
            Some((400, Some(40)))
        );
        // A new head on the same inode starts a stretch of its own; the old file's stretch is not the new one's.
        let mut h = held(&[(0, 100), (100, 400)]);
        h.add(&Origin {
            fingerprint_hash: 77,
            ..origin(0, 50)
        });
        assert_eq!(h.stretches(KEY).len(), 2);
        let new_head = |fp: &Fingerprint| fp.hash == 77;
        let hints = ResumeHints::new(vec![h]);
        assert_eq!(
            hints.resume_point(KEY, 0, 1000, &new_head),
            Some((50, Some(5)))
        );
        assert_eq!(hints.resume_point(KEY, 60, 1000, &new_head), None);
    }

    /// Sends events to the disk buffer of `sink`, each `(source, stretch)` stamped, and waits until they are
    /// durable (acknowledged).
    async fn buffered(data_dir: &Path, sink: &str, stamped: &[(&str, u64, u64)]) {
        use auditrail_core::{AckBatch, Event};
        use std::sync::Arc;
        let (tx, rx, _) = disk::open(
            &buffer::disk_dir(data_dir, sink),
            sink,
            &disk::DiskBufferConfig::default(),
        )
        .unwrap();
        let (acks, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        let batch = AckBatch::new(0, acks);
        let events: Vec<Event> = stamped
            .iter()
            .enumerate()
            .map(|(i, (source, start, end))| {
                let mut e = Event::parse(
                    bytes::Bytes::from(format!(
                        r#"{{"event":"x","uid":"{i}","time":"2017-02-03T06:54:05Z"}}"#
                    )),
                    1024,
                )
                .unwrap();
                e.set_source(Arc::from(*source));
                e.set_origin(Arc::new(origin(*start, *end)));
                e.set_finalizer(batch.finalizer());
                e
            })
            .collect();
        drop(batch);
        tx.reserve(&events).await.send(events);
        let outcome = outcomes.recv().await.unwrap();
        assert_eq!(outcome.status, auditrail_core::EventStatus::Delivered);
        drop((tx, rx));
    }

    fn config(d: &Path, extra: &str) -> Config {
        let text = format!(
            r#"
data_dir = "{d}"
[sources.files]
type = "file"
include = ["{d}/in/*.log"]
[sources.mixed]
type = "file"
include = ["{d}/other/*.log"]
[sources.hooks]
type = "http"
address = "127.0.0.1:1"
[sinks.a]
type = "blackhole"
inputs = ["files", "mixed"]
buffer = {{ type = "disk" }}
[sinks.b]
type = "blackhole"
inputs = ["files", "hooks"]
buffer = {{ type = "disk" }}
[sinks.m]
type = "blackhole"
inputs = ["mixed"]
buffer = {{ type = "memory" }}
{extra}
"#,
            d = d.display()
        );
        Config::parse(Path::new("test.toml"), &text, &|_| None).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gather_reads_every_disk_buffered_sink_of_a_source_and_only_those_sources() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        buffered(
            d,
            "a",
            &[("files", 0, 100), ("mixed", 0, 50), ("files", 100, 300)],
        )
        .await;
        buffered(d, "b", &[("files", 0, 100), ("files", 100, 200)]).await;
        let hints = gather(&config(d, ""));
        // `mixed` has a memory-buffered sink and `hooks` is no file source: no hints for them.
        assert_eq!(hints.keys().collect::<Vec<_>>(), ["files"]);
        assert_eq!(
            hints["files"].resume_point(KEY, 100, 1000, &same),
            Some((200, Some(20))),
            "the least over the sinks"
        );
        // One more disk-buffered sink whose buffer holds nothing yet (never opened): no hint.
        let more =
            "[sinks.c]\ntype = \"blackhole\"\ninputs = [\"files\"]\nbuffer = { type = \"disk\" }";
        let hints = gather(&config(d, more));
        assert_eq!(hints["files"].resume_point(KEY, 100, 1000, &same), None);
    }

    #[test]
    fn a_file_read_again_from_the_start_holds_only_what_was_read_again() {
        // Truncated and written again with the same head: the newest batches decide.
        let h = held(&[(0, 100), (100, 400), (0, 80)]);
        let hints = ResumeHints::new(vec![h]);
        assert_eq!(hints.resume_point(KEY, 0, 1000, &same), Some((80, Some(8))));
        // A head that grew (a short file) continues the stretch.
        let mut h = SinkHeld::default();
        h.add(&Origin {
            fingerprint_len: 40,
            fingerprint_hash: 1,
            ..origin(0, 40)
        });
        h.add(&Origin {
            fingerprint_len: 90,
            fingerprint_hash: 2,
            ..origin(40, 90)
        });
        assert_eq!(h.stretches(KEY).len(), 1);
        assert_eq!(h.stretches(KEY)[0].fingerprint.hash, 2);
    }
}
