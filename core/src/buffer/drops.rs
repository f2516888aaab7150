//! What every buffer does with events it drops (`when_full = "drop_newest"`, or an event too large to store):
//! count them, say so in the log at most every ten seconds, and hand the sink one `auditrail.dropped` event
//! with the count as soon as it takes events again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::Counter;

use crate::event::Event;

/// How often a buffer that keeps dropping says so in the log; every drop is counted regardless.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Drop accounting of one buffer.
pub(crate) struct Drops {
    sink: String,
    counter: Counter,
    unreported: AtomicU64,
    last_log: Mutex<Option<Instant>>,
    reason: Mutex<&'static str>,
}

impl Drops {
    /// Registers `auditrail_buffer_dropped_events_total{sink}` at zero.
    pub fn new(sink: &str) -> Drops {
        let counter =
            metrics::counter!("auditrail_buffer_dropped_events_total", "sink" => sink.to_string());
        counter.increment(0);
        Drops {
            sink: sink.to_string(),
            counter,
            unreported: AtomicU64::new(0),
            last_log: Mutex::new(None),
            reason: Mutex::new(""),
        }
    }

    /// Counts `n` dropped events and logs (rate-limited) why.
    pub fn record(&self, n: u64, why: &'static str) {
        if n == 0 {
            return;
        }
        self.counter.increment(n);
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = why;
        let total = self.unreported.fetch_add(n, Ordering::AcqRel) + n;
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(sink = %self.sink, dropped = total, reason = why, "buffer dropping new events");
        }
    }

    /// An `auditrail.dropped` event for the drops not reported yet, if any. The receiving side adds it to what
    /// it hands the sink, so the report goes out as soon as the sink makes room, even if no new event arrives.
    pub fn report(&self) -> Option<Event> {
        if self.unreported.load(Ordering::Acquire) == 0 {
            return None;
        }
        let count = self.unreported.swap(0, Ordering::AcqRel);
        let reason = *self.reason.lock().unwrap_or_else(|p| p.into_inner());
        (count > 0).then(|| {
            Event::internal(
                "auditrail.dropped",
                "AR0001W",
                &[
                    ("sink", self.sink.as_str().into()),
                    ("count", count.into()),
                    ("reason", reason.into()),
                ],
            )
        })
    }
}
