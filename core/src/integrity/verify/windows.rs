//! Crash windows: when an `auditrail.integrity_crash` announcement is believed, and what it excuses.
//!
//! Events held in a memory buffer die with the agent's process, and their seqs with them. The first event of
//! the agent's next life, at seq `c`, then announces the window `from..=to` (`to = c − 1`) of seqs that may
//! have been numbered and never delivered. The seqs missing within a window that is honoured are listed with
//! it instead of as gaps: a crash is not tampering.
//!
//! An announcement is honoured only when every copy of its seq passes every check: its chain entry checks out
//! (not altered, no conflicting copy, linked to seq `c − 1` and from seq `c + 1` where those are present); it
//! names the stream it is in; its window ends at `c − 1` and starts at 1 or later, at most one past its end
//! (an empty window). And, the point of the rule: no seal before it covers any seq of the window. Who kills
//! the agent can announce anything, but a seal made before the crash already proves what it covers, so it
//! cannot be declared lost; without this rule a crash would be a way to delete sealed events. A seal's own
//! seq may lie within the window (a seal numbered just before the crash may be lost with it), and seals
//! after the announcement legitimately cover the window's seqs (their ranges run from after the last seal
//! before the crash), so only the ranges of seals before the announcement count. A refused announcement is
//! reported, with every reason, and excuses nothing.
//!
//! Announcements are rare: they are kept in a side list per stream, like seals, and checked at the end.

use serde::Deserialize;

use super::report::{BadCrashWindow, CrashWindow};
use super::seals::SealCopy;
use super::slots::{trunc, Slots, Trunc, CONFLICT};
use crate::integrity::chain::GENESIS;
use crate::integrity::seal::CRASH_EVENT;

/// What an announcement declares.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Announcement {
    /// The stream it names; it must be the one it is in.
    pub stream: String,
    /// First seq declared.
    pub from: u64,
    /// Last seq declared.
    pub to: u64,
}

/// Reads what the text of an `auditrail.integrity_crash` event declares.
pub(crate) fn read(text: &[u8]) -> Result<Announcement, String> {
    #[derive(Deserialize)]
    struct Outer {
        #[serde(default)]
        event: Option<String>,
        #[serde(default)]
        stream: Option<String>,
        #[serde(default)]
        window: Option<Window>,
    }
    #[derive(Deserialize)]
    struct Window {
        from: u64,
        to: u64,
    }
    let o: Outer = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    if o.event.as_deref() != Some(CRASH_EVENT) {
        return Err(format!("its `event` is not {CRASH_EVENT:?}"));
    }
    let stream = o
        .stream
        .ok_or("an announcement without a `stream` member")?;
    let w = o
        .window
        .ok_or("an announcement without a `window` member")?;
    Ok(Announcement {
        stream,
        from: w.from,
        to: w.to,
    })
}

/// One distinct copy of an announcement event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AnnouncementCopy {
    pub seq: u64,
    /// The copy's chain hash checks out.
    pub valid_chain: bool,
    /// The copy's claimed hash and prev, to check its links.
    pub hash: Trunc,
    pub prev: Trunc,
    pub announcement: Result<Announcement, String>,
}

/// The verdict on one stream's announcements, by seq.
pub(crate) struct Windows {
    /// Honoured windows, their `missing` still empty (see [`excuse`]).
    pub honoured: Vec<CrashWindow>,
    pub refused: Vec<BadCrashWindow>,
}

/// Checks the announcements of `stream`, given its seal copies and slots.
pub(crate) fn check(
    stream: &str,
    copies: &[AnnouncementCopy],
    seals: &[SealCopy],
    slots: &Slots,
) -> Windows {
    let mut copies: Vec<&AnnouncementCopy> = copies.iter().collect();
    copies.sort_unstable();
    copies.dedup();
    let sealed = Sealed::new(seals);
    let mut out = Windows {
        honoured: Vec::new(),
        refused: Vec::new(),
    };
    for group in copies.chunk_by(|a, b| a.seq == b.seq) {
        let seq = group[0].seq;
        let mut reasons: Vec<String> = Vec::new();
        if slots.get(seq).is_some_and(|s| s.has(CONFLICT)) {
            reasons.push(format!(
                "seq {seq} has two copies whose hashes check out but differ"
            ));
        }
        for c in group {
            for r in copy_reasons(stream, c, slots, &sealed) {
                if !reasons.contains(&r) {
                    reasons.push(r);
                }
            }
        }
        match (&group[0].announcement, reasons.is_empty()) {
            (Ok(a), true) => out.honoured.push(CrashWindow {
                announced_at: seq,
                from: a.from,
                to: a.to,
                missing: Vec::new(),
            }),
            _ => out.refused.push(BadCrashWindow {
                announced_at: seq,
                reason: reasons.join("; "),
            }),
        }
    }
    out
}

