//! The HTTP client of the source: auth, pinned version, cache, and GitHub's rate-limit rules.
//!
//! Primary rate limits come from the `x-ratelimit-*` headers, which dovetail-http already
//! reads (`X-RateLimit-Reset` is epoch seconds, its default). This module classifies
//! GitHub's 403 and 429 answers as GitHub documents them: each is a rate limit — waited
//! out, or (longer than `http.retry.max_rate_limit_wait_ms`) the stream stops as rate
//! limited with the time to come back — when it carries `retry-after` (wait that long),
//! `x-ratelimit-remaining: 0` (the primary limit: wait for `x-ratelimit-reset`), or a body
//! naming the secondary rate limit or abuse detection, or is a 429 (wait at least a
//! minute, then back off exponentially). Any other 403 (missing permission, SSO not
//! authorized) is an Auth error, not retried.

use std::sync::Arc;
use std::time::Duration;

use dovetail_core::{BuildCx, Error, ErrorKind};
use dovetail_http::auth::{Auth, StaticBearer};
use dovetail_http::header::HeaderMap;
use dovetail_http::{Classifier, HttpClient, HttpClientBuilder, StatusCode, Verdict, Wait};

use crate::config::GithubConfig;

/// The header that pins the REST API version.
pub const API_VERSION_HEADER: &str = "X-GitHub-Api-Version";
/// The media type GitHub recommends.
pub const ACCEPT: &str = "application/vnd.github+json";

/// A builder with everything the config says; `build` it (tests add a clock first).
pub fn builder(config: &GithubConfig, cx: &BuildCx) -> Result<HttpClientBuilder, Error> {
    let auth: Arc<dyn Auth> = match (&config.token, &config.app) {
        (Some(t), None) if t.expose().trim().is_empty() => {
            return Err(Error::config("`token` is empty: give a personal access token or an app installation token"));
        }
        (Some(t), None) => Arc::new(StaticBearer::new(t.clone())),
        // The app's own endpoints, through a client on the same base URL (and origin).
        (None, Some(app)) => crate::app::provider(app, unauthenticated(config, cx)?)?,
        (Some(_), Some(_)) => return Err(Error::config("give either `token` or `app`, not both")),
        (None, None) => {
            return Err(Error::config(
                "the github source needs `token` (a personal access token) or `app` (a GitHub App installation)",
            ));
        }
    };
    Ok(unauthenticated(config, cx)?.auth(auth))
}

/// The client builder without credentials.
fn unauthenticated(config: &GithubConfig, cx: &BuildCx) -> Result<HttpClientBuilder, Error> {
    if config.owner.trim().is_empty() || config.owner.contains('/') {
        return Err(Error::config("`owner` must be an organization or user login (no `/`)"));
    }
    let base = config.http.base_url.as_deref().unwrap_or(&config.base_url);
    if !base.starts_with("https://") && !base.starts_with("http://") {
        return Err(Error::config(format!("`base_url` must be an http(s) URL, not `{base}`")));
    }
    let mut b = HttpClient::builder(crate::KIND)
        .base_url(&format!("{}/", base.trim_end_matches('/')))
        .header("accept", ACCEPT)
        .api_version(API_VERSION_HEADER, &config.api_version)
        .classifier(classifier());
    if let Some(cache) = &cx.response_cache {
        b = b.cache(cache.clone());
    }
    b.config(&config.http)
}

/// GitHub's rate-limit rules on top of dovetail-http's defaults (see the module docs).
pub fn classifier() -> Classifier {
    Arc::new(|status: StatusCode, headers: &HeaderMap, body: &[u8]| -> Option<Verdict> {
        if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let told = headers.contains_key("retry-after") || dovetail_http::remaining(headers) == Some(0);
        if told {
            return Some(Verdict::RateLimited(Wait::Headers));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || is_secondary_limit(body) {
            return Some(Verdict::RateLimited(Wait::Backoff { first: SECONDARY_FLOOR }));
        }
        // A plain 403 is a permission problem: retrying cannot fix it.
        Some(Verdict::Fail(ErrorKind::Auth))
    })
}

/// GitHub: "if you receive a secondary rate limit without `retry-after` or
/// `x-ratelimit-remaining: 0`, wait at least one minute before retrying", then longer.
pub const SECONDARY_FLOOR: Duration = Duration::from_secs(60);

/// Whether a body is GitHub's secondary-rate-limit (formerly "abuse detection") answer.
pub fn is_secondary_limit(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    text.contains("secondary rate limit") || text.contains("abuse detection")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (dovetail_http::header::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn rate_limits_are_rate_limits_in_every_form_github_sends_and_plain_403s_are_auth() {
        let c = classifier();
        let none = h(&[]);
        let secondary = br#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes."}"#;
        let abuse = br#"{"message":"You have triggered an abuse detection mechanism."}"#;
        let denied = br#"{"message":"Resource not accessible by integration"}"#;
        let sso = br#"{"message":"Resource protected by organization SAML enforcement."}"#;
        let after = h(&[("retry-after", "30"), ("x-ratelimit-remaining", "4990")]);
        let primary = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000000")]);
        let floor = Some(Verdict::RateLimited(Wait::Backoff { first: SECONDARY_FLOOR }));
        let headers = Some(Verdict::RateLimited(Wait::Headers));
        let (s403, s429) = (StatusCode::FORBIDDEN, StatusCode::TOO_MANY_REQUESTS);
        #[rustfmt::skip]
        let table: Vec<(StatusCode, &HeaderMap, &[u8], Option<Verdict>)> = vec![
            (s403, &after, secondary, headers.clone()),
            (s403, &none, secondary, floor.clone()),
            (s403, &none, abuse, floor.clone()),
            (s403, &primary, b"{}", headers.clone()),
            (s429, &primary, b"{}", headers.clone()),
            (s429, &after, b"{}", headers.clone()),
            (s429, &none, secondary, floor.clone()),
            (s429, &none, b"{}", floor.clone()),
            (s403, &none, denied, Some(Verdict::Fail(ErrorKind::Auth))),
            (s403, &none, sso, Some(Verdict::Fail(ErrorKind::Auth))),
            (StatusCode::NOT_FOUND, &none, b"{}", None),
            (StatusCode::SERVICE_UNAVAILABLE, &after, b"{}", None),
        ];
        for (status, headers, body, want) in table {
            assert_eq!(c(status, headers, body), want, "{status} {headers:?} {}", String::from_utf8_lossy(body));
        }
    }
}
