//! The HTTP client both halves of the connector build from their config.

use dovetail_core::{BuildCx, Error};
use dovetail_http::auth::{ApiKeyPlacement, AuthConfig};
use dovetail_http::{HttpClient, HttpConfig, RetryPolicy};

use crate::config::ApiVersion;

/// One client per connector instance: its clones share limiters, circuits and tokens.
pub(crate) fn build(
    connector: &str,
    base_url: &str,
    auth: Option<&AuthConfig>,
    api_version: Option<&ApiVersion>,
    http: &HttpConfig,
    idempotency_header: Option<&str>,
    cx: &BuildCx,
) -> Result<HttpClient, Error> {
    let mut b = HttpClient::builder(connector).base_url(base_url);
    if let Some(h) = idempotency_header {
        // Non-idempotent requests are retried only when they carry this header.
        b = b.retry(RetryPolicy { idempotency_header: h.to_ascii_lowercase(), ..RetryPolicy::default() });
    }
    if let Some(v) = api_version {
        b = b.api_version(&v.header, &v.value);
    }
    if let Some(cache) = &cx.response_cache {
        b = b.cache(cache.clone());
    }
    if let Some(a) = auth {
        if let AuthConfig::ApiKey { placement: ApiKeyPlacement::Query(name), .. } = a {
            b = b.secret_query_param(name);
        }
        b = b.auth(a.build(cx.token_store.clone())?);
    }
    b.config(http)?.build()
}
