//! Per-key token-bucket rate limiting.
//!
//! Keys are API key ids, or the peer address without authentication (and for counting failed
//! authentications). A request is admitted when its bucket holds one token; a batch's further
//! items are then charged as well ([`RateLimiter::charge`]), possibly into debt, so the
//! sustained rate counts scans, not calls, while a batch larger than the burst is never
//! starved.
//!
//! Time is passed in rather than read, so tests drive the limiter with synthetic instants and
//! the behaviour is deterministic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Slack for floating-point refill arithmetic, so a client that waits exactly the advertised
/// `Retry-After` is admitted rather than rejected by a rounding hair.
const EPSILON: f64 = 1e-9;

/// How fast a key may call and how much it may save up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests that may be made back to back after being idle.
    pub burst: u32,
}

/// Why a [`RateLimit`] was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RateLimitError {
    #[error("rate limit per_second must be a finite number > 0, got {0}")]
    PerSecond(f64),
    #[error("rate limit burst must be at least 1")]
    Burst,
}

impl RateLimit {
    /// Checks the limit at configuration time so a typo fails startup instead of silently
    /// blocking or admitting everyone.
    pub fn validate(&self) -> Result<(), RateLimitError> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(RateLimitError::PerSecond(self.per_second));
        }
        if self.burst < 1 {
            return Err(RateLimitError::Burst);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Tokens available at `now`; never moves time backwards for out-of-order callers.
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        if now > self.last {
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * rate).min(burst);
            self.last = now;
        }
    }
}