/// Why one copy is not to be believed (empty when it is).
fn copy_reasons(stream: &str, c: &AnnouncementCopy, slots: &Slots, sealed: &Sealed) -> Vec<String> {
    let mut r = Vec::new();
    if !c.valid_chain {
        r.push("altered".to_string());
    }
    let a = match &c.announcement {
        Ok(a) => a,
        Err(e) => {
            r.push(format!("unreadable announcement: {e}"));
            return r;
        }
    };
    let seq = c.seq;
    // Linked into the chain on both sides where the neighbours are present; seq − 1 is usually missing (the
    // window's last seq), which proves nothing either way.
    if seq == 1 {
        if c.prev != trunc(&GENESIS) {
            r.push("its prev is not the start of the chain".into());
        }
    } else if let Some(before) = slots.get(seq - 1) {
        if !slots.claims(seq - 1, before).any(|(h, _)| h == c.prev) {
            r.push(format!("its prev is not the hash of seq {}", seq - 1));
        }
    }
    if let Some(after) = seq.checked_add(1).and_then(|n| slots.get(n)) {
        if !slots.claims(seq + 1, after).any(|(_, p)| p == c.hash) {
            r.push(format!("seq {} does not link to it", seq + 1));
        }
    }
    if a.stream != stream {
        r.push(format!("announces stream {:?}, not this one", a.stream));
    }
    let ends_right = a.to == seq - 1;
    if !ends_right {
        r.push(format!(
            "declares a window up to seq {}, not up to the seq before the announcement",
            a.to
        ));
    }
    if a.from == 0 {
        r.push("declares a window from seq 0".into());
    } else if a.from > a.to.saturating_add(1) {
        r.push(format!(
            "declares a window from seq {} past its end at seq {}",
            a.from, a.to
        ));
    }
    // Only for a window of the right shape: the query needs `to = seq − 1` (see `Sealed`), and an
    // announcement of another shape is refused already.
    if ends_right && a.from >= 1 && a.from <= a.to {
        if let Some(s) = sealed.reaching(a.from, a.to) {
            r.push(format!(
                "declares seqs {}-{} lost, but the seal at seq {} before it covers {}-{}",
                a.from, a.to, s.seq, s.from, s.to
            ));
        }
    }
    r
}

/// A seal's place and range.
#[derive(Clone, Copy, Debug)]
struct Range {
    seq: u64,
    from: u64,
    to: u64,
}

/// The non-empty ranges of every readable seal copy of a stream (good or bad: a seal is evidence that its
/// range was sealed, and refusing more windows can only report more), to find one a window reaches into.
///
/// For a window `from..=to` announced at `to + 1`, the seals that count are those with `seq ≤ to` (before the
/// announcement) and `range.from ≤ to`, that is with `max(seq, range.from) ≤ to`: sorted by that key, the
/// ones that count are a prefix, and one of them reaches into the window iff the largest `range.to` of the
/// prefix is at least `from`. One sort, then a binary search per announcement.
struct Sealed {
    /// `(max(seq, range.from), the range with the largest range.to among those up to here)`, sorted.
    prefix: Vec<(u64, Range)>,
}

