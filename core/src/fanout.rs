//! Fan-out: hands each batch of a source's events to the buffer of every sink that reads that source.
//!
//! A batch goes to all of its sinks or, for [`Fanout::try_send`], to none: room is reserved in every buffer
//! first. A `block` buffer without room makes the whole send wait (backpressure); a `drop_newest` buffer takes
//! what fits and drops the rest on its own account, without slowing the other sinks.
//!
//! With an integrity chain, the fan-out numbers each batch under the stream's lock, reserves room, writes the
//! chain state, then delivers: every sink gets the same chain, in `seq` order, and the state on disk is never
//! behind a `seq` a buffer holds. A batch that cannot be sent is un-numbered.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::buffer::{BufferSender, Reservation};
use crate::crash::{self, CrashPoint};
use crate::event::Event;
use crate::integrity::stream::{ChainGuard, StreamChain};

/// The set of sink buffers one source feeds.
#[derive(Clone)]
pub struct Fanout {
    outputs: Vec<BufferSender>,
    chunk: usize,
    chain: Option<ChainLink>,
}

#[derive(Clone)]
struct ChainLink {
    chain: Arc<StreamChain>,
    /// Held by the source's clones only: when the last is dropped, the chain learns its source is gone.
    _source: Option<Arc<SourceGuard>>,
}

struct SourceGuard(Arc<StreamChain>);

impl Drop for SourceGuard {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Fanout {
    /// A fan-out to `outputs` (at least one).
    pub fn new(outputs: Vec<BufferSender>) -> Fanout {
        let chunk = outputs
            .iter()
            .map(|o| o.max_batch())
            .min()
            .unwrap_or(1)
            .max(1);
        Fanout {
            outputs,
            chunk,
            chain: None,
        }
    }

    /// A fan-out to `outputs` that numbers every batch in `chain`: one for the source, and one for the sealer
    /// (which sends seals, and learns from the chain when the source's fan-outs are all gone).
    pub fn chained(outputs: Vec<BufferSender>, chain: Arc<StreamChain>) -> (Fanout, Fanout) {
        let mut source = Fanout::new(outputs);
        let mut sealer = source.clone();
        sealer.chain = Some(ChainLink {
            chain: chain.clone(),
            _source: None,
        });
        source.chain = Some(ChainLink {
            chain: chain.clone(),
            _source: Some(Arc::new(SourceGuard(chain))),
        });
        (source, sealer)
    }

    /// Sends `events` to every output, waiting for room in `block` buffers.
    pub async fn send(&self, events: Vec<Event>) {
        let _ = self.send_until(events, None).await;
    }

    /// Sends `events` only if every `block` buffer has room for all of them right now; otherwise sends nothing
    /// and gives them back.
    pub fn try_send(&self, mut events: Vec<Event>) -> Result<(), Vec<Event>> {
        if events.len() > self.chunk {
            return Err(events);
        }
        let Some(link) = &self.chain else {
            let Some(reservations) = self.try_reserve(&events) else {
                return Err(events);
            };
            deliver(reservations, events);
            return Ok(());
        };
        let Some(mut guard) = link.chain.try_lock() else {
            return Err(events);
        };
        let undo = guard.chain(&mut events);
        crash::point(CrashPoint::ChainAfterNumber);
        let Some(reservations) = self.try_reserve(&events) else {
            guard.undo(&mut events, undo);
            return Err(events);
        };
        if !guard.try_commit(events.len()) {
            drop(reservations);
            guard.undo(&mut events, undo);
            return Err(events);
        }
        crash::point(CrashPoint::ChainAfterStateWrite);
        deliver(reservations, events);
        crash::point(CrashPoint::ChainAfterDeliver);
        if guard.seal_due() {
            let (mut seal, undo) = guard.seal();
            match self.try_reserve(&seal) {
                Some(r) if guard.try_commit(seal.len()) => deliver(r, seal),
                _ => guard.undo(&mut seal, undo),
            }
        }
        Ok(())
    }

