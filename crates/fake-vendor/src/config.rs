//! What the fake vendor serves and how it misbehaves: [`VendorConfig`] at start, [`Faults`] at any time.

use serde::{Deserialize, Serialize};

/// Everything the server needs at start; loadable from TOML or JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VendorConfig {
    /// Loopback port to bind; 0 picks a free one.
    pub port: u16,
    /// Number of records in the dataset at start (ids `1..=records`).
    pub records: u64,
    /// Seed of the record contents and of the fault dice.
    pub seed: u64,
    /// Which credentials the API endpoints require.
    pub auth: AuthMode,
    /// Token bucket applied per credential; `None` means unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Faults active from the start (replaceable at runtime).
    pub faults: Faults,
    /// Page size when the request names none.
    pub page_size_default: u64,
    /// Larger page sizes are clamped to this.
    pub page_size_max: u64,
}

impl Default for VendorConfig {
    fn default() -> Self {
        VendorConfig {
            port: 0,
            records: 1000,
            seed: 0,
            auth: AuthMode::None,
            rate_limit: None,
            faults: Faults::default(),
            page_size_default: 100,
            page_size_max: 1000,
        }
    }
}

impl VendorConfig {
    /// Parses a config file's text: JSON when it starts with `{`, TOML otherwise.
    pub fn parse(text: &str) -> Result<VendorConfig, String> {
        // Invalid fault values (a redirect status that is no redirect, an origin that is no
        // origin) are refused by the field deserializers below, so this and
        // `POST /_control/faults` both reject them.
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            toml::from_str(text).map_err(|e| e.to_string())
        }
    }
}

/// The credentials API endpoints demand.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum AuthMode {
    /// No credentials needed.
    #[default]
    #[serde(rename = "none")]
    None,
    /// `Authorization: Bearer <token>` with a fixed token.
    #[serde(rename = "bearer")]
    Bearer {
        /// The one accepted token.
        token: String, // tidy: not-secret (a fake credential the server checks)
    },
    /// A fixed key in a named header.
    #[serde(rename = "api_key")]
    ApiKey {
        /// Header name, e.g. `X-Api-Key`.
        header: String,
        /// The one accepted value.
        value: String,
    },
    /// A fixed key in a named query parameter, e.g. `?api_key=<value>`.
    #[serde(rename = "api_key_query")]
    ApiKeyQuery {
        /// Query parameter name, e.g. `api_key`.
        param: String,
        /// The one accepted value (compared after percent-decoding).
        value: String,
    },
    /// HTTP Basic (`Authorization: Basic base64(username:password)`) with one fixed pair.
    #[serde(rename = "basic")]
    Basic {
        /// The one accepted user name.
        username: String,
        /// The one accepted password.
        password: String, // tidy: not-secret (a fake credential the server checks)
    },
    /// Bearer access tokens minted by `POST /oauth/token`.
    #[serde(rename = "oauth2")]
    OAuth2 {
        /// Accepted client id.
        client_id: String,
        /// Accepted client secret.
        client_secret: String, // tidy: not-secret (a fake credential the server checks)
        /// Refresh token valid from the start, for the refresh-token grant.
        #[serde(default)]
        refresh_token: Option<String>, // tidy: not-secret (a fake credential the server checks)
        /// Access-token lifetime in seconds; fractions work (millisecond precision).
        #[serde(default = "default_token_lifetime")]
        token_lifetime_secs: f64,
        /// Each refresh returns a new refresh token and invalidates the one used.
        #[serde(default)]
        rotate_refresh_tokens: bool,
    },
}

fn default_token_lifetime() -> f64 {
    3600.0
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Refill rate in tokens per second.
    pub per_second: f64,
    /// Bucket capacity, also the number of requests allowed at once.
    pub burst: u32,
}

