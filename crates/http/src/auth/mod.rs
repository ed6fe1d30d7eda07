//! Credential providers: static bearer, API key (header or query), basic, OAuth2 client
//! credentials, OAuth2 refresh token, and a bearer token a connector mints ([`MintedBearer`]).
//!
//! Every provider implements [`Auth`]; [`AuthConfig`] builds one from configuration. Secrets
//! are held as [`dovetail_core::Secret`], header values carrying them are marked sensitive,
//! and no provider logs a secret. [`Auth::credential_id`] is a short hash of the credential's
//! identity, never the secret in clear. The OAuth2 providers measure token expiry on the
//! crate's one time source, [`crate::clock::Clock`] (see their `with_clock`).

mod config;
mod minted;
mod oauth2;
mod simple;
mod token;

use async_trait::async_trait;
use dovetail_core::Error;

pub use config::{ApiKeyPlacement, AuthConfig};
pub use minted::{MintedBearer, Minter};
pub use oauth2::{ClientAuth, OAuth2ClientCredentials, OAuth2RefreshToken, OAuth2Settings};
pub use simple::{ApiKey, Basic, StaticBearer};

/// Puts credentials on requests and reacts to a 401. The client calls it for every attempt.
#[async_trait]
pub trait Auth: Send + Sync + std::fmt::Debug {
    /// Add credentials to an outgoing request (headers or query parameters). May fetch or
    /// refresh a token first; many concurrent callers cause at most one token request.
    async fn apply(&self, req: &mut reqwest::Request) -> Result<(), Error>;
    /// The server answered 401 to the request that carried `rejected`, the headers the
    /// attempt was sent with (so the credential it held, e.g. its `Authorization`). Drop
    /// that credential *if it is still the current one*: when many requests in flight get a
    /// 401 for the same old token, the first drops it and the others find it already
    /// replaced, so one refresh serves them all. Returns whether one retry with fresh
    /// credentials can help (true for OAuth2, false for static secrets). Errors are
    /// [`dovetail_core::ErrorKind::Auth`] and quote the vendor.
    ///
    /// Headers, not the whole `reqwest::Request`: the client hands the request (and its
    /// body) to reqwest, and every provider's credential is in a header or in the query
    /// (query API keys cannot be refreshed anyway). Pass an empty map when unknown: the
    /// current credential is then dropped.
    async fn on_unauthorized(&self, rejected: &reqwest::header::HeaderMap) -> Result<bool, Error>;
    /// A stable, non-secret identity of the credential (a short hash), used to key rate
    /// limiters and caches per (host, credential).
    fn credential_id(&self) -> String;
    /// Token requests made so far (first token and refreshes); 0 for static credentials.
    fn token_requests(&self) -> u64 {
        0
    }
    /// Names of query parameters that carry secrets (for log redaction).
    fn secret_query_params(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A short (16 hex digits) xxh3 hash of `parts`, separated so `("ab", "c")` and `("a", "bc")`
/// differ. Not a security boundary: it only has to be stable and not reveal the secret,
/// which a 64-bit digest of a high-entropy key does not.
pub(crate) fn short_hash(parts: &[&str]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    format!("{:016x}", h.digest())
}

/// A header value holding a secret, marked sensitive so HTTP stacks never log it.
pub(crate) fn sensitive_header(value: &str) -> Result<reqwest::header::HeaderValue, Error> {
    let mut v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        Error::new(dovetail_core::ErrorKind::Config, "a credential contains characters not allowed in an HTTP header")
    })?;
    v.set_sensitive(true);
    Ok(v)
}
