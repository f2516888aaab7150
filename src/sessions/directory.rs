//! The cgroup → session directory the host events are enriched from: which session (sid, user, login,
//! server_id) a cgroup id belongs to. The pipeline fills it from the `session.start` / `session.end` events
//! its sources take in ([`crate::sources::ingest::Ingest::count`] shows every accepted batch to it), so no
//! source reads another source; the ebpf source reads it, and registers a [`Watcher`] that mirrors the
//! session cgroup ids into its kernel filter map as they come and go, before the `session.start` that
//! announced them reaches any sink.
//!
//! Trusted only as far as the kernel confirms it: a `session.start` can come from anyone allowed to write to a
//! source, so its `cgroup_id` is taken only when it is the id of `<session cgroups>/<sid>` (the directory the
//! agent's sessions socket, or a recorder running as root, made for that sid: see [`crate::sessions::cgroup`]).
//! Otherwise a forged start could pin another session's host events on a user of its choosing, or put any
//! cgroup (the host's root) into the kernel filter. A refused start is counted
//! (`auditrail_sessions_directory_refused_total{reason}`) and logged; the event itself still flows.
//!
//! Bounded: at most [`MAX_SESSIONS`] sessions; beyond it a start is refused, counted
//! (`auditrail_sessions_directory_refused_total`) and logged. An ended session stays [`GRACE`] longer, so that
//! host events still in the ring buffer when `session.end` passes are still tied to it.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
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
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Mutex<Inner>>,
    /// Where session cgroups are (`<mount>/<parent>`); `None`: no cgroup v2 here, so no start is taken.
    base: Option<Arc<PathBuf>>,
}

/// Why a `session.start`'s cgroup was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Its sid cannot name a session cgroup.
    BadSid,
    /// No session cgroup of that sid exists (any more).
    NoCgroup,
    /// The session cgroup of that sid has another id: a forged or stale start.
    OtherCgroup,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Refused::BadSid => "bad_sid",
            Refused::NoCgroup => "no_cgroup",
            Refused::OtherCgroup => "other_cgroup",
        }
    }
}

impl Directory {
    /// An empty directory that takes a session's cgroup only when it is `<base>/<sid>` (`None`: takes none).
    pub fn new(base: Option<PathBuf>) -> Directory {
        Directory {
            inner: Arc::default(),
            base: base.map(Arc::new),
        }
    }

