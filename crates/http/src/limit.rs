//! Rate limiting shared by every clone of a client: one [`governor`] budget and one
//! server-signal gate per (host, credential), plus a concurrency limit per host.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::{Clock, GovernorClock};
use crate::config::RateBudget;

type Gov = RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<governor::nanos::Nanos>>;

/// The limiter of one (host, credential).
#[derive(Debug)]
pub(crate) struct Limiter {
    budget: Option<Gov>,
    /// Monotonic time before which nothing may be sent (server said the budget is spent, or
    /// asked us to back off).
    blocked_until: Mutex<Duration>,
}

impl Limiter {
    /// Wait until a request may be sent: first the server's gate, then the budget.
    pub(crate) async fn ready(&self, clock: &dyn Clock, host: &str) {
        loop {
            let until = *self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
            let now = clock.monotonic();
            if until > now {
                tracing::debug!(target: "dovetail_http::ratelimit", host, wait_ms = (until - now).as_millis() as u64,
                    "waiting for the rate-limit window to reset");
                crate::observe::retry_wait(host, until - now);
                clock.sleep(until - now).await;
                continue;
            }
            match &self.budget {
                None => return,
                Some(g) => match g.check() {
                    Ok(()) => return,
                    Err(not_until) => {
                        let wait = not_until.wait_time_from(clock.monotonic().into());
                        clock.sleep(wait.max(Duration::from_millis(1))).await;
                    }
                },
            }
        }
    }

    /// Nothing is sent to this (host, credential) for `wait` from now (keeps a later gate).
    pub(crate) fn block_for(&self, clock: &dyn Clock, wait: Duration) {
        let until = clock.monotonic() + wait;
        let mut b = self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
        if until > *b {
            *b = until;
        }
    }
}

/// All limiters and host semaphores of a client and its clones.
#[derive(Debug)]
pub(crate) struct Limits {
    clock: Arc<dyn Clock>,
    budget: Option<RateBudget>,
    max_concurrency: usize,
    limiters: Mutex<HashMap<(String, String), Arc<Limiter>>>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Limits {
    pub(crate) fn new(clock: Arc<dyn Clock>, budget: Option<RateBudget>, max_concurrency: usize) -> Self {
        Limits {
            clock,
            budget,
            max_concurrency: max_concurrency.max(1),
            limiters: Mutex::default(),
            hosts: Mutex::default(),
        }
    }

    /// The limiter of (host, credential), created on first use.
    pub(crate) fn limiter(&self, host: &str, credential: &str) -> Arc<Limiter> {
        let mut map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((host.to_owned(), credential.to_owned()))
            .or_insert_with(|| {
                let budget = self
                    .budget
                    .and_then(quota)
                    .map(|q| RateLimiter::direct_with_clock(q, GovernorClock(self.clock.clone())));
                Arc::new(Limiter { budget, blocked_until: Mutex::new(Duration::ZERO) })
            })
            .clone()
    }

    /// A slot among the host's concurrent requests, held for one attempt.
    pub(crate) async fn permit(&self, host: &str) -> OwnedSemaphorePermit {
        let sem = {
            let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(host.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.max_concurrency))).clone()
        };
        // The semaphore is never closed, so acquiring cannot fail.
        match sem.acquire_owned().await {
            Ok(p) => p,
            Err(_) => unreachable!("host semaphores are never closed"),
        }
    }
}

fn quota(b: RateBudget) -> Option<Quota> {
    let period = b.per.checked_div(b.requests.max(1))?;
    let burst = NonZeroU32::new(b.burst.max(1))?;
    Quota::with_period(period).map(|q| q.allow_burst(burst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    #[tokio::test]
    async fn budget_spaces_requests_in_virtual_time() {
        let clock = FakeClock::new();
        let budget = RateBudget { requests: 2, per: Duration::from_secs(1), burst: 2 };
        let limits = Limits::new(clock.clone(), Some(budget), 4);
        let l = limits.limiter("h", "c");
        for _ in 0..4 {
            l.ready(clock.as_ref(), "h").await;
        }
        // Two in the burst, then one every 500 ms.
        let total: Duration = clock.sleeps().iter().sum();
        assert_eq!(total, Duration::from_millis(1000));
        assert!(Arc::ptr_eq(&l, &limits.limiter("h", "c")));
        l.block_for(clock.as_ref(), Duration::from_secs(30));
        l.ready(clock.as_ref(), "h").await;
        assert_eq!(clock.sleeps().last(), Some(&Duration::from_secs(30)));
    }
}
