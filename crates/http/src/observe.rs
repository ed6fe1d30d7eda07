//! Observability without leaks: URL redaction, scrubbing of secret values from body
//! excerpts, one tracing event per attempt and per logical request, `metrics` counters, and
//! `Deprecation` / `Sunset` warnings.
//!
//! Levels: the logical-request event (`dovetail_http::request`) is INFO when it succeeded
//! and WARN otherwise, and carries the fields of its last attempt. An attempt event
//! (`dovetail_http::attempt`) is DEBUG when it is that last, successful attempt (everything
//! it says is in the request event), ERROR for a 2xx whose body did not decode (with the
//! decode error in `error`: the status alone says nothing went wrong) and WARN for every other
//! attempt. So at INFO every attempt's fields are logged, with one line for a request that
//! succeeded at once.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use reqwest::header::{AsHeaderName, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::Semaphore;

use crate::limit::Limiter;

/// Query parameter names containing any of these (case-insensitive) are redacted in logs.
pub const SECRET_PARAM_WORDS: &[&str] = &["token", "key", "secret", "password", "signature", "auth"];

/// Response headers read for the vendor's request id, before any configured ones.
pub const REQUEST_ID_HEADERS: &[&str] = &["x-request-id", "x-github-request-id", "request-id"];

/// [`REQUEST_ID_HEADERS`] as header names (no parsing per lookup).
const REQUEST_ID_NAMES: [HeaderName; 3] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-github-request-id"),
    HeaderName::from_static("request-id"),
];

/// The rate-limit remaining headers, most specific first.
pub(crate) const REMAINING_NAMES: [HeaderName; 2] =
    [HeaderName::from_static("x-ratelimit-remaining"), HeaderName::from_static("ratelimit-remaining")];

/// Headers whose values are credentials: never logged, scrubbed from excerpts.
pub(crate) const SENSITIVE_HEADERS: &[&str] =
    &["authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"];

/// `url` with the values of secret-looking query parameters (and of the names in `extra`)
/// replaced by `[redacted]`, and any userinfo removed.
pub fn redact_url(url: &Url, extra: &[String]) -> String {
    redact(url, extra).into_owned()
}

/// [`redact_url`], borrowing `url`'s text when there is nothing to redact (no query, no
/// userinfo): the common case costs no allocation.
pub(crate) fn redact<'u>(url: &'u Url, extra: &[String]) -> Cow<'u, str> {
    if url.query().is_none() && url.username().is_empty() && url.password().is_none() {
        return Cow::Borrowed(url.as_str());
    }
    let mut u = url.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    if u.query().is_none() {
        return Cow::Owned(u.to_string());
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if is_secret_param(&k, extra) { "[redacted]".to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    Cow::Owned(u.to_string().replace("%5Bredacted%5D", "[redacted]"))
}

/// `scheme://host[:port]/[redacted]`: all a log shows of a URL whose path holds a secret
/// (a webhook's token).
pub(crate) fn origin_only(url: &Url) -> String {
    format!("{}/[redacted]", url.origin().ascii_serialization())
}

fn is_secret_param(name: &str, extra: &[String]) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_PARAM_WORDS.iter().any(|w| n.contains(w)) || extra.iter().any(|e| e.eq_ignore_ascii_case(name))
}

/// What one prepared request carries that may be secret (credential header values, secret
/// query values), captured cheaply before the request is handed to reqwest; the values to
/// scrub from anything derived from the response are worked out only when needed.
pub(crate) struct SentSecrets {
    headers: Vec<HeaderValue>,
    /// The request's URL when its query differs from the resolved URL's (auth added to it).
    url: Option<Url>,
}

impl SentSecrets {
    /// Captures `req`, which was built from `url` (then had credentials added).
    pub(crate) fn capture(req: &reqwest::Request, url: &Url) -> Self {
        let headers = req
            .headers()
            .iter()
            .filter(|(name, _)| SENSITIVE_HEADERS.contains(&name.as_str()))
            .map(|(_, v)| v.clone())
            .collect();
        let changed = req.url().query() != url.query();
        SentSecrets { headers, url: changed.then(|| req.url().clone()) }
    }

