//! Conditional requests through core's `ResponseCache`: keys, validators, what is stored
//! and replayed, and [`MemoryResponseCache`], a bounded in-memory cache for tests and
//! one-off runs (the durable one lives in dovetail-state).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use dovetail_core::Error;
use dovetail_core::remote::{CachedResponse, ResponseCache};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::observe::first_header;
use crate::request::Response;

/// Response headers kept with a cached body (no credentials, no cookies).
const KEPT_HEADERS: &[&str] = &["content-type", "link", "etag", "last-modified", "x-total-count"];

/// The cache key of a request: method, URL with secret query values redacted, credential.
pub(crate) fn key(method: &Method, redacted_url: &str, credential: &str) -> String {
    format!("{method} {redacted_url} {credential}")
}

/// Add `If-None-Match` / `If-Modified-Since` from a cached response.
pub(crate) fn add_validators(h: &mut HeaderMap, cached: &CachedResponse) {
    if let Some(v) = cached.etag.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
        h.insert(reqwest::header::IF_NONE_MATCH, v);
    }
    if let Some(v) = cached.last_modified.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
        h.insert(reqwest::header::IF_MODIFIED_SINCE, v);
    }
}

/// What to store for a 2xx response.
pub(crate) fn to_cached(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> CachedResponse {
    CachedResponse {
        status: status.as_u16(),
        etag: first_header(headers, ["etag"]).map(str::to_owned),
        last_modified: first_header(headers, ["last-modified"]).map(str::to_owned),
        headers: KEPT_HEADERS
            .iter()
            .filter_map(|n| first_header(headers, [*n]).map(|v| ((*n).to_owned(), v.to_owned())))
            .collect(),
        body: body.to_vec(),
        stored_at: jiff::Timestamp::now().to_string(),
    }
}

/// A response rebuilt from the cache.
pub(crate) fn to_response(c: &CachedResponse, url: Url, attempts: u32, stale: bool) -> Response {
    let mut headers = HeaderMap::new();
    for (k, v) in &c.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.append(k, v);
        }
    }
    Response {
        status: StatusCode::from_u16(c.status).unwrap_or(StatusCode::OK),
        headers,
        body: c.body.clone().into(),
        url,
        from_cache: !stale,
        stale,
        attempts,
    }
}

/// A bounded in-memory [`ResponseCache`]: at most `capacity` responses (the oldest-stored
/// entry is evicted first) of at most `max_body_bytes` each.
///
/// A response whose body is larger than `max_body_bytes` (default
/// [`MemoryResponseCache::DEFAULT_MAX_BODY_BYTES`]) is **not cached**: it is simply not
/// stored, and any older entry under the same key is dropped, so that request is sent
/// unconditionally next time and no outdated body is ever served as stale.
#[derive(Debug)]
pub struct MemoryResponseCache {
    capacity: usize,
    max_body_bytes: usize,
    inner: Mutex<(HashMap<String, CachedResponse>, VecDeque<String>)>,
}

impl MemoryResponseCache {
    /// Default cap on one cached body: 4 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;

    /// A cache holding at most `capacity` responses of at most
    /// [`Self::DEFAULT_MAX_BODY_BYTES`] each.
    pub fn new(capacity: usize) -> Self {
        MemoryResponseCache {
            capacity: capacity.max(1),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            inner: Mutex::default(),
        }
    }
    /// Set the largest body (in bytes) that is cached; larger responses are not stored.
    pub fn with_max_body_bytes(mut self, max_body_bytes: usize) -> Self {
        self.max_body_bytes = max_body_bytes;
        self
    }
    /// The largest body (in bytes) that is cached.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
    /// Number of stored responses.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }
    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ResponseCache for MemoryResponseCache {
    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error> {
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.get(key).cloned())
    }
    async fn put(&self, key: &str, response: &CachedResponse) -> Result<(), Error> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        if response.body.len() > self.max_body_bytes {
            // Too large to keep: forget any older version too (never serve it as stale).
            if map.remove(key).is_some() {
                order.retain(|k| k != key);
            }
            return Ok(());
        }
        if map.insert(key.to_owned(), response.clone()).is_none() {
            order.push_back(key.to_owned());
        }
        while map.len() > self.capacity {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &[u8]) -> CachedResponse {
        to_cached(StatusCode::OK, &HeaderMap::new(), body)
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_not_cached_and_drop_the_older_entry() {
        let cache = MemoryResponseCache::new(4).with_max_body_bytes(8);
        cache.put("k", &response(b"12345678")).await.unwrap();
        assert_eq!(cache.get("k").await.unwrap().unwrap().body, b"12345678");
        cache.put("k", &response(b"123456789")).await.unwrap();
        assert!(cache.get("k").await.unwrap().is_none() && cache.is_empty());
        cache.put("other", &response(&[0; 9])).await.unwrap();
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn oldest_entry_is_evicted_past_capacity() {
        let cache = MemoryResponseCache::new(2);
        for k in ["a", "b", "a", "c"] {
            cache.put(k, &response(k.as_bytes())).await.unwrap();
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a").await.unwrap().is_none(), "a was stored first");
        assert!(cache.get("b").await.unwrap().is_some() && cache.get("c").await.unwrap().is_some());
    }
}
