//! Credential providers: static bearer, API key (header or query), basic, OAuth2 client
//! credentials and OAuth2 refresh token.

use async_trait::async_trait;
use dovetail_core::Error;

/// Puts credentials on requests and reacts to a 401. The client calls it for every attempt.
#[async_trait]
pub trait Auth: Send + Sync + std::fmt::Debug {
    /// Add credentials to an outgoing request (headers or query parameters). May fetch or
    /// refresh a token first; many concurrent callers cause at most one token request.
    async fn apply(&self, req: &mut reqwest::Request) -> Result<(), Error>;
    /// The server answered 401 to credentials this provider applied: drop them. Returns
    /// whether one retry with fresh credentials can help (true for OAuth2, false for static
    /// secrets). Errors are [`dovetail_core::ErrorKind::Auth`] and quote the vendor.
    async fn on_unauthorized(&self) -> Result<bool, Error>;
    /// A stable, non-secret identity of the credential (a short hash), used to key rate
    /// limiters and caches per (host, credential).
    fn credential_id(&self) -> String;
    /// Names of query parameters that carry secrets (for log redaction).
    fn secret_query_params(&self) -> Vec<String> {
        Vec::new()
    }
}
