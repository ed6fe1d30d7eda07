//! [`Response::provenance`]: the [`Provenance`] of the records read from one response, the
//! one way every HTTP connector builds it (`cargo xtask tidy` refuses a copy under
//! `connectors/`).

use dovetail_core::Provenance;

use crate::observe::{REQUEST_ID_HEADERS, redact_url};
use crate::request::Response;

impl Response {
    /// Where the records of this response came from: `connector` (its kind), the final URL
    /// with secrets redacted, the pinned `api_version`, the fetch time, the vendor's request
    /// id (the first of [`REQUEST_ID_HEADERS`] present), the status, and whether it was
    /// served stale from the cache.
    pub fn provenance(&self, connector: &str, api_version: Option<&str>) -> Provenance {
        Provenance {
            connector: connector.to_owned(),
            endpoint: redact_url(&self.url, &[]),
            api_version: api_version.map(str::to_owned),
            fetched_at: dovetail_core::now_rfc3339(),
            request_id: REQUEST_ID_HEADERS.iter().find_map(|h| self.header(h)).map(str::to_owned),
            status: Some(self.status.as_u16()),
            stale: self.stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use reqwest::header::{HeaderMap, HeaderValue};
    use reqwest::{StatusCode, Url};

    use super::*;

    fn response(url: &str, headers: &[(&'static str, &str)], stale: bool) -> Response {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        Response {
            status: StatusCode::OK,
            headers: map,
            body: Bytes::new(),
            url: Url::parse(url).unwrap(),
            from_cache: false,
            stale,
            attempts: 1,
        }
    }

    #[test]
    fn provenance_names_the_redacted_url_the_request_id_and_staleness() {
        let r = response(
            "https://api.example.com/v1/items?page=2&access_token=s3cret",
            &[("x-github-request-id", "GH-1"), ("request-id", "other")],
            true,
        );
        let p = r.provenance("acme", Some("2026-01-01"));
        assert_eq!(p.connector, "acme");
        assert_eq!(p.endpoint, redact_url(&r.url, &[]));
        assert!(p.endpoint.contains("page=2") && !p.endpoint.contains("s3cret"), "{}", p.endpoint);
        assert_eq!(p.api_version.as_deref(), Some("2026-01-01"));
        assert_eq!(p.request_id.as_deref(), Some("GH-1"), "the first of REQUEST_ID_HEADERS present");
        assert_eq!((p.status, p.stale), (Some(200), true));
        assert!(p.fetched_at.ends_with('Z'), "{}", p.fetched_at);

        let p = response("https://api.example.com/v1/items", &[], false).provenance("rest", None);
        assert_eq!((p.api_version, p.request_id, p.stale), (None, None, false));
    }
}
