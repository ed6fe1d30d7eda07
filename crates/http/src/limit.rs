//! Rate limiting shared by every clone of a client: one [`governor`] budget, one
//! server-signal gate and one pacer per (host, credential), plus a concurrency limit per
//! host.
//!
//! A limiter lets a request go when, in this order: the **gate** is open (the server said
//! `Remaining: 0`, or sent `Retry-After`: nothing goes until then), the configured
//! **budget** has a cell, and the request's **pacing** slot has come. Every condition must
//! hold, so a configured budget and the server's signals combine to the stricter of the two.
//!
//! ## Pacing from the server's headers
//!
//! Every response carrying `X-RateLimit-Remaining` / `RateLimit-Remaining` updates the
//! limiter ([`Limiter::observe`]) from `Remaining` (*n*), the reset distance *D* (from
//! `X-RateLimit-Reset` per [`ResetStyle`] or `RateLimit-Reset`; whole seconds, so an
//! *upper bound*: epoch seconds are rounded up) and, when sent, the limit *L* from
//! `X-RateLimit-Limit` / `RateLimit-Limit` with its window *W* (`;w=` on the limit or in
//! `RateLimit-Policy`; 1 s when not given, i.e. a per-second limit). One token interval is
//! *i = W / L*. The server is taken to **refill continuously** (a token bucket whose reset
//! names the next token) when *L* is known and no reset was ever farther than *i* plus the
//! one-second grain of the header; once a farther reset is seen the reset is taken as the
//! end of a **fixed window** (GitHub: 5000 per hour) for the rest of the limiter's life.
//!
//! - *n > 0*, fixed window (or no *L*): while plenty is left (*n* above a tenth of *L*, at
//!   least 10; 10 when *L* is unknown) requests go unpaced, so a short sync uses its window
//!   at full speed; once the budget runs low the rest is spread evenly until the reset, one
//!   every *D / n* (GitHub, 400 left, reset in 3000 s: one request per 7.5 s), instead of
//!   spending it at once and then sleeping to the reset.
//! - *n > 0*, continuous: one every *min(i, D / n)*, i.e. the faster of the sustained rate
//!   *L / W* and the remaining whole tokens over the reset (both are safe).
//! - *n = 0*, fixed window (or no *L*): the gate closes until the reset, measured from when
//!   the response arrived (nothing is spent to learn the reset).
//! - *n = 0*, continuous: the gate closes for *min(D, i)* (for *i* when *D* is 0, which
//!   only clock skew produces): the next token is at most one interval away, while the
//!   rounded-up epoch reset may be almost a second late. Measured from the arrival of the
//!   response, this is never before the token exists.
//! - `Retry-After` always closes the gate for its full length (the gate only ever moves
//!   later), so no request goes before a wait the server asked for.
//!
//! HubSpot's rolling-window headers (`X-HubSpot-RateLimit-Max`, `-Remaining`,
//! `-Interval-Milliseconds`, no reset) are read as *L* (one less, a margin for jitter), *n*
//! and *W*: a continuous limit paced at *W / L*.
//!
//! **Across processes** (PostgreSQL state, [`crate::budget`]): a `Retry-After` or a spent
//! window closes every process's gate through the shared bucket's block, and a continuous
//! limit *L / W* learned here is asked of the shared bucket (with burst *L*, the stricter of
//! it and a configured budget), which then refills the whole fleet at it: three workers on one
//! credential share *L / W* instead of each spending it.
//!
//! ## A daily allowance
//!
//! `X-HubSpot-RateLimit-Daily` (*L_d*) and `-Daily-Remaining` (*n_d*) are a fixed window
//! that ends at the next daily reset, which no header names: the connector's
//! [`DailyReset`] rule says when (HubSpot: midnight in the account's time zone), midnight
//! UTC without one. With *D_d* until then: *n_d = 0* closes the gate until the reset — a
//! wait longer than `max_rate_limit_wait` ends the request `RateLimited { until }` before
//! it is sent, so the run stops with the time to come back instead of spending a request on
//! a 429; while *n_d* is low (a tenth of *L_d*, at least 10) what is left is spread, one
//! every *D_d / n_d* (capped like any spacing). The daily spacing and the rolling one
//! combine to the larger.
//!
//! Limits the rule does not see: a continuous limit per minute sent without `;w=` is read
//! as per second (too fast: the 429s' `Retry-After` then holds the group); in-flight
//! requests of a concurrent caller are not yet counted in *n*, which pacing at *i* covers.
//!
//! ## Slowing down after a bare 429
//!
//! The adaptive slow-down is for a 429 that carries no wait header (no `Retry-After`, no
//! reset): the server says "too fast" without saying how fast is fine. Rule: such a 429
//! (1) closes the gate for the retry's computed backoff, so every request on this (host,
//! credential) waits as a group instead of each finding out with its own 429, and (2)
//! halves the permitted rate: the minimum spacing between sends becomes
//! `max(2 × spacing, 2 × observed gap between sends, 10 ms)`, capped at 10 s. Each success
//! (2xx or 304) then shortens the spacing by 1/16 (≈6 % more rate per success) and below
//! 1 ms pacing is off again. A 429 with a wait header only closes the gate: the server
//! said exactly when to come back. The slot spacing used is the larger of this and the
//! server-header spacing.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use reqwest::header::HeaderMap;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::budget::{Permit, SharedPermits};
use crate::clock::{Clock, GovernorClock};
use crate::config::{RateBudget, ResetStyle};
use crate::retry::{remaining, reset_wait};

