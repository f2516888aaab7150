//! Retry timing shared by every sink: exponential backoff with full jitter, capped, and a server's
//! `Retry-After` taking precedence when it asks for longer.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS architecture blog): the n-th wait
/// is uniform in `[0, min(cap, base * 2^n)]`, so that a fleet of agents does not retry in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never waiting more than `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next wait. `retry_after`, when the server sent one, is a floor.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20));
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = exp.min(self.cap);
        let jittered = rand::rng().random_range(Duration::ZERO..=ceiling);
        match retry_after {
            Some(r) if r > jittered => r.min(self.cap.max(r)),
            _ => jittered,
        }
    }

    /// How many waits have been handed out since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_cap() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        for n in 0..30 {
            let d = b.next_delay(None);
            let ceiling =
                Duration::from_millis(10 * (1u64 << n.min(20))).min(Duration::from_millis(100));
            assert!(d <= ceiling, "attempt {n}: {d:?} > {ceiling:?}");
        }
        assert_eq!(b.attempts(), 30);
        b.reset();
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(5));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }
}
