//! The cgroup → session directory the host events are enriched from: which session (sid, user, login,
//! server_id) a cgroup id belongs to. The pipeline fills it from the `session.start` / `session.end` events
//! its sources take in ([`crate::sources::ingest::Ingest::count`] shows every accepted batch to it), so no
//! source reads another source; the ebpf source reads it, and registers a [`Watcher`] that mirrors the
//! session cgroup ids into its kernel filter map as they come and go, before the `session.start` that
//! announced them reaches any sink.
//!
//! Bounded: at most [`MAX_SESSIONS`] sessions; beyond it a start is refused, counted
//! (`auditrail_sessions_directory_refused_total`) and logged. An ended session stays [`GRACE`] longer, so that
//! host events still in the ring buffer when `session.end` passes are still tied to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrail_core::Event;

/// Most sessions held at once (the kernel filter map has room for twice as many).
pub const MAX_SESSIONS: usize = 4096;
/// How long an ended session is still known.
pub const GRACE: Duration = Duration::from_secs(30);

/// Who a session cgroup belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSession {
    /// The session id.
    pub sid: String,
    /// The Teleport/auditrail user.
    pub user: String,
    /// The OS login.
    pub login: String,
    /// The node's id as the session reported it.
    pub server_id: String,
}

/// Told when a session cgroup comes or goes.
pub trait Watcher: Send + Sync {
    /// `cgroup_id` is a session's cgroup from now on.
    fn added(&self, cgroup_id: u64);
    /// `cgroup_id` is no longer a session's cgroup.
    fn removed(&self, cgroup_id: u64);
}

struct Slot {
    session: HostSession,
    ended: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    by_cgroup: HashMap<u64, Slot>,
    watchers: Vec<Arc<dyn Watcher>>,
}

/// See the module documentation. Cloned handles share one directory.
#[derive(Clone, Default)]
pub struct Directory {
    inner: Arc<Mutex<Inner>>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Directory {
        Directory::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `w` and tells it every live session cgroup.
    pub fn watch(&self, w: Arc<dyn Watcher>) {
        let mut inner = self.lock();
        for (id, slot) in &inner.by_cgroup {
            if slot.ended.is_none() {
                w.added(*id);
            }
        }
        inner.watchers.push(w);
    }

    /// The session `cgroup_id` belongs to (also for [`GRACE`] after it ended).
    pub fn get(&self, cgroup_id: u64) -> Option<HostSession> {
        self.lock()
            .by_cgroup
            .get(&cgroup_id)
            .map(|s| s.session.clone())
    }

    /// Looks at a batch of accepted events: cheap for everything but `session.start` and `session.end`.
    pub fn observe(&self, events: &[Event]) {
        for e in events {
            let kind = e.kind();
            if kind == "session.start" {
                self.started(e);
            } else if kind == "session.end" {
                self.ended(e);
            }
        }
    }

    fn started(&self, e: &Event) {
        let Some(cgroup_id) = e.field("cgroup_id").and_then(|v| v.parse::<u64>().ok()) else {
            return; // No cgroup (the recorder could not join one): nothing to tie host events to.
        };
        let text = |name: &str| e.field(name).map(|v| v.into_owned()).unwrap_or_default();
        let session = HostSession {
            sid: text("sid"),
            user: text("user"),
            login: text("login"),
            server_id: text("server_id"),
        };
        let mut inner = self.lock();
        let now = Instant::now();
        inner
            .by_cgroup
            .retain(|_, s| s.ended.is_none_or(|t| now.duration_since(t) < GRACE));
        if !inner.by_cgroup.contains_key(&cgroup_id) && inner.by_cgroup.len() >= MAX_SESSIONS {
            metrics::counter!("auditrail_sessions_directory_refused_total").increment(1);
            tracing::warn!(sid = %session.sid, cgroup_id, max = MAX_SESSIONS, "session directory full: host events of this session are not tied to it");
            return;
        }
        tracing::debug!(sid = %session.sid, cgroup_id, "session cgroup known");
        inner.by_cgroup.insert(
            cgroup_id,
            Slot {
                session,
                ended: None,
            },
        );
        for w in &inner.watchers {
            w.added(cgroup_id);
        }
    }

    fn ended(&self, e: &Event) {
        let sid = e.field("sid").map(|v| v.into_owned()).unwrap_or_default();
        let mut inner = self.lock();
        let now = Instant::now();
        let mut gone = Vec::new();
        for (id, slot) in inner.by_cgroup.iter_mut() {
            if slot.session.sid == sid && slot.ended.is_none() {
                slot.ended = Some(now);
                gone.push(*id);
            }
        }
        for id in gone {
            for w in &inner.watchers {
                w.removed(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ev(json: &str) -> Event {
        Event::parse(Bytes::from(json.to_string()), 1 << 20).unwrap()
    }

    #[derive(Default)]
    struct Log(Mutex<Vec<(bool, u64)>>);
    impl Watcher for Log {
        fn added(&self, id: u64) {
            self.0.lock().unwrap().push((true, id));
        }
        fn removed(&self, id: u64) {
            self.0.lock().unwrap().push((false, id));
        }
    }

    #[test]
    fn start_and_end_fill_and_tell() {
        let d = Directory::new();
        let log = Arc::new(Log::default());
        d.watch(log.clone());
        d.observe(&[
            ev(r#"{"event":"session.start","time":"2024-01-01T00:00:00Z","sid":"s1","user":"alice","login":"root","server_id":"n1","cgroup_id":42}"#),
            ev(r#"{"event":"session.start","time":"2024-01-01T00:00:00Z","sid":"s2","cgroup_id":null}"#),
            ev(r#"{"event":"exec","time":"2024-01-01T00:00:00Z","sid":"s1","cgroup_id":43}"#),
        ]);
        assert_eq!(
            d.get(42),
            Some(HostSession {
                sid: "s1".into(),
                user: "alice".into(),
                login: "root".into(),
                server_id: "n1".into()
            })
        );
        assert_eq!(d.get(43), None);
        d.observe(&[ev(
            r#"{"event":"session.end","time":"2024-01-01T00:00:01Z","sid":"s1"}"#,
        )]);
        assert_eq!(d.get(42).unwrap().sid, "s1", "kept for the grace period");
        assert_eq!(*log.0.lock().unwrap(), vec![(true, 42), (false, 42)]);
        let late = Arc::new(Log::default());
        d.watch(late.clone());
        assert!(
            late.0.lock().unwrap().is_empty(),
            "an ended session is not announced"
        );
    }
}
