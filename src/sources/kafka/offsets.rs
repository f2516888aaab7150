//! Which offset of a partition may be committed: the one after the highest offset up to which every record
//! read is done (delivered by every sink, dead-lettered, or malformed and dead-lettered here).
//!
//! Kafka offsets are not contiguous numbers (transaction markers and compaction leave holes), so "contiguous"
//! is over the records the consumer handed out, in the order it did: each read is noted, each outcome marks
//! its record done, and the commit position moves over the done records at the front. A seek back (to read
//! records again after a sink failed them) forgets what was read from there on; their outcomes, should they
//! still come, are ignored, and the records read again are tracked anew. The position never moves back:
//! [`Tracker::committable`] is only ever above the last one committed.

use std::collections::VecDeque;

/// One partition's records between the commit position and the newest read.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Records read and not yet passed by the commit position, in read (and offset) order: (offset, done).
    pending: VecDeque<(i64, bool)>,
    /// The offset after the last record that left `pending` (the next position to commit), if any did.
    position: Option<i64>,
    /// The last position committed.
    committed: Option<i64>,
}

impl Tracker {
    /// A tracker whose committed position is `committed` (from the group, when known).
    pub fn new(committed: Option<i64>) -> Tracker {
        Tracker {
            pending: VecDeque::new(),
            position: committed,
            committed,
        }
    }

    /// Notes that the record at `offset` was read. A record at or below one already noted means the consumer
    /// went back: what was noted from `offset` on is forgotten first. Returns how many records not done were
    /// forgotten so.
    pub fn read(&mut self, offset: i64) -> usize {
        let forgotten = if self.pending.back().is_some_and(|&(o, _)| o >= offset) {
            self.rewind(offset)
        } else {
            0
        };
        self.pending.push_back((offset, false));
        forgotten
    }

    /// Forgets the records read at and after `offset` (the consumer will read them again); returns how many of
    /// them were not done.
    pub fn rewind(&mut self, offset: i64) -> usize {
        let keep = self.pending.partition_point(|&(o, _)| o < offset);
        let open = self.pending.iter().skip(keep).filter(|(_, d)| !d).count();
        self.pending.truncate(keep);
        open
    }

    /// Marks the record at `offset` done; unknown offsets (forgotten by a rewind, or already passed) are
    /// ignored. Then moves the position over the done records at the front. Returns whether the record was
    /// known and not done before.
    pub fn done(&mut self, offset: i64) -> bool {
        let mut newly = false;
        if let Ok(i) = self.pending.binary_search_by_key(&offset, |&(o, _)| o) {
            newly = !self.pending[i].1;
            self.pending[i].1 = true;
        }
        while let Some(&(o, true)) = self.pending.front() {
            self.pending.pop_front();
            self.position = Some(o + 1);
        }
        newly
    }

    /// The position to commit, when it is past the last one committed.
    pub fn committable(&self) -> Option<i64> {
        match (self.position, self.committed) {
            (Some(p), Some(c)) if p <= c => None,
            (p, _) => p,
        }
    }

    /// Records that `position` was committed.
    pub fn committed(&mut self, position: i64) {
        if self.committed.is_none_or(|c| position > c) {
            self.committed = Some(position);
        }
    }

    /// Records read and not yet done.
    pub fn in_flight(&self) -> usize {
        self.pending.iter().filter(|(_, d)| !d).count()
    }

    /// Whether every record read is done.
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// The lowest offset read and not done, if any.
    pub fn oldest_open(&self) -> Option<i64> {
        self.pending.iter().find(|(_, d)| !d).map(|&(o, _)| o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn moves_over_contiguous_done_records_only() {
        let mut t = Tracker::new(None);
        for o in [0, 1, 2, 5, 6] {
            t.read(o);
        }
        assert_eq!(t.committable(), None);
        t.done(1);
        assert_eq!(t.committable(), None);
        t.done(0);
        assert_eq!(t.committable(), Some(2));
        t.done(5);
        assert_eq!(t.committable(), Some(2));
        t.done(2);
        // Offsets 3 and 4 were never read (a transaction marker, compaction): they do not hold it back.
        assert_eq!(t.committable(), Some(6));
        t.committed(6);
        assert_eq!(t.committable(), None);
        t.done(6);
        assert_eq!(t.committable(), Some(7));
        assert!(t.is_settled());
    }

    #[test]
    fn never_goes_behind_what_was_committed() {
        let mut t = Tracker::new(Some(100));
        assert_eq!(t.committable(), None);
        // Read again from 90 after a reset: done records there do not make it commit 91.
        t.read(90);
        t.done(90);
        assert_eq!(t.committable(), None);
        t.read(100);
        t.done(100);
        assert_eq!(t.committable(), Some(101));
    }

    #[test]
    fn a_rewind_forgets_and_tracks_again() {
        let mut t = Tracker::new(None);
        for o in 0..5 {
            t.read(o);
        }
        t.done(0);
        // The sink failed offset 1: the consumer seeks back to it and reads 1.. again.
        assert_eq!(t.rewind(1), 4);
        assert!(!t.done(3)); // the first copy's outcome: ignored
        t.read(1);
        t.read(2);
        t.read(3);
        t.done(1);
        t.done(2);
        assert_eq!(t.committable(), Some(3));
        assert_eq!(t.oldest_open(), Some(3));
    }

    proptest! {
        /// Against a model: the position is always the offset after the longest done prefix of what was read
        /// (and never below the last committed), whatever the order of outcomes.
        #[test]
        fn matches_the_model(
            gaps in proptest::collection::vec(1i64..4, 1..60),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..80),
            commit_every in 1usize..10,
        ) {
            let offsets: Vec<i64> = gaps.iter().scan(0i64, |o, g| { *o += g; Some(*o) }).collect();
            let mut t = Tracker::new(None);
            for &o in &offsets { t.read(o); }
            let mut done = vec![false; offsets.len()];
            let mut last_committed: Option<i64> = None;
            for (step, idx) in order.iter().enumerate() {
                let i = idx.index(offsets.len());
                done[i] = true;
                t.done(offsets[i]);
                let prefix = done.iter().take_while(|d| **d).count();
                let model = (prefix > 0).then(|| offsets[prefix - 1] + 1);
                let expect = match (model, last_committed) {
                    (Some(m), Some(c)) if m <= c => None,
                    (m, _) => m,
                };
                prop_assert_eq!(t.committable(), expect);
                if step % commit_every == 0 {
                    if let Some(p) = t.committable() {
                        prop_assert!(last_committed.is_none_or(|c| p > c));
                        t.committed(p);
                        last_committed = Some(p);
                    }
                }
                prop_assert_eq!(t.in_flight(), done.iter().filter(|d| !**d).count());
            }
        }
    }
}