/// When a vendor's daily allowance comes back, given the wall-clock time now: the
/// connector's rule (see the module docs), [`crate::HttpClientBuilder::daily_reset`].
pub type DailyReset = Arc<dyn Fn(SystemTime) -> SystemTime + Send + Sync>;

/// A [`DailyReset`] rule, if any (`Debug` for the structs that hold one).
#[derive(Clone, Default)]
pub(crate) struct ResetRule(pub(crate) Option<DailyReset>);

impl std::fmt::Debug for ResetRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ResetRule(connector's)" } else { "ResetRule(midnight UTC)" })
    }
}

impl ResetRule {
    /// The next reset after `now`: the connector's rule, else the next midnight UTC.
    fn next_after(&self, now: SystemTime) -> SystemTime {
        match &self.0 {
            Some(rule) => rule(now),
            None => {
                let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                UNIX_EPOCH + Duration::from_secs((secs / 86_400 + 1) * 86_400)
            }
        }
    }
}

type Gov = RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<governor::nanos::Nanos>>;

/// Shortest spacing set by a bare 429.
const MIN_SPACING: Duration = Duration::from_millis(10);
/// Longest spacing.
const MAX_SPACING: Duration = Duration::from_secs(10);
/// Below this the spacing is dropped.
const NO_SPACING: Duration = Duration::from_millis(1);
/// The resolution of reset headers (whole seconds).
const GRAIN: Duration = Duration::from_secs(1);

/// The limiter of one (host, credential), shared by every client of the process on the
/// same clock (see [`crate::shared`]).
#[derive(Debug)]
pub(crate) struct Limiter {
    /// The configured budget in force: the strictest of the sharing clients' (see [`Limiter::join`]).
    budget: std::sync::RwLock<Option<(RateBudget, Gov)>>,
    /// The connectors that joined this limiter and the budget each configured.
    users: Mutex<Vec<(String, Option<RateBudget>)>>,
    /// Monotonic time before which nothing may be sent (server said the budget is spent, or
    /// asked us to back off).
    blocked_until: Mutex<Duration>,
    /// The gate (`blocked_until`) last announced in the log.
    announced: Mutex<Duration>,
    pace: Mutex<Pace>,
    /// Permits of the configured budget taken from the budget shared across processes.
    shared: SharedPermits,
    /// When a daily allowance comes back (the last connector that joined with a rule).
    daily_reset: Mutex<ResetRule>,
}

/// Send spacing: adaptive after header-less 429s, and from the server's headers (see the
/// module docs).
#[derive(Debug, Default)]
struct Pace {
    /// Minimum time between two sends after bare 429s (zero: not pacing).
    spacing: Duration,
    /// Minimum time between two sends from the server's rate-limit headers (zero: none).
    server: Duration,
    /// Minimum time between two sends from a daily allowance running low (zero: none).
    daily: Duration,
    /// A reset farther than one token interval was seen: resets end fixed windows.
    windowed: bool,
    /// The continuous limit the server's headers advertise (`L` per `W`, burst `L`), which
    /// the budget shared across processes keeps to as well (see [`Limiter::ready`]).
    learned: Option<RateBudget>,
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
    /// The limiter of `host` and `credential` (a non-secret hash), with no budget yet
    /// (connectors bring theirs with [`Limiter::join`]).
    pub(crate) fn new(host: &str, credential: &str) -> Self {
        Limiter {
            budget: std::sync::RwLock::new(None),
            users: Mutex::default(),
            blocked_until: Mutex::new(Duration::ZERO),
            announced: Mutex::new(Duration::ZERO),
            pace: Mutex::default(),
            shared: SharedPermits::new(host, credential),
            daily_reset: Mutex::default(),
        }
    }

