//! The ebpf source: host events (programs started, files opened, connections made) from the kernel, as
//! Teleport's `session.command` / `session.disk` / `session.network`, tied to their session through its cgroup.
//!
//! - Load: the programs of `auditrail-ebpf` ([`auditrail_ebpf::loader`]), each hook at the first attach point
//!   that works (logged). Without privilege, BTF or a hook the source fails with one line saying what is
//!   missing ([`SourceError::Unavailable`]); the pipeline logs it, marks the source failed in `/health` and
//!   `/ready`, and runs the rest of the agent.
//! - Filter: in scope `sessions` the kernel reports only tasks in a session cgroup or below one; the session
//!   cgroup ids come from the session directory ([`crate::sessions::directory`]), mirrored into the kernel
//!   map by a watcher as sessions start and end.
//! - Read: the ring buffer, every [`DRAIN_EVERY`] and when the kernel wakes the reader (epoll through
//!   [`tokio::io::unix::AsyncFd`], once an eighth of the ring is filled), in batches to the fan-out; a full
//!   pipeline stops the reading, the ring fills, and what the kernel cannot write is counted there.
//! - Account ([`report`]): every second, the kernel's per-CPU counters become
//!   `auditrail_ebpf_seen_events_total` / `auditrail_ebpf_lost_events_total`, and new losses (ring buffer full,
//!   per-session rate limit) are reported as `auditrail.dropped` events.
//! - Stop: the programs are detached first, then the ring buffer is drained and the final counts reported.

mod config;
mod encode;
mod report;

pub use config::{Attach, EbpfSourceConfig, Hook, Scope};

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditrail_core::Event;
use auditrail_ebpf::aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use auditrail_ebpf::loader::{AttachKind, Loaded, Options, Stats};
use auditrail_ebpf::records::Record;
use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::io::unix::AsyncFd;

use super::{SourceContext, SourceError, SourceTask};
use crate::sessions::directory::{Directory, Watcher};

/// Records read before a batch goes to the fan-out.
const BATCH: usize = 1024;

/// How often the ring buffer is drained without a wakeup. The programs wake the reader only once an eighth of
/// the ring is filled (a wakeup per record costs the traced task an irq_work and this task a context switch
/// per event), so this bounds how long a record waits on a quiet host.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// The most bytes one event of this source has (argv of 1 KiB, every byte escaped, stays well below).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Mirrors the directory's session cgroups into the kernel's filter map.
struct KernelSessions(Mutex<BpfHashMap<MapData, u64, u64>>);

impl Watcher for KernelSessions {
    fn added(&self, cgroup_id: u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = map.insert(cgroup_id, cgroup_id, 0) {
            metrics::counter!("auditrail_ebpf_session_map_errors_total").increment(1);
            tracing::warn!(cgroup_id, error = %e, "cannot add the session cgroup to the kernel filter: its host events are not reported");
        }
    }

    fn removed(&self, cgroup_id: u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = map.remove(&cgroup_id);
    }
}

/// Loads and attaches the programs and returns the reading task, or says in one line why it cannot.
pub fn build(config: EbpfSourceConfig, cx: SourceContext) -> Result<SourceTask, SourceError> {
    let options = Options {
        ring_buffer_size: config.ring_buffer_size.0 as u32,
        scope_all: config.scope == Scope::All,
        hooks: config.hooks(),
        ignore_prefixes: config
            .ignore_paths
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
        only: match config.attach {
            Attach::Auto => None,
            Attach::TpBtf => Some(AttachKind::TpBtf),
            Attach::RawTp => Some(AttachKind::RawTp),
            Attach::Tracepoint => Some(AttachKind::Tracepoint),
        },
    };
    let unavailable = |e: auditrail_ebpf::loader::LoadError| SourceError::Unavailable {
        source_name: cx.name.to_string(),
        message: e.to_string(),
    };
    let mut loaded = Loaded::load(auditrail_ebpf::OBJECT, &options).map_err(unavailable)?;
    let ring = loaded.take_ring().map_err(unavailable)?;
    let stats = loaded.take_stats().map_err(unavailable)?;
    let cgroups = loaded.take_session_cgroups().map_err(unavailable)?;
    cx.sessions
        .watch(Arc::new(KernelSessions(Mutex::new(cgroups))));
    let attached: Vec<String> = loaded.attached.iter().map(|a| a.to_string()).collect();
    tracing::info!(
        source = %cx.name,
        scope = ?config.scope,
        ring_buffer_size = config.ring_buffer_size.0,
        attached = %attached.join(", "),
        object = auditrail_ebpf::OBJECT_ORIGIN,
        "ebpf source running"
    );
    // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd, which deregisters the fd before
    // dropping it; nothing else closes it.
    let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| SourceError::Unavailable {
            source_name: cx.name.to_string(),
            message: format!("cannot poll the ring buffer: {e}"),
        })?;
    let server_id = config
        .server_id
        .clone()
        .unwrap_or_else(crate::recording::events::hostname);
    let limiter = match (
        NonZeroU32::new(config.rate_limit),
        NonZeroU32::new(config.rate_burst),
    ) {
        (Some(rate), Some(burst)) => Some(RateLimiter::keyed(
            Quota::per_second(rate).allow_burst(burst),
        )),
        _ => None,
    };
    let reader = Reader {
        report: report::Reporter::new(&cx.name),
        clock: encode::Clock::now(),
        server_id,
        limiter,
        directory: cx.sessions.clone(),
        cx,
    };
    Ok(Box::pin(reader.run(loaded, ring, stats)))
}

