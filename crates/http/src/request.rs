//! [`Request`] (what a connector asks for, body buffered so every attempt can resend it) and
//! [`Response`] (status, headers and the whole body, possibly answered from the cache).

use bytes::Bytes;
use dovetail_core::Error;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

/// One logical request: sent once, or several times when retried.
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    pub(crate) use_cache: bool,
    pub(crate) cacheable: bool,
    pub(crate) repeatable: bool,
    pub(crate) error: Option<String>,
}

impl Request {
    /// A request; `url` is absolute or relative to the client's base URL.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
            use_cache: false,
            cacheable: true,
            repeatable: false,
            error: None,
        }
    }
    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url)
    }
    /// A POST request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::POST, url)
    }
    /// Add a query parameter.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }
    /// Set a header (an invalid name or value makes `send` fail with a Config error).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.insert(n, v);
            }
            _ => self.error = Some(format!("invalid header `{name}`")),
        }
        self
    }
    /// Mark the request safe to retry even if its method is not idempotent, by sending
    /// `Idempotency-Key: key` (a vendor with another header sets it with [`Request::header`]
    /// and names it in [`crate::RetryPolicy::idempotency_header`]).
    pub fn idempotency_key(self, key: &str) -> Self {
        self.header("idempotency-key", key)
    }
    /// Mark the request safe to send again although its method is not idempotent and it
    /// carries no idempotency key: for a receiver that tolerates a duplicate (an alert
    /// webhook). Retried like a GET.
    pub fn repeatable(mut self, yes: bool) -> Self {
        self.repeatable = yes;
        self
    }
    /// A raw body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }
    /// A JSON body (with `Content-Type: application/json`).
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => self.body(v).header("content-type", "application/json"),
            Err(e) => {
                self.error = Some(format!("cannot encode JSON body: {e}"));
                self
            }
        }
    }
    /// When the host is unavailable, answer from the last good cached response (flagged
    /// `stale`) instead of failing; the pipeline's `use_cache` policy sets this.
    pub fn use_cache(mut self, yes: bool) -> Self {
        self.use_cache = yes;
        self
    }
    /// Whether this GET goes through the client's response cache (default: yes when the
    /// client has one): validators sent, a 304 answered from the cache, the body stored.
    /// Turn it off for large listings read once per run, where storing every page costs
    /// more than a conditional request can save.
    pub fn cacheable(mut self, yes: bool) -> Self {
        self.cacheable = yes;
        self
    }
    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status (200 for a 304 answered from the cache: the cached status).
    pub status: StatusCode,
    /// Headers (the cached ones when answered from the cache).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The final URL.
    pub url: Url,
    /// Answered from the cache after a 304 Not Modified.
    pub from_cache: bool,
    /// Served from the cache because the host was unavailable (`use_cache`): may be old.
    pub stale: bool,
    /// Attempts the logical request took (0 when no request was sent).
    pub attempts: u32,
}

impl Response {
    /// Decode the body as JSON; failure is a Data error naming the URL.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::data("response body is empty, not the expected JSON").at(self.url.path()));
        }
        // One UTF-8 check over the whole body, then a parser that trusts it: `from_slice`
        // checks every string on its own, which cost ~3 % of a REST sync's instructions.
        // A body that is not UTF-8 goes through `from_slice` for its line and column.
        match std::str::from_utf8(&self.body) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(&self.body),
        }
        .map_err(|e| Error::data("response body is not the expected JSON").with_source(e).at(self.url.path()))
    }
    /// A header as text, when present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
