//! Requests per client IP address: a token bucket per address (`governor`), checked on the request head so
//! a client over its rate costs no body read and no parsing.

use std::net::IpAddr;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::config::RateLimitConfig;

/// Above this many tracked addresses the table is pruned of full buckets on every check, so a client that
/// cycles through addresses cannot grow it without bound.
const MAX_TRACKED: usize = 100_000;

/// The per-address limiter of one source.
pub struct ClientLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl ClientLimiter {
    /// A limiter with `config`'s rate and burst.
    pub fn new(config: RateLimitConfig) -> ClientLimiter {
        let quota = Quota::per_second(config.per_second).allow_burst(config.burst);
        ClientLimiter {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when `ip` may send a request now, else how long until it may.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.limiter.len() > MAX_TRACKED {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets addresses whose bucket is full again (called now and then, to bound memory).
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn each_address_has_its_own_bucket() {
        let l = ClientLimiter::new(RateLimitConfig {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            l.check(a).unwrap();
        }
        let wait = l.check(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        l.check(b).unwrap();
    }
}
