//! OAuth2 client credentials and refresh token grants, on our own small token manager.
//!
//! The manager keeps one access token. It is refreshed *before* it expires: the expiry is
//! measured from the moment the token request was sent (not received), minus a configurable
//! skew (capped at half the token's lifetime, so short-lived tokens are not refreshed on
//! every call). Refreshes are single-flight: callers that find the token stale queue on one
//! async gate, the first fetches, the rest reuse its token — or its error, so a revoked
//! grant costs one token request, not one per waiting request. A 401 drops the token and
//! allows one retry. Only the token the rejected request carried is dropped, so many
//! requests in flight that all get a 401 for one old token cause one refresh, not one each.
//!
//! For the refresh-token grant, a rotated refresh token is saved through the
//! [`TokenStore`] *before* the new access token is handed out, and a stored token is
//! preferred over the configured one at start-up. The store key includes a hash of the
//! configured refresh token, so configuring a new one (after re-authorizing) takes effect.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dovetail_core::remote::{StoredAccess, StoredGrant, TokenStore};
use dovetail_core::{Error, ErrorKind, Secret};
use reqwest::header::AUTHORIZATION;
use tracing::Instrument;

use super::{Auth, sensitive_header, short_hash, token};
use crate::clock::{Clock, TokioClock};

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `Authorization: Basic base64(client_id:client_secret)` (the RFC's preferred way).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// Where and how to get tokens: shared by both OAuth2 grants.
#[derive(Debug, Clone)]
pub struct OAuth2Settings {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret; `None` for a public client (sends `client_id` in the body).
    pub client_secret: Option<Secret>,
    /// How the client secret is sent.
    pub client_auth: ClientAuth,
    /// Scopes to request (joined with spaces); none by default.
    pub scopes: Vec<String>,
    /// Refresh this long before the token expires (default 60 s).
    pub refresh_skew: Duration,
}

impl OAuth2Settings {
    /// Settings with `client_secret_basic`, no scopes and a 60 s skew.
    pub fn new(token_url: impl Into<String>, client_id: impl Into<String>, client_secret: Option<Secret>) -> Self {
        OAuth2Settings {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            client_auth: ClientAuth::default(),
            scopes: Vec::new(),
            refresh_skew: Duration::from_secs(60),
        }
    }
}

/// The current access token and when to stop using it.
struct Token {
    access: Secret,
    /// [`Clock::monotonic`] reading from which the token is due for refresh (`None`: never).
    refresh_at: Option<Duration>,
}

/// What only the holder of the refresh gate touches.
#[derive(Default)]
struct Gate {
    /// The refresh token in use (`None` until first loaded from the store or config).
    refresh_token: Option<Secret>,
    /// The last fetch's failure, handed to callers that waited for that fetch.
    last_error: Option<(ErrorKind, String)>,
    /// The access token this process last used: a stored one equal to it is stale for it.
    last_access: Option<Secret>,
    /// The vendor rotated the refresh token but storing it failed: the one in memory is in
    /// force, not the stored one (void by now).
    unsaved: bool,
}

/// What one token request brought.
struct Issued {
    access: Secret,
    /// [`Clock::monotonic`] reading from which it is due for refresh (`None`: never).
    refresh_at: Option<Duration>,
    /// The same as wall time, for other processes sharing it through the store.
    refresh_after: Option<std::time::SystemTime>,
    rotated: bool,
}

/// The refresh-token grant's extra state.
#[derive(Clone)]
struct RefreshGrant {
    configured: Secret,
    store: Option<Arc<dyn TokenStore>>,
    store_key: String, // tidy: not-secret (names where the token is kept)
}

/// The shared token manager behind both grants.
struct Manager {
    settings: OAuth2Settings,
    url: reqwest::Url,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    refresh: Option<RefreshGrant>,
    current: Mutex<Option<Token>>,
    gate: Arc<tokio::sync::Mutex<Gate>>,
    /// Fetches that ended (counted under the gate).
    fetches: AtomicU64,
    warned_no_store: AtomicBool,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("token_url", &self.settings.token_url)
            .field("client_id", &self.settings.client_id)
            .field("grant", &self.grant())
            .finish_non_exhaustive()
    }
}

