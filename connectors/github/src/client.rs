//! The HTTP client of the source: auth, pinned version, cache, and GitHub's rate-limit rules.
//!
//! Primary rate limits come from the `x-ratelimit-*` headers, which dovetail-http already
//! reads (`X-RateLimit-Reset` is epoch seconds, its default). This module adds GitHub's
//! secondary rate limits: a 403 or 429 whose body mentions the secondary rate limit (or
//! abuse detection) is retried, honouring `retry-after` (else the reset header, else the
//! backoff); a 403 with `x-ratelimit-remaining: 0` (the primary limit) is retried after
//! the reset; any other 403 (missing permission, SSO not authorized) is not retried.

use std::sync::Arc;

use dovetail_core::{BuildCx, Error, ErrorKind};
use dovetail_http::auth::{Auth, StaticBearer};
use dovetail_http::header::HeaderMap;
use dovetail_http::{Classifier, HttpClient, HttpClientBuilder, StatusCode, Verdict};

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

/// GitHub's retry rules on top of dovetail-http's defaults (see the module docs): a 403
/// that is a secondary limit or an exhausted primary limit is retried (after `retry-after`
/// or the reset), a plain 403 fails as `Auth`; a 429 keeps the default (a rate limit).
pub fn classifier() -> Classifier {
    Arc::new(|status: StatusCode, headers: &HeaderMap, body: &[u8]| -> Option<Verdict> {
        if status != StatusCode::FORBIDDEN {
            return None;
        }
        if is_secondary_limit(body) || dovetail_http::remaining(headers) == Some(0) {
            Some(Verdict::Retry)
        } else {
            // A plain 403 is a permission problem: retrying cannot fix it.
            Some(Verdict::Fail(ErrorKind::Auth))
        }
    })
}

/// Whether a body is GitHub's secondary-rate-limit (formerly "abuse detection") answer.
pub fn is_secondary_limit(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    text.contains("secondary rate limit") || text.contains("abuse detection")
}

#[cfg(test)]
mod tests {
    use dovetail_http::Wait;

    use super::*;

    #[test]
    fn secondary_limits_are_retried_and_plain_403s_are_not() {
        let c = classifier();
        let h = HeaderMap::new();
        let body = br#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes."}"#;
        assert_eq!(c(StatusCode::FORBIDDEN, &h, body), Some(Verdict::Retry));
        let abuse = br#"{"message":"You have triggered an abuse detection mechanism."}"#;
        assert_eq!(c(StatusCode::FORBIDDEN, &h, abuse), Some(Verdict::Retry));
        // A 429 is a rate limit by default, secondary or not: retried after its wait.
        assert_eq!(c(StatusCode::TOO_MANY_REQUESTS, &h, body), None);
        assert_eq!(dovetail_http::default_verdict(StatusCode::TOO_MANY_REQUESTS), Verdict::RateLimited(Wait::Headers));
        assert_eq!(
            c(StatusCode::FORBIDDEN, &h, br#"{"message":"Resource not accessible by integration"}"#),
            Some(Verdict::Fail(ErrorKind::Auth))
        );
        let mut exhausted = HeaderMap::new();
        exhausted.insert("x-ratelimit-remaining", "0".parse().unwrap());
        assert_eq!(c(StatusCode::FORBIDDEN, &exhausted, b"{}"), Some(Verdict::Retry));
        assert_eq!(c(StatusCode::NOT_FOUND, &h, b"{}"), None);
    }
}
