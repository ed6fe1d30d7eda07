//! What a response means, decided without IO: [`classify`] turns a status, headers and body
//! (plus what the request knows: a cached copy, a credential that may be refreshed, an
//! origin scope, the connector's [`Classifier`]) into the [`Step`] the request loop
//! (`exec`) follows; [`retry_allowed`] says whether the retry budget allows another
//! attempt. The errors a response becomes are built here too: [`status_kind`] (the kind
//! of a refused status), [`http_failure`] (what the response said, as data) and
//! [`status_error`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dovetail_core::{Error, ErrorKind, HttpFailure};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};

use crate::clock::Clock;
use crate::config::{ResetStyle, RetryPolicy};
use crate::observe::{REQUEST_ID_HEADERS, SENSITIVE_HEADERS};
use crate::retry::{RETRY_STATUSES, server_wait};

/// A connector's say on what a non-2xx response means, given its status, headers and body:
/// `Some(verdict)` overrides the default, `None` keeps it (see [`default_verdict`]). It is
/// not asked about a 2xx, a 304 answered from the cache, or a 401 before the one credential
/// refresh.
pub type Classifier = Arc<dyn Fn(StatusCode, &HeaderMap, &[u8]) -> Option<Verdict> + Send + Sync>;

/// What a response that is not a success means: retry it, wait out a rate limit, or fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Worth another attempt: after the wait the response asks for (`Retry-After`, a
    /// rate-limit reset) or else the backoff. Once the budget is spent the request fails as
    /// [`ErrorKind::Transient`].
    Retry,
    /// A rate limit: another attempt after `Wait`. Without a known wait the host is also
    /// slowed down (every request to it, not only this one). A wait longer than
    /// `max_rate_limit_wait`, or the attempts spent, fail the request as
    /// [`ErrorKind::RateLimited`] with the time the API allows requests again.
    RateLimited(Wait),
    /// Not worth another attempt: the request fails as this kind.
    Fail(ErrorKind),
}

/// How long a [`Verdict::RateLimited`] response asks to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// What the response's headers say ([`server_wait`]: `Retry-After`, else the rate-limit
    /// reset), else the backoff.
    Headers,
    /// This long from now.
    For(Duration),
    /// Until this time (now if it is past).
    Until(SystemTime),
    /// No header says: `first` after the first attempt, doubling with each one after (a
    /// vendor's documented floor, e.g. GitHub's minute for a secondary limit).
    Backoff {
        /// The wait after the first attempt.
        first: Duration,
    },
}

/// The default verdict on a non-2xx status: 429 is a rate limit (its wait from the
/// headers), [`RETRY_STATUSES`] are retried, anything else fails as [`status_kind`].
pub fn default_verdict(status: StatusCode) -> Verdict {
    match status.as_u16() {
        429 => Verdict::RateLimited(Wait::Headers),
        s if RETRY_STATUSES.contains(&s) => Verdict::Retry,
        _ => Verdict::Fail(status_kind(status)),
    }
}

/// The kind of error a refused status is when it is not retried: 401, 403 and 407 are
/// [`ErrorKind::Auth`], 429 [`ErrorKind::RateLimited`], any other [`ErrorKind::Permanent`].
pub fn status_kind(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        401 | 403 | 407 => ErrorKind::Auth,
        429 => ErrorKind::RateLimited { until: None },
        _ => ErrorKind::Permanent,
    }
}

/// What the request knows besides the response, for [`classify`].
pub(crate) struct Context<'a> {
    /// A cached copy exists, so a 304 is answered from it.
    pub(crate) cached: bool,
    /// A 401 may be answered by refreshing the credential (auth is set and this request
    /// has not refreshed it yet).
    pub(crate) reauthorize: bool,
    /// The client is scoped: a redirect it did not follow went to another origin.
    pub(crate) scoped: bool,
    /// The connector's classifier.
    pub(crate) classifier: Option<&'a Classifier>,
    /// Read only for the responses that wait (`Retry-After` as an HTTP date, reset times).
    pub(crate) clock: &'a dyn Clock,
    /// How `X-RateLimit-Reset` is read.
    pub(crate) reset_style: ResetStyle,
}

/// What the request loop does with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step<'h> {
    /// A 2xx: decode the body (a body that does not decode is retried).
    Success,
    /// A 304 answered from the cached copy.
    NotModified,
    /// A 401: refresh the credential and send again at once (once per request).
    Reauthorize,
    /// Try again after `wait` (the remote's), or after the backoff when `None`.
    Retry { wait: Option<Duration> },
    /// A rate limit: try again after `wait`; when `None`, after `floor` doubling per attempt
    /// if set, else slow the host down and back off.
    RateLimited { wait: Option<Duration>, floor: Option<Duration> },
    /// A redirect to another origin that the client did not follow (`location` as sent).
    RedirectRefused { location: &'h str },
    /// Fail as this kind.
    Fail(ErrorKind),
}