impl Manager {
    fn new(settings: OAuth2Settings, refresh: Option<RefreshGrant>) -> Result<Self, Error> {
        let url = reqwest::Url::parse(&settings.token_url).map_err(|e| {
            Error::config(format!("the OAuth2 token_url `{}` is not a URL", settings.token_url)).with_source(e)
        })?;
        // No redirects: a token request carries the client secret and the refresh token.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .build()
            .map_err(|e| Error::internal("cannot build the HTTP client for OAuth2 token requests").with_source(e))?;
        Ok(Manager {
            settings,
            url,
            http,
            clock: Arc::new(TokioClock::default()),
            refresh,
            current: Mutex::new(None),
            gate: Arc::default(),
            fetches: AtomicU64::new(0),
            warned_no_store: AtomicBool::new(false),
        })
    }

    /// The same configuration with no token state (for builder methods on a shared manager).
    fn fresh_copy(&self) -> Manager {
        Manager {
            settings: self.settings.clone(),
            url: self.url.clone(),
            http: self.http.clone(),
            clock: Arc::clone(&self.clock),
            refresh: self.refresh.clone(),
            current: Mutex::new(None),
            gate: Arc::default(),
            fetches: AtomicU64::new(0),
            warned_no_store: AtomicBool::new(false),
        }
    }

    /// Apply a builder change to `this`.
    fn reconfigure(this: Arc<Manager>, f: impl FnOnce(&mut Manager)) -> Arc<Manager> {
        let mut m = Arc::try_unwrap(this).unwrap_or_else(|shared| shared.fresh_copy());
        f(&mut m);
        Arc::new(m)
    }

    fn grant(&self) -> &'static str {
        if self.refresh.is_some() { "refresh_token" } else { "client_credentials" }
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<Token>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current token if it is not due for refresh.
    fn fresh(&self) -> Option<Secret> {
        let now = self.clock.monotonic();
        match &*self.lock_current() {
            Some(t) if t.refresh_at.is_none_or(|at| now < at) => Some(t.access.clone()),
            _ => None,
        }
    }

