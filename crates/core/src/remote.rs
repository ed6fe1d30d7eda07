//! Contracts the HTTP client needs from durable storage: where rotated refresh tokens live
//! and where responses are cached for conditional requests and stale serving. Defined here
//! so `dovetail-http` and `dovetail-state` meet without depending on each other.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

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

    /// Run one OAuth2 refresh for `key` exclusively: `refresh` gets what is stored and
    /// returns what to store (`None`: nothing changed), which is stored before this returns.
    ///
    /// A store shared by several processes (PostgreSQL state) holds a lock across all of it,
    /// so no two processes refresh one grant at once and each sees the refresh token the
    /// other rotated. The default is for stores one process owns: the caller's in-process
    /// single flight is the exclusion, and only the refresh token is kept.
    async fn refresh_exclusive(&self, key: &str, refresh: RefreshFn<'_>) -> Result<(), Error> {
        let stored = StoredGrant { refresh: self.load(key).await?, access: None };
        let before = stored.refresh.as_ref().map(|t| t.expose().to_owned());
        if let Some(new) = refresh(stored).await?
            && let Some(token) = new.refresh.filter(|t| before.as_deref() != Some(t.expose()))
        {
            self.save(key, &token).await?;
        }
        Ok(())
    }
}

/// What a [`TokenStore`] keeps for one OAuth2 grant, read and written under
/// [`TokenStore::refresh_exclusive`].
#[derive(Debug, Clone, Default)]
pub struct StoredGrant {
    /// The refresh token in force (the last one the vendor rotated to).
    pub refresh: Option<Secret>,
    /// The access token last obtained, if shared: other processes use it until it is due.
    pub access: Option<StoredAccess>,
}

/// An access token shared through the store, with the wall time it is due for refresh.
#[derive(Debug, Clone)]
pub struct StoredAccess {
    /// The access token.
    pub token: Secret,
    /// From this time on, refresh instead of using it.
    pub refresh_after: SystemTime,
}

/// The work of one refresh under [`TokenStore::refresh_exclusive`].
pub type RefreshFn<'a> = Box<
    dyn FnOnce(StoredGrant) -> Pin<Box<dyn Future<Output = Result<Option<StoredGrant>, Error>> + Send + 'a>>
        + Send
        + 'a,
>;

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

/// A vendor's rate budget shared by every process on one store (PostgreSQL state): a token
/// bucket per (host, credential), refilled at the configured rate. Processes take permits in
/// chunks, so a request is not a round trip to the store.
#[async_trait]
pub trait SharedBudget: Send + Sync {
    /// Take up to `want` permits from bucket `key` (refilling at `rate` per second, holding at
    /// most `capacity`). `block_until`: a wait the vendor asked for (`Retry-After`, a spent
    /// window), kept with the bucket so every process honours it.
    async fn take(
        &self,
        key: &str,
        want: u32,
        rate: f64,
        capacity: f64,
        block_until: Option<SystemTime>,
    ) -> Result<BudgetGrant, Error>;
}

/// What [`SharedBudget::take`] granted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetGrant {
    /// Permits granted now (0 when the bucket is empty or blocked).
    pub granted: u32,
    /// When none were granted: how long until one may be.
    pub wait: std::time::Duration,
    /// How long the bucket stays blocked by a wait the vendor asked for, if it is.
    pub blocked: Option<std::time::Duration>,
}
