//! The HTTP client: base URL (credential origin), private-app token or OAuth2 refresh, the
//! runner's response cache and token store, the user's `http` block, and HubSpot's daily
//! allowance.
//!
//! HubSpot's daily allowance comes back at midnight in the account's time zone
//! ([`AccountZone`], read from the account-info API with the properties; UTC until then or
//! when it cannot be read). Two signals end a run on it, each with that time to come back:
//! `X-HubSpot-RateLimit-Daily-Remaining: 0` closes the limiter's gate until the reset (the
//! next request is not sent), and a 429 whose body names `"policyName": "DAILY"` waits until
//! the reset — longer than any `http.retry.max_rate_limit_wait_ms`, so the stream stops rate
//! limited instead of retrying all night. Other 429s (the rolling ten-second window,
//! `TEN_SECONDLY_ROLLING`) are waited out by the client's default rules.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dovetail_core::{BuildCx, Error};
use dovetail_http::auth::{Auth, AuthConfig, ClientAuth, StaticBearer};
use dovetail_http::header::HeaderMap;
use dovetail_http::{Classifier, HttpClient, StatusCode, Verdict, Wait};
use jiff::tz::TimeZone;

use crate::config::HubspotConfig;

/// The account's time zone, shared by the source's clients (their classifier and daily-reset
/// rule): UTC until the account-info API said otherwise.
#[derive(Debug, Clone, Default)]
pub struct AccountZone(Arc<Mutex<Option<TimeZone>>>);

impl AccountZone {
    /// From now on, the daily allowance comes back at midnight in `tz`.
    pub fn set(&self, tz: TimeZone) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tz);
    }

    /// The zone in force (UTC when none was read).
    pub fn zone(&self) -> TimeZone {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or(TimeZone::UTC)
    }

    /// The next midnight after `now` in the account's time zone: when a spent daily
    /// allowance comes back.
    pub fn next_midnight(&self, now: SystemTime) -> SystemTime {
        next_midnight_in(&self.zone(), now)
    }
}

/// The next midnight after `now` in `tz` (a day later should the calendar overflow).
fn next_midnight_in(tz: &TimeZone, now: SystemTime) -> SystemTime {
    jiff::Timestamp::try_from(now)
        .ok()
        .and_then(|ts| ts.to_zoned(tz.clone()).date().tomorrow().ok()?.to_zoned(tz.clone()).ok())
        .map_or(now + Duration::from_secs(86_400), |z| SystemTime::from(z.timestamp()))
}

/// The client for `config`, no IO; `zone` says when the daily allowance comes back.
pub(crate) fn build(config: &HubspotConfig, cx: &BuildCx, zone: &AccountZone) -> Result<HttpClient, Error> {
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
        .classifier(classifier(zone.clone()))
        .daily_reset({
            let zone = zone.clone();
            Arc::new(move |now| zone.next_midnight(now))
        })
        .auth(auth);
    if let Some(cache) = &cx.response_cache {
        b = b.cache(cache.clone());
    }
    b.config(&config.http)?.build()
}

/// HubSpot's daily-limit 429, waited for until midnight in `zone` (see the module docs);
/// everything else the default rules.
pub fn classifier(zone: AccountZone) -> Classifier {
    Arc::new(move |status: StatusCode, _headers: &HeaderMap, body: &[u8]| -> Option<Verdict> {
        if status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let policy = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("policyName").and_then(|p| p.as_str()).map(str::to_owned));
        match policy.as_deref() {
            Some("DAILY") => Some(Verdict::RateLimited(Wait::Until(zone.next_midnight(SystemTime::now())))),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_daily_429_waits_until_midnight_and_a_rolling_one_takes_the_default() {
        let c = classifier(AccountZone::default());
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
        let utc = AccountZone::default();
        assert_eq!(
            utc.next_midnight(UNIX_EPOCH + Duration::from_secs(86_400 + 5)),
            UNIX_EPOCH + Duration::from_secs(172_800)
        );
    }

    #[test]
    fn the_daily_allowance_comes_back_at_midnight_in_the_accounts_time_zone() {
        let at = |s: &str| SystemTime::from(s.parse::<jiff::Timestamp>().unwrap());
        let zone = AccountZone::default();
        zone.set(TimeZone::get("America/New_York").unwrap());
        // 03:00 UTC is still the evening before in New York (EST, UTC−5; EDT, UTC−4).
        assert_eq!(zone.next_midnight(at("2026-12-08T03:00:00Z")), at("2026-12-08T05:00:00Z"));
        assert_eq!(zone.next_midnight(at("2026-12-08T06:00:00Z")), at("2026-12-09T05:00:00Z"));
        assert_eq!(zone.next_midnight(at("2026-07-01T12:00:00Z")), at("2026-07-02T04:00:00Z"));
        zone.set(TimeZone::fixed(jiff::tz::Offset::from_hours(9).unwrap()));
        assert_eq!(zone.next_midnight(at("2026-12-08T03:00:00Z")), at("2026-12-08T15:00:00Z"));
    }
}
