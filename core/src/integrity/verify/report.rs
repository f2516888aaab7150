//! The verdict: per stream what checked out and what did not, as JSON (`--json`) or as text for a person.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The result of verifying everything fed to a [`super::Verifier`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Nothing was tampered with: no stream has gaps, altered events, conflicts, broken links, bad seals or bad
    /// crash windows, and every line could be read. Seqs missing within honoured crash windows are a crash,
    /// not tampering: they leave `ok` true.
    pub ok: bool,
    /// One entry per stream, by name.
    pub streams: Vec<StreamReport>,
    /// Lines that are JSON objects without a chain field (e.g. `auditrail.dropped`, emitted per sink).
    pub unchained: u64,
    /// Lines that are not JSON objects or whose chain field is malformed.
    pub unreadable: u64,
    /// The first few unreadable lines, as `location: why`.
    pub problems: Vec<String>,
}

/// What one stream's events showed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReport {
    /// `node_id/source`.
    pub stream: String,
    /// Distinct seqs with a copy whose hash checks out.
    pub verified: u64,
    /// Missing seqs within 1..=the highest seq seen, as inclusive ranges, but those within an honoured crash
    /// window (listed in `crash_windows`).
    pub gaps: Vec<[u64; 2]>,
    /// Seqs with a copy whose hash does not match its content (seal events go to `bad_seals` instead, crash
    /// window announcements to `bad_crash_windows`).
    pub altered: Vec<u64>,
    /// Seqs with two copies whose hashes each check out but differ: one of them is forged.
    pub conflicts: Vec<u64>,
    /// Seqs whose `prev` is not the hash of seq − 1 (out-of-order or inserted events).
    pub broken_links: Vec<u64>,
    /// Extra identical copies (normal under at-least-once delivery; not an error).
    pub duplicates: u64,
    /// Seals that do not prove what they claim.
    pub bad_seals: Vec<BadSeal>,
    /// Distinct seqs after the stream's last good seal: intact so far, but not yet signed.
    pub unsealed: u64,
    /// Honoured `auditrail.integrity_crash` announcements, by seq: seqs that may have been numbered before a
    /// crash and never delivered. Not tampering.
    #[serde(default)]
    pub crash_windows: Vec<CrashWindow>,
    /// Crash window announcements that are not honoured (their windows excuse nothing): tampering.
    #[serde(default)]
    pub bad_crash_windows: Vec<BadCrashWindow>,
}

/// An honoured crash window: the announcement at `announced_at` declares `from..=to` (empty when
/// `from == to + 1`) possibly lost in a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashWindow {
    /// The announcement's seq (`to + 1`).
    pub announced_at: u64,
    /// First seq declared.
    pub from: u64,
    /// Last seq declared.
    pub to: u64,
    /// The declared seqs that are indeed missing, as inclusive ranges.
    pub missing: Vec<[u64; 2]>,
}

/// A crash window announcement that failed a check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadCrashWindow {
    /// The announcement's seq.
    pub announced_at: u64,
    /// Every check it failed, `; `-separated.
    pub reason: String,
}

/// A seal that failed a check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadSeal {
    /// The seal event's seq.
    pub seq: u64,
    /// Every check it failed, `; `-separated.
    pub reason: String,
}

impl StreamReport {
    /// Whether anything in this stream shows tampering.
    pub fn tampered(&self) -> bool {
        !(self.gaps.is_empty()
            && self.altered.is_empty()
            && self.conflicts.is_empty()
            && self.broken_links.is_empty()
            && self.bad_seals.is_empty()
            && self.bad_crash_windows.is_empty())
    }

    /// How many seqs the honoured crash windows show missing.
    pub fn lost_in_crashes(&self) -> u64 {
        self.crash_windows
            .iter()
            .flat_map(|w| &w.missing)
            .map(|[a, b]| b - a + 1)
            .sum()
    }
}

fn range([a, b]: &[u64; 2]) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

/// How many entries of a list the text output shows.
const SHOW: usize = 20;