    /// The secret values (credential headers, and their part after a scheme such as
    /// `Bearer `; secret query values, including the names in `extra`; with `path`, every
    /// path segment and query value, for a client whose URLs hold a secret there).
    pub(crate) fn values(&self, url: &Url, extra: &[String], path: bool) -> Vec<String> {
        let mut out = Vec::new();
        for v in &self.headers {
            if let Ok(v) = v.to_str() {
                out.push(v.to_owned());
                out.extend(v.split_once(' ').map(|(_, t)| t.to_owned()));
            }
        }
        for (k, v) in self.url.as_ref().unwrap_or(url).query_pairs() {
            if is_secret_param(&k, extra) && !v.is_empty() {
                out.push(v.into_owned());
            }
        }
        if path {
            let url = self.url.as_ref().unwrap_or(url);
            out.extend(url.path_segments().into_iter().flatten().map(str::to_owned));
            out.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
        }
        out.retain(|s| s.len() >= 4);
        out
    }
}

/// At most 512 bytes of `body` as text, with every value in `secrets` replaced.
pub(crate) fn excerpt(body: &[u8], secrets: &[String]) -> String {
    const MAX: usize = 512;
    let cut = body.len().min(MAX);
    let mut s = String::from_utf8_lossy(&body[..cut]).into_owned();
    for secret in secrets {
        s = s.replace(secret.as_str(), "[redacted]");
    }
    if body.len() > MAX {
        s.push('…');
    }
    s
}

/// The first header of `names` present in `h`, as text. (`HeaderName`s are looked up
/// without parsing; `&str` names are parsed on every lookup.)
pub(crate) fn first_header<K: AsHeaderName>(h: &HeaderMap, names: impl IntoIterator<Item = K>) -> Option<&str> {
    names.into_iter().find_map(|n| h.get(n).and_then(|v| v.to_str().ok()))
}

/// A host a client talks to: its key (`host:port`, the key of its circuit, limiter and
/// metrics) and the `metrics` handles of its most frequent series, registered at the
/// host's first use of them (so labels are not rebuilt per request).
pub(crate) struct Host {
    pub(crate) key: Arc<str>,
    metrics: OnceLock<HostMetrics>,
    /// The client's limiter (for its one credential) and concurrency slots of this host.
    limits: OnceLock<(Arc<Limiter>, Arc<Semaphore>)>,
}

/// The per-host series every successful request records.
struct HostMetrics {
    attempts_200: Counter,
    attempt_seconds: Histogram,
    requests_ok: Counter,
    request_ok_seconds: Histogram,
}

impl Host {
    pub(crate) fn new(key: Arc<str>) -> Self {
        Host { key, metrics: OnceLock::new(), limits: OnceLock::new() }
    }

    /// The host's limiter and slots, looked up by `find` on first use only.
    pub(crate) fn limits(
        &self,
        find: impl FnOnce() -> (Arc<Limiter>, Arc<Semaphore>),
    ) -> &(Arc<Limiter>, Arc<Semaphore>) {
        self.limits.get_or_init(find)
    }

    fn metrics(&self) -> &HostMetrics {
        self.metrics.get_or_init(|| {
            let host = self.key.clone();
            HostMetrics {
                attempts_200: metrics::counter!("dovetail_http_attempts_total", "host" => host.clone(), "status" => "200"),
                attempt_seconds: metrics::histogram!("dovetail_http_attempt_seconds", "host" => host.clone()),
                requests_ok: metrics::counter!("dovetail_http_requests_total", "host" => host.clone(), "outcome" => "ok"),
                request_ok_seconds: metrics::histogram!("dovetail_http_request_seconds", "host" => host, "outcome" => "ok"),
            }
        })
    }
}

/// Everything the per-attempt event reports. Header values are looked up only when an
/// event is enabled.
pub(crate) struct AttemptEvent<'a> {
    pub method: &'a Method,
    pub url: &'a str,
    pub attempt: u32,
    pub status: Option<StatusCode>,
    pub error: Option<&'a str>,
    pub latency: Duration,
    pub bytes: usize,
    /// The response headers (rate-limit remaining, the vendor's request id).
    pub headers: &'a HeaderMap,
    /// Request-id headers configured on top of [`REQUEST_ID_HEADERS`].
    pub request_id_headers: &'a [String],
    pub host: &'a Host,
}

