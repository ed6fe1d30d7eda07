//! Static credentials: a bearer token, an API key (header or query parameter), and HTTP
//! basic auth. A 401 cannot be fixed by retrying them, so `on_unauthorized` says no.

use async_trait::async_trait;
use base64::Engine;
use dovetail_core::{Error, Secret};
use reqwest::header::{AUTHORIZATION, HeaderName};

use super::{Auth, sensitive_header, short_hash};

/// `Authorization: Bearer <token>` with a fixed token.
#[derive(Debug, Clone)]
pub struct StaticBearer {
    token: Secret,
}

impl StaticBearer {
    /// A provider sending `token`.
    pub fn new(token: Secret) -> Self {
        StaticBearer { token }
    }
}

#[async_trait]
impl Auth for StaticBearer {
    async fn apply(&self, req: &mut reqwest::Request) -> Result<(), Error> {
        let v = sensitive_header(&format!("Bearer {}", self.token.expose()))?;
        req.headers_mut().insert(AUTHORIZATION, v);
        Ok(())
    }
    async fn on_unauthorized(&self, _rejected: &reqwest::header::HeaderMap) -> Result<bool, Error> {
        Ok(false)
    }
    fn credential_id(&self) -> String {
        short_hash(&["bearer", self.token.expose()])
    }
}

/// Where an [`ApiKey`] goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placement {
    Header { name: HeaderName, prefix: Option<String> },
    Query { name: String },
}

/// An API key sent in a header (optionally prefixed, e.g. `Token <key>`) or as a query
/// parameter. A query parameter's name is reported by [`Auth::secret_query_params`] so logs
/// redact it.
#[derive(Debug, Clone)]
pub struct ApiKey {
    key: Secret,
    placement: Placement,
}

impl ApiKey {
    /// Send the key in header `name`, as `<prefix><key>` when a prefix is given (include the
    /// trailing space yourself, e.g. `"Token "`).
    pub fn header(name: &str, key: Secret, prefix: Option<String>) -> Result<Self, Error> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::config(format!("`{name}` is not a valid HTTP header name for an API key")))?;
        Ok(ApiKey { key, placement: Placement::Header { name, prefix } })
    }
    /// Send the key as query parameter `name` (replacing one already on the URL).
    pub fn query(name: &str, key: Secret) -> Self {
        ApiKey { key, placement: Placement::Query { name: name.to_owned() } }
    }
}

#[async_trait]
impl Auth for ApiKey {
    async fn apply(&self, req: &mut reqwest::Request) -> Result<(), Error> {
        match &self.placement {
            Placement::Header { name, prefix } => {
                let v = sensitive_header(&format!("{}{}", prefix.as_deref().unwrap_or(""), self.key.expose()))?;
                req.headers_mut().insert(name.clone(), v);
            }
            Placement::Query { name } => {
                let url = req.url_mut();
                let kept: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| k != name)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let mut pairs = url.query_pairs_mut();
                pairs.clear();
                for (k, v) in &kept {
                    pairs.append_pair(k, v);
                }
                pairs.append_pair(name, self.key.expose());
            }
        }
        Ok(())
    }
    async fn on_unauthorized(&self, _rejected: &reqwest::header::HeaderMap) -> Result<bool, Error> {
        Ok(false)
    }
    fn credential_id(&self) -> String {
        short_hash(&["api_key", self.key.expose()])
    }
    fn secret_query_params(&self) -> Vec<String> {
        match &self.placement {
            Placement::Query { name } => vec![name.clone()],
            Placement::Header { .. } => Vec::new(),
        }
    }
}

/// HTTP basic auth: `Authorization: Basic base64(user:password)`.
#[derive(Debug, Clone)]
pub struct Basic {
    username: String,
    password: Secret,
}

impl Basic {
    /// A provider for `username` and `password`.
    pub fn new(username: impl Into<String>, password: Secret) -> Self {
        Basic { username: username.into(), password }
    }
}

/// The `Basic …` header value for a user and password (RFC 7617).
pub(crate) fn basic_value(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

#[async_trait]
impl Auth for Basic {
    async fn apply(&self, req: &mut reqwest::Request) -> Result<(), Error> {
        let v = sensitive_header(&basic_value(&self.username, self.password.expose()))?;
        req.headers_mut().insert(AUTHORIZATION, v);
        Ok(())
    }
    async fn on_unauthorized(&self, _rejected: &reqwest::header::HeaderMap) -> Result<bool, Error> {
        Ok(false)
    }
    fn credential_id(&self) -> String {
        short_hash(&["basic", &self.username, self.password.expose()])
    }
}
