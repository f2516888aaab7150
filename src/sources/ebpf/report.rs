//! The ebpf source's accounting: the kernel's per-CPU counters as metrics, and every loss as an
//! `auditrail.dropped` event: ring buffer full (counted by the programs, by kind) and the per-session rate
//! limit (counted here, by sid). For each kind, `auditrail_ebpf_seen_events_total` =
//! `auditrail_ebpf_events_total` (read and sent on) + `auditrail_ebpf_lost_events_total` once the ring buffer
//! is drained, rate-limited events aside (`auditrail_ebpf_rate_limited_events_total`).

use std::collections::HashMap;

use auditrail_core::Event;
use auditrail_ebpf::loader::Stats;
use auditrail_ebpf::records;
use metrics::Counter;

const KINDS: [(&str, u32, u32, u32); 3] = [
    (
        "exec",
        records::KIND_EXEC,
        records::STAT_SEEN_EXEC,
        records::STAT_LOST_EXEC,
    ),
    (
        "open",
        records::KIND_OPEN,
        records::STAT_SEEN_OPEN,
        records::STAT_LOST_OPEN,
    ),
    (
        "connect",
        records::KIND_CONNECT,
        records::STAT_SEEN_CONNECT,
        records::STAT_LOST_CONNECT,
    ),
];

struct PerKind {
    name: &'static str,
    kind: u32,
    seen_index: u32,
    lost_index: u32,
    seen: Counter,
    lost: Counter,
    delivered: Counter,
    lost_reported: u64,
}

/// See the module documentation.
pub struct Reporter {
    source: String,
    kinds: Vec<PerKind>,
    ignored: Counter,
    rate_limited_total: Counter,
    bad: Counter,
    rate_limited: HashMap<String, u64>,
}

impl Reporter {
    /// Registers the source's counters at 0.
    pub fn new(source: &str) -> Reporter {
        let kinds = KINDS
            .iter()
            .map(|&(name, kind, seen_index, lost_index)| {
                let c = |metric: &'static str| {
                    let c =
                        metrics::counter!(metric, "source" => source.to_string(), "kind" => name);
                    c.absolute(0);
                    c
                };
                PerKind {
                    name,
                    kind,
                    seen_index,
                    lost_index,
                    seen: c("auditrail_ebpf_seen_events_total"),
                    lost: c("auditrail_ebpf_lost_events_total"),
                    delivered: c("auditrail_ebpf_events_total"),
                    lost_reported: 0,
                }
            })
            .collect();
        let c = |metric: &'static str| {
            let c = metrics::counter!(metric, "source" => source.to_string());
            c.absolute(0);
            c
        };
        Reporter {
            source: source.to_string(),
            kinds,
            ignored: c("auditrail_ebpf_ignored_opens_total"),
            rate_limited_total: c("auditrail_ebpf_rate_limited_events_total"),
            bad: c("auditrail_ebpf_bad_records_total"),
            rate_limited: HashMap::new(),
        }
    }

    /// One event of `kind` read and sent on.
    pub fn delivered(&self, kind: u32) {
        if let Some(k) = self.kinds.iter().find(|k| k.kind == kind) {
            k.delivered.increment(1);
        }
    }

    /// One event of session `sid` over its rate.
    pub fn rate_limited(&mut self, sid: &str) {
        self.rate_limited_total.increment(1);
        if let Some(n) = self.rate_limited.get_mut(sid) {
            *n += 1;
        } else {
            self.rate_limited.insert(sid.to_string(), 1);
        }
    }

    /// A ring buffer record that did not decode (a stale object?).
    pub fn bad_record(&self, e: &records::RecordError) {
        self.bad.increment(1);
        tracing::warn!(source = %self.source, error = %e, "undecodable eBPF record skipped");
    }

    /// An event that did not parse back (a bug).
    pub fn bad_event(&self, e: &auditrail_core::InvalidEvent) {
        self.bad.increment(1);
        tracing::warn!(source = %self.source, error = %e, "host event skipped: it did not parse");
    }

    /// Reads the kernel's counters, updates the metrics and returns the `auditrail.dropped` events of what
    /// was lost since the last tick.
    pub fn tick(&mut self, stats: &Stats) -> Vec<Event> {
        let mut out = Vec::new();
        self.ignored.absolute(stats.get(records::STAT_IGNORED_OPEN));
        for k in &mut self.kinds {
            k.seen.absolute(stats.get(k.seen_index));
            let lost = stats.get(k.lost_index);
            k.lost.absolute(lost);
            if lost > k.lost_reported {
                let count = lost - k.lost_reported;
                k.lost_reported = lost;
                tracing::warn!(source = %self.source, kind = k.name, count, "host events lost: the ring buffer was full (raise ring_buffer_size, or the sinks are too slow)");
                out.push(Event::internal(
                    "auditrail.dropped",
                    "AR0001W",
                    &[
                        ("source", self.source.as_str().into()),
                        ("count", count.into()),
                        ("reason", "ebpf_ring_buffer_full".into()),
                        ("kind", k.name.into()),
                    ],
                ));
            }
        }
        for (sid, count) in self.rate_limited.drain() {
            tracing::warn!(source = %self.source, sid = %sid, count, "host events over the session's rate limit not sent");
            out.push(Event::internal(
                "auditrail.dropped",
                "AR0001W",
                &[
                    ("source", self.source.as_str().into()),
                    ("count", count.into()),
                    ("reason", "ebpf_rate_limit".into()),
                    ("sid", sid.into()),
                ],
            ));
        }
        for e in &mut out {
            e.set_source(self.source.as_str().into());
        }
        out
    }
}