impl AttemptEvent<'_> {
    fn remaining(&self) -> Option<&str> {
        first_header(self.headers, &REMAINING_NAMES)
    }
    fn request_id(&self) -> Option<&str> {
        first_header(self.headers, &REQUEST_ID_NAMES)
            .or_else(|| first_header(self.headers, self.request_id_headers.iter().map(String::as_str)))
    }
}

/// A status code as a metrics label, without allocating for the usual ones.
fn status_label(status: Option<u16>) -> metrics::SharedString {
    let s = match status {
        None => "error",
        Some(200) => "200",
        Some(201) => "201",
        Some(202) => "202",
        Some(204) => "204",
        Some(304) => "304",
        Some(400) => "400",
        Some(401) => "401",
        Some(403) => "403",
        Some(404) => "404",
        Some(408) => "408",
        Some(429) => "429",
        Some(500) => "500",
        Some(502) => "502",
        Some(503) => "503",
        Some(504) => "504",
        Some(other) => return other.to_string().into(),
    };
    metrics::SharedString::const_str(s)
}

/// Logs (at DEBUG) and counts one attempt. A failed attempt is DEBUG too: a retry that
/// later succeeds shows in the request event's `attempts` and the run's retry figures, and
/// one that gives up is listed in the request's error, printed once where it ends up; a
/// last attempt that succeeded has its fields repeated by the request event.
pub(crate) fn attempt(e: &AttemptEvent<'_>) {
    let status = e.status.map(|s| s.as_u16());
    let latency_ms = e.latency.as_millis() as u64;
    tracing::debug!(
        target: "dovetail_http::attempt",
        method = %e.method, url = e.url, attempt = e.attempt, status, error = e.error,
        latency_ms, bytes = e.bytes, rate_limit_remaining = e.remaining(),
        request_id = e.request_id(), "http attempt"
    );
    count_attempt(e);
}

/// Logs (at ERROR, with the decode error in `error`) and counts an attempt whose 2xx body did
/// not decode.
pub(crate) fn attempt_undecodable(e: &AttemptEvent<'_>) {
    tracing::error!(
        target: "dovetail_http::attempt",
        method = %e.method, url = e.url, attempt = e.attempt, status = e.status.map(|s| s.as_u16()),
        error = e.error, latency_ms = e.latency.as_millis() as u64, bytes = e.bytes,
        rate_limit_remaining = e.remaining(), request_id = e.request_id(), "http attempt: the body did not decode"
    );
    count_attempt(e);
}

/// Counts one attempt in the per-host metrics.
fn count_attempt(e: &AttemptEvent<'_>) {
    let status = e.status.map(|s| s.as_u16());
    let m = e.host.metrics();
    if status == Some(200) {
        m.attempts_200.increment(1);
    } else {
        let host = e.host.key.clone();
        metrics::counter!("dovetail_http_attempts_total", "host" => host, "status" => status_label(status))
            .increment(1);
    }
    m.attempt_seconds.record(e.latency.as_secs_f64());
    if status == Some(429) {
        metrics::counter!("dovetail_http_429_total", "host" => e.host.key.clone()).increment(1);
    }
}

/// Logs an attempt that was not sent because no credential could be had (the token endpoint
/// failed). Not counted in the attempt metrics: those count what reached the vendor's API.
pub(crate) fn attempt_not_sent(method: &Method, url: &str, attempt: u32, error: &str) {
    tracing::debug!(
        target: "dovetail_http::attempt",
        method = %method, url, attempt, error, "http attempt not sent: no credential"
    );
}

