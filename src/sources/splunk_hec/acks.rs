//! Indexer acknowledgement: the ackIds of one source, by channel.
//!
//! Each accepted request on a channel gets the channel's next ackId and an [`AckBatch`] whose finalizers go
//! with its events; the ackId turns `true` once every sink has reported every event of the request with a final
//! outcome (delivered, or dropped / dead-lettered on purpose and counted there): the pipeline's end-to-end
//! acknowledgement, not "the request was read". A `true` is reported once and then forgotten, as Splunk does;
//! a `false` stays until it turns `true` or is forgotten.
//!
//! Everything a client can grow is bounded: `max_channels` channels (a new one displaces the one unused
//! longest), `max_pending_acks` ackIds per channel (a new one displaces the channel's oldest), `ack_ttl` for an
//! ackId and for an empty channel, and [`MAX_TOTAL_ACKS`] over all channels (past it a request is answered
//! "Server is busy"). A forgotten ackId reads `false` for ever: its client resends after its own ack timeout,
//! which can duplicate events (with their `uid`), never lose them. Each is counted in
//! `auditrail_source_splunk_hec_acks_forgotten_total{reason}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use auditrail_core::AckBatch;

use super::config::AckConfig;

/// Most ackIds remembered over all channels.
pub const MAX_TOTAL_ACKS: usize = 1_000_000;

struct Channel {
    next_id: u64,
    /// ackId → (when given, confirmed).
    acks: BTreeMap<u64, (Instant, bool)>,
    last_used: Instant,
}

struct Inner {
    channels: HashMap<Arc<str>, Channel>,
    total: usize,
}

/// The ackIds of one source.
pub struct Acks {
    config: AckConfig,
    max_total: usize,
    inner: Mutex<Inner>,
    source: Arc<str>,
}

/// Too many ackIds are pending over all channels.
#[derive(Debug)]
pub struct Full;

impl Acks {
    /// An empty registry.
    pub fn new(config: AckConfig, source: Arc<str>) -> Arc<Acks> {
        Self::with_total(config, source, MAX_TOTAL_ACKS)
    }

    fn with_total(config: AckConfig, source: Arc<str>, max_total: usize) -> Arc<Acks> {
        Arc::new(Acks {
            config,
            max_total,
            inner: Mutex::new(Inner {
                channels: HashMap::new(),
                total: 0,
            }),
            source,
        })
    }

    fn forgotten(&self, reason: &'static str, n: usize) {
        if n > 0 {
            metrics::counter!("auditrail_source_splunk_hec_acks_forgotten_total", "source" => self.source.to_string(), "reason" => reason)
                .increment(n as u64);
        }
    }