impl Sealed {
    fn new(seals: &[SealCopy]) -> Sealed {
        let mut ranges: Vec<(u64, Range)> = seals
            .iter()
            .filter_map(|c| c.seal.as_ref().ok().map(|s| (c.seq, s)))
            .filter(|(_, s)| s.from <= s.to)
            .map(|(seq, s)| {
                let r = Range {
                    seq,
                    from: s.from,
                    to: s.to,
                };
                (seq.max(s.from), r)
            })
            .collect();
        ranges.sort_unstable_by_key(|&(k, r)| (k, r.seq, r.from, r.to));
        let mut best: Option<Range> = None;
        for (_, r) in ranges.iter_mut() {
            match best {
                Some(b) if b.to >= r.to => *r = b,
                _ => best = Some(*r),
            }
        }
        Sealed { prefix: ranges }
    }

    /// A seal before seq `to + 1` whose range meets `from..=to` (`from ≤ to`).
    fn reaching(&self, from: u64, to: u64) -> Option<Range> {
        let n = self.prefix.partition_point(|&(k, _)| k <= to);
        let (_, best) = *self.prefix.get(n.checked_sub(1)?)?;
        (best.to >= from).then_some(best)
    }
}

/// Moves the missing seqs within honoured windows out of `gaps` (sorted, disjoint) into the windows'
/// `missing`, and returns the gaps left. Windows may overlap; a missing seq is listed with every window that
/// declares it.
pub(crate) fn excuse(gaps: Vec<[u64; 2]>, windows: &mut [CrashWindow]) -> Vec<[u64; 2]> {
    if windows.is_empty() {
        return gaps;
    }
    for w in windows.iter_mut() {
        if w.from > w.to {
            // Empty: declares nothing (and the search below would make up a range for it).
            w.missing.clear();
            continue;
        }
        let first = gaps.partition_point(|g| g[1] < w.from);
        w.missing = gaps[first..]
            .iter()
            .take_while(|g| g[0] <= w.to)
            .map(|g| [g[0].max(w.from), g[1].min(w.to)])
            .collect();
    }
    // The union of the windows, as sorted disjoint ranges, taken out of the gaps in one pass.
    let mut cover: Vec<[u64; 2]> = windows
        .iter()
        .filter(|w| w.from <= w.to)
        .map(|w| [w.from, w.to])
        .collect();
    cover.sort_unstable();
    let mut union: Vec<[u64; 2]> = Vec::with_capacity(cover.len());
    for [a, b] in cover {
        match union.last_mut() {
            Some(last) if a <= last[1].saturating_add(1) => last[1] = last[1].max(b),
            _ => union.push([a, b]),
        }
    }
    let mut left = Vec::with_capacity(gaps.len());
    let mut j = 0;
    for [a, b] in gaps {
        while union.get(j).is_some_and(|u| u[1] < a) {
            j += 1;
        }
        let mut start = a;
        let mut k = j;
        loop {
            match union.get(k) {
                Some(&[ua, ub]) if ua <= b => {
                    if ua > start {
                        left.push([start, ua - 1]);
                    }
                    if ub >= b {
                        break;
                    }
                    start = start.max(ub + 1);
                    k += 1;
                }
                _ => {
                    left.push([start, b]);
                    break;
                }
            }
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::integrity::keys::EpochKey;
    use crate::integrity::seal::Seal;

    fn window(from: u64, to: u64) -> CrashWindow {
        CrashWindow {
            announced_at: to + 1,
            from,
            to,
            missing: Vec::new(),
        }
    }

    #[test]
    fn an_announcement_is_read_from_its_members() {
        let text = br#"{"event":"auditrail.integrity_crash","uid":"u","code":"AR0005W","time":"t","source":"a","stream":"n/a","window":{"from":3,"to":9},"reason":"r"}"#;
        assert_eq!(
            read(text),
            Ok(Announcement {
                stream: "n/a".into(),
                from: 3,
                to: 9
            })
        );
        for bad in [
            &br#"{"event":"auditrail.integrity_crash","stream":"n/a"}"#[..],
            br#"{"event":"auditrail.integrity_crash","window":{"from":1,"to":2}}"#,
            br#"{"event":"auditrail.integrity_crash","stream":"n/a","window":{"from":-1,"to":2}}"#,
            br#"{"event":"auditrail.integrity_crash","stream":"n/a","window":{"from":1}}"#,
            br#"{"event":"x","stream":"n/a","window":{"from":1,"to":2}}"#,
        ] {
            assert!(read(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn gaps_within_windows_are_excused_and_the_rest_kept() {
        let mut w = [window(5, 10), window(20, 19), window(12, 14)];
        let left = excuse(vec![[2, 3], [6, 7], [9, 13], [15, 15]], &mut w);
        assert_eq!(left, vec![[2, 3], [11, 11], [15, 15]]);
        assert_eq!(w[0].missing, vec![[6, 7], [9, 10]]);
        assert!(w[1].missing.is_empty());
        assert_eq!(w[2].missing, vec![[12, 13]]);
    }

    /// Seal copies at `(seq, from, to)`, signatures aside (the rule counts every readable seal).
    fn seals(at: &[(u64, u64, u64)]) -> Vec<SealCopy> {
        let base = Seal::sign(&EpochKey::generate(), "n/a", 1, 1, [0; 32]);
        at.iter()
            .map(|&(seq, from, to)| SealCopy {
                seq,
                valid_chain: true,
                seal: Ok(Seal {
                    from,
                    to,
                    ..base.clone()
                }),
            })
            .collect()
    }

    #[test]
    fn only_seals_before_the_announcement_reach_into_its_window() {
        // A seal after the window covering it, an idle seal, one seal reaching back further than its place.
        let s = Sealed::new(&seals(&[(4, 1, 3), (20, 5, 19), (6, 10, 12), (7, 7, 6)]));
        assert!(s.reaching(5, 9).is_none());
        assert_eq!(s.reaching(8, 12).map(|r| r.seq), Some(6));
        assert_eq!(s.reaching(3, 5).map(|r| r.seq), Some(4));
        assert!(s.reaching(13, 19).is_none());
    }

    fn seqs(ranges: &[[u64; 2]]) -> BTreeSet<u64> {
        ranges.iter().flat_map(|&[a, b]| a..=b).collect()
    }

    proptest! {
        /// `Sealed` agrees with trying every seal.
        #[test]
        fn the_seal_search_agrees_with_a_scan(
            at in prop::collection::vec((1u64..40, 1u64..40, 0u64..40), 0..8),
            from in 1u64..40,
            len in 1u64..10,
        ) {
            let to = from + len - 1;
            let copies = seals(&at);
            let found = Sealed::new(&copies).reaching(from, to);
            let any = at.iter().any(|&(q, f, t)| q <= to && f <= t && f <= to && t >= from);
            prop_assert_eq!(found.is_some(), any);
            if let Some(r) = found {
                prop_assert!(at.iter().any(|&(q, f, t)| (q, f, t) == (r.seq, r.from, r.to)));
                prop_assert!(r.seq <= to && r.from <= to && r.to >= from && r.from <= r.to);
            }
        }

        /// `excuse` agrees with sets: a missing seq is a gap iff no window declares it, and each window lists
        /// exactly its missing seqs.
        #[test]
        fn excuse_agrees_with_sets(
            missing in prop::collection::btree_set(1u64..80, 0..40),
            declared in prop::collection::vec((1u64..80, 0u64..12), 0..5),
        ) {
            let mut gaps: Vec<[u64; 2]> = Vec::new();
            for &s in &missing {
                match gaps.last_mut() {
                    Some(g) if g[1] + 1 == s => g[1] = s,
                    _ => gaps.push([s, s]),
                }
            }
            let mut windows: Vec<CrashWindow> = declared
                .iter()
                .map(|&(from, len)| window(from, from + len - 1))
                .collect();
            let left = excuse(gaps, &mut windows);
            let inside = |s: u64| windows.iter().any(|w| w.from <= s && s <= w.to);
            let want: BTreeSet<u64> = missing.iter().copied().filter(|&s| !inside(s)).collect();
            prop_assert_eq!(seqs(&left), want);
            prop_assert!(left.windows(2).all(|p| p[0][1] + 1 < p[1][0]), "{:?}", left);
            for w in &windows {
                let want: BTreeSet<u64> =
                    missing.iter().copied().filter(|&s| w.from <= s && s <= w.to).collect();
                prop_assert_eq!(seqs(&w.missing), want);
            }
        }
    }
}
