//! Policies (retry, rate limit, circuit breaker) and [`HttpConfig`], the serde block a
//! connector embeds as `http: HttpConfig` to set the same knobs from its config file.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// Serde `deserialize_with` for an optional integer key allowed in `MIN..=MAX`: a value
/// outside is refused while deserializing, so the loader's error names the file, line and
/// key. Pair it with `#[schemars(range(min = MIN, max = MAX))]` so `config-schema` says the same.
pub fn in_range<'de, D, T, const MIN: i64, const MAX: i64>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    Option::<i64>::deserialize(d)?.map(|n| checked::<D::Error, T, MIN, MAX>(n)).transpose()
}

/// [`in_range`] for a key that is not optional (its default comes from `#[serde(default)]`).
pub fn in_range_req<'de, D, T, const MIN: i64, const MAX: i64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    checked::<D::Error, T, MIN, MAX>(i64::deserialize(d)?)
}

fn checked<E: serde::de::Error, T: TryFrom<i64>, const MIN: i64, const MAX: i64>(n: i64) -> Result<T, E> {
    if !(MIN..=MAX).contains(&n) {
        return Err(E::custom(format!("must be between {MIN} and {MAX}, found {n}")));
    }
    T::try_from(n).map_err(|_| E::custom(format!("must be between {MIN} and {MAX}, found {n}")))
}

/// Serde `deserialize_with` for a URL key: it must be an absolute `http://` or `https://` URL.
pub fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_http_url(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

/// [`http_url`] for an optional URL key.
pub fn opt_http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    if let Some(s) = &s {
        check_http_url(s).map_err(serde::de::Error::custom)?;
    }
    Ok(s)
}

/// Ok when `s` is an absolute http or https URL with a host; else why not.
pub fn check_http_url(s: &str) -> Result<(), String> {
    // The value is never echoed: a URL may carry credentials in its user info.
    let url =
        reqwest::Url::parse(s.trim()).map_err(|e| format!("not an absolute URL ({e}); use http:// or https://"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("URL scheme `{}` is not allowed; use http:// or https://", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".to_owned());
    }
    Ok(())
}

/// How `X-RateLimit-Reset` is read: vendors disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetStyle {
    /// Unix epoch seconds at which the window resets (GitHub).
    #[default]
    EpochSeconds,
    /// Seconds from now until the window resets.
    DeltaSeconds,
}

/// When and how long to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// First backoff ceiling; doubles with each attempt (full jitter draws in `0..=ceiling`).
    pub base_delay: Duration,
    /// Cap on one computed backoff wait.
    pub max_delay: Duration,
    /// Cap on the whole logical request, waits included — rate-limit waits excepted (see
    /// `max_rate_limit_wait`).
    pub max_elapsed: Duration,
    /// The longest rate-limit wait taken: a wait the API asks for (a `Retry-After`, a reset,
    /// a vendor's floor) up to this long is waited out, even past `max_elapsed`; a longer
    /// one stops the request as `RateLimited` with the time the API allows requests again.
    pub max_rate_limit_wait: Duration,
    /// How `X-RateLimit-Reset` is read.
    pub reset_style: ResetStyle,
    /// Header that makes a non-idempotent request safe to retry.
    pub idempotency_header: String,
    /// Seed for the jitter source (`None` = random); tests pin it.
    pub jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
            max_rate_limit_wait: Duration::from_secs(300),
            reset_style: ResetStyle::EpochSeconds,
            idempotency_header: "idempotency-key".into(),
            jitter_seed: None,
        }
    }
}

/// A client-side request budget per (host, credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateBudget {
    /// Sustained requests allowed per `per`.
    pub requests: u32,
    /// The window of `requests` (one second, one minute...).
    pub per: Duration,
    /// Requests allowed back to back before the sustained rate applies.
    pub burst: u32,
}

impl std::fmt::Display for RateBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = match self.per.as_secs() {
            1 if self.per.subsec_nanos() == 0 => "s".to_owned(),
            60 if self.per.subsec_nanos() == 0 => "min".to_owned(),
            _ => format!("{:?}", self.per),
        };
        write!(f, "{}/{per} (burst {})", self.requests, self.burst)
    }
}

/// When a host is declared unavailable, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive logical requests that spent their retry budget before the circuit opens.
    pub failure_threshold: u32,
    /// How long the circuit stays open before one probe request is let through.
    pub cool_down: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        CircuitPolicy { failure_threshold: 5, cool_down: Duration::from_secs(60) }
    }
}

/// The `http` block of an API connector's config; every field is optional and the
/// connector's code supplies the defaults (base URL, API version).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Base URL that relative request paths are joined to (e.g. a GitHub Enterprise host).
    #[serde(default, deserialize_with = "opt_http_url")]
    pub base_url: Option<String>,
    /// Pinned API version sent in the connector's version header.
    pub api_version: Option<String>,
    /// Connect timeout in milliseconds (default 10000).
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 600_000>")]
    #[schemars(range(min = 1, max = 600_000))]
    pub connect_timeout_ms: Option<u64>,
    /// Whole-request timeout in milliseconds, body included (default 60000).
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 3_600_000>")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub timeout_ms: Option<u64>,
    /// Explicit proxy URL for every request; without it HTTPS_PROXY / HTTP_PROXY / NO_PROXY
    /// are honoured. An explicit proxy has no exclusion list: NO_PROXY does not apply to it.
    pub proxy: Option<String>,
    /// PEM files with extra trusted CA certificates (self-hosted vendors).
    #[serde(default)]
    pub ca_certificates: Vec<PathBuf>,
    /// Retry settings.
    pub retry: Option<RetryConfig>,
    /// Client-side rate budget per (host, credential); none by default.
    pub rate_limit: Option<RateLimitConfig>,
    /// Requests in flight per host at most (default 8).
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 1024>")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_concurrency: Option<u32>,
    /// Circuit breaker settings.
    pub circuit: Option<CircuitConfig>,
    /// Extra response headers that carry the vendor's request id.
    #[serde(default)]
    pub request_id_headers: Vec<String>,
    /// Headers sent on every request, after the connector's own (not for credentials: those
    /// belong in `auth`, where they are kept secret).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Origins besides the base URL's that requests — and so credentials — may go to, e.g.
    /// `["https://uploads.example.com"]`: exact origins (scheme, host, optional port), no
    /// wildcards. A pagination link, body URL, child URL or stored position pointing
    /// anywhere else stops the stream; a redirect to another origin is never followed.
    #[serde(default)]
    pub allowed_origins: Vec<crate::origin::AllowedOrigin>,
}