/// Logs and counts one logical request; `last` is its last attempt, whose fields the event
/// carries (none when no attempt was sent: an open circuit, an auth failure).
pub(crate) fn request_done(
    method: &Method,
    url: &str,
    host: &Host,
    outcome: &'static str,
    attempts: u32,
    total: Duration,
    last: Option<&AttemptEvent<'_>>,
) {
    let total_ms = total.as_millis() as u64;
    let status = last.and_then(|e| e.status).map(|s| s.as_u16());
    let latency_ms = last.map(|e| e.latency.as_millis() as u64);
    let bytes = last.map(|e| e.bytes);
    let error = last.and_then(|e| e.error);
    // INFO whatever the outcome: a failed request's error goes to its caller, which prints it
    // once or records it (a dead letter, a pause); a WARN here would say it again.
    tracing::info!(
        target: "dovetail_http::request",
        %method, url, outcome, attempts, total_ms, status, error, latency_ms, bytes,
        rate_limit_remaining = last.and_then(AttemptEvent::remaining),
        request_id = last.and_then(AttemptEvent::request_id), "http request"
    );
    if outcome == "ok" {
        let m = host.metrics();
        m.requests_ok.increment(1);
        m.request_ok_seconds.record(total.as_secs_f64());
    } else {
        let key = &host.key;
        metrics::counter!("dovetail_http_requests_total", "host" => key.clone(), "outcome" => outcome).increment(1);
        metrics::histogram!("dovetail_http_request_seconds", "host" => key.clone(), "outcome" => outcome)
            .record(total.as_secs_f64());
    }
}

pub(crate) fn retry_wait(host: &str, wait: Duration) {
    metrics::counter!("dovetail_http_retries_total", "host" => host.to_owned()).increment(1);
    metrics::histogram!("dovetail_http_wait_seconds", "host" => host.to_owned(), "reason" => "retry")
        .record(wait.as_secs_f64());
}

/// A time as RFC 3339 UTC to the second, for logs and errors.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_else(|_| "an unknown time".into())
}

/// A rate-limited attempt is waited out: one INFO line with how long, until when and why
/// (the status line of the attempt came just before it).
pub(crate) fn rate_limited_wait(host: &str, url: &str, attempt: u32, wait: Duration, until: std::time::SystemTime) {
    tracing::info!(target: "dovetail_http::ratelimit", host, url, attempt, wait_ms = wait.as_millis() as u64,
        until = %rfc3339(until), "rate limited by the API: waiting before the next attempt");
}

/// A wait imposed by rate limiting (server pacing, a closed gate), not a retry.
pub(crate) fn rate_limit_wait(host: &str, wait: Duration) {
    metrics::histogram!("dovetail_http_wait_seconds", "host" => host.to_owned(), "reason" => "rate_limit")
        .record(wait.as_secs_f64());
}

pub(crate) fn cache_hit(host: &str, kind: &'static str) {
    metrics::counter!("dovetail_http_cache_hits_total", "host" => host.to_owned(), "kind" => kind).increment(1);
}

/// Warns once per (endpoint, header value) about `Deprecation` / `Sunset` headers.
#[derive(Debug, Default)]
pub(crate) struct DeprecationWatch(Mutex<HashSet<String>>);

impl DeprecationWatch {
    pub(crate) fn check(&self, method: &Method, url: &Url, headers: &HeaderMap, stats: &crate::stats::ClientStats) {
        const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
        const SUNSET: HeaderName = HeaderName::from_static("sunset");
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let (dep, sunset) = (text(&DEPRECATION), text(&SUNSET));
        if dep.is_none() && sunset.is_none() {
            return;
        }
        let endpoint = format!("{method} {}", url.path());
        let key = format!("{endpoint} {dep:?} {sunset:?}");
        if self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(key) {
            stats.deprecated(dovetail_core::report::Deprecation {
                endpoint: endpoint.clone(),
                deprecation: dep.map(str::to_owned),
                sunset: sunset.map(str::to_owned),
            });
            tracing::warn!(target: "dovetail_http::deprecation", endpoint, deprecation = dep, sunset,
                "vendor marked this endpoint deprecated");
            metrics::counter!("dovetail_http_deprecated_total", "endpoint" => endpoint).increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_values_are_redacted() {
        let u = Url::parse("https://u:p@x.test/a?access_token=abc&page=2&sig=zz&apiKey=k1").unwrap();
        let r = redact_url(&u, &["sig".into()]);
        assert_eq!(r, "https://x.test/a?access_token=[redacted]&page=2&sig=[redacted]&apiKey=[redacted]");
    }

    #[test]
    fn excerpts_are_truncated_and_scrubbed() {
        let body = format!("token=hunter22 {}", "x".repeat(600));
        let e = excerpt(body.as_bytes(), &["hunter22".into()]);
        assert!(e.starts_with("token=[redacted] ") && e.ends_with('…') && !e.contains("hunter22"));
    }
}
