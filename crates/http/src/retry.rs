//! Retry mechanics: which statuses are retried by default, how long to wait (full-jitter
//! exponential backoff, overridden by `Retry-After` and rate-limit reset headers), and the
//! attempts the give-up error lists. What a response means is `classify`'s.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::config::{ResetStyle, RetryPolicy};
use crate::observe::first_header;

/// Statuses retried unless a classifier says otherwise (429 among them, as a rate limit:
/// see [`crate::classify::default_verdict`]).
pub const RETRY_STATUSES: &[u16] = &[408, 429, 500, 502, 503, 504];

/// Whether a response status is retried by default.
pub fn retryable_status(s: StatusCode) -> bool {
    RETRY_STATUSES.contains(&s.as_u16())
}

/// What one attempt ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The server answered with this status.
    Status(u16),
    /// A 2xx whose body the caller could not decode.
    Undecodable(u16),
    /// No response: its cause first (`connection dropped`, `connection refused`, `timeout`,
    /// `TLS error`, `broken response body`, ...), then the underlying error's words.
    Error(String),
    /// Not sent: the credential could not be obtained (the token endpoint failed, transiently).
    Credential(String),
}

/// The retry cause of an attempt that was not sent because the token endpoint failed.
pub const CREDENTIAL_CAUSE: &str = "token endpoint";

impl AttemptOutcome {
    /// The retry cause as a run report counts it: the status (`503`), `undecodable body`,
    /// or the cause of a transport failure (`connection dropped`, `connection refused`,
    /// `timeout`, `TLS error`, `broken response body`, else `connect error` or `transport error`).
    pub fn cause(&self) -> String {
        match self {
            AttemptOutcome::Status(s) => s.to_string(),
            AttemptOutcome::Undecodable(_) => "undecodable body".to_owned(),
            // The transport message starts with its cause (`timeout: ...`, `connection dropped: ...`).
            AttemptOutcome::Error(m) => m.split(':').next().unwrap_or("transport error").trim().to_owned(),
            AttemptOutcome::Credential(_) => CREDENTIAL_CAUSE.to_owned(),
        }
    }
}

/// One attempt of a logical request, for the give-up error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1-based attempt number.
    pub number: u32,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The wait before the next attempt (`None` for the last).
    pub wait: Option<Duration>,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} ", self.number)?;
        match &self.outcome {
            AttemptOutcome::Status(s) => write!(f, "{s}")?,
            AttemptOutcome::Undecodable(s) => write!(f, "{s} with an undecodable body")?,
            AttemptOutcome::Error(e) => write!(f, "{e}")?,
            AttemptOutcome::Credential(e) => write!(f, "not sent: {e}")?,
        }
        if let Some(w) = self.wait {
            write!(f, " (waited {})", fmt_duration(w))?;
        }
        Ok(())
    }
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.as_millis() < 1000 { format!("{}ms", d.as_millis()) } else { format!("{:.1}s", d.as_secs_f64()) }
}

/// The wait the server asked for, if any: `Retry-After` (seconds or HTTP date) first, then
/// `X-RateLimit-Reset` / `RateLimit-Reset` when the response is a 429/403 or says the
/// remaining budget is 0.
pub fn server_wait(status: StatusCode, h: &HeaderMap, now: SystemTime, style: ResetStyle) -> Option<Duration> {
    if let Some(v) = first_header(h, ["retry-after"]) {
        let v = v.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs).min(MAX_SERVER_WAIT));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    let exhausted = remaining(h) == Some(0);
    if !(exhausted || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN) {
        return None;
    }
    reset_wait(h, now, style)
}

