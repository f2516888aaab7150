//! The open connections of one http source, and which to close first when there are too many.
//!
//! Every connection is registered with its state: `Fresh` (accepted, handshake or request head not complete
//! yet), `Idle` (kept alive between requests) or `Busy` (a complete request head arrived and the request is
//! being served). Only fresh and idle connections are ever shed: at `max_connections`, when the process runs
//! out of file descriptors, and by the reaper once they exceed their timeout. So a crowd of silent or
//! half-sent connections costs a bounded number of descriptors and never locks out a client that sends its
//! request promptly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Why a connection was closed by the agent rather than by its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShedReason {
    /// `max_connections` was reached and a newer connection took its place.
    Cap,
    /// The process ran out of file descriptors (EMFILE/ENFILE) with connections waiting to be accepted.
    Descriptors,
    /// No complete request head within `header_read_timeout`.
    HeaderTimeout,
    /// Idle between requests for longer than `idle_timeout`.
    IdleTimeout,
}

impl ShedReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::Cap => "max_connections",
            ShedReason::Descriptors => "out_of_descriptors",
            ShedReason::HeaderTimeout => "header_read_timeout",
            ShedReason::IdleTimeout => "idle_timeout",
        }
    }
}

#[derive(Clone, Copy)]
enum State {
    Fresh(Instant),
    Idle(Instant),
    Busy,
}

struct Entry {
    state: State,
    shed: Arc<Notify>,
}

/// The registry of open connections.
pub struct Conns {
    entries: Mutex<(u64, HashMap<u64, Entry>)>,
    closed: Notify,
}

/// One registered connection; dropping it unregisters.
pub struct Conn {
    id: u64,
    conns: Arc<Conns>,
    /// Fires when the agent decided to close this connection.
    pub shed: Arc<Notify>,
}

/// Marks a connection busy while it lives; idle again when dropped.
pub struct BusyGuard {
    id: u64,
    conns: Arc<Conns>,
}

impl Conns {
    /// An empty registry.
    pub fn new() -> Arc<Conns> {
        Arc::new(Conns {
            entries: Mutex::new((0, HashMap::new())),
            closed: Notify::new(),
        })
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().1.len()
    }

    /// Registers a just-accepted connection.
    pub fn register(self: &Arc<Self>) -> Conn {
        let shed = Arc::new(Notify::new());
        let mut g = self.entries.lock().unwrap();
        g.0 += 1;
        let id = g.0;
        g.1.insert(
            id,
            Entry {
                state: State::Fresh(Instant::now()),
                shed: Arc::clone(&shed),
            },
        );
        drop(g);
        Conn {
            id,
            conns: Arc::clone(self),
            shed,
        }
    }

    fn set(&self, id: u64, state: State) {
        if let Some(e) = self.entries.lock().unwrap().1.get_mut(&id) {
            e.state = state;
        }
    }

    /// Closes the fresh or idle connection that has waited longest; false when every connection is busy.
    /// The connection leaves the registry at once; its descriptor closes when its task sees the signal (wait
    /// with [`Conns::closed`]).
    pub fn shed_oldest(&self) -> bool {
        let mut g = self.entries.lock().unwrap();
        let oldest =
            g.1.iter()
                .filter_map(|(id, e)| match e.state {
                    State::Fresh(t) | State::Idle(t) => Some((t, *id)),
                    State::Busy => None,
                })
                .min();
        match oldest.and_then(|(_, id)| g.1.remove(&id)) {
            Some(e) => {
                e.shed.notify_one();
                true
            }
            None => false,
        }
    }

    /// Closes every connection over its timeout; returns how many of each kind.
    pub fn shed_expired(&self, header: Duration, idle: Duration) -> (usize, usize) {
        let now = Instant::now();
        let mut g = self.entries.lock().unwrap();
        let mut counts = (0, 0);
        g.1.retain(|_, e| {
            let expired = match e.state {
                State::Fresh(t) if now.duration_since(t) >= header => {
                    counts.0 += 1;
                    true
                }
                State::Idle(t) if now.duration_since(t) >= idle => {
                    counts.1 += 1;
                    true
                }
                _ => false,
            };
            if expired {
                e.shed.notify_one();
            }
            !expired
        });
        counts
    }

    /// Completes when some connection task has finished (and closed its descriptor).
    pub async fn closed(&self) {
        self.closed.notified().await
    }
}

impl Conn {
    /// A handle that can mark this connection busy from the request service.
    pub fn marker(&self) -> Marker {
        Marker {
            id: self.id,
            conns: Arc::clone(&self.conns),
        }
    }
}

/// Marks one connection busy from inside its service.
#[derive(Clone)]
pub struct Marker {
    id: u64,
    conns: Arc<Conns>,
}

impl Marker {
    /// Marks the connection busy until the guard is dropped (a complete request head is being served).
    pub fn busy(&self) -> BusyGuard {
        self.conns.set(self.id, State::Busy);
        BusyGuard {
            id: self.id,
            conns: Arc::clone(&self.conns),
        }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.conns.set(self.id, State::Idle(Instant::now()));
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.conns.entries.lock().unwrap().1.remove(&self.id);
        self.conns.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_the_oldest_waiting_connection_never_a_busy_one() {
        let conns = Conns::new();
        let a = conns.register();
        std::thread::sleep(Duration::from_millis(2));
        let b = conns.register();
        std::thread::sleep(Duration::from_millis(2));
        let c = conns.register();
        let _busy = a.marker().busy();
        assert!(conns.shed_oldest());
        assert_eq!(conns.len(), 2);
        // b was the oldest not busy: its signal fired (a stored permit), c's did not.
        let fired = |n: &Arc<Notify>| futures_now(n.notified());
        assert!(fired(&b.shed));
        assert!(!fired(&c.shed));
        assert!(conns.shed_oldest());
        assert!(!conns.shed_oldest(), "only the busy one is left");
        assert_eq!(conns.len(), 1);
        drop((b, c));
        drop(_busy);
        // Once idle again, a can be shed by the idle timeout.
        assert_eq!(
            conns.shed_expired(Duration::from_secs(60), Duration::ZERO),
            (0, 1)
        );
        assert_eq!(conns.len(), 0);
        drop(a);
    }

    fn futures_now(f: impl std::future::Future<Output = ()>) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(10), f)
                .await
                .is_ok()
        })
    }
}