    /// Whether `cgroup_id` is the id of the session cgroup the agent would have made for `sid`.
    fn confirm(&self, sid: &str, cgroup_id: u64) -> Result<(), Refused> {
        let base = self.base.as_deref().ok_or(Refused::NoCgroup)?;
        crate::sessions::sid::validate(sid).map_err(|_| Refused::BadSid)?;
        match std::fs::symlink_metadata(base.join(sid)) {
            Ok(m) if m.is_dir() && m.ino() == cgroup_id => Ok(()),
            Ok(_) => Err(Refused::OtherCgroup),
            Err(_) => Err(Refused::NoCgroup),
        }
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
        if let Err(why) = self.confirm(&session.sid, cgroup_id) {
            metrics::counter!("auditrail_sessions_directory_refused_total", "reason" => why.as_str())
                .increment(1);
            if why == Refused::OtherCgroup {
                tracing::warn!(sid = %session.sid, cgroup_id, reason = why.as_str(), "a session.start names a cgroup that is not its session's: its host events are not tied to it (a forged event, or a stale one)");
            } else {
                tracing::info!(sid = %session.sid, cgroup_id, reason = why.as_str(), "a session.start's cgroup is not a live session cgroup here: its host events are not tied to it");
            }
            return;
        }
        let mut inner = self.lock();
        let now = Instant::now();
        inner
            .by_cgroup
            .retain(|_, s| s.ended.is_none_or(|t| now.duration_since(t) < GRACE));
        if !inner.by_cgroup.contains_key(&cgroup_id) && inner.by_cgroup.len() >= MAX_SESSIONS {
            metrics::counter!("auditrail_sessions_directory_refused_total", "reason" => "full")
                .increment(1);
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

    /// A directory whose session cgroups are plain directories of a temporary base (the check is the same:
    /// the id is the inode of `<base>/<sid>`).
    fn with_sessions(sids: &[&str]) -> (tempfile::TempDir, Directory, Vec<u64>) {
        let base = tempfile::tempdir().unwrap();
        let ids = sids
            .iter()
            .map(|s| {
                let p = base.path().join(s);
                std::fs::create_dir(&p).unwrap();
                std::fs::metadata(&p).unwrap().ino()
            })
            .collect();
        let d = Directory::new(Some(base.path().to_path_buf()));
        (base, d, ids)
    }

    fn start(sid: &str, cgroup_id: u64) -> Event {
        ev(&format!(
            r#"{{"event":"session.start","time":"2024-01-01T00:00:00Z","sid":"{sid}","user":"alice","login":"root","server_id":"n1","cgroup_id":{cgroup_id}}}"#
        ))
    }

    #[test]
    fn start_and_end_fill_and_tell() {
        let (_base, d, ids) = with_sessions(&["s1"]);
        let id = ids[0];
        let log = Arc::new(Log::default());
        d.watch(log.clone());
        d.observe(&[
            start("s1", id),
            ev(r#"{"event":"session.start","time":"2024-01-01T00:00:00Z","sid":"s2","cgroup_id":null}"#),
            ev(&format!(
                r#"{{"event":"exec","time":"2024-01-01T00:00:00Z","sid":"s1","cgroup_id":{}}}"#,
                id + 1
            )),
        ]);
        assert_eq!(
            d.get(id),
            Some(HostSession {
                sid: "s1".into(),
                user: "alice".into(),
                login: "root".into(),
                server_id: "n1".into()
            })
        );
        assert_eq!(d.get(id + 1), None);
        d.observe(&[ev(
            r#"{"event":"session.end","time":"2024-01-01T00:00:01Z","sid":"s1"}"#,
        )]);
        assert_eq!(d.get(id).unwrap().sid, "s1", "kept for the grace period");
        assert_eq!(*log.0.lock().unwrap(), vec![(true, id), (false, id)]);
        let late = Arc::new(Log::default());
        d.watch(late.clone());
        assert!(
            late.0.lock().unwrap().is_empty(),
            "an ended session is not announced"
        );
    }

    #[test]
    fn a_start_is_taken_only_for_its_own_session_cgroup() {
        let (base, d, ids) = with_sessions(&["mine", "other"]);
        let (mine, other) = (ids[0], ids[1]);
        let outside = std::fs::metadata(base.path()).unwrap().ino();
        let log = Arc::new(Log::default());
        d.watch(log.clone());
        assert_eq!(d.confirm("mine", other), Err(Refused::OtherCgroup));
        assert_eq!(d.confirm("gone", mine), Err(Refused::NoCgroup));
        assert_eq!(d.confirm("..", outside), Err(Refused::BadSid));
        assert_eq!(d.confirm("a/b", mine), Err(Refused::BadSid));
        d.observe(&[
            start("mine", other),  // another session's cgroup, claimed by a forged start
            start("..", outside),  // the parent of every session cgroup
            start("nosuch", mine), // a sid with no cgroup
        ]);
        assert_eq!(d.get(other), None);
        assert_eq!(d.get(outside), None);
        assert_eq!(d.get(mine), None);
        assert!(
            log.0.lock().unwrap().is_empty(),
            "nothing reached the kernel filter"
        );
        d.observe(&[start("mine", mine)]);
        assert_eq!(d.get(mine).unwrap().sid, "mine");
        std::os::unix::fs::symlink(base.path().join("other"), base.path().join("link")).unwrap();
        assert_eq!(
            d.confirm("link", other),
            Err(Refused::OtherCgroup),
            "a symlink is not a session cgroup"
        );
        assert_eq!(
            Directory::new(None).confirm("mine", mine),
            Err(Refused::NoCgroup)
        );
    }
}
