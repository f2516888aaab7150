//! Where a stream's chain goes on after a restart, decided from its state file and what its sinks' buffers say.
//!
//! The state file is written before any numbered event leaves the fan-out, so it is never behind a seq a sink
//! could have seen; it can be ahead, by the numbers of batches a crash stopped before they reached the buffers.
//!
//! - **Every sink on a disk buffer.** Nothing but those buffers ever saw the chain, and each remembers the newest
//!   record of every stream it got, even after acknowledged segments are deleted (its tails file). The chain
//!   resumes right after the newest record any of them got, and never before the point this life started at
//!   (everything up to it was settled by the previous restart): numbers that never reached a buffer are given
//!   again, and none that reached one is given to other content. So no crash leaves a gap or a conflict. When a
//!   buffer's history is unknown (no tails file: new, wiped, or written by an older version) or the state is
//!   from an older version, the chain does not roll back at all: a possible gap is the truth, a reused seq
//!   would be a forgery.
//! - **A memory-buffered sink.** What it held died with the process; what it delivered cannot be read back. The
//!   chain resumes after the last number given out, and declares the window of numbers that may have been given
//!   but not delivered: from just after the last seq every sink finished (`acked`), which a seal never passes —
//!   a seal is numbered only once everything before it was finished — to the last number given.
//!
//! [`resume`] is a pure function so that the model-based test of the chain drives exactly the code the agent
//! runs.

use super::chain::Hash;
use super::state::{ChainState, Mark, SEAL_HISTORY};

/// What one sink of the stream can tell about the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkView {
    /// A disk buffer: the newest record of the stream it got (`None`: none), and whether its history is known.
    Disk {
        /// `(seq, hash, newest seal seq)` of the newest record of the stream it holds or held.
        tail: Option<(u64, Hash, Option<u64>)>,
        /// Its tails file was there: it knows every record it ever got.
        known: bool,
    },
    /// A memory buffer: nothing to tell.
    Memory,
}

/// The outcome of [`resume`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// Go on from `state`; `window`, when set, is the `(from, to)` of numbers that may have been given and not
    /// delivered, to be declared first; `rolled_back` is how many numbers were taken back.
    Continue {
        /// The state to go on from (its `base` set to where it now stands).
        state: ChainState,
        /// The window to declare.
        window: Option<(u64, u64)>,
        /// Numbers given before the crash that no buffer got, given again now.
        rolled_back: u64,
    },
    /// A buffer holds a seq the state never gave: the state is not this chain's latest (restored from an old
    /// copy, or replaced). The chain must start a new, announced segment; the text says what was found.
    StateBehind(String),
}