    /// Gives the request the next ackId of `channel` and the batch its events' finalizers come from. Must be
    /// called inside the runtime: a task waits for the batch's outcome.
    pub fn begin(self: &Arc<Self>, channel: &str) -> Result<(u64, AckBatch), Full> {
        let now = Instant::now();
        let mut g = self.inner.lock().unwrap();
        if g.total >= self.max_total {
            return Err(Full);
        }
        if !g.channels.contains_key(channel) && g.channels.len() >= self.config.max_channels {
            let lru = g
                .channels
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(k, _)| Arc::clone(k));
            if let Some(k) = lru {
                let dropped = g.channels.remove(&k).map_or(0, |c| c.acks.len());
                g.total -= dropped;
                self.forgotten("max_channels", dropped);
            }
        }
        let ch = g
            .channels
            .entry(Arc::from(channel))
            .or_insert_with(|| Channel {
                next_id: 0,
                acks: BTreeMap::new(),
                last_used: now,
            });
        ch.last_used = now;
        let id = ch.next_id;
        ch.next_id += 1;
        ch.acks.insert(id, (now, false));
        let mut delta: isize = 1;
        if ch.acks.len() > self.config.max_pending_acks {
            ch.acks.pop_first();
            delta = 0;
            self.forgotten("max_pending_acks", 1);
        }
        g.total = g.total.saturating_add_signed(delta);
        drop(g);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let batch = AckBatch::new(id, tx);
        let weak: Weak<Acks> = Arc::downgrade(self);
        let channel: Arc<str> = Arc::from(channel);
        tokio::spawn(async move {
            let Some(outcome) = rx.recv().await else {
                return;
            };
            if let Some(acks) = weak.upgrade() {
                if outcome.status.is_final() {
                    acks.confirm(&channel, outcome.id);
                } else {
                    metrics::counter!("auditrail_source_splunk_hec_acks_failed_total", "source" => acks.source.to_string()).increment(1);
                }
            }
        });
        Ok((id, batch))
    }

    fn confirm(&self, channel: &str, id: u64) {
        let mut g = self.inner.lock().unwrap();
        if let Some(entry) = g
            .channels
            .get_mut(channel)
            .and_then(|c| c.acks.get_mut(&id))
        {
            entry.1 = true;
        }
    }

    /// The status of each of `ids` on `channel`; a `true` is forgotten once told. With `hold` (the test-only
    /// fault switch) every answer is `false` and nothing is forgotten.
    pub fn status(&self, channel: &str, ids: &[u64], hold: bool) -> Vec<(u64, bool)> {
        let mut g = self.inner.lock().unwrap();
        let Some(ch) = g.channels.get_mut(channel) else {
            return ids.iter().map(|&id| (id, false)).collect();
        };
        ch.last_used = Instant::now();
        let mut told = 0;
        let out = ids
            .iter()
            .map(|&id| {
                let done = !hold && ch.acks.get(&id).is_some_and(|a| a.1);
                if done {
                    ch.acks.remove(&id);
                    told += 1;
                }
                (id, done)
            })
            .collect();
        g.total -= told;
        out
    }

    /// Forgets ackIds older than `ack_ttl`, and channels with none left unused as long.
    pub fn prune(&self) {
        let ttl = self.config.ack_ttl.0;
        let now = Instant::now();
        let mut g = self.inner.lock().unwrap();
        let mut expired = 0;
        g.channels.retain(|_, c| {
            let before = c.acks.len();
            c.acks.retain(|_, (t, _)| now.duration_since(*t) < ttl);
            expired += before - c.acks.len();
            !c.acks.is_empty() || now.duration_since(c.last_used) < ttl
        });
        g.total -= expired;
        drop(g);
        self.forgotten("ack_ttl", expired);
    }

    /// How often [`Self::prune`] should run.
    pub fn prune_every(&self) -> Duration {
        (self.config.ack_ttl.0 / 4).clamp(Duration::from_millis(50), Duration::from_secs(10))
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let g = self.inner.lock().unwrap();
        (g.channels.len(), g.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditrail_core::units::Interval;
    use auditrail_core::EventStatus;

    fn config(channels: usize, pending: usize, ttl_ms: u64) -> AckConfig {
        AckConfig {
            enabled: true,
            max_channels: channels,
            max_pending_acks: pending,
            ack_ttl: Interval(Duration::from_millis(ttl_ms)),
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn true_only_once_every_copy_is_final_and_told_once() {
        let acks = Acks::new(config(10, 10, 60_000), "s".into());
        let (id, batch) = acks.begin("c").unwrap();
        assert_eq!(id, 0);
        let mut a = batch.finalizer();
        let mut b = a.clone();
        drop(batch);
        a.set_status(EventStatus::Delivered);
        drop(a);
        settle().await;
        assert_eq!(
            acks.status("c", &[0], false),
            [(0, false)],
            "one sink still has it"
        );
        b.set_status(EventStatus::Delivered);
        drop(b);
        settle().await;
        assert_eq!(
            acks.status("c", &[0], true),
            [(0, false)],
            "held by the fault switch"
        );
        assert_eq!(acks.status("c", &[0, 5], false), [(0, true), (5, false)]);
        assert_eq!(acks.status("c", &[0], false), [(0, false)], "told once");
        assert_eq!(acks.counts(), (1, 0));
    }

    #[tokio::test]
    async fn a_failed_copy_never_turns_true() {
        let acks = Acks::new(config(10, 10, 60_000), "s".into());
        let (_, batch) = acks.begin("c").unwrap();
        let f = batch.finalizer();
        drop((batch, f));
        settle().await;
        assert_eq!(acks.status("c", &[0], false), [(0, false)]);
    }

    #[tokio::test]
    async fn bounded_per_channel_by_channels_by_total_and_by_time() {
        let acks = Acks::new(config(2, 3, 60_000), "s".into());
        for _ in 0..5 {
            drop(acks.begin("a").unwrap());
        }
        settle().await;
        assert_eq!(acks.counts(), (1, 3));
        assert_eq!(
            acks.status("a", &[0, 1, 2, 3, 4], false),
            [(0, false), (1, false), (2, true), (3, true), (4, true)],
            "the oldest two were forgotten"
        );
        drop(acks.begin("b").unwrap());
        drop(acks.begin("c").unwrap());
        assert_eq!(acks.counts().0, 2, "a channel was displaced");
        let small = Acks::with_total(config(10, 10, 60_000), "s".into(), 2);
        let _keep = (small.begin("a").unwrap(), small.begin("b").unwrap());
        assert!(small.begin("c").is_err());
        let quick = Acks::new(config(10, 10, 20), "s".into());
        let _pending = quick.begin("a").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        quick.prune();
        assert_eq!(quick.counts(), (0, 0));
    }
}
