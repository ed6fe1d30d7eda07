//! Time as a dependency: every wait the client makes (backoff, `Retry-After`, rate-limit
//! resets, circuit cool-downs) goes through a [`Clock`], so tests use [`FakeClock`], which
//! records each requested sleep and advances a virtual clock instantly.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

/// A source of wall time, monotonic time and sleeps.
#[async_trait]
pub trait Clock: Send + Sync + fmt::Debug {
    /// Wall-clock time, used for epoch reset headers and HTTP dates.
    fn now(&self) -> SystemTime;
    /// Monotonic time since an arbitrary origin, used for budgets and cool-downs.
    fn monotonic(&self) -> Duration;
    /// Wait for `d`.
    async fn sleep(&self, d: Duration);
}

/// The real clock: tokio's timer and the system wall clock.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock { origin: tokio::time::Instant::now() }
    }
}

#[async_trait]
impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// A virtual clock for tests: `sleep` records the duration, advances both clocks by it and
/// returns at once (after yielding to the scheduler).
#[derive(Debug)]
pub struct FakeClock {
    state: Mutex<FakeState>,
}

#[derive(Debug)]
struct FakeState {
    wall: SystemTime,
    mono: Duration,
    sleeps: Vec<Duration>,
}

impl FakeClock {
    /// A fake clock whose wall time starts at 2023-11-14T22:13:20Z (epoch 1 700 000 000).
    pub fn new() -> Arc<Self> {
        Self::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }
    /// A fake clock whose wall time starts at `wall`.
    pub fn starting_at(wall: SystemTime) -> Arc<Self> {
        Arc::new(FakeClock { state: Mutex::new(FakeState { wall, mono: Duration::ZERO, sleeps: Vec::new() }) })
    }
    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().sleeps.clone()
    }
    /// Move time forward without recording a sleep.
    pub fn advance(&self, d: Duration) {
        let mut s = self.lock();
        s.wall += d;
        s.mono += d;
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        self.lock().wall
    }
    fn monotonic(&self) -> Duration {
        self.lock().mono
    }
    async fn sleep(&self, d: Duration) {
        {
            let mut s = self.lock();
            s.sleeps.push(d);
            s.wall += d;
            s.mono += d;
        }
        tokio::task::yield_now().await;
    }
}

/// Adapts a [`Clock`] to governor's clock, so budgeted rate limits follow virtual time too.
#[derive(Debug, Clone)]
pub(crate) struct GovernorClock(pub(crate) Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = governor::nanos::Nanos;
    fn now(&self) -> Self::Instant {
        self.0.monotonic().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fake_clock_records_and_advances() {
        let c = FakeClock::new();
        let t0 = c.now();
        c.sleep(Duration::from_secs(3)).await;
        assert_eq!(c.sleeps(), vec![Duration::from_secs(3)]);
        assert_eq!(c.now().duration_since(t0).unwrap(), Duration::from_secs(3));
        assert_eq!(c.monotonic(), Duration::from_secs(3));
    }
}
