//! Fan-out: hands each batch of a source's events to the buffer of every sink that reads that source.
//!
//! A batch goes to all of its sinks or, for [`Fanout::try_send`], to none: room is reserved in every buffer
//! first. A `block` buffer without room makes the whole send wait (backpressure); a `drop_newest` buffer takes
//! what fits and drops the rest on its own account, without slowing the other sinks.

use std::time::Duration;

use crate::buffer::{BufferSender, Reservation};
use crate::event::Event;

/// The set of sink buffers one source feeds.
#[derive(Clone)]
pub struct Fanout {
    outputs: Vec<BufferSender>,
    chunk: usize,
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
        Fanout { outputs, chunk }
    }

    /// Sends `events` to every output, waiting for room in `block` buffers.
    pub async fn send(&self, mut events: Vec<Event>) {
        while !events.is_empty() {
            let rest = split_rest(&mut events, self.chunk);
            let mut reservations = Vec::with_capacity(self.outputs.len());
            for o in &self.outputs {
                reservations.push(o.reserve(&events).await);
            }
            deliver(reservations, events);
            events = rest;
        }
    }

    /// Sends `events` only if every `block` buffer has room for all of them right now; otherwise sends nothing
    /// and gives them back.
    pub fn try_send(&self, events: Vec<Event>) -> Result<(), Vec<Event>> {
        if events.len() > self.chunk {
            return Err(events);
        }
        let mut reservations = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            match o.try_reserve(&events) {
                Some(r) => reservations.push(r),
                None => return Err(events),
            }
        }
        deliver(reservations, events);
        Ok(())
    }

    /// Like [`Self::send`], but gives up after `timeout` and returns the events not sent. Batches larger than
    /// the smallest buffer are sent in parts; on timeout the parts already sent stay sent.
    pub async fn send_timeout(
        &self,
        events: Vec<Event>,
        timeout: Duration,
    ) -> Result<(), Vec<Event>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = events;
        while !events.is_empty() {
            let rest = split_rest(&mut events, self.chunk);
            let batch = &events;
            let reserve = async {
                let mut reservations = Vec::with_capacity(self.outputs.len());
                for o in &self.outputs {
                    reservations.push(o.reserve(batch).await);
                }
                reservations
            };
            match tokio::time::timeout_at(deadline, reserve).await {
                Ok(reservations) => deliver(reservations, events),
                Err(_) => {
                    // Dropping the unfinished reservations gave their room back.
                    events.extend(rest);
                    return Err(events);
                }
            }
            events = rest;
        }
        Ok(())
    }

    /// The largest batch [`Self::try_send`] accepts.
    pub fn max_batch(&self) -> usize {
        self.chunk
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
