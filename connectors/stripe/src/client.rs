//! The HTTP client: the key as a bearer token, the pinned `Stripe-Version`, the default rate
//! budget of the key's mode (Stripe sends no rate-limit headers, so the client paces itself;
//! `http.rate_limit` overrides it), and Stripe's `Stripe-Should-Retry` header honoured.

use std::sync::Arc;
use std::time::Duration;

use dovetail_core::{BuildCx, Error};
use dovetail_http::auth::StaticBearer;
use dovetail_http::header::HeaderMap;
use dovetail_http::{Classifier, HttpClient, HttpClientBuilder, RateBudget, StatusCode, Verdict, status_kind};

use crate::config::{Connection, Mode};

/// The header that pins the API version.
pub const VERSION_HEADER: &str = "Stripe-Version";
/// The header that names the connected account a request acts on.
pub const ACCOUNT_HEADER: &str = "Stripe-Account";

/// The key's mode, or a Config error that says what a key looks like without showing it.
pub(crate) fn mode(config: &Connection<'_>) -> Result<Mode, Error> {
    let key = config.api_key.expose();
    if key.trim().is_empty() {
        return Err(Error::config("`api_key` is empty: give a Stripe secret key (`sk_…`) or restricted key (`rk_…`)"));
    }
    Mode::of_key(key).ok_or_else(|| {
        let what = match key.get(..3) {
            Some("pk_") => "a publishable key (`pk_…`), which cannot read these lists",
            _ => "not a Stripe secret or restricted key",
        };
        Error::config(format!(
            "`api_key` is {what}: give a key starting `sk_live_`, `sk_test_`, `rk_live_` or `rk_test_` (the key \
             is not shown here)"
        ))
    })
}

/// A builder with everything the config says; `build` it (tests add a clock first).
pub(crate) fn builder(config: &Connection<'_>, mode: Mode, cx: &BuildCx) -> Result<HttpClientBuilder, Error> {
    let base = config.http.base_url.as_deref().unwrap_or(config.base_url);
    let per_second = mode.requests_per_second();
    let mut b = HttpClient::builder(crate::KIND)
        .base_url(&format!("{}/", base.trim_end_matches('/')))
        .api_version(VERSION_HEADER, config.stripe_version)
        .classifier(classifier())
        .rate_limit(RateBudget { requests: per_second, per: Duration::from_secs(1), burst: per_second })
        .auth(Arc::new(StaticBearer::new(config.api_key.clone())));
    if let Some(cache) = &cx.response_cache {
        b = b.cache(cache.clone());
    }
    b.config(config.http)
}

/// Stripe's word on a failed request (`Stripe-Should-Retry: true|false`) over the status's
/// default: a 5xx it marks final is not retried. A 409 (the same idempotency key in flight)
/// is retried unless it says not to. Rate limits (429) keep dovetail-http's handling.
pub fn classifier() -> Classifier {
    Arc::new(|status: StatusCode, headers: &HeaderMap, _body: &[u8]| -> Option<Verdict> {
        if status.is_success() || status == StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        match headers.get("stripe-should-retry").and_then(|v| v.to_str().ok()) {
            Some(v) if v.eq_ignore_ascii_case("true") => Some(Verdict::Retry),
            Some(v) if v.eq_ignore_ascii_case("false") => Some(Verdict::Fail(status_kind(status))),
            // The same idempotency key still in flight (or a lock timeout): try again shortly.
            _ if status == StatusCode::CONFLICT => Some(Verdict::Retry),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use dovetail_core::ErrorKind;
    use dovetail_http::header::{HeaderName, HeaderValue};

    use super::*;

    #[test]
    fn stripe_should_retry_decides_over_the_status_and_rate_limits_stay_rate_limits() {
        let c = classifier();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static("stripe-should-retry"), HeaderValue::from_str(v).unwrap());
            h
        };
        let none = HeaderMap::new();
        let s = |n: u16| StatusCode::from_u16(n).unwrap();
        assert_eq!(c(s(409), &with("true"), b""), Some(Verdict::Retry));
        assert_eq!(c(s(500), &with("false"), b""), Some(Verdict::Fail(ErrorKind::Permanent)));
        assert_eq!(c(s(503), &with("true"), b""), Some(Verdict::Retry));
        assert_eq!(c(s(401), &with("false"), b""), Some(Verdict::Fail(ErrorKind::Auth)));
        assert_eq!(c(s(500), &none, b""), None, "no header: the default");
        assert_eq!(c(s(409), &none, b""), Some(Verdict::Retry), "a key in flight is waited for");
        assert_eq!(c(s(429), &with("true"), b""), None, "a rate limit is waited out as one");
        assert_eq!(c(s(200), &with("false"), b""), None);
    }
}
