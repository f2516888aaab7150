//! The uploader's memory budget: how many bytes of request bodies (whole small files, parts of large ones)
//! may be held in memory at once, over all uploads. Without it the RSS grows with `concurrency` ×
//! `part_concurrency` × `part_size` (180 MB in the benchmark with 3 large files at once); with it, it stays
//! near the budget whatever those are.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of bodies in memory, counted in KiB.
#[derive(Clone, Debug)]
pub struct Budget {
    sem: Arc<Semaphore>,
    kib: u32,
}

impl Budget {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: u64) -> Budget {
        let kib = bytes.div_ceil(1024).clamp(1, u32::MAX as u64 >> 3) as u32;
        Budget {
            sem: Arc::new(Semaphore::new(kib as usize)),
            kib,
        }
    }

    /// Waits until `bytes` more may be held; they are given back when the permit is dropped. A body larger
    /// than the whole budget takes all of it (it then goes alone, rather than never).
    pub async fn hold(&self, bytes: u64) -> OwnedSemaphorePermit {
        let kib = bytes.div_ceil(1024).clamp(1, self.kib as u64) as u32;
        self.sem
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("the budget's semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn holds_wait_for_room_and_an_oversized_body_goes_alone() {
        let b = Budget::new(10 << 10);
        let first = b.hold(6 << 10).await;
        // 6 + 6 > 10: the second waits until the first is given back.
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.hold(6 << 10)).await;
        assert!(waiting.is_err(), "a hold beyond the budget must wait");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), b.hold(6 << 10))
            .await
            .expect("room once the first is back");
        drop(second);
        // Larger than the whole budget: takes all of it instead of waiting forever.
        let all = tokio::time::timeout(Duration::from_secs(5), b.hold(1 << 30))
            .await
            .expect("an oversized body is let through alone");
        assert_eq!(b.sem.available_permits(), 0);
        drop(all);
        assert_eq!(b.sem.available_permits(), 10);
    }
}
