//! The component state registry behind `/ready`: one entry per source and per sink, holding what the component
//! last said about itself (its state and its last error), read by the API.
//!
//! The pipeline registers every component before it starts it and hands each its [`ComponentStatus`] (a sink
//! finds its own in [`crate::SinkContext::status`]). Components update it as things happen — a sink when it
//! reaches its server or fails to, a source when it runs or stops — and the API takes a [`Snapshot`] per
//! request. Updates are a short mutex section on a small map, cheap next to the network request they follow.
//!
//! Readiness ([`Snapshot::ready`]): every source is [`State::Running`] and every sink has made contact with its
//! destination at least once and has not stopped. A sink that made contact and fails now stays ready (its state
//! says `failing`, with the error): its buffer absorbs the outage, and a load balancer or systemd acting on a
//! flapping cluster would only make things worse. A sink that has never made contact is not ready: the agent
//! would only be filling buffers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Longest last-error text kept per component (an error that quotes a server's answer is cut).
pub const MAX_ERROR_BYTES: usize = 1024;

/// What a component is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Registered, not running yet (a source) or not yet in contact with its destination (a sink).
    Starting,
    /// A source reads; a sink's latest exchange with its destination succeeded.
    Running,
    /// A sink that made contact before and whose latest attempt failed; it retries.
    Failing,
    /// Stopped at shutdown.
    Stopped,
    /// Stopped for good on an error.
    Failed,
}

impl State {
    /// The name shown in `/ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Failing => "failing",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

/// One component's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its state.
    pub state: State,
    /// Whether a sink has reached its destination at least once (always `false` for sources).
    pub contacted: bool,
    /// The last error it reported, kept after it recovers so that a dashboard can say what happened.
    pub last_error: Option<String>,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            state: State::Starting,
            contacted: false,
            last_error: None,
        }
    }
}

/// Sources or sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `[sources.NAME]`.
    Source,
    /// `[sinks.NAME]`.
    Sink,
}

#[derive(Default)]
struct Inner {
    sources: BTreeMap<String, Entry>,
    sinks: BTreeMap<String, Entry>,
}

impl Inner {
    fn map(&mut self, kind: Kind) -> &mut BTreeMap<String, Entry> {
        match kind {
            Kind::Source => &mut self.sources,
            Kind::Sink => &mut self.sinks,
        }
    }
}

/// Every component's entry; cloned handles share one map.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers source `name` as [`State::Starting`] and returns its handle.
    pub fn source(&self, name: &str) -> ComponentStatus {
        self.register(Kind::Source, name)
    }

    /// Registers sink `name` as [`State::Starting`], not in contact, and returns its handle.
    pub fn sink(&self, name: &str) -> ComponentStatus {
        self.register(Kind::Sink, name)
    }

    fn register(&self, kind: Kind, name: &str) -> ComponentStatus {
        self.lock().map(kind).insert(name.to_string(), Entry::new());
        ComponentStatus {
            registry: self.clone(),
            kind,
            name: name.into(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (every update is one assignment).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of every entry, for one answer of `/ready`.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            sources: inner.sources.clone(),
            sinks: inner.sinks.clone(),
        }
    }
}

/// The entries at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// By source name.
    pub sources: BTreeMap<String, Entry>,
    /// By sink name.
    pub sinks: BTreeMap<String, Entry>,
}

impl Snapshot {
    /// Every source running, every sink in contact at least once and still running (see the module docs).
    pub fn ready(&self) -> bool {
        self.sources.values().all(|e| e.state == State::Running)
            && self
                .sinks
                .values()
                .all(|e| e.contacted && matches!(e.state, State::Running | State::Failing))
    }
}

/// One component's handle on its entry.
#[derive(Clone)]
pub struct ComponentStatus {
    registry: Registry,
    kind: Kind,
    name: Arc<str>,
}

impl std::fmt::Debug for ComponentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ComponentStatus({:?} {})", self.kind, self.name)
    }
}

impl ComponentStatus {
    /// A handle on a registry of its own, for a component run outside a pipeline (tests, tools).
    pub fn detached(kind: Kind, name: &str) -> ComponentStatus {
        Registry::new().register(kind, name)
    }

    /// The component's current entry.
    pub fn entry(&self) -> Entry {
        let mut inner = self.registry.lock();
        inner
            .map(self.kind)
            .entry(self.name.to_string())
            .or_insert_with(Entry::new)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut Entry)) {
        let mut inner = self.registry.lock();
        let e = inner
            .map(self.kind)
            .entry(self.name.to_string())
            .or_insert_with(Entry::new);
        f(e);
    }

    /// A source runs; a sink reached its destination (a request answered with success). The last error stays.
    pub fn running(&self) {
        let contact = self.kind == Kind::Sink;
        self.update(|e| {
            e.state = State::Running;
            e.contacted |= contact;
        });
    }

    /// A sink's attempt failed (it retries): `failing` if it made contact before, still `starting` otherwise.
    pub fn error(&self, message: &str) {
        let message = cut(message);
        self.update(|e| {
            if e.contacted && e.state == State::Running {
                e.state = State::Failing;
            }
            e.last_error = Some(message);
        });
    }

    /// Stopped for good on `message`.
    pub fn failed(&self, message: &str) {
        let message = cut(message);
        self.update(|e| {
            e.state = State::Failed;
            e.last_error = Some(message);
        });
    }

    /// Stopped at shutdown (an earlier failure stays as it is).
    pub fn stopped(&self) {
        self.update(|e| {
            if e.state != State::Failed {
                e.state = State::Stopped;
            }
        });
    }
}

fn cut(message: &str) -> String {
    if message.len() <= MAX_ERROR_BYTES {
        return message.to_string();
    }
    let mut end = MAX_ERROR_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_running_sources_and_sinks_that_made_contact() {
        let r = Registry::new();
        let src = r.source("teleport");
        let sink = r.sink("es");
        assert!(!r.snapshot().ready());
        src.running();
        assert!(!r.snapshot().ready(), "the sink never made contact");
        sink.error("connection refused");
        let s = r.snapshot();
        assert!(!s.ready());
        assert_eq!(s.sinks["es"].state, State::Starting);
        assert_eq!(
            s.sinks["es"].last_error.as_deref(),
            Some("connection refused")
        );
        sink.running();
        let s = r.snapshot();
        assert!(s.ready());
        assert_eq!(s.sinks["es"].state, State::Running);
        // Failing after contact: still ready, the error shown.
        sink.error("503 Service Unavailable");
        let s = r.snapshot();
        assert!(s.ready());
        assert_eq!(s.sinks["es"].state, State::Failing);
        sink.running();
        assert_eq!(r.snapshot().sinks["es"].state, State::Running);
        // A stopped source is not ready.
        src.stopped();
        assert!(!r.snapshot().ready());
    }

    #[test]
    fn failures_stick_and_errors_are_bounded() {
        let r = Registry::new();
        let sink = r.sink("es");
        sink.running();
        sink.failed(&"x".repeat(5000));
        sink.stopped();
        let e = sink.entry();
        assert_eq!(e.state, State::Failed);
        assert!(e.last_error.unwrap().len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(!r.snapshot().ready());
        // No components at all: nothing to wait for.
        assert!(Registry::new().snapshot().ready());
    }
}