/// Retry settings in config form.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in total, the first included (default 5).
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 100>")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<u32>,
    /// First backoff ceiling in milliseconds (default 500).
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 600_000>")]
    #[schemars(range(min = 1, max = 600_000))]
    pub base_delay_ms: Option<u64>,
    /// Cap on one computed backoff wait in milliseconds (default 30000).
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 3_600_000>")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub max_delay_ms: Option<u64>,
    /// Cap on a whole logical request in milliseconds (default 300000).
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 86_400_000>")]
    #[schemars(range(min = 1, max = 86_400_000))]
    pub max_elapsed_ms: Option<u64>,
    /// The longest rate-limit wait taken, in milliseconds (default 300000): longer ones stop
    /// the stream at its checkpoint as rate-limited, with the time to come back.
    #[serde(default, deserialize_with = "in_range::<_, _, 0, 86_400_000>")]
    #[schemars(range(min = 0, max = 86_400_000))]
    pub max_rate_limit_wait_ms: Option<u64>,
    /// How `X-RateLimit-Reset` is read: `epoch_seconds` (default) or `delta_seconds`.
    pub reset_style: Option<ResetStyle>,
}

/// Client-side rate budget in config form: give `per_second` or `per_minute`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 100_000>")]
    #[schemars(range(min = 1, max = 100_000))]
    pub per_second: Option<u32>,
    /// Sustained requests per minute.
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 6_000_000>")]
    #[schemars(range(min = 1, max = 6_000_000))]
    pub per_minute: Option<u32>,
    /// Back-to-back requests allowed (default 1).
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 100_000>")]
    #[schemars(range(min = 1, max = 100_000))]
    pub burst: Option<u32>,
}

/// Circuit breaker settings in config form.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Consecutive exhausted requests before the host is marked unavailable (default 5).
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 1000>")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: Option<u32>,
    /// Cool-down in milliseconds before a probe (default 60000).
    #[serde(default, deserialize_with = "in_range::<_, _, 1, 86_400_000>")]
    #[schemars(range(min = 1, max = 86_400_000))]
    pub cool_down_ms: Option<u64>,
}

impl RetryConfig {
    /// Overlay these settings on `p`.
    pub fn apply(&self, mut p: RetryPolicy) -> RetryPolicy {
        let ms = Duration::from_millis;
        p.max_attempts = self.max_attempts.unwrap_or(p.max_attempts).max(1);
        p.base_delay = self.base_delay_ms.map(ms).unwrap_or(p.base_delay);
        p.max_delay = self.max_delay_ms.map(ms).unwrap_or(p.max_delay);
        p.max_elapsed = self.max_elapsed_ms.map(ms).unwrap_or(p.max_elapsed);
        p.max_rate_limit_wait = self.max_rate_limit_wait_ms.map(ms).unwrap_or(p.max_rate_limit_wait);
        p.reset_style = self.reset_style.unwrap_or(p.reset_style);
        p
    }
}

impl RateLimitConfig {
    /// The budget, or a Config error when neither or both rates are given or one is zero.
    pub fn budget(&self) -> Result<RateBudget, dovetail_core::Error> {
        let (requests, per) = match (self.per_second, self.per_minute) {
            (Some(n), None) => (n, Duration::from_secs(1)),
            (None, Some(n)) => (n, Duration::from_secs(60)),
            _ => {
                return Err(dovetail_core::Error::config(
                    "http.rate_limit: give exactly one of per_second, per_minute",
                ));
            }
        };
        if requests == 0 || self.burst == Some(0) {
            return Err(dovetail_core::Error::config("http.rate_limit: rates and burst must be at least 1"));
        }
        Ok(RateBudget { requests, per, burst: self.burst.unwrap_or(1) })
    }
}

impl CircuitConfig {
    /// Overlay these settings on `p`.
    pub fn apply(&self, p: CircuitPolicy) -> CircuitPolicy {
        CircuitPolicy {
            failure_threshold: self.failure_threshold.unwrap_or(p.failure_threshold).max(1),
            cool_down: self.cool_down_ms.map(Duration::from_millis).unwrap_or(p.cool_down),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected_and_budgets_checked() {
        let e = serde_json::from_str::<HttpConfig>(r#"{"timeout": 3}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"));
        let c: HttpConfig = serde_json::from_str(r#"{"rate_limit": {"per_minute": 60, "burst": 5}}"#).unwrap();
        let b = c.rate_limit.unwrap().budget().unwrap();
        assert_eq!((b.requests, b.per, b.burst), (60, Duration::from_secs(60), 5));
        assert!(RateLimitConfig { per_second: Some(1), per_minute: Some(1), burst: None }.budget().is_err());
    }
}