    /// Like [`Self::send`], but gives up after `timeout` and returns the events not sent. Batches larger than
    /// the smallest buffer are sent in parts; on timeout the parts already sent stay sent.
    pub async fn send_timeout(
        &self,
        events: Vec<Event>,
        timeout: Duration,
    ) -> Result<(), Vec<Event>> {
        self.send_until(events, Some(Instant::now() + timeout))
            .await
    }

    /// Numbers, sends and commits one seal of the chain, giving up at `timeout` (the seal is then taken back).
    /// Does nothing on a fan-out without a chain.
    pub async fn seal(&self, timeout: Duration) -> Result<(), ()> {
        let Some(link) = &self.chain else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        let Ok(mut guard) = tokio::time::timeout_at(deadline, link.chain.lock()).await else {
            link.chain.seal_skipped();
            return Err(());
        };
        // A seal promises that everything before it is in the store: where events may die in memory, only once
        // every sink finished with them.
        if !guard.settle(deadline).await {
            tracing::warn!(
                source = link.chain.source(),
                "the sinks did not finish the events numbered so far within {timeout:?}: the seal waits for the next epoch"
            );
            link.chain.seal_skipped();
            return Err(());
        }
        let (mut seal, undo) = guard.seal();
        match tokio::time::timeout_at(deadline, self.reserve(&seal)).await {
            Ok(reservations) => {
                guard.commit(seal.len()).await;
                deliver(reservations, seal);
                Ok(())
            }
            Err(_) => {
                guard.undo(&mut seal, undo);
                link.chain.seal_skipped();
                Err(())
            }
        }
    }

    /// Waits, until `timeout`, for every number given so far to be finished at every sink, then writes the chain
    /// state, so that a restart after a clean stop declares nothing. True when settled (at once without a chain
    /// or for a stream that is not tracked).
    pub async fn settle(&self, timeout: Duration) -> bool {
        let Some(link) = &self.chain else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let Ok(mut guard) = tokio::time::timeout_at(deadline, link.chain.lock()).await else {
            return false;
        };
        if !guard.tracked() {
            return true;
        }
        guard.settle(deadline).await && guard.try_commit(0)
    }

    /// The chain this fan-out numbers in, if any.
    pub fn chain(&self) -> Option<&Arc<StreamChain>> {
        self.chain.as_ref().map(|l| &l.chain)
    }

    /// The largest batch [`Self::try_send`] accepts.
    pub fn max_batch(&self) -> usize {
        self.chunk
    }