/// Misbehaviour, all off by default; every field can change at runtime.
///
/// Ratios are probabilities in `0.0..=1.0`, rolled per request with the seeded PRNG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction of requests answered 500.
    pub error_500_ratio: f64,
    /// Fraction of requests answered 503 (no `Retry-After`).
    pub error_503_ratio: f64,
    /// Fraction of requests whose connection is closed without any response.
    pub drop_ratio: f64,
    /// Every Nth request that reaches the fault dice (the Nth, the 2Nth, ... since start) has
    /// its connection closed without any response; 0 is off. Deterministic, unlike the ratio.
    pub drop_every: u64,
    /// Every Nth request that reaches the fault dice is answered 503; 0 is off. Deterministic,
    /// unlike the ratio.
    pub error_503_every: u64,
    /// Every Nth token request (the Nth, the 2Nth, ...) is answered 503 before its grant is
    /// looked at, counting from the server's start; 0 is off. Deterministic, unlike the
    /// ratios, so a test can count on it.
    pub token_error_503_every: u64,
    /// Fraction of `POST /v1/items` that create the object, then close the connection without a response.
    pub drop_after_create_ratio: f64,
    /// Added delay before every API and token response.
    pub latency_ms: u64,
    /// 0-based page index of every item listing that answers 200 with invalid JSON, every time.
    pub malformed_page: Option<u64>,
    /// How many times [`Faults::malformed_page`] is answered malformed (counted from the
    /// server's start); 0 is every time.
    pub malformed_page_times: u64,
    /// Fraction of records (chosen by id) whose `name`, `price` and `tags` are null.
    pub null_ratio: f64,
    /// Records with an id above this one drift as [`Faults::drift`] says.
    pub drift_after: Option<u64>,
    /// How records past [`Faults::drift_after`] drift.
    pub drift: DriftKind,
    /// Listing responses carry `Deprecation` and `Sunset` headers.
    pub deprecation: bool,
    /// `Sunset` header value (an HTTP-date); defaults to `Wed, 01 Jul 2026 00:00:00 GMT`.
    pub sunset: Option<String>,
    /// Fraction of listing and single-record responses that promise a full body, send half, then close the connection.
    pub truncate_ratio: f64,
    /// Origin (`scheme://host[:port]`) written into next-page URLs (`Link` header, `next` field) instead of the vendor's own.
    #[serde(deserialize_with = "de_origin")]
    pub link_origin: Option<String>,
    /// Status of the answer to `/moved/...` requests: 301, 302, 303, 307 (the default) or 308.
    #[serde(deserialize_with = "de_redirect_status")]
    pub redirect_status: u16,
    /// Origin the `/moved/...` redirects point to; `None` is the vendor's own (a same-origin redirect).
    #[serde(deserialize_with = "de_origin")]
    pub redirect_origin: Option<String>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_500_ratio: 0.0,
            error_503_ratio: 0.0,
            drop_ratio: 0.0,
            drop_every: 0,
            error_503_every: 0,
            token_error_503_every: 0,
            drop_after_create_ratio: 0.0,
            latency_ms: 0,
            malformed_page: None,
            malformed_page_times: 0,
            null_ratio: 0.0,
            drift_after: None,
            drift: DriftKind::default(),
            deprecation: false,
            sunset: None,
            truncate_ratio: 0.0,
            link_origin: None,
            redirect_status: 307,
            redirect_origin: None,
        }
    }
}

impl Faults {
    /// The first invalid value, for a `Faults` built in code rather than deserialized.
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_redirect_status(self.redirect_status)?;
        for origin in [&self.link_origin, &self.redirect_origin].into_iter().flatten() {
            check_origin(origin)?;
        }
        Ok(())
    }
}

/// Refuses statuses that are not redirects a client follows with a `Location`.
pub(crate) fn check_redirect_status(status: u16) -> Result<(), String> {
    match status {
        301 | 302 | 303 | 307 | 308 => Ok(()),
        _ => Err(format!("redirect_status {status} is not one of 301, 302, 303, 307, 308")),
    }
}

/// Refuses anything but `scheme://authority` (a trailing `/` allowed): the path is the vendor's.
pub(crate) fn check_origin(origin: &str) -> Result<(), String> {
    let bad = || format!("{origin:?} is not an origin such as \"http://127.0.0.1:4098\"");
    let uri: hyper::Uri = origin.parse().map_err(|_| bad())?;
    let bare = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if uri.scheme().is_none() || uri.authority().is_none() || !bare {
        return Err(bad());
    }
    Ok(())
}

fn de_redirect_status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let status = u16::deserialize(d)?;
    check_redirect_status(status).map_err(serde::de::Error::custom)?;
    Ok(status)
}

fn de_origin<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let origin = Option::<String>::deserialize(d)?;
    if let Some(o) = &origin {
        check_origin(o).map_err(serde::de::Error::custom)?;
    }
    Ok(origin)
}

/// A silent API change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// `price` becomes a string such as `"12.50"`.
    #[default]
    TypeChange,
    /// `name` is renamed to `title`.
    Rename,
}
