//! [`HttpClient`] and [`HttpClientBuilder`]: one client per connector, cheap to clone; every
//! clone shares the connection pool, rate limiters, circuit breakers and cache.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dovetail_core::Error;
use dovetail_core::remote::ResponseCache;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::Auth;
use crate::circuit::Circuits;
use crate::classify::Classifier;
use crate::clock::Clock;
use crate::config::{CircuitPolicy, HttpConfig, RateBudget, RetryPolicy};
use crate::limit::Limits;
use crate::observe::{DeprecationWatch, Host};
use crate::origin::{AllowedOrigin, Scope};
use crate::retry::Backoff;

/// The resilient HTTP client. See the crate docs for what one `send` does.
#[derive(Clone)]
pub struct HttpClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Option<Url>,
    /// The base URL's host, port and [`Host`] (see `exec::host_key`), built once.
    pub(crate) base_host: Option<(String, u16, Arc<Host>)>,
    /// Other hosts seen (host, port, [`Host`]), kept so requests to them allocate nothing.
    pub(crate) hosts: Mutex<Vec<(String, u16, Arc<Host>)>>,
    pub(crate) headers: HeaderMap,
    pub(crate) retry: RetryPolicy,
    pub(crate) classifier: Option<Classifier>,
    pub(crate) auth: Option<Arc<dyn Auth>>,
    /// `auth`'s [`Auth::credential_id`] (stable, so worked out once), or empty.
    pub(crate) credential: String,
    pub(crate) cache: Option<Arc<dyn ResponseCache>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: Limits,
    pub(crate) circuits: Circuits,
    pub(crate) backoff: Backoff,
    pub(crate) request_id_headers: Vec<String>,
    pub(crate) secret_params: Vec<String>,
    pub(crate) deprecations: DeprecationWatch,
    /// Figures for run reports, shared by clones.
    pub(crate) stats: crate::stats::ClientStats,
    /// The pinned API version value, for reports.
    pub(crate) api_version: Option<String>,
    /// Whole-attempt timeout, body included.
    pub(crate) timeout: Duration,
    /// Where requests may go (`None`: unscoped; see [`crate::origin`]).
    pub(crate) scope: Option<Scope>,
    /// Query parameters the auth provider adds (kept out of stored next-page URLs).
    pub(crate) auth_query_params: Vec<String>,
    /// URL paths hold a secret: logs and errors show only the origin.
    pub(crate) secret_path: bool,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("base", &self.inner.base.as_ref().map(Url::as_str))
            .field("retry", &self.inner.retry)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// What this client and its clones did so far: requests, attempts by status, retries
    /// and their causes, waits, token requests, cache use, deprecations (for run reports).
    pub fn report(&self) -> dovetail_core::HttpReport {
        let tokens = self.inner.auth.as_ref().map_or(0, |a| a.token_requests());
        self.inner.stats.report(self.inner.api_version.clone(), tokens)
    }

    /// A builder for `connector` (named in the user agent `dovetail/<version> (<connector>)`).
    pub fn builder(connector: &str) -> HttpClientBuilder {
        HttpClientBuilder {
            connector: connector.to_owned(),
            base_url: None,
            headers: Vec::new(),
            api_version: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            classifier: None,
            budget: None,
            daily_reset: None,
            max_concurrency: 8,
            circuit: CircuitPolicy::default(),
            auth: None,
            cache: None,
            clock: None,
            proxy: None,
            ca_pems: Vec::new(),
            ca_files: Vec::new(),
            request_id_headers: Vec::new(),
            secret_params: Vec::new(),
            allowed_origins: Vec::new(),
            secret_path: false,
        }
    }

    /// Whether this client may send a request to `url` (see [`crate::origin`]): its base
    /// URL's origin or one of `http.allowed_origins`; any URL when the client is unscoped.
    pub fn permits(&self, url: &Url) -> bool {
        self.inner.scope.as_ref().is_none_or(|s| s.permits(url))
    }

    /// `Ok` when `url` (absolute, or relative to the base URL) may be requested; else the
    /// error a refused request gets, saying that `what` (e.g. "the stream's path") points
    /// outside the permitted origins.
    pub fn check_url(&self, url: &str, what: &str) -> Result<(), Error> {
        let resolved = self.resolve(&crate::Request::get(url))?;
        match &self.inner.scope {
            Some(s) if !s.permits(&resolved) => Err(crate::origin::refused(s, &resolved, what)),
            _ => Ok(()),
        }
    }
}

