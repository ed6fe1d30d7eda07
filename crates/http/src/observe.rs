//! Observability without leaks: URL redaction, scrubbing of secret values from body
//! excerpts, one tracing event per attempt and per logical request, `metrics` counters, and
//! `Deprecation` / `Sunset` warnings.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

/// Query parameter names containing any of these (case-insensitive) are redacted in logs.
pub const SECRET_PARAM_WORDS: &[&str] = &["token", "key", "secret", "password", "signature", "auth"];

/// Response headers read for the vendor's request id, before any configured ones.
pub const REQUEST_ID_HEADERS: &[&str] = &["x-request-id", "x-github-request-id", "request-id"];

/// Headers whose values are credentials: never logged, scrubbed from excerpts.
const SENSITIVE_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"];

/// `url` with the values of secret-looking query parameters (and of the names in `extra`)
/// replaced by `[redacted]`, and any userinfo removed.
pub fn redact_url(url: &Url, extra: &[String]) -> String {
    if url.query().is_none() && url.username().is_empty() && url.password().is_none() {
        return url.as_str().to_owned();
    }
    let mut u = url.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    if u.query().is_none() {
        return u.to_string();
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if is_secret_param(&k, extra) { "[redacted]".to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string().replace("%5Bredacted%5D", "[redacted]")
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
    /// `Bearer `; secret query values, including the names in `extra`).
    pub(crate) fn values(&self, url: &Url, extra: &[String]) -> Vec<String> {
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

/// The first header of `names` present in `h`, as text.
pub(crate) fn first_header<'a>(h: &'a HeaderMap, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names.into_iter().find_map(|n| h.get(n).and_then(|v| v.to_str().ok()))
}

/// Everything the per-attempt event reports. Header values are looked up only when the
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
    pub host: &'a Arc<str>,
}

impl AttemptEvent<'_> {
    fn remaining(&self) -> Option<&str> {
        first_header(self.headers, ["x-ratelimit-remaining", "ratelimit-remaining"])
    }
    fn request_id(&self) -> Option<&str> {
        let extra = self.request_id_headers.iter().map(String::as_str);
        first_header(self.headers, REQUEST_ID_HEADERS.iter().copied().chain(extra))
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

pub(crate) fn attempt(e: &AttemptEvent<'_>) {
    let status = e.status.map(|s| s.as_u16());
    let latency_ms = e.latency.as_millis() as u64;
    let ok = e.status.is_some_and(|s| s.is_success() || s == StatusCode::NOT_MODIFIED);
    macro_rules! ev {
        ($lvl:ident) => {
            tracing::$lvl!(
                target: "dovetail_http::attempt",
                method = %e.method, url = e.url, attempt = e.attempt, status, error = e.error,
                latency_ms, bytes = e.bytes, rate_limit_remaining = e.remaining(),
                request_id = e.request_id(), "http attempt"
            )
        };
    }
    if ok {
        ev!(debug)
    } else {
        ev!(warn)
    }
    metrics::counter!("dovetail_http_attempts_total", "host" => e.host.clone(), "status" => status_label(status))
        .increment(1);
    metrics::histogram!("dovetail_http_attempt_seconds", "host" => e.host.clone()).record(e.latency.as_secs_f64());
    if status == Some(429) {
        metrics::counter!("dovetail_http_429_total", "host" => e.host.clone()).increment(1);
    }
}

pub(crate) fn request_done(
    method: &Method,
    url: &str,
    host: &Arc<str>,
    outcome: &'static str,
    attempts: u32,
    total: Duration,
) {
    let total_ms = total.as_millis() as u64;
    if outcome == "ok" || outcome == "cache" {
        tracing::info!(target: "dovetail_http::request", %method, url, outcome, attempts, total_ms, "http request");
    } else {
        tracing::warn!(target: "dovetail_http::request", %method, url, outcome, attempts, total_ms, "http request");
    }
    metrics::counter!("dovetail_http_requests_total", "host" => host.clone(), "outcome" => outcome).increment(1);
    metrics::histogram!("dovetail_http_request_seconds", "host" => host.clone(), "outcome" => outcome)
        .record(total.as_secs_f64());
}

pub(crate) fn retry_wait(host: &str, wait: Duration) {
    metrics::counter!("dovetail_http_retries_total", "host" => host.to_owned()).increment(1);
    metrics::histogram!("dovetail_http_wait_seconds", "host" => host.to_owned(), "reason" => "retry")
        .record(wait.as_secs_f64());
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
    pub(crate) fn check(&self, method: &Method, url: &Url, headers: &HeaderMap) {
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
