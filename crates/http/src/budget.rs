//! A limiter's side of a configured budget shared across processes ([`SharedBudget`], set
//! by the runner for PostgreSQL state: see [`crate::share_budgets`]).
//!
//! Permits come from the shared bucket in chunks of about a tenth of a second's worth (at
//! most half the burst), kept here until used, so one round trip to the store serves several
//! requests while no process hoards much of the budget. A wait the vendor asked for (a
//! `Retry-After`, a spent window: the limiter's gate) is passed on with the next take, and
//! a bucket blocked by another process closes this limiter's gate too. When the store fails,
//! the limiter falls back to its own copy of the budget (logged once), so a database hiccup
//! never stops requests.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use dovetail_core::remote::SharedBudget;

use crate::config::RateBudget;

/// What the shared budget says about the next request.
pub(crate) enum Permit {
    /// Send it.
    Go,
    /// The bucket is empty: ask again after this long.
    Wait(Duration),
    /// The bucket is blocked by a wait the vendor asked for, this long from now.
    Blocked(Duration),
    /// The store failed: use the process's own budget.
    Unavailable,
}

/// Permits taken from the shared bucket of one (host, credential) and not used yet.
#[derive(Debug)]
pub(crate) struct SharedPermits {
    key: String,
    reservoir: Mutex<Reservoir>,
    /// One take at a time per limiter: the tasks waiting share its chunk.
    taking: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Reservoir {
    permits: u32,
    /// A wait the vendor asked for, to store with the next take.
    block: Option<SystemTime>,
    warned: bool,
}

impl SharedPermits {
    /// The shared bucket of `host` and `credential` (a non-secret hash).
    pub(crate) fn new(host: &str, credential: &str) -> Self {
        SharedPermits {
            key: format!("{host} {credential}"),
            reservoir: Mutex::default(),
            taking: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reservoir> {
        self.reservoir.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The vendor asked for a wait until `until`: tell the other processes with the next take.
    pub(crate) fn block(&self, until: SystemTime) {
        let mut r = self.lock();
        r.block = Some(r.block.map_or(until, |b| b.max(until)));
    }

    fn take_local(&self) -> bool {
        let mut r = self.lock();
        if r.permits > 0 {
            r.permits -= 1;
            true
        } else {
            false
        }
    }

    /// A permit for one request under budget `b` from `shared`.
    pub(crate) async fn permit(&self, shared: &dyn SharedBudget, b: RateBudget) -> Permit {
        if self.take_local() {
            return Permit::Go;
        }
        let _one = self.taking.lock().await;
        if self.take_local() {
            return Permit::Go;
        }
        let rate = f64::from(b.requests) / b.per.as_secs_f64().max(1e-9);
        let chunk = ((rate / 10.0).ceil() as u32).clamp(1, (b.burst / 2).max(1));
        let block = self.lock().block.take();
        match shared.take(&self.key, chunk, rate, f64::from(b.burst.max(1)), block).await {
            Ok(g) if g.granted > 0 => {
                self.lock().permits += g.granted - 1;
                Permit::Go
            }
            Ok(g) => match g.blocked {
                Some(w) => Permit::Blocked(w),
                None => Permit::Wait(g.wait.max(Duration::from_millis(1))),
            },
            Err(e) => {
                let mut r = self.lock();
                if let Some(b) = block {
                    r.block = Some(r.block.map_or(b, |x| x.max(b)));
                }
                if !std::mem::replace(&mut r.warned, true) {
                    tracing::warn!(target: "dovetail_http::ratelimit", key = %self.key, error = %e,
                        "the shared rate budget is unavailable; this process keeps to its own copy of the budget");
                }
                Permit::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use dovetail_core::Error;
    use dovetail_core::remote::BudgetGrant;

    use super::*;

    /// Grants what is asked, counting the takes (or fails every one).
    #[derive(Default)]
    struct Counting {
        takes: AtomicU32,
        fail: bool,
        blocks: Mutex<Vec<Option<SystemTime>>>,
    }

    #[async_trait]
    impl SharedBudget for Counting {
        async fn take(
            &self,
            _: &str,
            want: u32,
            _: f64,
            _: f64,
            block: Option<SystemTime>,
        ) -> Result<BudgetGrant, Error> {
            self.takes.fetch_add(1, Ordering::Relaxed);
            self.blocks.lock().unwrap().push(block);
            if self.fail {
                return Err(Error::transient("down"));
            }
            Ok(BudgetGrant { granted: want, wait: Duration::ZERO, blocked: None })
        }
    }

    #[tokio::test]
    async fn permits_come_in_chunks_and_a_failing_store_falls_back_keeping_the_block() {
        // 40/s: a tenth of a second's worth is 4 permits a take.
        let b = RateBudget { requests: 40, per: Duration::from_secs(1), burst: 10 };
        let (p, store) = (SharedPermits::new("h", "c"), Counting::default());
        for _ in 0..8 {
            assert!(matches!(p.permit(&store, b).await, Permit::Go));
        }
        assert_eq!(store.takes.load(Ordering::Relaxed), 2);

        let (p, down) = (SharedPermits::new("h", "c"), Counting { fail: true, ..Counting::default() });
        let until = SystemTime::now() + Duration::from_secs(5);
        p.block(until);
        assert!(matches!(p.permit(&down, b).await, Permit::Unavailable));
        // The vendor's wait is offered again with the next take, not lost with the failed one.
        assert!(matches!(p.permit(&down, b).await, Permit::Unavailable));
        assert_eq!(*down.blocks.lock().unwrap(), vec![Some(until), Some(until)]);
    }
}