    /// `connector`, configured with `budget`, sends through this limiter from now on. The
    /// budget in force becomes the strictest configured by any connector that joined (a
    /// lower sustained rate, and the smaller burst); when connectors disagree it is logged,
    /// once per connector joining, so the start of a run says which budget applies.
    pub(crate) fn join(&self, connector: &str, budget: Option<RateBudget>, clock: &Arc<dyn Clock>, host: &str) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.push((connector.to_owned(), budget));
        let strictest = users.iter().filter_map(|(_, b)| *b).reduce(stricter);
        let mut current = self.budget.write().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().map(|(b, _)| *b) != strictest {
            *current = strictest
                .and_then(|b| quota(b).map(|q| (b, RateLimiter::direct_with_clock(q, GovernorClock(clock.clone())))));
        }
        let differ = users.iter().any(|(_, b)| *b != strictest);
        if users.len() > 1 && differ {
            let each: Vec<String> = users
                .iter()
                .map(|(c, b)| format!("{c}: {}", b.map_or_else(|| "none".to_owned(), |b| b.to_string())))
                .collect();
            tracing::info!(target: "dovetail_http::ratelimit", host, connectors = %each.join(", "),
                using = %strictest.map_or_else(|| "none".to_owned(), |b| b.to_string()),
                "connectors share one rate budget for this host and credential; the strictest applies to all");
        }
    }

    /// Wait until a request may be sent: first the server's gate, then the budget. A gate
    /// closed for longer than `max_gate` (the API's budget is spent until a reset that far
    /// away) is not waited for: `Err` with how long it stays closed.
    pub(crate) async fn ready(&self, clock: &dyn Clock, host: &str, max_gate: Duration) -> Result<(), Duration> {
        let mut waited = false;
        loop {
            let until = *self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
            let now = clock.monotonic();
            if until > now {
                let wait = until - now;
                if wait > max_gate {
                    return Err(wait);
                }
                self.announce_gate(clock, host, until, wait);
                crate::observe::rate_limit_wait(host, wait);
                clock.sleep(wait).await;
                waited = true;
                continue;
            }
            // A configured budget shared with other processes (crate::budget) replaces the
            // process's own copy, unless the store fails. A limit learned from the server's
            // headers goes to the shared budget too (the stricter of the two), so the other
            // processes on this (host, credential) keep to it before they see a response.
            let configured = self.budget.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(b, _)| *b);
            let learned = self.lock_pace().learned;
            let shared_budget = match (configured, learned) {
                (Some(c), Some(l)) => Some(stricter(c, l)),
                (c, l) => c.or(l),
            };
            if let (Some(b), Some(shared)) = (shared_budget, crate::shared::budgets()) {
                match self.shared.permit(&*shared, b).await {
                    Permit::Go => break,
                    Permit::Wait(wait) => {
                        clock.sleep(wait).await;
                        waited = true;
                        continue;
                    }
                    Permit::Blocked(wait) => {
                        self.close_gate(clock, wait);
                        continue;
                    }
                    Permit::Unavailable => {}
                }
            }
            let over = match &*self.budget.read().unwrap_or_else(|p| p.into_inner()) {
                Some((_, g)) => g.check().err().map(|not_until| not_until.wait_time_from(clock.monotonic().into())),
                None => None,
            };
            if let Some(wait) = over {
                clock.sleep(wait.max(Duration::from_millis(1))).await;
                continue;
            }
            break;
        }
        let slot = {
            let mut p = self.lock_pace();
            let now = clock.monotonic();
            let spacing = p.spacing.max(p.server).max(p.daily);
            // Gaps from a closed gate or from pacing say nothing about the rate the caller
            // (or the budget) sends at: only the others are measured.
            if let Some(last) = p.last_sent.filter(|_| !waited && spacing.is_zero()) {
                let gap = now.saturating_sub(last);
                p.gap = if p.measured { (p.gap * 7 + gap) / 8 } else { gap };
                p.measured = true;
            }
            p.last_sent = Some(now);
            if spacing.is_zero() {
                return Ok(());
            }
            let slot = p.next_at.max(now);
            p.next_at = slot + spacing;
            slot
        };
        let now = clock.monotonic();
        if slot > now {
            tracing::debug!(target: "dovetail_http::ratelimit", host, wait_ms = (slot - now).as_millis() as u64,
                "pacing requests to the rate limit");
            crate::observe::rate_limit_wait(host, slot - now);
            clock.sleep(slot - now).await;
        }
        Ok(())
    }

    /// How long the server's gate stays closed from now, if it is.
    pub(crate) fn gate(&self, clock: &dyn Clock) -> Option<Duration> {
        let until = *self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
        until.checked_sub(clock.monotonic()).filter(|w| !w.is_zero())
    }

    /// Say once per closed gate (not once per waiting request) how long and until when:
    /// INFO from a second up, as a person watching a run wants to know why it stands still.
    fn announce_gate(&self, clock: &dyn Clock, host: &str, until: Duration, wait: Duration) {
        let mut said = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        if *said == until {
            return;
        }
        *said = until;
        let at = crate::observe::rfc3339(clock.now() + wait);
        if wait >= GRAIN {
            tracing::info!(target: "dovetail_http::ratelimit", host, wait_ms = wait.as_millis() as u64, until = %at,
                "waiting for the API's rate limit: its budget is spent or it asked to wait");
        } else {
            tracing::debug!(target: "dovetail_http::ratelimit", host, wait_ms = wait.as_millis() as u64,
                "waiting for the rate-limit window to reset");
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

    /// Learn from a response's rate-limit headers (`Remaining`, `Reset`, `Limit`): set the
    /// pacing and, when nothing remains, close the gate (rules in the module docs).
    pub(crate) fn observe(&self, clock: &dyn Clock, h: &HeaderMap, style: ResetStyle) {
        self.observe_daily(clock, h);
        let translated = hubspot_dialect(h);
        let h = translated.as_ref().unwrap_or(h);
        let Some(left) = remaining(h) else { return };
        let reset = reset_wait(h, clock.now(), style);
        let limit = limit_of(h);
        let interval = limit.map(|(limit, window)| window.unwrap_or(GRAIN) / limit);
        // A fixed window is only paced once its budget runs low.
        let low = left <= limit.map_or(10, |(l, _)| (u64::from(l) / 10).max(10));
        let gate = {
            let mut p = self.lock_pace();
            if let (Some(d), Some(i)) = (reset, interval)
                && d > i + GRAIN
            {
                p.windowed = true;
            }
            let continuous = interval.filter(|_| !p.windowed);
            p.learned = limit.filter(|_| continuous.is_some()).map(|(l, w)| RateBudget {
                requests: l,
                per: w.unwrap_or(GRAIN),
                burst: l,
            });
            // Spread what is left evenly until the reset (D / n), or go at the sustained rate
            // when that is faster and the bucket refills continuously.
            // Nothing left: the gate decides; a fresh window starts unpaced.
            let spread = reset
                .filter(|_| left > 0 && (low || continuous.is_some()))
                .map(|d| d / u32::try_from(left).unwrap_or(u32::MAX));
            p.server = match (continuous, spread) {
                (Some(i), Some(s)) => i.min(s),
                (Some(i), None) => i,
                (None, s) => s.unwrap_or(Duration::ZERO),
            }
            .min(MAX_SPACING);
            let gate = match (left, continuous, reset) {
                (0, Some(i), Some(d)) if !d.is_zero() => Some(d.min(i)),
                (0, Some(i), _) => Some(i),
                (0, None, d) => d,
                _ => None,
            };
            // The first send after the gate goes when it opens, not a stale spacing later.
            if let Some(wait) = gate {
                p.next_at = p.next_at.min(clock.monotonic() + wait);
            }
            gate
        };
        if let Some(wait) = gate {
            self.block_for(clock, wait);
        }
    }

    /// A daily allowance's headers: spread what is left when it runs low, close the gate
    /// until the reset when it is spent (see the module docs).
    fn observe_daily(&self, clock: &dyn Clock, h: &HeaderMap) {
        let Some((limit, left)) = daily_allowance(h) else { return };
        let now = clock.now();
        let reset = self.daily_reset.lock().unwrap_or_else(|p| p.into_inner()).next_after(now);
        let until = reset.duration_since(now).unwrap_or_default();
        let low = left <= (limit / 10).max(10);
        self.lock_pace().daily = match u32::try_from(left) {
            Ok(n) if n > 0 && low => (until / n).min(MAX_SPACING),
            _ => Duration::ZERO,
        };
        if left == 0 && !until.is_zero() {
            tracing::warn!(target: "dovetail_http::ratelimit", reset = %crate::observe::rfc3339(reset),
                "the API's daily allowance is spent: nothing more is sent until it comes back");
            self.block_for(clock, until);
        }
    }

    /// Use `rule` for when a daily allowance comes back.
    pub(crate) fn set_daily_reset(&self, rule: DailyReset) {
        *self.daily_reset.lock().unwrap_or_else(|p| p.into_inner()) = ResetRule(Some(rule));
    }

    /// The current spacing from a daily allowance.
    #[cfg(test)]
    pub(crate) fn daily_spacing(&self) -> Duration {
        self.lock_pace().daily
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

    /// The current spacing between sends after bare 429s (zero when not pacing).
    #[cfg(test)]
    pub(crate) fn spacing(&self) -> Duration {
        self.lock_pace().spacing
    }

    /// The current spacing between sends from the server's headers.
    #[cfg(test)]
    pub(crate) fn server_spacing(&self) -> Duration {
        self.lock_pace().server
    }

    fn lock_pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.pace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Nothing is sent to this (host, credential) for `wait` from now (keeps a later gate),
    /// by any process sharing its budget.
    pub(crate) fn block_for(&self, clock: &dyn Clock, wait: Duration) {
        self.close_gate(clock, wait);
        if let Some(until) = clock.now().checked_add(wait) {
            self.shared.block(until);
        }
    }

    /// Close this process's gate for `wait` from now (keeps a later gate).
    fn close_gate(&self, clock: &dyn Clock, wait: Duration) {
        let until = clock.monotonic() + wait;
        let mut b = self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
        if until > *b {
            *b = until;
        }
    }
}

/// All limiters and host semaphores of a client and its clones. The limiters themselves are
/// the process's (one per host, credential and clock; see [`crate::shared`]).
#[derive(Debug)]
pub(crate) struct Limits {
    connector: String,
    clock: Arc<dyn Clock>,
    budget: Option<RateBudget>,
    max_concurrency: usize,
    /// When a daily allowance comes back, handed to every limiter this client joins.
    pub(crate) daily_reset: ResetRule,
    /// host → credential → limiter; looked up by `&str`, so only a first use allocates keys.
    limiters: Mutex<HashMap<String, HashMap<String, Arc<Limiter>>>>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Limits {
    pub(crate) fn new(
        connector: &str,
        clock: Arc<dyn Clock>,
        budget: Option<RateBudget>,
        max_concurrency: usize,
    ) -> Self {
        Limits {
            connector: connector.to_owned(),
            clock,
            budget,
            max_concurrency: max_concurrency.max(1),
            daily_reset: ResetRule::default(),
            limiters: Mutex::default(),
            hosts: Mutex::default(),
        }
    }

    /// The limiter of (host, credential), created on first use.
    pub(crate) fn limiter(&self, host: &str, credential: &str) -> Arc<Limiter> {
        let mut map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = map.get(host).and_then(|m| m.get(credential)) {
            return l.clone();
        }
        let l = crate::shared::limiter(host, credential, &self.clock);
        l.join(&self.connector, self.budget, &self.clock, host);
        if let Some(rule) = &self.daily_reset.0 {
            l.set_daily_reset(rule.clone());
        }
        map.entry(host.to_owned()).or_default().insert(credential.to_owned(), l.clone());
        l
    }

    /// The semaphore of the host's concurrent requests, created on first use.
    pub(crate) fn slots(&self, host: &str) -> Arc<Semaphore> {
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(host) {
            return s.clone();
        }
        let s = Arc::new(Semaphore::new(self.max_concurrency));
        map.insert(host.to_owned(), s.clone());
        s
    }
}

/// A slot among the host's concurrent requests (see [`Limits::slots`]), held for one attempt.
pub(crate) async fn acquire(slots: &Semaphore) -> SemaphorePermit<'_> {
    // The semaphore is never closed, so acquiring cannot fail.
    match slots.acquire().await {
        Ok(p) => p,
        Err(_) => unreachable!("host semaphores are never closed"),
    }
}

/// The limit `L` (requests per window) and its window `W` when given: the first quota of
/// `X-RateLimit-Limit` / `RateLimit-Limit` (`50`, `100;w=60`, `100, 100;w=60, 1000;w=3600`)
/// with its `w=` parameter, else the window of `RateLimit-Policy` / `X-RateLimit-Policy`.
fn limit_of(h: &HeaderMap) -> Option<(u32, Option<Duration>)> {
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let header = text("x-ratelimit-limit").or_else(|| text("ratelimit-limit"))?;
    let limit = first_item(header).split(';').next()?.trim().parse::<u32>().ok().filter(|l| *l > 0)?;
    // The `w=` of a quota item: the limit's own, one repeating its number, or the policy's.
    let window = |items: &str, any: bool| {
        items.split(',').find_map(|item| {
            let mut parts = item.split(';');
            let quota = parts.next()?.trim().parse::<u32>().ok();
            if !any && quota != Some(limit) {
                return None;
            }
            parts.find_map(|p| p.trim().strip_prefix("w=")?.trim().parse::<u64>().ok().filter(|w| *w > 0))
        })
    };
    let policy = || text("ratelimit-policy").or_else(|| text("x-ratelimit-policy")).map(first_item);
    let w = window(header, false).or_else(|| window(policy()?, true));
    Some((limit, w.map(Duration::from_secs)))
}

/// HubSpot's rolling window (`X-HubSpot-RateLimit-Max` requests per
/// `-Interval-Milliseconds`, `-Remaining` left) as the standard names: `X-RateLimit-Limit:
/// L;w=W` (W in whole seconds, rounded up) and `X-RateLimit-Remaining`. No reset is sent,
/// so the rules above pace at the sustained rate W / L. L is one less than HubSpot's max:
/// a window that is rolling counts arrivals, and network jitter can bunch evenly spaced sends.
/// `None` for any other response (or one that also sends the standard names).
fn hubspot_dialect(h: &HeaderMap) -> Option<HeaderMap> {
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if text("x-ratelimit-remaining").is_some() || text("ratelimit-remaining").is_some() {
        return None;
    }
    let left = text("x-hubspot-ratelimit-remaining")?.parse::<u64>().ok()?;
    let max = text("x-hubspot-ratelimit-max")?.parse::<u32>().ok()?;
    let window_ms = text("x-hubspot-ratelimit-interval-milliseconds")?.parse::<u64>().ok()?;
    let mut out = HeaderMap::new();
    out.insert("x-ratelimit-remaining", left.into());
    let limit = max.saturating_sub(1).max(1);
    out.insert("x-ratelimit-limit", format!("{limit};w={}", window_ms.div_ceil(1000).max(1)).parse().ok()?);
    Some(out)
}

/// HubSpot's daily allowance (`X-HubSpot-RateLimit-Daily`, `-Daily-Remaining`), as
/// (limit, left); private-app tokens get one, OAuth apps none.
fn daily_allowance(h: &HeaderMap) -> Option<(u64, u64)> {
    let number = |name: &str| h.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    Some((number("x-hubspot-ratelimit-daily")?, number("x-hubspot-ratelimit-daily-remaining")?))
}

fn first_item(v: &str) -> &str {
    v.split(',').next().unwrap_or_default()
}

/// The stricter of two budgets: the lower sustained rate, with the smaller burst.
fn stricter(a: RateBudget, b: RateBudget) -> RateBudget {
    // a.requests / a.per <= b.requests / b.per, without division.
    let a_slower = u128::from(a.requests) * b.per.as_nanos() <= u128::from(b.requests) * a.per.as_nanos();
    let mut s = if a_slower { a } else { b };
    s.burst = a.burst.min(b.burst);
    s
}

fn quota(b: RateBudget) -> Option<Quota> {
    let period = b.per.checked_div(b.requests.max(1))?;
    let burst = NonZeroU32::new(b.burst.max(1))?;
    Quota::with_period(period).map(|q| q.allow_burst(burst))
}

#[cfg(test)]
#[path = "limit_tests.rs"]
mod tests;
