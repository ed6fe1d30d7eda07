//! The HTTP client: base URL (credential origin), private-app token or OAuth2 refresh, the
//! runner's response cache and token store, the user's `http` block, and HubSpot's 429s.
//!
//! A 429 whose body names `"policyName": "DAILY"` means the account's daily allowance is
//! spent: it comes back at midnight, so the wait is until the next midnight UTC — longer
//! than any `http.retry.max_rate_limit_wait_ms`, so the stream stops rate limited with that
//! time instead of retrying all night. Other 429s (the rolling ten-second window,
//! `SECONDLY`) are waited out by the client's default rules.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dovetail_core::{BuildCx, Error};
use dovetail_http::auth::{Auth, AuthConfig, ClientAuth, StaticBearer};
use dovetail_http::header::HeaderMap;
use dovetail_http::{Classifier, HttpClient, StatusCode, Verdict, Wait};

use crate::config::HubspotConfig;

/// The client for `config`, no IO.
pub(crate) fn build(config: &HubspotConfig, cx: &BuildCx) -> Result<HttpClient, Error> {
    let base = config.http.base_url.as_deref().unwrap_or(&config.base_url).trim_end_matches('/').to_owned();
    if !base.starts_with("https://") && !base.starts_with("http://") {
        return Err(Error::config(format!("`base_url` must be an http(s) URL, not `{base}`")));
    }
    let auth: Arc<dyn Auth> = match (&config.token, &config.oauth) {
        (Some(t), None) if t.expose().trim().is_empty() => {
            return Err(Error::config("`token` is empty: give a private-app access token"));
        }
        (Some(t), None) => Arc::new(StaticBearer::new(t.clone())),
        (None, Some(o)) => AuthConfig::Oauth2RefreshToken {
            token_url: format!("{base}/oauth/v1/token"),
            client_id: o.client_id.clone(),
            client_secret: Some(o.client_secret.clone()),
            refresh_token: o.refresh_token.clone(),
            client_auth: ClientAuth::ClientSecretPost,
            scopes: vec![],
            refresh_skew_secs: 300,
        }
        .build(cx.token_store.clone())?,
        (Some(_), Some(_)) => return Err(Error::config("give either `token` or `oauth`, not both")),
        (None, None) => {
            return Err(Error::config(
                "the hubspot source needs `token` (a private-app access token) or `oauth` (client_id, client_secret, refresh_token)",
            ));
        }
    };
    let mut b = HttpClient::builder(crate::KIND)
        .base_url(&format!("{base}/"))
        .request_id_header("x-hubspot-correlation-id")
        .classifier(classifier())
        .auth(auth);
    if let Some(cache) = &cx.response_cache {
        b = b.cache(cache.clone());
    }
    b.config(&config.http)?.build()
}

/// HubSpot's daily-limit 429 (see the module docs); everything else the default rules.
pub fn classifier() -> Classifier {
    Arc::new(|status: StatusCode, _headers: &HeaderMap, body: &[u8]| -> Option<Verdict> {
        if status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let policy = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("policyName").and_then(|p| p.as_str()).map(str::to_owned));
        match policy.as_deref() {
            Some("DAILY") => Some(Verdict::RateLimited(Wait::Until(next_midnight_utc(SystemTime::now())))),
            _ => None,
        }
    })
}

/// The next midnight UTC after `now`, when a spent daily limit is given back.
fn next_midnight_utc(now: SystemTime) -> SystemTime {
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs((secs / 86_400 + 1) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daily_429_waits_until_midnight_and_a_rolling_one_takes_the_default() {
        let c = classifier();
        let h = HeaderMap::new();
        let daily = br#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","policyName":"DAILY"}"#;
        let secondly = br#"{"status":"error","message":"You have reached your secondly limit.","errorType":"RATE_LIMIT","policyName":"SECONDLY"}"#;
        match c(StatusCode::TOO_MANY_REQUESTS, &h, daily) {
            Some(Verdict::RateLimited(Wait::Until(t))) => {
                let left = t.duration_since(SystemTime::now()).unwrap_or_default();
                assert!(left <= Duration::from_secs(86_400), "{left:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c(StatusCode::TOO_MANY_REQUESTS, &h, secondly), None);
        assert_eq!(c(StatusCode::SERVICE_UNAVAILABLE, &h, daily), None);
        assert_eq!(
            next_midnight_utc(UNIX_EPOCH + Duration::from_secs(86_400 + 5)),
            UNIX_EPOCH + Duration::from_secs(172_800)
        );
    }
}
