//! Policies (retry, rate limit, circuit breaker) and [`HttpConfig`], the serde block a
//! connector embeds as `http: HttpConfig` to set the same knobs from its config file.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

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
    /// Cap on the whole logical request, waits included. A server-requested wait that
    /// would cross it ends the request instead (as `RateLimited`), never an early request.
    pub max_elapsed: Duration,
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
    pub base_url: Option<String>,
    /// Pinned API version sent in the connector's version header.
    pub api_version: Option<String>,
    /// Connect timeout in milliseconds (default 10000).
    pub connect_timeout_ms: Option<u64>,
    /// Whole-request timeout in milliseconds, body included (default 60000).
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
    pub max_attempts: Option<u32>,
    /// First backoff ceiling in milliseconds (default 500).
    pub base_delay_ms: Option<u64>,
    /// Cap on one computed backoff wait in milliseconds (default 30000).
    pub max_delay_ms: Option<u64>,
    /// Cap on a whole logical request in milliseconds (default 300000).
    pub max_elapsed_ms: Option<u64>,
    /// How `X-RateLimit-Reset` is read: `epoch_seconds` (default) or `delta_seconds`.
    pub reset_style: Option<ResetStyle>,
}

/// Client-side rate budget in config form: give `per_second` or `per_minute`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: Option<u32>,
    /// Sustained requests per minute.
    pub per_minute: Option<u32>,
    /// Back-to-back requests allowed (default 1).
    pub burst: Option<u32>,
}

/// Circuit breaker settings in config form.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Consecutive exhausted requests before the host is marked unavailable (default 5).
    pub failure_threshold: Option<u32>,
    /// Cool-down in milliseconds before a probe (default 60000).
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