/// Decides where the chain of `state` goes on, given what each of its sinks tells.
pub fn resume(mut state: ChainState, sinks: &[SinkView]) -> Resumed {
    let memory = sinks.iter().any(|s| matches!(s, SinkView::Memory));
    let tails = sinks.iter().filter_map(|s| match s {
        SinkView::Disk { tail, .. } => *tail,
        SinkView::Memory => None,
    });
    let newest = tails.clone().max_by_key(|t| t.0);
    if let Some((seq, ..)) = newest.filter(|t| t.0 > state.seq) {
        return Resumed::StateBehind(format!(
            "a disk buffer holds seq {seq} of stream {:?}, but its chain state stands at seq {}",
            state.stream, state.seq
        ));
    }
    let mut window = None;
    let mut rolled_back = 0;
    if memory || sinks.is_empty() {
        let from = state
            .acked
            .saturating_add(1)
            .max(state.base.map_or(0, |b| b.seq + 1))
            .max(state.last_seal());
        if from <= state.seq {
            window = Some((from, state.seq));
        }
    } else {
        let known = sinks
            .iter()
            .all(|s| matches!(s, SinkView::Disk { known: true, .. }));
        if let (Some(base), true) = (state.base, known) {
            // The newest seq any buffer got, never before the point this life started at.
            let (to, hash) = match newest.filter(|t| t.0 >= base.seq) {
                Some((seq, hash, _)) => (seq, hash),
                None => (base.seq, base.hash),
            };
            if to < state.seq {
                rolled_back = state.seq - to;
                // The last seal at or before `to`: one a buffer got, or the one before this life's start.
                let base_seal = (base.since_seal < base.seq).then(|| base.seq - base.since_seal);
                let last_seal = tails
                    .filter_map(|t| t.2)
                    .chain(base_seal)
                    .chain(state.seals.iter().copied().filter(|&s| s <= base.seq))
                    .filter(|&s| s <= to)
                    .max()
                    .unwrap_or(0);
                let mut seals: Vec<u64> = state
                    .seals
                    .iter()
                    .copied()
                    .filter(|&s| s <= to && s < last_seal)
                    .collect();
                if last_seal > 0 {
                    seals.push(last_seal);
                }
                let excess = seals.len().saturating_sub(SEAL_HISTORY);
                seals.drain(..excess);
                state.seq = to;
                state.hash = hash;
                state.since_seal = to - last_seal;
                state.seals = seals;
            }
        }
    }
    // From here on, everything up to this point is settled: delivered, or declared.
    state.acked = state.seq;
    state.base = Some(Mark {
        seq: state.seq,
        hash: state.hash,
        since_seal: state.since_seal,
    });
    Resumed::Continue {
        state,
        window,
        rolled_back,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(seq: u64, base: u64, seals: &[u64]) -> ChainState {
        let last = seals
            .iter()
            .copied()
            .filter(|&s| s <= base)
            .max()
            .unwrap_or(0);
        ChainState {
            stream: "n/a".into(),
            seq,
            hash: [seq as u8; 32],
            since_seal: seq - seals.last().copied().unwrap_or(0),
            seals: seals.to_vec(),
            base: Some(Mark {
                seq: base,
                hash: [base as u8; 32],
                since_seal: base - last,
            }),
            acked: 0,
        }
    }

    fn disk(seq: u64, seal: Option<u64>) -> SinkView {
        SinkView::Disk {
            tail: Some((seq, [seq as u8; 32], seal)),
            known: true,
        }
    }

    fn cont(r: Resumed) -> (ChainState, Option<(u64, u64)>, u64) {
        match r {
            Resumed::Continue {
                state,
                window,
                rolled_back,
            } => (state, window, rolled_back),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn disk_buffers_roll_back_to_the_newest_record_any_of_them_got() {
        let (s, w, back) = cont(resume(
            state(300, 100, &[50, 150, 250]),
            &[disk(180, Some(150)), disk(120, Some(50))],
        ));
        assert_eq!((s.seq, s.hash, w, back), (180, [180; 32], None, 120));
        assert_eq!((s.since_seal, s.last_seal()), (30, 150));
        assert_eq!(s.seals, vec![50, 150]);
        assert_eq!(s.base.unwrap().seq, 180);
    }

    #[test]
    fn drained_buffers_that_got_nothing_new_resume_at_the_start_of_the_life() {
        // Nothing of this life reached a buffer (their tails are from before it): back to where it started.
        let (s, w, back) = cont(resume(state(300, 100, &[50, 250]), &[disk(90, Some(50))]));
        assert_eq!(
            (s.seq, s.hash, s.last_seal(), w, back),
            (100, [100; 32], 50, None, 200)
        );
        let (s, ..) = cont(resume(
            state(300, 100, &[50, 250]),
            &[SinkView::Disk {
                tail: None,
                known: true,
            }],
        ));
        assert_eq!(s.seq, 100);
    }

    #[test]
    fn an_unknown_history_or_an_old_state_never_rolls_back() {
        let unknown = SinkView::Disk {
            tail: Some((120, [120; 32], None)),
            known: false,
        };
        let (s, _, back) = cont(resume(state(300, 100, &[]), &[unknown]));
        assert_eq!((s.seq, back), (300, 0));
        let mut old = state(300, 100, &[]);
        old.base = None;
        let (s, _, back) = cont(resume(old, &[disk(120, None)]));
        assert_eq!((s.seq, back), (300, 0));
    }

    #[test]
    fn a_buffer_ahead_of_the_state_means_the_state_is_not_the_latest() {
        assert!(matches!(
            resume(state(100, 50, &[]), &[disk(120, None)]),
            Resumed::StateBehind(_)
        ));
    }

    #[test]
    fn a_memory_sink_declares_what_was_not_finished() {
        let mut st = state(300, 100, &[150, 250]);
        st.acked = 260;
        let (s, w, back) = cont(resume(st.clone(), &[SinkView::Memory, disk(280, None)]));
        assert_eq!((s.seq, w, back, s.acked), (300, Some((261, 300)), 0, 300));
        // Nothing unfinished: nothing to declare.
        st.acked = 300;
        assert_eq!(cont(resume(st.clone(), &[SinkView::Memory])).1, None);
        // Never before the last seal, nor before this life's start.
        st.acked = 0;
        assert_eq!(cont(resume(st, &[SinkView::Memory])).1, Some((250, 300)));
    }
}
