//! Contracts the HTTP client needs from durable storage: where rotated refresh tokens live
//! and where responses are cached for conditional requests and stale serving. Defined here
//! so `dovetail-http` and `dovetail-state` meet without depending on each other.

use async_trait::async_trait;

use crate::error::Error;
use crate::secret::Secret;

/// Keeps rotated OAuth2 refresh tokens, apart from run history: readable only by the owner
/// and encrypted when a key is configured. A rotated token is saved before it is used.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The token last saved under `key` (e.g. `<connector>:<token URL>:<client id>`).
    async fn load(&self, key: &str) -> Result<Option<Secret>, Error>;
    /// Save `token` under `key`, durably, replacing any previous one.
    async fn save(&self, key: &str, token: &Secret) -> Result<(), Error>;
}

/// A stored HTTP response: enough to answer a 304 and to serve the last good body when the
/// remote is down (`use_cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// Status of the stored response (a 2xx).
    pub status: u16,
    /// `ETag` the server sent, for `If-None-Match`.
    pub etag: Option<String>,
    /// `Last-Modified` the server sent, for `If-Modified-Since`.
    pub last_modified: Option<String>,
    /// Response headers worth replaying (content type, pagination links), secrets excluded.
    pub headers: Vec<(String, String)>,
    /// The body, as received.
    pub body: Vec<u8>,
    /// When it was stored (RFC 3339).
    pub stored_at: String,
}

/// A bounded cache of responses keyed by request (method, URL without secrets, credential id).
#[async_trait]
pub trait ResponseCache: Send + Sync {
    /// The response stored under `key`.
    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error>;
    /// Store a response under `key`, evicting the oldest entries past the cache's bound.
    async fn put(&self, key: &str, response: &CachedResponse) -> Result<(), Error>;
}
