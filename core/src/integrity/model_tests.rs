//! Model-based test of the chain across crashes: a model of the agent's durable steps (numbering, state write,
//! hand-over to each buffer, the buffer's write, fsync, delivery, tails write and segment deletion, seals, and
//! for a memory-buffered sink the finishing of events) with a crash injected anywhere, driving the real
//! [`resume`] at every restart. After any sequence: no seq is ever given to two contents, no seal's range
//! overlaps another's, with disk buffers the chain has no gap, and with a memory buffer every number that may
//! have been lost is declared, and no declared window reaches into what a seal before it covered.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::resume::{resume, Resumed, SinkView};
use super::state::{ChainState, Mark, SEAL_HISTORY};

/// The hash the model gives a seq numbered in a life: a seq given twice with other content has another hash.
fn hash_of(seq: u64, life: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&seq.to_le_bytes());
    h[8..16].copy_from_slice(&life.to_le_bytes());
    h
}

#[derive(Clone, Copy, Debug)]
struct Rec {
    seq: u64,
    life: u64,
    seal: bool,
}

/// One disk buffer: records handed over (the writer's queue, lost at a crash), written (kept by the page cache
/// at a kill -9), durable (fsynced), delivered by the sink, and deleted after the tails file was written.
#[derive(Default, Clone, Debug)]
struct DiskModel {
    queue: Vec<Rec>,
    written: Vec<Rec>,
    durable: usize,
    delivered: usize,
    deleted: usize,
    tails_file: Option<(u64, [u8; 32], Option<u64>)>,
}

impl DiskModel {
    fn tail_of(recs: &[Rec]) -> Option<(u64, [u8; 32], Option<u64>)> {
        let last = recs.iter().max_by_key(|r| r.seq)?;
        let seal = recs.iter().filter(|r| r.seal).map(|r| r.seq).max();
        Some((last.seq, hash_of(last.seq, last.life), seal))
    }

    fn merge(
        a: Option<(u64, [u8; 32], Option<u64>)>,
        b: Option<(u64, [u8; 32], Option<u64>)>,
    ) -> Option<(u64, [u8; 32], Option<u64>)> {
        match (a, b) {
            (None, x) | (x, None) => x,
            (Some(a), Some(b)) => {
                let (seq, hash) = if a.0 >= b.0 { (a.0, a.1) } else { (b.0, b.1) };
                Some((seq, hash, a.2.max(b.2)))
            }
        }
    }

