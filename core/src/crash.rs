//! Test-only crash hook: aborts the process at a named step of a durable path — the disk buffer's write and
//! acknowledgement path, the integrity chain's numbering, state write and hand-over, seals and key evolution —
//! so that fault tests can kill the agent between any two steps and check that a restart loses nothing
//! acknowledged, replays nothing already acknowledged by the sink, and never gives a chain `seq` to two contents.
//!
//! `AUDITRAIL_CRASH_AT` names the step (one of [`CRASH_POINTS`]); `AUDITRAIL_CRASH_AFTER=N` aborts the N-th time
//! the step is reached (default 1). Both are read once, and only by a build with the `crash-points` feature
//! (core's own unit tests have it too): without it [`point`] is an empty inline function, so the release binary
//! has no hook and no trace of these variables. The process calls [`std::process::abort`].

#[cfg(any(test, feature = "crash-points"))]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(any(test, feature = "crash-points"))]
use std::sync::OnceLock;

/// A step at which a crash can be requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Records written to the segment, before the fsync.
    AfterWrite,
    /// Records fsynced, before the sources are acknowledged.
    AfterFsync,
    /// A sink acknowledgement processed, before the cursor is written.
    AfterAck,
    /// The temporary cursor file written and fsynced, before the rename.
    AfterCursorWrite,
    /// The cursor renamed into place, before the directory fsync.
    AfterCursorRename,
    /// The cursor durable, before acknowledged segments are deleted.
    BeforeUnlink,
    /// Acknowledged segments deleted.
    AfterUnlink,
    /// The chain tails of the segments about to be deleted written, before the unlink.
    AfterTailsWrite,
    /// A batch numbered in memory, before the chain state is written.
    ChainAfterNumber,
    /// The chain state written and synced, before the numbered batch is handed to the buffers.
    ChainAfterStateWrite,
    /// A numbered batch handed to every buffer.
    ChainAfterDeliver,
    /// A timer seal handed to the buffers, before the key evolves.
    SealAfterDeliver,
    /// The next epoch's key file written and synced, before the old one is wiped.
    KeyAfterWrite,
    /// The old key file wiped, before the new one is renamed over it.
    KeyAfterWipe,
    /// The new key file renamed into place, before the directory is synced.
    KeyAfterRename,
}

/// The disk buffer's steps, in path order: what its fault tests iterate over, so a new step is tested everywhere.
pub const BUFFER_POINTS: [&str; 8] = [
    "after_write",
    "after_fsync",
    "after_ack",
    "after_cursor_write",
    "after_cursor_rename",
    "before_unlink",
    "after_tails_write",
    "after_unlink",
];

/// Every step's name, in path order (the disk buffer's, then the chain's, the sealer's and the key's).
pub const CRASH_POINTS: [&str; 15] = [
    "after_write",
    "after_fsync",
    "after_ack",
    "after_cursor_write",
    "after_cursor_rename",
    "before_unlink",
    "after_tails_write",
    "after_unlink",
    "chain_after_number",
    "chain_after_state_write",
    "chain_after_deliver",
    "seal_after_deliver",
    "key_after_write",
    "key_after_wipe",
    "key_after_rename",
];

impl CrashPoint {
    /// The step's name, as `AUDITRAIL_CRASH_AT` gives it.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterWrite => "after_write",
            CrashPoint::AfterFsync => "after_fsync",
            CrashPoint::AfterAck => "after_ack",
            CrashPoint::AfterCursorWrite => "after_cursor_write",
            CrashPoint::AfterCursorRename => "after_cursor_rename",
            CrashPoint::BeforeUnlink => "before_unlink",
            CrashPoint::AfterUnlink => "after_unlink",
            CrashPoint::AfterTailsWrite => "after_tails_write",
            CrashPoint::ChainAfterNumber => "chain_after_number",
            CrashPoint::ChainAfterStateWrite => "chain_after_state_write",
            CrashPoint::ChainAfterDeliver => "chain_after_deliver",
            CrashPoint::SealAfterDeliver => "seal_after_deliver",
            CrashPoint::KeyAfterWrite => "key_after_write",
            CrashPoint::KeyAfterWipe => "key_after_wipe",
            CrashPoint::KeyAfterRename => "key_after_rename",
        }
    }
}

#[cfg(any(test, feature = "crash-points"))]
struct Target {
    name: String,
    after: u64,
}

#[cfg(any(test, feature = "crash-points"))]
static TARGET: OnceLock<Option<Target>> = OnceLock::new();
#[cfg(any(test, feature = "crash-points"))]
static HITS: AtomicU64 = AtomicU64::new(0);

#[cfg(any(test, feature = "crash-points"))]
fn target() -> Option<&'static Target> {
    TARGET
        .get_or_init(|| {
            let name = std::env::var("AUDITRAIL_CRASH_AT").ok()?;
            let after = std::env::var("AUDITRAIL_CRASH_AFTER")
                .ok()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(1u64)
                .max(1);
            Some(Target { name, after })
        })
        .as_ref()
}

/// Aborts the process if the test hook asks for a crash at `point` (and this is the N-th time it is reached).
#[cfg(any(test, feature = "crash-points"))]
pub fn point(point: CrashPoint) {
    let Some(t) = target() else {
        return;
    };
    if t.name == point.name() && HITS.fetch_add(1, Ordering::AcqRel) + 1 >= t.after {
        eprintln!(
            "auditrail: AUDITRAIL_CRASH_AT={} reached: aborting (test hook)",
            t.name
        );
        std::process::abort();
    }
}

/// Without the `crash-points` feature there is no hook: this compiles away.
#[cfg(not(any(test, feature = "crash-points")))]
#[inline(always)]
pub fn point(_point: CrashPoint) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_names_are_exactly_the_steps() {
        let all = [
            CrashPoint::AfterWrite,
            CrashPoint::AfterFsync,
            CrashPoint::AfterAck,
            CrashPoint::AfterCursorWrite,
            CrashPoint::AfterCursorRename,
            CrashPoint::BeforeUnlink,
            CrashPoint::AfterTailsWrite,
            CrashPoint::AfterUnlink,
            CrashPoint::ChainAfterNumber,
            CrashPoint::ChainAfterStateWrite,
            CrashPoint::ChainAfterDeliver,
            CrashPoint::SealAfterDeliver,
            CrashPoint::KeyAfterWrite,
            CrashPoint::KeyAfterWipe,
            CrashPoint::KeyAfterRename,
        ];
        let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
        assert_eq!(names, CRASH_POINTS);
        assert_eq!(names[..BUFFER_POINTS.len()], BUFFER_POINTS);
    }
}
