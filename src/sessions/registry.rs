//! The live-session registry: which sessions hold a cgroup right now (sid, cgroup id and path, the recorder's
//! pid and uid, when it started), bounded in total and per uid. The sessions socket fills it; the eBPF source
//! will read it to filter and enrich host events by cgroup id.
//!
//! A sid is reserved before its cgroup is made and released when its connection closes; the sweep of empty
//! cgroups runs under the same lock ([`Registry::sweep_with`]), so it never removes a cgroup a session is
//! about to join.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    /// The session id.
    pub sid: String,
    /// Its cgroup's id (the directory's inode number).
    pub cgroup_id: u64,
    /// Its cgroup's directory.
    pub cgroup_path: PathBuf,
    /// The recorder's pid (from `SO_PEERCRED`).
    pub pid: u32,
    /// The recorder's uid (from `SO_PEERCRED`).
    pub uid: u32,
    /// When the agent created the cgroup.
    pub started: SystemTime,
}

/// Why a session was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The sid is live already.
    #[error("session {0} already has a cgroup (a sid is used by one session at a time)")]
    Duplicate(String),
    /// `max_sessions` reached.
    #[error("the agent already holds max_sessions = {0} session cgroups")]
    TooMany(usize),
    /// `max_per_uid` reached for this uid.
    #[error("uid {uid} already has max_per_uid = {max} sessions")]
    TooManyForUid {
        /// The caller's uid.
        uid: u32,
        /// The limit.
        max: usize,
    },
}

impl Refusal {
    /// The `reason` label of `auditrail_sessions_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Duplicate(_) => "duplicate_sid",
            Refusal::TooMany(_) => "max_sessions",
            Refusal::TooManyForUid { .. } => "max_per_uid",
        }
    }
}

enum Slot {
    /// Admitted; the cgroup is being made.
    Reserved { uid: u32 },
    /// In its cgroup.
    Live(SessionEntry),
}

impl Slot {
    fn uid(&self) -> u32 {
        match self {
            Slot::Reserved { uid } => *uid,
            Slot::Live(e) => e.uid,
        }
    }
}

/// See the module documentation.
pub struct Registry {
    max_sessions: usize,
    max_per_uid: usize,
    slots: Mutex<HashMap<String, Slot>>,
    active: metrics::Gauge,
}

impl Registry {
    /// An empty registry with these limits.
    pub fn new(max_sessions: usize, max_per_uid: usize) -> Registry {
        let active = metrics::gauge!("auditrail_sessions_active");
        active.set(0.0);
        Registry {
            max_sessions,
            max_per_uid,
            slots: Mutex::new(HashMap::new()),
            active,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits `sid` for `uid`, or says why not.
    pub(crate) fn reserve(&self, sid: &str, uid: u32) -> Result<(), Refusal> {
        let mut slots = self.lock();
        if slots.contains_key(sid) {
            return Err(Refusal::Duplicate(sid.to_string()));
        }
        if slots.len() >= self.max_sessions {
            return Err(Refusal::TooMany(self.max_sessions));
        }
        if slots.values().filter(|s| s.uid() == uid).count() >= self.max_per_uid {
            return Err(Refusal::TooManyForUid {
                uid,
                max: self.max_per_uid,
            });
        }
        slots.insert(sid.to_string(), Slot::Reserved { uid });
        self.active.set(slots.len() as f64);
        Ok(())
    }

    /// Records that the reserved session is in its cgroup.
    pub(crate) fn fill(&self, entry: SessionEntry) {
        self.lock().insert(entry.sid.clone(), Slot::Live(entry));
    }

    /// Forgets `sid` (its connection closed, or joining failed).
    pub(crate) fn release(&self, sid: &str) {
        let mut slots = self.lock();
        slots.remove(sid);
        self.active.set(slots.len() as f64);
    }

    /// Runs `f` with the lock held, passing "is this sid admitted?".
    pub(crate) fn sweep_with<R>(&self, f: impl FnOnce(&dyn Fn(&str) -> bool) -> R) -> R {
        let slots = self.lock();
        f(&|sid| slots.contains_key(sid))
    }

    /// The live session `sid`.
    pub fn get(&self, sid: &str) -> Option<SessionEntry> {
        match self.lock().get(sid) {
            Some(Slot::Live(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// The live session whose cgroup id is `id`.
    pub fn by_cgroup_id(&self, id: u64) -> Option<SessionEntry> {
        self.lock().values().find_map(|s| match s {
            Slot::Live(e) if e.cgroup_id == id => Some(e.clone()),
            _ => None,
        })
    }

    /// Every live session.
    pub fn snapshot(&self) -> Vec<SessionEntry> {
        self.lock()
            .values()
            .filter_map(|s| match s {
                Slot::Live(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// Sessions admitted (live or joining).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is admitted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sid: &str, uid: u32, id: u64) -> SessionEntry {
        SessionEntry {
            sid: sid.into(),
            cgroup_id: id,
            cgroup_path: PathBuf::from(format!("/cg/auditrail/{sid}")),
            pid: 1,
            uid,
            started: SystemTime::now(),
        }
    }

    #[test]
    fn limits_and_lookups() {
        let r = Registry::new(3, 2);
        r.reserve("a", 1000).unwrap();
        assert_eq!(r.reserve("a", 1001), Err(Refusal::Duplicate("a".into())));
        r.reserve("b", 1000).unwrap();
        assert_eq!(
            r.reserve("c", 1000),
            Err(Refusal::TooManyForUid { uid: 1000, max: 2 })
        );
        r.reserve("c", 1001).unwrap();
        assert_eq!(r.reserve("d", 1002), Err(Refusal::TooMany(3)));
        assert_eq!(r.get("a"), None, "reserved is not live yet");
        r.fill(entry("a", 1000, 42));
        assert_eq!(r.by_cgroup_id(42).unwrap().sid, "a");
        assert_eq!(r.snapshot().len(), 1);
        assert!(r.sweep_with(|admitted| admitted("b") && !admitted("zz")));
        r.release("b");
        r.reserve("c2", 1000).unwrap();
        assert_eq!(r.len(), 3);
    }
}