fn list<T>(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    items: &[T],
    show: impl Fn(&T) -> String,
) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    let mut parts: Vec<String> = items.iter().take(SHOW).map(show).collect();
    if items.len() > SHOW {
        parts.push(format!(
            "… ({} in all; --json lists every one)",
            items.len()
        ));
    }
    writeln!(f, "  {what}: {}", parts.join(", "))
}

impl fmt::Display for StreamReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "stream {}: {}",
            self.stream,
            if self.tampered() {
                "TAMPERED"
            } else {
                "intact"
            }
        )?;
        writeln!(
            f,
            "  verified: {} events; duplicates: {}; unsealed tail: {} events",
            self.verified, self.duplicates, self.unsealed
        )?;
        list(f, "gaps (missing seqs)", &self.gaps, range)?;
        list(
            f,
            "altered (hash does not match content)",
            &self.altered,
            u64::to_string,
        )?;
        list(
            f,
            "conflicts (one seq, two different contents)",
            &self.conflicts,
            u64::to_string,
        )?;
        list(
            f,
            "broken links (out of order or inserted)",
            &self.broken_links,
            u64::to_string,
        )?;
        if !self.bad_seals.is_empty() {
            writeln!(f, "  bad seals:")?;
            for b in self.bad_seals.iter().take(SHOW) {
                writeln!(f, "    seq {}: {}", b.seq, b.reason)?;
            }
            if self.bad_seals.len() > SHOW {
                writeln!(f, "    … ({} in all)", self.bad_seals.len())?;
            }
        }
        if !self.crash_windows.is_empty() {
            writeln!(
                f,
                "  crash windows (declared possibly lost in a crash; not tampering):"
            )?;
            for w in self.crash_windows.iter().take(SHOW) {
                let declared = if w.from > w.to {
                    "nothing".to_string()
                } else {
                    range(&[w.from, w.to])
                };
                let mut missing: Vec<String> = w.missing.iter().take(SHOW).map(range).collect();
                if w.missing.len() > SHOW {
                    missing.push(format!("… ({} ranges in all)", w.missing.len()));
                }
                let missing = if missing.is_empty() {
                    "none".to_string()
                } else {
                    missing.join(", ")
                };
                writeln!(
                    f,
                    "    seq {} declares {declared}; missing: {missing}",
                    w.announced_at
                )?;
            }
            if self.crash_windows.len() > SHOW {
                writeln!(f, "    … ({} in all)", self.crash_windows.len())?;
            }
        }
        if !self.bad_crash_windows.is_empty() {
            writeln!(f, "  bad crash windows (not honoured):")?;
            for b in self.bad_crash_windows.iter().take(SHOW) {
                writeln!(f, "    seq {}: {}", b.announced_at, b.reason)?;
            }
            if self.bad_crash_windows.len() > SHOW {
                writeln!(f, "    … ({} in all)", self.bad_crash_windows.len())?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.streams {
            write!(f, "{s}")?;
        }
        if self.streams.is_empty() {
            writeln!(f, "no chained events found")?;
        }
        writeln!(
            f,
            "unchained lines: {}; unreadable lines: {}",
            self.unchained, self.unreadable
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        if self.unreadable > self.problems.len() as u64 {
            writeln!(f, "  … ({} unreadable lines in all)", self.unreadable)?;
        }
        let tampered = self.streams.iter().filter(|s| s.tampered()).count();
        let windows: usize = self.streams.iter().map(|s| s.crash_windows.len()).sum();
        let lost: u64 = self.streams.iter().map(StreamReport::lost_in_crashes).sum();
        if self.ok && windows > 0 {
            writeln!(
                f,
                "result: intact ({} streams; {lost} seqs missing within {windows} declared crash windows)",
                self.streams.len()
            )
        } else if self.ok {
            writeln!(f, "result: intact ({} streams)", self.streams.len())
        } else if tampered > 0 {
            writeln!(
                f,
                "result: TAMPERED ({tampered} of {} streams)",
                self.streams.len()
            )
        } else {
            writeln!(f, "result: NOT VERIFIED (unreadable lines)")
        }
    }
}