impl Step<'_> {
    /// The kind the request fails as when this step ends it — when it is not retried, or
    /// its retries are spent: its own for `Fail`, [`ErrorKind::Transient`] for `Retry`,
    /// [`ErrorKind::RateLimited`] for `RateLimited` (its `until` is set by the request when
    /// it gives up, from the wait it would take next), [`ErrorKind::Permanent`] for a refused
    /// redirect; `None` for the steps that do not fail.
    pub(crate) fn failure_kind(&self) -> Option<ErrorKind> {
        match self {
            Step::Success | Step::NotModified | Step::Reauthorize => None,
            Step::Retry { .. } => Some(ErrorKind::Transient),
            Step::RateLimited { .. } => Some(ErrorKind::RateLimited { until: None }),
            Step::RedirectRefused { .. } => Some(ErrorKind::Permanent),
            Step::Fail(kind) => Some(kind.clone()),
        }
    }
}

/// The step for a response. Pure: the clock is only read for the wait of a response that
/// asks for one.
pub(crate) fn classify<'h>(status: StatusCode, headers: &'h HeaderMap, body: &[u8], cx: &Context<'_>) -> Step<'h> {
    if status == StatusCode::NOT_MODIFIED && cx.cached {
        return Step::NotModified;
    }
    if status == StatusCode::UNAUTHORIZED && cx.reauthorize {
        return Step::Reauthorize;
    }
    if status.is_success() {
        return Step::Success;
    }
    let verdict = cx.classifier.and_then(|c| c(status, headers, body));
    if status.is_redirection()
        && cx.scoped
        && let Some(location) = headers.get(LOCATION).and_then(|v| v.to_str().ok())
    {
        // The redirect policy stopped at another origin (see `origin`).
        return Step::RedirectRefused { location };
    }
    let headers_wait = || server_wait(status, headers, cx.clock.now(), cx.reset_style);
    match verdict.unwrap_or_else(|| default_verdict(status)) {
        Verdict::Retry => Step::Retry { wait: headers_wait() },
        Verdict::RateLimited(w) => match w {
            Wait::Headers => Step::RateLimited { wait: headers_wait(), floor: None },
            Wait::For(d) => Step::RateLimited { wait: Some(d), floor: None },
            Wait::Until(t) => {
                Step::RateLimited { wait: Some(t.duration_since(cx.clock.now()).unwrap_or_default()), floor: None }
            }
            Wait::Backoff { first } => Step::RateLimited { wait: None, floor: Some(first) },
        },
        Verdict::Fail(kind) => Step::Fail(kind),
    }
}

/// Whether attempt `attempt` (1-based), which failed after `elapsed` and would wait `wait`,
/// is followed by another: the request may be repeated, attempts are left, and the wait
/// ends within the request's time budget — or, for a rate limit (`rate_limited`), the wait
/// is no longer than `max_rate_limit_wait` (taken even past the time budget: the API said
/// when, and stopping early would only move the wait to the next run).
pub(crate) fn retry_allowed(
    policy: &RetryPolicy,
    repeatable: bool,
    attempt: u32,
    elapsed: Duration,
    wait: Duration,
    rate_limited: bool,
) -> bool {
    let in_budget =
        if rate_limited { wait <= policy.max_rate_limit_wait } else { elapsed + wait <= policy.max_elapsed };
    repeatable && attempt < policy.max_attempts && in_budget
}

/// The wait after failed attempt `attempt` (1-based) of a rate limit with a vendor floor
/// and no header: `first`, doubling per attempt.
pub(crate) fn floor_wait(first: Duration, attempt: u32) -> Duration {
    first.saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
}

/// Whether a response header explains a failure (rate-limit state, the vendor's request
/// id: what an operator or a connector needs), never a credential or a cookie.
fn of_interest(name: &str, request_id_headers: &[String]) -> bool {
    if SENSITIVE_HEADERS.contains(&name) || name == "set-cookie" {
        return false;
    }
    name.starts_with("x-ratelimit-")
        || name.starts_with("ratelimit")
        || name == "retry-after"
        || REQUEST_ID_HEADERS.contains(&name)
        || request_id_headers.iter().any(|h| h == name)
}

/// What a response said, as data for its error: the status (`None`: no response came), the
/// wait it asked for, and its headers of interest (rate-limit, `Retry-After`, request ids —
/// `request_id_headers` are the client's extra ones).
pub(crate) fn http_failure(
    status: Option<StatusCode>,
    headers: &HeaderMap,
    wait: Option<Duration>,
    request_id_headers: &[String],
) -> HttpFailure {
    HttpFailure {
        status: status.map(|s| s.as_u16()),
        retry_after_ms: wait.map(|w| w.as_millis() as u64),
        headers: headers
            .iter()
            .filter(|(name, _)| of_interest(name.as_str(), request_id_headers))
            .filter_map(|(name, v)| Some((name.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
    }
}

/// The error for a response that is not retried: `HTTP <status>: <body excerpt>`, of `kind`,
/// carrying what the response said.
pub(crate) fn status_error(kind: ErrorKind, status: StatusCode, body: &str, http: HttpFailure) -> Error {
    let mut msg = format!("HTTP {status}");
    if !body.is_empty() {
        msg.push_str(&format!(": {body}"));
    }
    Error::new(kind, msg).with_http(http)
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