/// Until the rate-limit window resets, from `X-RateLimit-Reset` (per `style`) or
/// `RateLimit-Reset` (always delta seconds).
pub fn reset_wait(h: &HeaderMap, now: SystemTime, style: ResetStyle) -> Option<Duration> {
    if let Some(v) = first_header(h, ["x-ratelimit-reset"]).and_then(|v| v.trim().parse::<u64>().ok()) {
        match style {
            ResetStyle::DeltaSeconds => return Some(Duration::from_secs(v).min(MAX_SERVER_WAIT)),
            // An epoch past what the clock can hold (found by fuzzing) is no usable reset.
            ResetStyle::EpochSeconds => {
                if let Some(at) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(v)) {
                    return Some(at.duration_since(now).unwrap_or_default().min(MAX_SERVER_WAIT));
                }
            }
        }
    }
    first_header(h, ["ratelimit-reset"])
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_SERVER_WAIT))
}

/// The longest wait a response header is taken to ask for: far past any rate-limit cap (so
/// it still stops a stream, with a time to come back), and small enough that adding it to
/// a clock cannot overflow.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(366 * 86_400);

/// `X-RateLimit-Remaining` or `RateLimit-Remaining`.
pub fn remaining(h: &HeaderMap) -> Option<u64> {
    first_header(h, &crate::observe::REMAINING_NAMES).and_then(|v| v.trim().parse().ok())
}

/// Full-jitter exponential backoff from a seedable source.
#[derive(Debug)]
pub(crate) struct Backoff {
    rng: Mutex<fastrand::Rng>,
}

impl Backoff {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Backoff { rng: Mutex::new(seed.map(fastrand::Rng::with_seed).unwrap_or_default()) }
    }
    /// The wait after failed attempt `n` (1-based): uniform in `0..=min(max, base * 2^(n-1))`.
    pub(crate) fn wait(&self, p: &RetryPolicy, n: u32) -> Duration {
        let ceiling = p.base_delay.saturating_mul(1u32 << (n.saturating_sub(1)).min(20)).min(p.max_delay);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(self.rng.lock().unwrap_or_else(|e| e.into_inner()).u64(0..=ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn server_waits_in_every_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ok = StatusCode::OK;
        let s = ResetStyle::EpochSeconds;
        assert_eq!(server_wait(ok, &h(&[("retry-after", "7")]), now, s), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(server_wait(ok, &h(&[("retry-after", &date)]), now, s), Some(Duration::from_secs(12)));
        let epoch = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000030")]);
        assert_eq!(server_wait(ok, &epoch, now, s), Some(Duration::from_secs(30)));
        let delta = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "5")]);
        assert_eq!(server_wait(ok, &delta, now, ResetStyle::DeltaSeconds), Some(Duration::from_secs(5)));
        let ietf = h(&[("ratelimit-reset", "9")]);
        assert_eq!(server_wait(StatusCode::TOO_MANY_REQUESTS, &ietf, now, s), Some(Duration::from_secs(9)));
        assert_eq!(server_wait(ok, &h(&[("x-ratelimit-remaining", "4"), ("x-ratelimit-reset", "5")]), now, s), None);
    }

    #[test]
    fn a_wait_past_any_clock_is_capped_to_a_year() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let s = ResetStyle::EpochSeconds;
        let huge = u64::MAX.to_string();
        for h in [
            h(&[("retry-after", &huge)]),
            h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "99999999999999")]),
            h(&[("ratelimit-remaining", "0"), ("ratelimit-reset", &huge)]),
        ] {
            assert_eq!(server_wait(StatusCode::TOO_MANY_REQUESTS, &h, now, s), Some(MAX_SERVER_WAIT), "{h:?}");
        }
        let delta = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &huge)]);
        assert_eq!(server_wait(StatusCode::OK, &delta, now, ResetStyle::DeltaSeconds), Some(MAX_SERVER_WAIT));
    }

    #[test]
    fn backoff_is_capped_full_jitter() {
        let p = RetryPolicy { max_delay: Duration::from_secs(2), ..RetryPolicy::default() };
        let b = Backoff::new(Some(7));
        for n in 1..30 {
            let cap = Duration::from_millis(500 * (1u64 << (n - 1).min(20))).min(p.max_delay);
            assert!(b.wait(&p, n) <= cap);
        }
    }
}
