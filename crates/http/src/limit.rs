//! Rate limiting shared by every clone of a client: one [`governor`] budget and one
//! server-signal gate per (host, credential), plus a concurrency limit per host.
//!
//! A limiter lets a request go when, in this order: the **gate** is open (the server said
//! `Remaining: 0` with a reset, or sent `Retry-After`: nothing goes until then), the
//! configured **budget** has a cell, and the request's **pacing** slot has come.
//!
//! Pacing is the adaptive slow-down for a 429 that carries no wait header (no
//! `Retry-After`, no reset): the server says "too fast" without saying how fast is fine.
//! Rule: such a 429 (1) closes the gate for the retry's computed backoff, so every request
//! on this (host, credential) waits as a group instead of each finding out with its own
//! 429, and (2) halves the permitted rate: the minimum spacing between sends becomes
//! `max(2 × spacing, 2 × observed gap between sends, 10 ms)`, capped at 10 s. Each success
//! (2xx or 304) then shortens the spacing by 1/16 (≈6 % more rate per success) and below
//! 1 ms pacing is off again. A 429 with a wait header only closes the gate: the server
//! said exactly when to come back.

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

/// Shortest spacing set by a bare 429.
const MIN_SPACING: Duration = Duration::from_millis(10);
/// Longest spacing.
const MAX_SPACING: Duration = Duration::from_secs(10);
/// Below this the spacing is dropped.
const NO_SPACING: Duration = Duration::from_millis(1);

/// The limiter of one (host, credential).
#[derive(Debug)]
pub(crate) struct Limiter {
    budget: Option<Gov>,
    /// Monotonic time before which nothing may be sent (server said the budget is spent, or
    /// asked us to back off).
    blocked_until: Mutex<Duration>,
    pace: Mutex<Pace>,
}

/// Adaptive spacing after header-less 429s (see the module docs).
#[derive(Debug, Default)]
struct Pace {
    /// Minimum time between two sends (zero: not pacing).
    spacing: Duration,
    /// The next free send slot.
    next_at: Duration,
    /// When the last request was let go.
    last_sent: Option<Duration>,
    /// Moving average of the time between unhindered sends (weight 1/8 for the newest).
    gap: Duration,
    /// Whether `gap` holds a measurement yet.
    measured: bool,
}

impl Limiter {
    /// Wait until a request may be sent: first the server's gate, then the budget.
    pub(crate) async fn ready(&self, clock: &dyn Clock, host: &str) {
        let mut waited = false;
        loop {
            let until = *self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
            let now = clock.monotonic();
            if until > now {
                tracing::debug!(target: "dovetail_http::ratelimit", host, wait_ms = (until - now).as_millis() as u64,
                    "waiting for the rate-limit window to reset");
                crate::observe::retry_wait(host, until - now);
                clock.sleep(until - now).await;
                waited = true;
                continue;
            }
            if let Some(g) = &self.budget
                && let Err(not_until) = g.check()
            {
                let wait = not_until.wait_time_from(clock.monotonic().into());
                clock.sleep(wait.max(Duration::from_millis(1))).await;
                continue;
            }
            break;
        }
        let slot = {
            let mut p = self.lock_pace();
            let now = clock.monotonic();
            // Gaps from a closed gate or from pacing say nothing about the rate the caller
            // (or the budget) sends at: only the others are measured.
            if let Some(last) = p.last_sent.filter(|_| !waited && p.spacing.is_zero()) {
                let gap = now.saturating_sub(last);
                p.gap = if p.measured { (p.gap * 7 + gap) / 8 } else { gap };
                p.measured = true;
            }
            p.last_sent = Some(now);
            if p.spacing.is_zero() {
                return;
            }
            let slot = p.next_at.max(now);
            p.next_at = slot + p.spacing;
            slot
        };
        let now = clock.monotonic();
        if slot > now {
            tracing::debug!(target: "dovetail_http::ratelimit", host, wait_ms = (slot - now).as_millis() as u64,
                "pacing after a 429 without a wait header");
            crate::observe::retry_wait(host, slot - now);
            clock.sleep(slot - now).await;
        }
    }

    /// A 429 without any wait header, whose retry waits `wait`: close the gate for `wait`
    /// and halve the permitted rate (see the module docs).
    pub(crate) fn slow_down(&self, clock: &dyn Clock, host: &str, wait: Duration) {
        self.block_for(clock, wait);
        let mut p = self.lock_pace();
        p.spacing = (p.spacing * 2).max(p.gap * 2).clamp(MIN_SPACING, MAX_SPACING);
        tracing::info!(target: "dovetail_http::ratelimit", host, spacing_ms = p.spacing.as_millis() as u64,
            cool_down_ms = wait.as_millis() as u64, "429 without a wait header: slowing down");
        metrics::counter!("dovetail_http_slowdowns_total", "host" => host.to_owned()).increment(1);
    }

    /// A request succeeded: relax the pacing a little.
    pub(crate) fn succeeded(&self) {
        let mut p = self.lock_pace();
        if !p.spacing.is_zero() {
            let s = p.spacing;
            p.spacing = s - s / 16;
            if p.spacing < NO_SPACING {
                p.spacing = Duration::ZERO;
            }
        }
    }

    /// The current spacing between sends (zero when not pacing).
    #[cfg(test)]
    pub(crate) fn spacing(&self) -> Duration {
        self.lock_pace().spacing
    }

    fn lock_pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.pace.lock().unwrap_or_else(|p| p.into_inner())
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
                Arc::new(Limiter { budget, blocked_until: Mutex::new(Duration::ZERO), pace: Mutex::default() })
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

    #[tokio::test]
    async fn a_bare_429_holds_the_group_then_paces_and_successes_restore_the_rate() {
        let clock = FakeClock::new();
        let limits = Limits::new(clock.clone(), None, 4);
        let l = limits.limiter("h", "c");
        // Requests every 40 ms, then a 429 without a wait header whose retry waits 2 s.
        for _ in 0..8 {
            l.ready(clock.as_ref(), "h").await;
            clock.advance(Duration::from_millis(40));
        }
        assert!(clock.sleeps().is_empty());
        l.slow_down(clock.as_ref(), "h", Duration::from_secs(2));
        let spacing = l.spacing();
        assert_eq!(spacing, Duration::from_millis(80), "half the observed rate of one request per 40 ms");
        // A burst of 5 back-to-back requests (any clone, any stream: one limiter): the first
        // waits out the cool-down, the others then go one spacing apart.
        for _ in 0..5 {
            l.ready(clock.as_ref(), "h").await;
        }
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(2), spacing, spacing, spacing, spacing]);
        // A second bare 429 halves the rate again.
        l.slow_down(clock.as_ref(), "h", Duration::ZERO);
        assert_eq!(l.spacing(), spacing * 2);
        // Successes restore it gradually, then pacing is off.
        l.succeeded();
        assert!(l.spacing() < spacing * 2 && l.spacing() > spacing);
        for _ in 0..200 {
            l.succeeded();
        }
        assert_eq!(l.spacing(), Duration::ZERO);
        clock.advance(Duration::from_secs(5));
        let before = clock.sleeps().len();
        for _ in 0..5 {
            l.ready(clock.as_ref(), "h").await;
        }
        assert_eq!(clock.sleeps().len(), before, "no waits once the rate is restored");
    }
}
