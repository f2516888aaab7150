//! What the verifier keeps per `seq` of a stream: 33 bytes, not the event.
//!
//! A slot holds the first 16 bytes of the claimed `hash` and `prev` (enough to compare: matching a 128-bit
//! truncation of SHA-256 on purpose is as hard as a second preimage of it) and a few flags. Slots live in
//! dense chunks of 65,536 seqs indexed by `seq`, so a million events cost 33 MB and no hashing. A chunk is only
//! made dense once it holds enough seqs; until then, and for any seq beyond 2^32, slots sit in a map, so a
//! forged line claiming seq 10^18 costs one map entry, not a huge allocation.
//!
//! The rare seqs that have copies with different claims (altered copies, conflicts) keep every distinct claim
//! in a side map, so that link checks can accept any of them.

use std::collections::HashMap;

use crate::integrity::chain::Hash;

/// A truncated hash.
pub(crate) type Trunc = [u8; 16];

pub(crate) fn trunc(h: &Hash) -> Trunc {
    let mut t = [0u8; 16];
    t.copy_from_slice(&h[..16]);
    t
}

pub(crate) const PRESENT: u8 = 1;
/// Some copy's hash checks out.
pub(crate) const VALID: u8 = 2;
/// Some plain copy (not a seal or crash announcement) has a hash that does not check out: an altered seal is
/// a bad seal and an altered announcement a bad crash window, each reported in its own list.
pub(crate) const ALTERED: u8 = 4;
/// Two copies whose hashes check out claim different hashes.
pub(crate) const CONFLICT: u8 = 8;
/// Some copy is a seal event.
pub(crate) const SEAL: u8 = 16;
/// The side map holds further claims for this seq.
pub(crate) const VARIANTS: u8 = 32;
/// `hash`/`prev` come from a copy whose hash checks out.
pub(crate) const PRIMARY_VALID: u8 = 64;

/// What a recorded copy is, for the flags it sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Any event but the two below.
    Plain,
    /// An `auditrail.seal` event (sets [`SEAL`]).
    Seal,
    /// An `auditrail.integrity_crash` announcement.
    Announcement,
}

/// One seq's claims.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Slot {
    pub hash: Trunc,
    pub prev: Trunc,
    pub flags: u8,
}

impl Slot {
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// A further claim for one seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    pub hash: Trunc,
    pub prev: Trunc,
    pub valid: bool,
}

/// What recording one copy found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// The first copy of this seq.
    New,
    /// The same claim as a copy already seen, both valid.
    Duplicate,
    /// A valid copy with a different claim than another valid one.
    Conflict,
    /// Anything else (an altered copy, another altered claim).
    Other,
}

const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;
/// A chunk becomes dense once this many of its seqs are present.
const PROMOTE: u32 = 1024;
/// Chunks at or beyond this index stay sparse.
const MAX_DENSE_CHUNKS: u64 = 1 << 16;

/// The slots of one stream.
#[derive(Default)]
pub(crate) struct Slots {
    dense: Vec<Option<Box<[Slot]>>>,
    sparse: HashMap<u64, Slot>,
    sparse_per_chunk: HashMap<u64, u32>,
    variants: HashMap<u64, Vec<Variant>>,
    present: u64,
}

