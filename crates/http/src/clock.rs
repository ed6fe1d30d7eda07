//! Time as a dependency: the crate's one time source. Every wait the client makes (backoff,
//! `Retry-After`, rate-limit resets, budgets, circuit cool-downs) and every OAuth2 token
//! expiry goes through a [`Clock`]: [`TokioClock`] in production, [`FakeClock`] in tests,
//! which records each requested sleep and advances a virtual clock instantly. Pass the same
//! `Arc<FakeClock>` to the client ([`crate::HttpClientBuilder::clock`]) and to an OAuth2
//! provider (`with_clock`) and both follow one virtual time.
//!
//! Two readings: [`Clock::now`] (wall time, for epoch reset headers, HTTP dates and
//! messages) and [`Clock::monotonic`] (an `Instant`-like reading that never goes back, for
//! everything measured as "how long since": budgets, cool-downs, token expiry).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

/// A source of wall time, monotonic time and sleeps.
#[async_trait]
pub trait Clock: Send + Sync + fmt::Debug {
    /// Wall-clock time, used for epoch reset headers and HTTP dates.
    fn now(&self) -> SystemTime;
    /// Monotonic time since an arbitrary origin fixed per clock, used for budgets,
    /// cool-downs and token expiry. Only differences between readings of one clock mean
    /// anything (like [`std::time::Instant`]).
    fn monotonic(&self) -> Duration;
    /// Wait for `d`.
    async fn sleep(&self, d: Duration);
}

/// The real clock: tokio's timer, tokio's monotonic `Instant` (so a paused tokio runtime
/// pauses it too) and the system wall clock.
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

/// A virtual clock for tests: `sleep` records the duration, advances both readings by it and
/// returns at once (after yielding to the scheduler); [`FakeClock::advance`] moves time
/// without a sleep (e.g. to expire an OAuth2 token).
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
