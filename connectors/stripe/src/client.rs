//! The HTTP client: the key as a bearer token, the pinned `Stripe-Version`, and the default
//! rate budget of the key's mode (Stripe sends no rate-limit headers, so the client paces
//! itself; `http.rate_limit` overrides it).

use std::sync::Arc;
use std::time::Duration;

use dovetail_core::{BuildCx, Error};
use dovetail_http::auth::StaticBearer;
use dovetail_http::{HttpClient, HttpClientBuilder, RateBudget};

use crate::config::{Mode, StripeConfig};

/// The header that pins the API version.
pub const VERSION_HEADER: &str = "Stripe-Version";
/// The header that names the connected account a request acts on.
pub const ACCOUNT_HEADER: &str = "Stripe-Account";

/// The key's mode, or a Config error that says what a key looks like without showing it.
pub fn mode(config: &StripeConfig) -> Result<Mode, Error> {
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
pub fn builder(config: &StripeConfig, mode: Mode, cx: &BuildCx) -> Result<HttpClientBuilder, Error> {
    let base = config.http.base_url.as_deref().unwrap_or(&config.base_url);
    let per_second = mode.requests_per_second();
    let mut b = HttpClient::builder(crate::KIND)
        .base_url(&format!("{}/", base.trim_end_matches('/')))
        .api_version(VERSION_HEADER, &config.stripe_version)
        .rate_limit(RateBudget { requests: per_second, per: Duration::from_secs(1), burst: per_second })
        .auth(Arc::new(StaticBearer::new(config.api_key.clone())));
    if let Some(cache) = &cx.response_cache {
        b = b.cache(cache.clone());
    }
    b.config(&config.http)
}