    /// What the buffer tells at open: the tails file merged with the records still there.
    fn view(&self) -> SinkView {
        SinkView::Disk {
            tail: DiskModel::merge(
                self.tails_file,
                DiskModel::tail_of(&self.written[self.deleted..]),
            ),
            known: true,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Number a batch of `n` events (a seal after it when `seal`), write the state, hand it to every buffer.
    Number { n: u64, seal: bool },
    /// Buffer `b`'s writer writes `k` queued records (without fsync).
    Write { b: usize, k: usize },
    /// Buffer `b` fsyncs what it wrote.
    Fsync { b: usize },
    /// Buffer `b`'s sink delivers `k` durable records.
    Deliver { b: usize, k: usize },
    /// Buffer `b` writes its tails file, then deletes what was delivered.
    Delete { b: usize },
    /// Memory: the sink finishes `k` events held.
    Finish { k: usize },
    /// kill -9 and restart.
    Crash,
}

fn op(buffers: usize) -> impl Strategy<Value = Op> {
    let b = 0..buffers;
    prop_oneof![
        4 => (1u64..6, any::<bool>()).prop_map(|(n, s)| Op::Number { n, seal: s }),
        3 => (b.clone(), 1usize..8).prop_map(|(b, k)| Op::Write { b, k }),
        2 => b.clone().prop_map(|b| Op::Fsync { b }),
        3 => (b.clone(), 1usize..8).prop_map(|(b, k)| Op::Deliver { b, k }),
        1 => b.prop_map(|b| Op::Delete { b }),
        3 => (1usize..8).prop_map(|k| Op::Finish { k }),
        1 => Just(Op::Crash),
    ]
}

/// The running chain of the model: what the agent holds in memory.
struct Chain {
    state: ChainState,
    /// The state file.
    file: ChainState,
    life: u64,
    /// Every (seq → life) ever handed to a sink (what a store may hold): reused seqs show here.
    given: BTreeMap<u64, BTreeSet<u64>>,
    /// Seals handed on: seq → (from, to).
    seals: BTreeMap<(u64, u64), (u64, u64)>,
}

impl Chain {
    fn new() -> Chain {
        let s = start("n/a");
        Chain {
            state: s.clone(),
            file: s,
            life: 0,
            given: BTreeMap::new(),
            seals: BTreeMap::new(),
        }
    }

    fn number(&mut self, n: u64, seal: bool) -> Vec<Rec> {
        let mut out = Vec::new();
        for _ in 0..n {
            self.state.seq += 1;
            self.state.since_seal += 1;
            out.push(Rec {
                seq: self.state.seq,
                life: self.life,
                seal: false,
            });
        }
        if seal {
            let from = self.state.last_seal() + 1;
            let to = self.state.seq;
            self.state.seq += 1;
            self.state.seals.push(self.state.seq);
            if self.state.seals.len() > SEAL_HISTORY {
                self.state.seals.remove(0);
            }
            self.state.since_seal = 0;
            self.seals.insert((self.state.seq, self.life), (from, to));
            out.push(Rec {
                seq: self.state.seq,
                life: self.life,
                seal: true,
            });
        }
        self.state.hash = hash_of(self.state.seq, self.life);
        for r in &out {
            self.given.entry(r.seq).or_default().insert(r.life);
        }
        out
    }
}

fn start(stream: &str) -> ChainState {
    let mut s = ChainState::new(stream.into());
    s.base = Some(Mark {
        seq: 0,
        hash: s.hash,
        since_seal: 0,
    });
    s
}

/// Runs `ops` against `buffers` disk buffers; panics (with what went wrong) when an invariant fails.
fn run_disk(buffers: usize, ops: &[Op]) {
    let mut chain = Chain::new();
    let mut disks = vec![DiskModel::default(); buffers];
    for op in ops.iter().cloned().chain([Op::Crash]) {
        match op {
            Op::Number { n, seal } => {
                let recs = chain.number(n, seal);
                chain.file = chain.state.clone(); // written and synced before the hand-over
                for d in &mut disks {
                    d.queue.extend(recs.iter().copied());
                }
            }
            Op::Write { b, k } => {
                let d = &mut disks[b];
                let k = k.min(d.queue.len());
                let moved: Vec<Rec> = d.queue.drain(..k).collect();
                d.written.extend(moved);
            }
            Op::Fsync { b } => disks[b].durable = disks[b].written.len(),
            Op::Deliver { b, k } => {
                let d = &mut disks[b];
                d.delivered = (d.delivered + k).min(d.durable);
            }
            Op::Delete { b } => {
                let d = &mut disks[b];
                // The tails of what is durable, written before the unlink.
                d.tails_file =
                    DiskModel::merge(d.tails_file, DiskModel::tail_of(&d.written[..d.durable]));
                d.deleted = d.delivered;
            }
            Op::Finish { .. } => {}
            Op::Crash => {
                for d in &mut disks {
                    d.queue.clear();
                }
                let views: Vec<SinkView> = disks.iter().map(DiskModel::view).collect();
                let Resumed::Continue { state, window, .. } = resume(chain.file.clone(), &views)
                else {
                    panic!("the state is never behind a buffer here");
                };
                assert_eq!(window, None, "disk buffers declare nothing");
                // Never reuse: every seq any buffer got (deleted or not) is at or before the resume point, and
                // the resume point's hash is the one a buffer holds for it.
                let newest = disks
                    .iter()
                    .flat_map(|d| d.written.iter())
                    .max_by_key(|r| r.seq)
                    .copied();
                let got = newest.map_or(0, |r| r.seq);
                assert!(
                    state.seq >= got,
                    "resumed at {} below seq {got} a buffer got",
                    state.seq
                );
                // No gap: nothing between what the buffers got and the resume point.
                assert_eq!(state.seq, got, "resumed past what any buffer got: a gap");
                if let Some(r) = newest {
                    assert_eq!(state.hash, hash_of(r.seq, r.life));
                }
                // The seal position is the newest seal any buffer got.
                let seal = disks
                    .iter()
                    .flat_map(|d| d.written.iter())
                    .filter(|r| r.seal)
                    .map(|r| r.seq)
                    .max()
                    .unwrap_or(0);
                assert_eq!(state.last_seal(), seal, "seals {:?}", state.seals);
                assert_eq!(state.since_seal, state.seq - seal);
                chain.state = state.clone();
                chain.file = state;
                chain.life += 1;
            }
        }
    }
    // One seq, one content; seals never overlap (their ranges, among those that reached a buffer).
    let written: BTreeSet<(u64, u64)> = disks
        .iter()
        .flat_map(|d| d.written.iter().map(|r| (r.seq, r.life)))
        .collect();
    let mut by_seq: BTreeMap<u64, u64> = BTreeMap::new();
    for (seq, life) in &written {
        if let Some(other) = by_seq.insert(*seq, *life) {
            panic!("seq {seq} given in life {other} and in life {life}");
        }
    }
    let mut ranges: Vec<(u64, u64)> = chain
        .seals
        .iter()
        .filter(|(k, _)| written.contains(k))
        .map(|(_, r)| *r)
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(
            w[0].1 < w[1].0,
            "seal ranges {:?} and {:?} overlap",
            w[0],
            w[1]
        );
    }
    // And the stored chain is whole up to its newest seq.
    if let Some(&(max, _)) = written.iter().next_back() {
        assert_eq!(
            by_seq.len() as u64,
            max,
            "gaps in {:?}",
            by_seq.keys().collect::<Vec<_>>()
        );
    }
}

/// Runs `ops` against one memory-buffered sink: events sit in memory until finished, a crash loses them.
fn run_memory(ops: &[Op]) {
    let mut chain = Chain::new();
    let mut held: Vec<Rec> = Vec::new();
    let mut stored: BTreeMap<u64, Rec> = BTreeMap::new();
    // (announced at, from, to)
    let mut windows: Vec<(u64, u64, u64)> = Vec::new();
    for op in ops.iter().cloned().chain([Op::Crash]) {
        match op {
            Op::Number { n, seal } => {
                // A tracked stream is sealed by the sealer, alone, and only once every number before it is
                // finished (its wait); otherwise this numbers a batch.
                let settled = held.is_empty() && chain.state.acked == chain.state.seq;
                let recs = if seal && settled {
                    chain.number(0, true)
                } else {
                    chain.number(n, false)
                };
                chain.file = chain.state.clone();
                held.extend(recs);
            }
            Op::Finish { k } => {
                for r in held.drain(..k.min(held.len())) {
                    stored.insert(r.seq, r);
                }
                // The finished prefix (the sink finishes in order here; the tracker takes any order).
                chain.state.acked = held.first().map_or(chain.state.seq, |r| r.seq - 1);
            }
            Op::Crash => {
                held.clear();
                let Resumed::Continue { state, window, .. } =
                    resume(chain.file.clone(), &[SinkView::Memory])
                else {
                    panic!("no buffer to be behind");
                };
                assert_eq!(
                    state.seq, chain.file.seq,
                    "a memory-buffered chain never rolls back"
                );
                let numbered = chain.file.seq;
                if let Some((from, to)) = window {
                    assert_eq!(to, numbered);
                    windows.push((to + 1, from, to));
                }
                // Every number given and not stored is declared.
                for seq in 1..=numbered {
                    let declared = windows.iter().any(|&(_, f, t)| f <= seq && seq <= t);
                    assert!(
                        stored.contains_key(&seq) || declared,
                        "seq {seq} lost and not declared"
                    );
                }
                let mut st = state;
                // The announcement is the next life's first event.
                if window.is_some() {
                    st.seq += 1;
                    st.since_seal += 1;
                    let rec = Rec {
                        seq: st.seq,
                        life: chain.life + 1,
                        seal: false,
                    };
                    held.push(rec);
                    chain.given.entry(rec.seq).or_default().insert(rec.life);
                }
                chain.state = st.clone();
                chain.file = st;
                chain.life += 1;
            }
            _ => {}
        }
    }
    // No declared window reaches into what a stored seal before it covered.
    for &(at, from, to) in &windows {
        for (&(seq, life), &(sf, st)) in &chain.seals {
            let kept = stored.get(&seq).is_some_and(|r| r.seal && r.life == life);
            if seq < at && kept && sf <= st {
                assert!(
                    st < from || sf > to,
                    "window {from}-{to} (at {at}) overlaps the seal at {seq} over {sf}-{st}"
                );
            }
        }
    }
    for (seq, lives) in &chain.given {
        assert_eq!(lives.len(), 1, "seq {seq} given in lives {lives:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn one_disk_buffer_survives_any_crash_sequence(ops in proptest::collection::vec(op(1), 0..80)) {
        run_disk(1, &ops);
    }

    #[test]
    fn two_disk_buffers_never_reuse_a_seq(ops in proptest::collection::vec(op(2), 0..80)) {
        run_disk(2, &ops);
    }

    #[test]
    fn a_memory_buffer_declares_every_number_it_may_have_lost(ops in proptest::collection::vec(op(1), 0..80)) {
        run_memory(&ops);
    }
}

#[test]
fn without_the_tails_of_deleted_segments_the_resume_point_would_be_wrong() {
    // Seqs 1-4 (a seal last) reached the buffer, were delivered and their segment deleted; then a batch of two
    // was numbered and the crash came before it reached the buffer. With the tails file the model resumes at 4
    // (checked by run_disk); a buffer that forgot what its deleted segments held would send the chain back to
    // where the life started, and seqs 1-4 would be given again.
    let ops = [
        Op::Number { n: 3, seal: true },
        Op::Write { b: 0, k: 8 },
        Op::Fsync { b: 0 },
        Op::Deliver { b: 0, k: 8 },
        Op::Delete { b: 0 },
        Op::Number { n: 2, seal: false },
    ];
    run_disk(1, &ops);
    let mut s = start("n/a");
    s.seq = 6;
    s.since_seal = 2;
    s.seals = vec![4];
    let forgetful = SinkView::Disk {
        tail: None,
        known: true,
    };
    match resume(s, &[forgetful]) {
        Resumed::Continue { state, .. } => {
            assert_eq!(state.seq, 0, "back to the start: 1-4 reused")
        }
        other => panic!("{other:?}"),
    }
}