struct Reader {
    cx: SourceContext,
    directory: Directory,
    clock: encode::Clock,
    server_id: String,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    report: report::Reporter,
}

impl Reader {
    async fn run(mut self, loaded: Loaded, mut ring: AsyncFd<RingBuf<MapData>>, stats: Stats) {
        let mut shutdown = self.cx.shutdown.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_tick = tokio::time::interval(DRAIN_EVERY);
        drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = drain_tick.tick() => self.drain_all(ring.get_mut()).await,
                _ = tick.tick() => {
                    let dropped = self.report.tick(&stats);
                    if let Some(l) = &self.limiter {
                        l.retain_recent();
                    }
                    if !dropped.is_empty() {
                        self.cx.fanout.send(dropped).await;
                    }
                }
                guard = ring.readable_mut() => {
                    let mut guard = match guard {
                        Ok(g) => g,
                        Err(e) => {
                            tracing::error!(source = %self.cx.name, error = %e, "polling the ring buffer failed; the ebpf source stops");
                            return;
                        }
                    };
                    let batch = self.drain(guard.get_inner_mut());
                    if batch.len() < BATCH {
                        guard.clear_ready();
                    }
                    drop(guard);
                    self.send(batch).await;
                }
            }
        }
        // Detach first, so that the drain below sees everything the kernel will ever write.
        drop(loaded);
        self.drain_all(ring.get_mut()).await;
        let dropped = self.report.tick(&stats);
        if !dropped.is_empty() {
            self.cx.fanout.send(dropped).await;
        }
        tracing::info!(source = %self.cx.name, "ebpf source stopped; ring buffer drained");
    }

    /// Drains the ring buffer until a batch comes back short, sending each batch on.
    async fn drain_all(&mut self, ring: &mut RingBuf<MapData>) {
        loop {
            let batch = self.drain(ring);
            let more = batch.len() == BATCH;
            self.send(batch).await;
            if !more {
                break;
            }
        }
    }

    async fn send(&self, batch: Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        self.cx.ingest.count(&batch);
        self.cx.fanout.send(batch).await;
    }

    /// Reads up to [`BATCH`] records into events.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> Vec<Event> {
        let mut out = Vec::new();
        while out.len() < BATCH {
            let Some(item) = ring.next() else { break };
            let record = Record::parse(&item);
            drop(item);
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    self.report.bad_record(&e);
                    continue;
                }
            };
            let h = match &record {
                Record::Exec(e) => e.h,
                Record::Open(e) => e.h,
                Record::Connect(e) => e.h,
            };
            let session = (h.session_cgroup_id != 0)
                .then(|| self.directory.get(h.session_cgroup_id))
                .flatten();
            if let (Some(l), Some(s)) = (&self.limiter, &session) {
                if l.check_key(&s.sid).is_err() {
                    self.report.rate_limited(&s.sid);
                    continue;
                }
            }
            let line = encode::encode(&record, &self.clock, session.as_ref(), &self.server_id);
            match self.cx.ingest.parse(Bytes::from(line)) {
                Ok(e) => {
                    self.report.delivered(h.kind);
                    out.push(e);
                }
                Err(e) => self.report.bad_event(&e),
            }
        }
        out
    }
}