    async fn reserve(&self, events: &[Event]) -> Vec<Reservation<'_>> {
        let mut reservations = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            reservations.push(o.reserve(events).await);
        }
        reservations
    }

    fn try_reserve(&self, events: &[Event]) -> Option<Vec<Reservation<'_>>> {
        let mut reservations = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            reservations.push(o.try_reserve(events)?);
        }
        Some(reservations)
    }

    async fn send_until(
        &self,
        mut events: Vec<Event>,
        deadline: Option<Instant>,
    ) -> Result<(), Vec<Event>> {
        let mut guard: Option<ChainGuard<'_>> = match &self.chain {
            None => None,
            Some(link) => match deadline {
                None => Some(link.chain.lock().await),
                Some(d) => match tokio::time::timeout_at(d, link.chain.lock()).await {
                    Ok(g) => Some(g),
                    Err(_) => return Err(events),
                },
            },
        };
        while !events.is_empty() {
            let rest = split_rest(&mut events, self.chunk);
            let undo = guard.as_mut().map(|g| g.chain(&mut events));
            if undo.is_some() {
                crash::point(CrashPoint::ChainAfterNumber);
            }
            let reserved = match deadline {
                None => Some(self.reserve(&events).await),
                Some(d) => tokio::time::timeout_at(d, self.reserve(&events)).await.ok(),
            };
            let Some(reservations) = reserved else {
                // Dropping the unfinished reservations gave their room back.
                if let (Some(g), Some(u)) = (guard.as_mut(), undo) {
                    g.undo(&mut events, u);
                }
                events.extend(rest);
                return Err(events);
            };
            // A seal due after this batch is numbered now and, when there is room for it at once, made durable
            // by the same state write: one fdatasync instead of two, which on a slow disk is most of the cost.
            let mut sealed = None;
            if let Some(g) = guard.as_mut() {
                if g.seal_due() {
                    let (mut seal, undo) = g.seal();
                    match self.try_reserve(&seal) {
                        Some(r) => sealed = Some((seal, r)),
                        None => g.undo(&mut seal, undo),
                    }
                }
                let numbered = events.len() + sealed.as_ref().map_or(0, |(s, _)| s.len());
                g.commit(numbered).await;
                crash::point(CrashPoint::ChainAfterStateWrite);
            }
            deliver(reservations, events);
            if let Some((seal, r)) = sealed {
                deliver(r, seal);
            }
            if guard.is_some() {
                crash::point(CrashPoint::ChainAfterDeliver);
            }
            if let Some(g) = guard.as_mut() {
                if g.seal_due() {
                    let (mut seal, undo) = g.seal();
                    let reserved = match deadline {
                        None => Some(self.reserve(&seal).await),
                        Some(d) => tokio::time::timeout_at(d, self.reserve(&seal)).await.ok(),
                    };
                    match reserved {
                        Some(r) => {
                            g.commit(seal.len()).await;
                            deliver(r, seal);
                        }
                        // Still due: the next batch or the timer seals.
                        None => g.undo(&mut seal, undo),
                    }
                }
            }
            events = rest;
        }
        Ok(())
    }
}

fn split_rest(events: &mut Vec<Event>, chunk: usize) -> Vec<Event> {
    if events.len() > chunk {
        events.split_off(chunk)
    } else {
        Vec::new()
    }
}

fn deliver(mut reservations: Vec<Reservation<'_>>, events: Vec<Event>) {
    let last = reservations.pop();
    for r in reservations {
        r.send(events.clone());
    }
    if let Some(r) = last {
        r.send(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{memory_buffer, MemoryBufferConfig, WhenFull};
    use bytes::Bytes;

    fn ev(i: usize) -> Event {
        Event::parse(
            Bytes::from(format!(
                r#"{{"event":"x","uid":"{i}","time":"2017-02-03T06:54:05Z"}}"#
            )),
            1024,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn all_or_nothing_across_block_buffers() {
        let (a, mut ra) = memory_buffer(
            "a",
            &MemoryBufferConfig {
                max_events: 10,
                when_full: WhenFull::Block,
            },
        );
        let (b, _rb) = memory_buffer(
            "b",
            &MemoryBufferConfig {
                max_events: 2,
                when_full: WhenFull::Block,
            },
        );
        let f = Fanout::new(vec![a, b]);
        assert_eq!(f.max_batch(), 2);
        f.try_send(vec![ev(1), ev(2)]).unwrap();
        let back = f.try_send(vec![ev(3)]).unwrap_err();
        assert_eq!(back.len(), 1);
        let mut out = Vec::new();
        ra.recv_many(&mut out, 10).await;
        assert_eq!(out.len(), 2, "the refused batch reached no buffer");
        assert!(f
            .send_timeout(vec![ev(4)], Duration::from_millis(20))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn large_batches_are_split() {
        let (a, mut ra) = memory_buffer(
            "a",
            &MemoryBufferConfig {
                max_events: 3,
                when_full: WhenFull::Block,
            },
        );
        let f = Fanout::new(vec![a]);
        let sender = tokio::spawn(async move { f.send((0..10).map(ev).collect()).await });
        let mut out = Vec::new();
        while out.len() < 10 {
            ra.recv_many(&mut out, 100).await;
        }
        sender.await.unwrap();
        assert_eq!(out.last().unwrap().uid(), "9");
    }
}