/// Builds an [`HttpClient`] from code, from an [`HttpConfig`], or both (config last wins).
pub struct HttpClientBuilder {
    connector: String,
    base_url: Option<String>,
    headers: Vec<(String, String)>,
    api_version: Option<(String, String)>,
    connect_timeout: Duration,
    timeout: Duration,
    retry: RetryPolicy,
    classifier: Option<Classifier>,
    budget: Option<RateBudget>,
    daily_reset: Option<crate::limit::DailyReset>,
    max_concurrency: usize,
    circuit: CircuitPolicy,
    auth: Option<Arc<dyn Auth>>,
    cache: Option<Arc<dyn ResponseCache>>,
    clock: Option<Arc<dyn Clock>>,
    proxy: Option<String>,
    ca_pems: Vec<Vec<u8>>,
    ca_files: Vec<std::path::PathBuf>,
    request_id_headers: Vec<String>,
    secret_params: Vec<String>,
    allowed_origins: Vec<String>,
    secret_path: bool,
}

impl HttpClientBuilder {
    /// Base URL that relative request URLs are joined to (keep a trailing `/` on paths).
    pub fn base_url(mut self, url: &str) -> Self {
        self.base_url = Some(url.to_owned());
        self
    }
    /// A header sent on every request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    /// The pinned API version and the header that carries it (e.g. `X-GitHub-Api-Version`).
    pub fn api_version(mut self, header: &str, version: &str) -> Self {
        self.api_version = Some((header.to_owned(), version.to_owned()));
        self
    }
    /// Connect timeout (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Whole-attempt timeout, body included (default 60 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Retry policy.
    pub fn retry(mut self, p: RetryPolicy) -> Self {
        self.retry = p;
        self
    }
    /// A connector's say on what a non-2xx response means (see [`Classifier`]).
    pub fn classifier(mut self, c: Classifier) -> Self {
        self.classifier = Some(c);
        self
    }
    /// Client-side budget per (host, credential).
    pub fn rate_limit(mut self, b: RateBudget) -> Self {
        self.budget = Some(b);
        self
    }
    /// Requests in flight per host at most (default 8).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }
    /// Circuit breaker policy.
    pub fn circuit(mut self, p: CircuitPolicy) -> Self {
        self.circuit = p;
        self
    }
    /// Credential provider, applied on every attempt.
    pub fn auth(mut self, a: Arc<dyn Auth>) -> Self {
        self.auth = Some(a);
        self
    }
    /// Response cache for conditional GETs and stale serving.
    pub fn cache(mut self, c: Arc<dyn ResponseCache>) -> Self {
        self.cache = Some(c);
        self
    }
    /// Time source (default: tokio's); tests pass a [`crate::FakeClock`].
    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = Some(c);
        self
    }
    /// An explicit proxy for every scheme (otherwise HTTPS_PROXY/NO_PROXY are honoured).
    pub fn proxy(mut self, url: &str) -> Self {
        self.proxy = Some(url.to_owned());
        self
    }
    /// Trust the CA certificates in this PEM bundle too.
    pub fn add_ca_pem(mut self, pem: &[u8]) -> Self {
        self.ca_pems.push(pem.to_vec());
        self
    }
    /// When the vendor's daily allowance (`X-HubSpot-RateLimit-Daily-Remaining`) comes
    /// back, given the time now; midnight UTC without it ([`crate::DailyReset`]).
    pub fn daily_reset(mut self, rule: crate::DailyReset) -> Self {
        self.daily_reset = Some(rule);
        self
    }
    /// Another response header carrying the vendor's request id.
    pub fn request_id_header(mut self, name: &str) -> Self {
        self.request_id_headers.push(name.to_ascii_lowercase());
        self
    }
    /// Another query parameter whose value is redacted in logs.
    pub fn secret_query_param(mut self, name: &str) -> Self {
        self.secret_params.push(name.to_owned());
        self
    }
    /// The URLs this client sends to hold a secret in their path (a webhook's token): logs
    /// and errors show only their origin, and body excerpts are scrubbed of the path.
    pub fn secret_path(mut self) -> Self {
        self.secret_path = true;
        self
    }
    /// Another origin (`https://host[:port]`) requests and credentials may go to besides the
    /// base URL's (see [`crate::origin`]); checked by [`Self::build`].
    pub fn allowed_origin(mut self, origin: &str) -> Self {
        self.allowed_origins.push(origin.to_owned());
        self
    }

    /// Overlay an [`HttpConfig`] block (CA files are read by [`Self::build`]).
    pub fn config(mut self, c: &HttpConfig) -> Result<Self, Error> {
        if let Some(u) = &c.base_url {
            self.base_url = Some(u.clone());
        }
        if let Some(v) = &c.api_version {
            match &mut self.api_version {
                Some((_, version)) => *version = v.clone(),
                None => return Err(Error::config("http.api_version: this connector sends no API version")),
            }
        }
        let ms = Duration::from_millis;
        self.connect_timeout = c.connect_timeout_ms.map(ms).unwrap_or(self.connect_timeout);
        self.timeout = c.timeout_ms.map(ms).unwrap_or(self.timeout);
        self.proxy = c.proxy.clone().or(self.proxy);
        self.ca_files.extend(c.ca_certificates.iter().cloned());
        if let Some(r) = &c.retry {
            self.retry = r.apply(self.retry);
        }
        if let Some(r) = &c.rate_limit {
            self.budget = Some(r.budget()?);
        }
        self.max_concurrency = c.max_concurrency.map(|n| n as usize).unwrap_or(self.max_concurrency);
        if let Some(cc) = &c.circuit {
            self.circuit = cc.apply(self.circuit);
        }
        self.request_id_headers.extend(c.request_id_headers.iter().map(|h| h.to_ascii_lowercase()));
        for (name, value) in &c.headers {
            self.headers.push((name.clone(), value.clone()));
        }
        self.allowed_origins.extend(c.allowed_origins.iter().map(|o| o.origin().to_string()));
        Ok(self)
    }

    /// Build the client; Config errors name the bad setting.
    pub fn build(self) -> Result<HttpClient, Error> {
        let agent = format!("dovetail/{} ({})", env!("CARGO_PKG_VERSION"), self.connector);
        let base = match &self.base_url {
            Some(u) => Some(Url::parse(u).map_err(|e| Error::config(format!("http.base_url `{u}`")).with_source(e))?),
            None => None,
        };
        let allowed = self
            .allowed_origins
            .iter()
            .map(|o| o.parse::<AllowedOrigin>().map_err(|e| Error::config(format!("http.allowed_origins: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let scope = Scope::new(base.as_ref(), &allowed, self.auth.is_some())?;
        // The whole-attempt timeout is the request loop's (`Inner::timeout`), not reqwest's.
        // No `Referer`: it would carry the previous URL's query (an API key) to the next host.
        let mut b = reqwest::Client::builder()
            .user_agent(agent)
            .connect_timeout(self.connect_timeout)
            .referer(false)
            .redirect(crate::origin::redirect_policy(scope.is_some()));
        if let Some(p) = &self.proxy {
            let proxy = reqwest::Proxy::all(p).map_err(|e| Error::config("http.proxy is not a URL").with_source(e))?;
            b = b.proxy(proxy);
        }
        let mut pems = self.ca_pems;
        for f in &self.ca_files {
            let pem = std::fs::read(f).map_err(|e| {
                Error::config(format!("http.ca_certificates: cannot read {}", f.display())).with_source(e)
            })?;
            pems.push(pem);
        }
        for pem in &pems {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::config("http.ca_certificates: not a PEM certificate bundle").with_source(e))?;
            if certs.is_empty() {
                return Err(Error::config("http.ca_certificates: no certificate in the PEM data"));
            }
            b = b.tls_certs_merge(certs);
        }
        let http = b.build().map_err(|e| Error::config("cannot build the HTTP client").with_source(e))?;
        let base_host = base.as_ref().map(|b| {
            let (host, port) = (b.host_str().unwrap_or("").to_owned(), b.port_or_known_default().unwrap_or(0));
            let key = Arc::from(crate::exec::host_key(&host, port));
            (host, port, Arc::new(Host::new(key)))
        });
        let mut headers = HeaderMap::new();
        for (k, v) in self.headers.iter().chain(self.api_version.iter()) {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| Error::config(format!("header `{k}`")).with_source(e))?;
            let value = HeaderValue::from_str(v).map_err(|e| Error::config(format!("header `{k}`")).with_source(e))?;
            headers.insert(name, value);
        }
        let clock = self.clock.unwrap_or_else(crate::shared::default_clock);
        let mut secret_params = self.secret_params;
        let auth_query_params = self.auth.as_ref().map(|a| a.secret_query_params()).unwrap_or_default();
        secret_params.extend(auth_query_params.iter().cloned());
        let credential = self.auth.as_ref().map(|a| a.credential_id()).unwrap_or_default();
        let mut limits = Limits::new(&self.connector, clock.clone(), self.budget, self.max_concurrency);
        limits.daily_reset = crate::limit::ResetRule(self.daily_reset);
        if let Some((_, _, host)) = &base_host {
            // Joined now rather than at the first request, so the start of a run logs which
            // budget applies when connectors share one (see `Limiter::join`).
            host.limits(|| (limits.limiter(&host.key, &credential), limits.slots(&host.key)));
        }
        Ok(HttpClient {
            inner: Arc::new(Inner {
                http,
                base,
                base_host,
                hosts: Mutex::default(),
                headers,
                backoff: Backoff::new(self.retry.jitter_seed),
                retry: self.retry,
                classifier: self.classifier,
                credential,
                auth: self.auth,
                cache: self.cache,
                limits,
                circuits: Circuits::new(self.circuit, clock.clone()),
                clock,
                request_id_headers: self.request_id_headers,
                secret_params,
                deprecations: DeprecationWatch::default(),
                stats: crate::stats::ClientStats::default(),
                api_version: self.api_version.as_ref().map(|(_, v)| v.clone()),
                timeout: self.timeout,
                scope,
                auth_query_params,
                secret_path: self.secret_path,
            }),
        })
    }
}
