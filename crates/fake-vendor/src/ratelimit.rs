//! Token buckets, one per credential.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::RateLimit;

/// Float slack so a client that waited exactly the advertised time is not refused by rounding.
const EPSILON: f64 = 1e-9;

/// The limiter's answer, with what the `X-RateLimit-*` and `Retry-After` headers say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    /// `X-RateLimit-Limit`: the burst.
    pub(crate) limit: u32,
    /// `X-RateLimit-Remaining`: whole tokens left after this request.
    pub(crate) remaining: u64,
    /// `X-RateLimit-Reset`: epoch second by which at least one whole token is available.
    pub(crate) reset: u64,
    /// `Retry-After` for a refused request: whole seconds until one token is available.
    pub(crate) retry_after: u64,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub(crate) struct Buckets {
    limit: RateLimit,
    buckets: HashMap<String, Bucket>,
}

impl Buckets {
    pub(crate) fn new(limit: RateLimit) -> Buckets {
        Buckets { limit, buckets: HashMap::new() }
    }

    /// Takes one token from `key`'s bucket if it has one; a refusal takes nothing.
    pub(crate) fn take(&mut self, key: &str, now: Instant) -> Decision {
        let RateLimit { per_second, burst } = self.limit;
        let capacity = f64::from(burst.max(1));
        let bucket = self.buckets.entry(key.to_owned()).or_insert_with(|| Bucket { tokens: capacity, last: now });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.last = now;
        let allowed = bucket.tokens >= 1.0 - EPSILON;
        if allowed {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        }
        let wait =
            if bucket.tokens >= 1.0 - EPSILON || per_second <= 0.0 { 0.0 } else { (1.0 - bucket.tokens) / per_second };
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Decision {
            allowed,
            limit: burst,
            remaining: (bucket.tokens + EPSILON).floor() as u64,
            reset: (wall + wait).ceil() as u64,
            retry_after: wait.ceil().max(1.0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_refusal_then_refill() {
        let mut b = Buckets::new(RateLimit { per_second: 2.0, burst: 3 });
        let t0 = Instant::now();
        let remaining: Vec<u64> = (0..3).map(|_| b.take("k", t0).remaining).collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = b.take("k", t0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, 1);
        // The refusal took nothing: half a second later exactly one token is back.
        assert!(b.take("k", t0 + Duration::from_millis(500)).allowed);
        assert!(!b.take("k", t0 + Duration::from_millis(500)).allowed);
        assert!(b.take("other", t0).allowed);
    }
}