    /// A usable access token, fetching one (single-flight) when needed.
    ///
    /// The fetch runs on its own task that owns the gate: if the caller is cancelled (a
    /// request timeout) mid-fetch, a rotated refresh token is still saved and kept.
    async fn access_token(self: &Arc<Self>) -> Result<Secret, Error> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let seen = self.fetches.load(Ordering::Acquire);
        let gate = Arc::clone(&self.gate).lock_owned().await;
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        // A fetch ended while we waited, and failed: share its verdict.
        if self.fetches.load(Ordering::Acquire) != seen
            && let Some((kind, msg)) = &gate.last_error
        {
            return Err(Error::new(kind.clone(), msg.clone()));
        }
        let me = Arc::clone(self);
        tokio::spawn(
            async move {
                let mut gate = gate;
                let result = me.fetch(&mut gate).await;
                gate.last_error = result.as_ref().err().map(|e| (e.kind().clone(), e.message().to_owned()));
                // Counted when the fetch *ends*: whoever started waiting before this sees a change.
                me.fetches.fetch_add(1, Ordering::AcqRel);
                result
            }
            .instrument(tracing::Span::current()),
        )
        .await
        .map_err(|e| Error::internal("the OAuth2 token task failed").with_source(e))?
    }

    /// A new access token; called with the gate held. With a token store, under the store's
    /// refresh lock ([`TokenStore::refresh_exclusive`]): what the store holds is what is in
    /// force, since another process sharing the grant may have rotated the refresh token or
    /// obtained an access token still good to use.
    async fn fetch(&self, gate: &mut Gate) -> Result<Secret, Error> {
        let Some((r, store)) = self.refresh.as_ref().and_then(|r| Some((r, r.store.clone()?))) else {
            if let Some(r) = &self.refresh
                && gate.refresh_token.is_none()
            {
                gate.refresh_token = Some(r.configured.clone());
            }
            let issued = self.request(gate).await?;
            if issued.rotated && self.refresh.is_some() && !self.warned_no_store.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    token_url = %self.settings.token_url,
                    "the vendor rotated the OAuth2 refresh token but no token store is configured; the new token \
                     is lost when this process exits"
                );
            }
            return Ok(self.install(gate, issued.access, issued.refresh_at));
        };
        let mut out: Option<(Secret, Option<Duration>, bool)> = None;
        let slot = &mut out;
        let gate_ref = &mut *gate;
        let locked = store
            .refresh_exclusive(
                &r.store_key,
                Box::new(move |stored| Box::pin(async move { self.refresh_locked(gate_ref, r, stored, slot).await })),
            )
            .await;
        match (locked, out) {
            (Ok(()), Some((access, refresh_at, rotated))) => {
                gate.unsaved = false;
                if rotated {
                    tracing::info!(token_url = %self.settings.token_url, "saved a rotated OAuth2 refresh token");
                }
                Ok(self.install(gate, access, refresh_at))
            }
            (Ok(()), None) => Err(Error::internal("the token store ended a refresh without running it")),
            (Err(e), Some((_, _, true))) => Err({
                gate.unsaved = true;
                Error::new(
                    ErrorKind::Auth,
                    format!("the vendor rotated the OAuth2 refresh token but saving it failed: {e}"),
                )
            }),
            (Err(e), _) => Err(e),
        }
    }

    /// One refresh under the store's lock: adopt the stored refresh token, use a stored access
    /// token another process obtained while it is good, else request one. Leaves the token to
    /// use in `out` and returns what to store.
    async fn refresh_locked(
        &self,
        gate: &mut Gate,
        r: &RefreshGrant,
        stored: StoredGrant,
        out: &mut Option<(Secret, Option<Duration>, bool)>,
    ) -> Result<Option<StoredGrant>, Error> {
        tracing::debug!(from_store = stored.refresh.is_some(), "loaded the OAuth2 refresh token");
        match stored.refresh {
            Some(t) if !gate.unsaved => gate.refresh_token = Some(t),
            Some(_) => {}
            None if gate.refresh_token.is_none() => gate.refresh_token = Some(r.configured.clone()),
            None => {}
        }
        if let Some(a) = stored.access
            && let Ok(left) = a.refresh_after.duration_since(self.clock.now())
            // The one this process last used is stale for it (expired, or refused with a 401).
            && gate.last_access.as_ref().map(Secret::expose) != Some(a.token.expose())
            && !gate.unsaved
        {
            tracing::debug!(token_url = %self.settings.token_url, "using the OAuth2 access token another process obtained");
            *out = Some((a.token, self.clock.monotonic().checked_add(left), false));
            return Ok(None);
        }
        let issued = self.request(gate).await?;
        let access = issued.refresh_after.map(|at| StoredAccess { token: issued.access.clone(), refresh_after: at });
        *out = Some((issued.access, issued.refresh_at, issued.rotated));
        Ok(Some(StoredGrant { refresh: gate.refresh_token.clone(), access }))
    }

    /// Make `access` the current token, due for refresh at `refresh_at` (monotonic).
    fn install(&self, gate: &mut Gate, access: Secret, refresh_at: Option<Duration>) -> Secret {
        gate.last_access = Some(access.clone());
        *self.lock_current() = Some(Token { access: access.clone(), refresh_at });
        access
    }

    /// One token request with the refresh token in `gate`, if any. A rotated refresh token
    /// replaces it in `gate` at once: the old one may be void already.
    async fn request(&self, gate: &mut Gate) -> Result<Issued, Error> {
        let grant = self.grant();
        let mut params = vec![("grant_type", grant.to_owned())];
        if self.refresh.is_some() {
            let rt = gate.refresh_token.as_ref().map(|t| t.expose().to_owned()).unwrap_or_default();
            params.push(("refresh_token", rt));
        }
        let mut secrets: Vec<&str> = vec![];
        if let Some(s) = &self.settings.client_secret {
            secrets.push(s.expose());
        }
        if let Some(t) = &gate.refresh_token {
            secrets.push(t.expose());
        }
        tracing::debug!(token_url = %self.settings.token_url, grant, "requesting an OAuth2 token");
        metrics::counter!("dovetail_http_token_requests_total").increment(1);
        let sent_at = self.clock.monotonic();
        let sent_wall = self.clock.now();
        let fetched = token::request(&self.http, &self.url, &self.settings, grant, params, &secrets).await?;
        let mut rotated = false;
        if let (Some(_), Some(new)) = (&self.refresh, fetched.refresh)
            && gate.refresh_token.as_ref().map(Secret::expose) != Some(new.expose())
        {
            rotated = true;
            gate.refresh_token = Some(new);
        }
        // Due this long after the request was sent; a lifetime too large to add means "no known expiry".
        let due = fetched.expires_in.map(|life| life - self.settings.refresh_skew.min(life / 2));
        tracing::debug!(
            grant,
            expires_in_s = fetched.expires_in.map(|d| d.as_secs()),
            rotated,
            "obtained an OAuth2 token"
        );
        Ok(Issued {
            access: fetched.access,
            refresh_at: due.and_then(|d| sent_at.checked_add(d)),
            refresh_after: due.and_then(|d| sent_wall.checked_add(d)),
            rotated,
        })
    }

    async fn apply(self: &Arc<Self>, req: &mut reqwest::Request) -> Result<(), Error> {
        let token = self.access_token().await?;
        req.headers_mut().insert(AUTHORIZATION, sensitive_header(&format!("Bearer {}", token.expose()))?);
        Ok(())
    }

    /// A 401 for the request that carried `rejected`: drop the token it was sent with if
    /// that is still the current one (a request that carried an older token, or none we can
    /// read, leaves a newer token alone; no `Authorization` header at all drops the current one).
    fn invalidate(&self, rejected: &reqwest::header::HeaderMap) {
        let sent = rejected.get(AUTHORIZATION).map(|v| v.as_bytes().strip_prefix(b"Bearer ").unwrap_or_default());
        let mut current = self.lock_current();
        match (&*current, sent) {
            (None, _) => {}
            (Some(t), Some(sent)) if sent != t.access.expose().as_bytes() => {
                tracing::debug!(token_url = %self.settings.token_url,
                    "a 401 for an access token already replaced: keeping the current one");
            }
            _ => {
                *current = None;
                tracing::debug!(token_url = %self.settings.token_url, "dropped the OAuth2 access token after a 401");
            }
        }
    }

    fn credential_id(&self) -> String {
        short_hash(&["oauth2", &self.settings.token_url, &self.settings.client_id])
    }
}

