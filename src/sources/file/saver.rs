//! Writing a file source's checkpoints off its task, as soon as acknowledgements move them.
//!
//! A checkpoint that waits for a timer makes every crash re-read everything acknowledged since the last tick;
//! in a crash loop of short lives that is most of the input, again and again. So the source starts a write as
//! soon as an acknowledgement moves a file's position, with two limits that keep the cost to about one write
//! per acknowledgement group (a disk buffer's fsync group, a sink's batch), never one per event: only one write
//! runs at a time (whatever is acknowledged meanwhile folds into the next one, which takes the newest
//! positions), and a write starts no sooner than `checkpoint_interval` after the previous one started.
//!
//! The write itself is [`Checkpoints::save`] (temporary file, fsync, rename, fsync of the directory) on the
//! blocking pool, so the reading loop never waits for a disk; a crash leaves the old or the new file, and
//! writes never overlap, so a newer checkpoint is never overwritten by an older one.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::checkpoint::{Checkpoints, Entry};

/// How long after a failed write the next one is tried.
const RETRY: Duration = Duration::from_secs(1);

/// The one checkpoint write a source may have running, and when the next may start.
pub(super) struct Saver {
    checkpoints: Arc<Checkpoints>,
    spacing: Duration,
    running: Option<JoinHandle<io::Result<()>>>,
    last_start: Option<Instant>,
    retry_at: Option<Instant>,
}

impl Saver {
    /// Writes to `checkpoints`, starting writes at least `spacing` apart.
    pub(super) fn new(checkpoints: Checkpoints, spacing: Duration) -> Saver {
        Saver {
            checkpoints: Arc::new(checkpoints),
            spacing,
            running: None,
            last_start: None,
            retry_at: None,
        }
    }

    /// The checkpoint file.
    pub(super) fn path(&self) -> &Path {
        self.checkpoints.path()
    }

    /// Whether a write is running.
    pub(super) fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// When the next write may start: `None` when it may start now (or as soon as the running one is done).
    pub(super) fn not_before(&self) -> Option<Instant> {
        let spaced = self.last_start.map(|t| t + self.spacing);
        let at = spaced.max(self.retry_at)?;
        (at > Instant::now()).then_some(at)
    }

    /// Starts writing `entries` in the background. Call only when not [`Self::busy`].
    pub(super) fn start(&mut self, entries: Vec<Entry>) {
        debug_assert!(self.running.is_none(), "one checkpoint write at a time");
        self.last_start = Some(Instant::now());
        let checkpoints = Arc::clone(&self.checkpoints);
        self.running = Some(tokio::task::spawn_blocking(move || {
            checkpoints.save(&entries)
        }));
    }

    /// Waits for the running write and returns its result; never completes when none runs (for `select!`).
    /// A failure holds the next write back for a while, so a failing disk is not hammered.
    pub(super) async fn finished(&mut self) -> io::Result<()> {
        let Some(running) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let result = match running.await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(format!(
                "checkpoint write task failed: {e}"
            ))),
        };
        self.running = None;
        self.retry_at = result.is_err().then(|| Instant::now() + RETRY);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::file::{FileKey, Fingerprint};

    fn entry(offset: u64) -> Entry {
        Entry {
            key: FileKey { dev: 1, ino: 2 },
            path: "/x.log".into(),
            offset,
            line: Some(offset),
            fingerprint: Fingerprint::default(),
        }
    }

    #[tokio::test]
    async fn writes_one_at_a_time_spaced_and_backs_off_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoints::new(dir.path(), "s");
        let mut saver = Saver::new(Checkpoints::new(dir.path(), "s"), Duration::from_secs(60));
        assert!(!saver.busy());
        assert_eq!(
            saver.not_before(),
            None,
            "the first write may start at once"
        );
        saver.start(vec![entry(5)]);
        assert!(saver.busy());
        saver.finished().await.unwrap();
        assert!(!saver.busy());
        assert_eq!(cp.load().unwrap()[&FileKey { dev: 1, ino: 2 }].offset, 5);
        assert!(
            saver.not_before().is_some(),
            "the next waits for the spacing"
        );

        // Spacing zero: the next write may start as soon as the previous one is done.
        let mut saver = Saver::new(Checkpoints::new(dir.path(), "s"), Duration::ZERO);
        saver.start(vec![entry(6)]);
        saver.finished().await.unwrap();
        assert_eq!(saver.not_before(), None);

        // A write that fails (the checkpoint directory is a file) holds the next one back.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"").unwrap();
        let mut saver = Saver::new(Checkpoints::new(&blocked, "s"), Duration::ZERO);
        saver.start(vec![entry(7)]);
        assert!(saver.finished().await.is_err());
        assert!(saver.not_before().is_some());
    }
}