/// Token buckets keyed by API key id.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Creates a limiter; call [`RateLimit::validate`] first.
    ///
    /// An invalid limit is clamped (burst to 1, rate to the smallest positive value) rather
    /// than panicking, which errs on the side of refusing traffic.
    pub fn new(limit: RateLimit) -> Self {
        let rate = if limit.per_second.is_finite() && limit.per_second > 0.0 {
            limit.per_second
        } else {
            f64::MIN_POSITIVE
        };
        RateLimiter {
            rate,
            burst: f64::from(limit.burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`.
    ///
    /// On refusal returns how long until a token is available, rounded up to whole
    /// milliseconds and at least 1 ms, so it can be sent as `Retry-After` and a client that
    /// honours it will be admitted.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        // A panic elsewhere while holding the lock leaves the map consistent enough (each
        // update is a couple of field writes), so keep serving rather than cascade the panic.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match buckets.get_mut(key) {
            Some(b) => b,
            None => buckets.entry(key.to_string()).or_insert(Bucket {
                tokens: self.burst,
                last: now,
            }),
        };
        bucket.refill(now, self.rate, self.burst);
        if bucket.tokens >= 1.0 - EPSILON {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            return Ok(());
        }
        Err(self.wait(bucket.tokens))
    }

    /// Charges `n` more tokens to `key` without an admission check: the bucket may go into
    /// debt (down to `-n`), which later requests wait out. Used for a batch's items after the
    /// first, once the request was admitted by [`RateLimiter::check`].
    pub fn charge(&self, key: &str, n: u32, now: Instant) {
        if n == 0 {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        bucket.refill(now, self.rate, self.burst);
        bucket.tokens -= f64::from(n);
    }

    /// Whether [`RateLimiter::check`] would admit `key` now, without taking a token: `Err`
    /// carries how long until it would.
    pub fn peek(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bucket) = buckets.get_mut(key) else {
            return Ok(());
        };
        bucket.refill(now, self.rate, self.burst);
        if bucket.tokens >= 1.0 - EPSILON {
            Ok(())
        } else {
            Err(self.wait(bucket.tokens))
        }
    }

    fn wait(&self, tokens: f64) -> Duration {
        let wait_ms = ((1.0 - tokens) / self.rate * 1000.0 - EPSILON * 1000.0).ceil();
        let wait_ms = if wait_ms.is_finite() && wait_ms < u64::MAX as f64 {
            (wait_ms as u64).max(1)
        } else {
            u64::MAX
        };
        Duration::from_millis(wait_ms)
    }

    /// Drops buckets that have been idle for longer than `idle` and are full again.
    ///
    /// A full bucket is indistinguishable from a fresh one, so dropping it loses nothing; this
    /// keeps memory bounded when many keys come and go.
    pub fn sweep(&self, now: Instant, idle: Duration) {
        let (rate, burst) = (self.rate, self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last);
            let full = b.tokens + elapsed.as_secs_f64() * rate >= burst - EPSILON;
            !(full && elapsed > idle)
        });
    }

    /// Number of keys currently tracked, for metrics.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        let limit = RateLimit { per_second, burst };
        limit.validate().unwrap();
        RateLimiter::new(limit)
    }

    #[test]
    fn validate_rejects_bad_limits() {
        let bad = |per_second, burst| RateLimit { per_second, burst }.validate().is_err();
        assert!(bad(0.0, 1));
        assert!(bad(-1.0, 1));
        assert!(bad(f64::NAN, 1));
        assert!(bad(f64::INFINITY, 1));
        assert!(bad(1.0, 0));
        assert!(!bad(0.5, 1));
    }

    #[test]
    fn burst_then_rejected() {
        let rl = limiter(1.0, 3);
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(rl.check("a", t), Ok(()));
        }
        assert_eq!(rl.check("a", t), Err(Duration::from_secs(1)));
    }

    #[test]
    fn refills_over_time_up_to_burst() {
        let rl = limiter(2.0, 2);
        let t = Instant::now();
        assert!(rl.check("a", t).is_ok());
        assert!(rl.check("a", t).is_ok());
        assert!(rl.check("a", t).is_err());
        // Half a second at 2/s is one token.
        let t1 = t + Duration::from_millis(500);
        assert!(rl.check("a", t1).is_ok());
        assert!(rl.check("a", t1).is_err());
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(100);
        assert!(rl.check("a", t2).is_ok());
        assert!(rl.check("a", t2).is_ok());
        assert!(rl.check("a", t2).is_err());
    }

    #[test]
    fn retry_after_is_exact_and_honouring_it_works() {
        let rl = limiter(3.0, 1);
        let t = Instant::now();
        assert!(rl.check("a", t).is_ok());
        let wait = rl.check("a", t).unwrap_err();
        // 1/3 s rounds up to 334 ms.
        assert_eq!(wait, Duration::from_millis(334));
        let later = t + Duration::from_millis(100);
        assert_eq!(rl.check("a", later), Err(Duration::from_millis(234)));
        assert!(rl.check("a", t + wait).is_ok());
    }

    #[test]
    fn retry_after_is_at_least_one_ms() {
        let rl = limiter(1_000_000.0, 1);
        let t = Instant::now();
        assert!(rl.check("a", t).is_ok());
        assert_eq!(rl.check("a", t), Err(Duration::from_millis(1)));
    }

    #[test]
    fn charged_items_are_debt_that_later_requests_wait_out() {
        let rl = limiter(1.0, 4);
        let t = Instant::now();
        // A batch of 6: admitted on one token, 5 more charged: 4 - 6 = -2.
        assert!(rl.check("a", t).is_ok());
        rl.charge("a", 5, t);
        assert_eq!(rl.peek("a", t), Err(Duration::from_secs(3)));
        assert_eq!(rl.check("a", t), Err(Duration::from_secs(3)));
        assert!(rl.check("a", t + Duration::from_secs(3)).is_ok());
        // peek takes nothing.
        let u = t + Duration::from_secs(100);
        for _ in 0..10 {
            assert!(rl.peek("b", u).is_ok());
        }
        assert!(rl.peek("a", u).is_ok());
        assert_eq!(rl.tracked(), 1);
    }

    #[test]
    fn keys_are_independent() {
        let rl = limiter(1.0, 1);
        let t = Instant::now();
        assert!(rl.check("a", t).is_ok());
        assert!(rl.check("a", t).is_err());
        assert!(rl.check("b", t).is_ok());
        assert!(rl.check("b", t).is_err());
        assert_eq!(rl.tracked(), 2);
    }

    #[test]
    fn time_going_backwards_does_not_mint_tokens() {
        let rl = limiter(1.0, 1);
        let t = Instant::now() + Duration::from_secs(10);
        assert!(rl.check("a", t).is_ok());
        assert!(rl.check("a", t - Duration::from_secs(5)).is_err());
        assert!(rl.check("a", t).is_err());
        assert!(rl.check("a", t + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn sweep_drops_only_idle_full_buckets() {
        let rl = limiter(1.0, 5);
        let t = Instant::now();
        for _ in 0..5 {
            assert!(rl.check("drained", t).is_ok());
        }
        assert!(rl.check("fresh", t).is_ok());
        let t1 = t + Duration::from_secs(3);
        assert!(rl.check("recent", t1).is_ok());
        // At t1: "drained" has 3 of 5 tokens, "fresh" is full (4 + 3 capped), "recent" is new.
        rl.sweep(t1, Duration::from_secs(2));
        assert_eq!(rl.tracked(), 2);
        // Sweeping did not reset "drained": it still has only 3 tokens.
        for _ in 0..3 {
            assert!(rl.check("drained", t1).is_ok());
        }
        assert!(rl.check("drained", t1).is_err());
        rl.sweep(t1 + Duration::from_secs(60), Duration::from_secs(2));
        assert_eq!(rl.tracked(), 0);
    }

    #[test]
    fn poisoned_lock_does_not_panic() {
        let rl = std::sync::Arc::new(limiter(1.0, 1));
        let rl2 = rl.clone();
        let _ = std::thread::spawn(move || {
            let _guard = rl2.buckets.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(rl.buckets.is_poisoned());
        let t = Instant::now();
        assert!(rl.check("a", t).is_ok());
        rl.sweep(t, Duration::ZERO);
        assert_eq!(rl.tracked(), 1);
    }

    #[test]
    fn invalid_limit_is_clamped_not_panicking() {
        let rl = RateLimiter::new(RateLimit {
            per_second: 0.0,
            burst: 0,
        });
        let t = Instant::now();
        assert!(rl.check("a", t).is_ok());
        assert!(rl.check("a", t).is_err());
    }

    proptest::proptest! {
        /// Over any schedule, admissions never exceed what the bucket could have supplied, and
        /// waiting the advertised retry-after always gets the caller in.
        #[test]
        fn never_exceeds_budget_and_retry_after_is_honoured(
            per_second in 0.1f64..1000.0,
            burst in 1u32..20,
            steps in proptest::collection::vec(0u64..2000, 1..200),
        ) {
            let rl = limiter(per_second, burst);
            let start = Instant::now();
            let mut t = start;
            let mut admitted = 0u64;
            for step in steps {
                t += Duration::from_millis(step);
                match rl.check("k", t) {
                    Ok(()) => admitted += 1,
                    Err(wait) => {
                        proptest::prop_assert!(wait >= Duration::from_millis(1));
                        t += wait;
                        proptest::prop_assert!(rl.check("k", t).is_ok());
                        admitted += 1;
                    }
                }
                let budget = f64::from(burst) + t.duration_since(start).as_secs_f64() * per_second;
                proptest::prop_assert!(admitted as f64 <= budget + 1e-6);
            }
        }
    }
}