/// OAuth2 client credentials grant (`grant_type=client_credentials`).
#[derive(Debug)]
pub struct OAuth2ClientCredentials(Arc<Manager>);

impl OAuth2ClientCredentials {
    /// A provider for `settings`. Fails with a config error when the token URL is invalid.
    pub fn new(settings: OAuth2Settings) -> Result<Self, Error> {
        Ok(OAuth2ClientCredentials(Arc::new(Manager::new(settings, None)?)))
    }
    /// Measure token expiry on `clock` (default: [`TokioClock`]); tests pass the client's
    /// [`crate::FakeClock`] so both follow the same virtual time.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self(Manager::reconfigure(self.0, |m| m.clock = clock))
    }
    /// Send token requests with `http` (to share proxy and CA settings).
    pub fn with_http_client(self, http: reqwest::Client) -> Self {
        Self(Manager::reconfigure(self.0, |m| m.http = http))
    }
}

/// OAuth2 refresh token grant (`grant_type=refresh_token`), with rotation persisted through
/// a [`TokenStore`].
#[derive(Debug)]
pub struct OAuth2RefreshToken(Arc<Manager>);

impl OAuth2RefreshToken {
    /// A provider for `settings` starting from `refresh_token` (a stored rotated token is
    /// preferred when `store` holds one for the same configuration).
    pub fn new(
        settings: OAuth2Settings,
        refresh_token: Secret,
        store: Option<Arc<dyn TokenStore>>,
    ) -> Result<Self, Error> {
        let store_key = format!(
            "oauth2:{}:{}:{}",
            settings.token_url,
            settings.client_id,
            short_hash(&["configured_refresh_token", refresh_token.expose()])
        );
        let grant = RefreshGrant { configured: refresh_token, store, store_key };
        Ok(OAuth2RefreshToken(Arc::new(Manager::new(settings, Some(grant))?)))
    }
    /// Measure token expiry on `clock` (default: [`TokioClock`]); tests pass the client's
    /// [`crate::FakeClock`] so both follow the same virtual time.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self(Manager::reconfigure(self.0, |m| m.clock = clock))
    }
    /// Send token requests with `http` (to share proxy and CA settings).
    pub fn with_http_client(self, http: reqwest::Client) -> Self {
        Self(Manager::reconfigure(self.0, |m| m.http = http))
    }
    /// The key under which rotated refresh tokens are stored.
    pub fn store_key(&self) -> &str {
        self.0.refresh.as_ref().map(|r| r.store_key.as_str()).unwrap_or_default()
    }
}

macro_rules! delegate_auth {
    ($t:ty) => {
        #[async_trait]
        impl Auth for $t {
            async fn apply(&self, req: &mut reqwest::Request) -> Result<(), Error> {
                self.0.apply(req).await
            }
            async fn on_unauthorized(&self, rejected: &reqwest::header::HeaderMap) -> Result<bool, Error> {
                self.0.invalidate(rejected);
                Ok(true)
            }
            fn credential_id(&self) -> String {
                self.0.credential_id()
            }
            fn token_requests(&self) -> u64 {
                self.0.fetches.load(Ordering::Acquire)
            }
        }
    };
}
delegate_auth!(OAuth2ClientCredentials);
delegate_auth!(OAuth2RefreshToken);