impl Slots {
    /// How many distinct seqs are present.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.present
    }

    pub fn get(&self, seq: u64) -> Option<&Slot> {
        let c = seq >> CHUNK_BITS;
        let s = match self.dense.get(c as usize) {
            Some(Some(chunk)) => &chunk[(seq as usize) & (CHUNK - 1)],
            _ => self.sparse.get(&seq)?,
        };
        s.has(PRESENT).then_some(s)
    }

    /// Every claim of `seq`: the slot's and the side map's.
    pub fn claims(&self, seq: u64, slot: &Slot) -> impl Iterator<Item = (Trunc, Trunc)> + '_ {
        let more = if slot.has(VARIANTS) {
            self.variants.get(&seq).map(Vec::as_slice).unwrap_or(&[])
        } else {
            &[]
        };
        std::iter::once((slot.hash, slot.prev)).chain(more.iter().map(|v| (v.hash, v.prev)))
    }

    fn slot_mut(&mut self, seq: u64) -> &mut Slot {
        let c = seq >> CHUNK_BITS;
        if let Some(Some(_)) = self.dense.get(c as usize) {
            let chunk = self.dense[c as usize].as_mut().expect("checked");
            return &mut chunk[(seq as usize) & (CHUNK - 1)];
        }
        if !self.sparse.contains_key(&seq) {
            let n = self.sparse_per_chunk.entry(c).or_insert(0);
            *n += 1;
            if *n >= PROMOTE && c < MAX_DENSE_CHUNKS {
                self.promote(c);
                let chunk = self.dense[c as usize].as_mut().expect("promoted");
                return &mut chunk[(seq as usize) & (CHUNK - 1)];
            }
        }
        self.sparse.entry(seq).or_default()
    }

    fn promote(&mut self, c: u64) {
        self.sparse_per_chunk.remove(&c);
        let mut chunk = vec![Slot::default(); CHUNK].into_boxed_slice();
        let base = c << CHUNK_BITS;
        for (i, slot) in chunk.iter_mut().enumerate() {
            if let Some(s) = self.sparse.remove(&(base + i as u64)) {
                *slot = s;
            }
        }
        if self.dense.len() <= c as usize {
            self.dense.resize_with(c as usize + 1, || None);
        }
        self.dense[c as usize] = Some(chunk);
    }

    /// Records one copy of `seq`, a `kind` event.
    pub fn record(
        &mut self,
        seq: u64,
        hash: Trunc,
        prev: Trunc,
        valid: bool,
        kind: Kind,
    ) -> Recorded {
        let slot = self.slot_mut(seq);
        let seal_flag = if kind == Kind::Seal { SEAL } else { 0 };
        let altered_flag = if kind == Kind::Plain { ALTERED } else { 0 };
        if !slot.has(PRESENT) {
            *slot = Slot {
                hash,
                prev,
                flags: PRESENT
                    | seal_flag
                    | if valid {
                        VALID | PRIMARY_VALID
                    } else {
                        altered_flag
                    },
            };
            self.present += 1;
            return Recorded::New;
        }
        slot.flags |= seal_flag;
        let same_as_primary = slot.hash == hash && slot.prev == prev;
        if !valid {
            slot.flags |= altered_flag;
            if !same_as_primary {
                let s = *slot;
                self.add_variant(seq, s, hash, prev, false);
            }
            return Recorded::Other;
        }
        if !slot.has(PRIMARY_VALID) {
            // The first valid copy after altered ones takes the slot; the altered claim moves aside.
            let old = *slot;
            slot.hash = hash;
            slot.prev = prev;
            slot.flags |= VALID | PRIMARY_VALID;
            if !same_as_primary {
                let s = *slot;
                self.add_variant(seq, s, old.hash, old.prev, false);
            }
            return Recorded::Other;
        }
        if same_as_primary {
            return Recorded::Duplicate;
        }
        let s = *slot;
        if s.has(VARIANTS) {
            if let Some(v) = self.variants.get_mut(&seq) {
                if let Some(x) = v.iter_mut().find(|x| x.hash == hash && x.prev == prev) {
                    if x.valid {
                        return Recorded::Duplicate;
                    }
                    x.valid = true;
                    self.slot_mut(seq).flags |= CONFLICT;
                    return Recorded::Conflict;
                }
            }
        }
        self.add_variant(seq, s, hash, prev, true);
        self.slot_mut(seq).flags |= CONFLICT;
        Recorded::Conflict
    }

    fn add_variant(&mut self, seq: u64, slot: Slot, hash: Trunc, prev: Trunc, valid: bool) {
        let v = self.variants.entry(seq).or_default();
        if !v.iter().any(|x| x.hash == hash && x.prev == prev) {
            v.push(Variant { hash, prev, valid });
        }
        if !slot.has(VARIANTS) {
            self.slot_mut(seq).flags |= VARIANTS;
        }
    }

    /// Calls `f` for every present seq, in ascending order.
    pub fn for_each(&self, mut f: impl FnMut(u64, &Slot)) {
        let mut sparse: Vec<u64> = self.sparse.keys().copied().collect();
        sparse.sort_unstable();
        let mut sp = sparse.iter().peekable();
        for (c, chunk) in self.dense.iter().enumerate() {
            let Some(chunk) = chunk else { continue };
            let base = (c as u64) << CHUNK_BITS;
            while let Some(&&s) = sp.peek() {
                if s >= base {
                    break;
                }
                f(s, &self.sparse[&s]);
                sp.next();
            }
            for (i, slot) in chunk.iter().enumerate() {
                if slot.has(PRESENT) {
                    f(base + i as u64, slot);
                }
            }
        }
        for s in sp {
            f(*s, &self.sparse[s]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(b: u8) -> Trunc {
        [b; 16]
    }

    #[test]
    fn copies_are_classified() {
        let mut s = Slots::default();
        assert_eq!(s.record(5, t(1), t(0), true, Kind::Plain), Recorded::New);
        assert_eq!(
            s.record(5, t(1), t(0), true, Kind::Plain),
            Recorded::Duplicate
        );
        assert_eq!(
            s.record(5, t(2), t(0), true, Kind::Plain),
            Recorded::Conflict
        );
        assert_eq!(
            s.record(5, t(2), t(0), true, Kind::Plain),
            Recorded::Duplicate
        );
        assert_eq!(s.record(5, t(3), t(0), false, Kind::Plain), Recorded::Other);
        let slot = *s.get(5).unwrap();
        assert!(slot.has(VALID) && slot.has(CONFLICT) && slot.has(ALTERED));
        assert_eq!(s.claims(5, &slot).count(), 3);
        // Altered first, then valid: the valid claim takes the slot.
        assert_eq!(s.record(6, t(9), t(8), false, Kind::Seal), Recorded::New);
        assert_eq!(s.record(6, t(1), t(8), true, Kind::Plain), Recorded::Other);
        let slot = *s.get(6).unwrap();
        assert_eq!(slot.hash, t(1));
        assert!(slot.has(SEAL) && !slot.has(ALTERED) && !slot.has(CONFLICT));
        assert!(s.get(7).is_none());
        // An altered announcement is a bad crash window, not an altered event, and not a seal.
        assert_eq!(
            s.record(8, t(4), t(1), false, Kind::Announcement),
            Recorded::New
        );
        let slot = *s.get(8).unwrap();
        assert!(slot.has(PRESENT) && !slot.has(ALTERED) && !slot.has(SEAL) && !slot.has(VALID));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn dense_and_sparse_seqs_iterate_in_order() {
        let mut s = Slots::default();
        let mut want: Vec<u64> = (1..5000).chain([70_000, 1 << 40, u64::MAX]).collect();
        for &q in want.iter().rev() {
            s.record(q, t(1), t(0), true, Kind::Plain);
        }
        assert!(s.dense[0].is_some(), "a busy chunk becomes dense");
        let mut got = Vec::new();
        s.for_each(|q, _| got.push(q));
        want.sort_unstable();
        assert_eq!(got, want);
        assert!(s.get(u64::MAX).is_some() && s.get(3000).is_some());
    }
}
