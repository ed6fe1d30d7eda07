//! [`AuthConfig`]: credentials as written in a connector's config, built into an [`Auth`].

use std::sync::Arc;

use dovetail_core::remote::TokenStore;
use dovetail_core::{Error, Secret};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::clock::Clock;

use super::{
    ApiKey, Auth, Basic, ClientAuth, OAuth2ClientCredentials, OAuth2RefreshToken, OAuth2Settings, StaticBearer,
};

fn default_skew_secs() -> u64 {
    60
}

/// Where an API key is sent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ApiKeyPlacement {
    /// In the named header, e.g. `{ header = "X-Api-Key" }`.
    Header(String),
    /// As the named query parameter, e.g. `{ query = "api_key" }` (redacted in logs).
    Query(String),
}

/// How a connector authenticates. Secrets should come from `${ENV_VAR}` or `${file:path}`.
/// Unknown fields in any variant are rejected (`deny_unknown_fields` on the enum applies
/// to every variant; serde has no per-variant form).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>` with a fixed token.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// An API key in a header or a query parameter.
    ApiKey {
        /// The key.
        key: Secret,
        /// Where to send it.
        #[serde(rename = "in")]
        placement: ApiKeyPlacement,
        /// Text before the key in a header, e.g. `"Token "` (headers only).
        #[serde(default)]
        prefix: Option<String>,
    },
    /// HTTP basic auth.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// OAuth2 client credentials grant.
    Oauth2ClientCredentials {
        /// The token endpoint URL.
        #[serde(deserialize_with = "crate::config::http_url")]
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
        /// How the client secret is sent: `client_secret_basic` (default) or `client_secret_post`.
        #[serde(default)]
        client_auth: ClientAuth,
        /// Scopes to request.
        #[serde(default)]
        scopes: Vec<String>,
        /// Refresh this many seconds before the token expires (default 60).
        #[serde(default = "default_skew_secs", deserialize_with = "crate::config::in_range_req::<_, _, 0, 86_400>")]
        #[schemars(range(min = 0, max = 86_400))]
        refresh_skew_secs: u64,
    },
    /// OAuth2 refresh token grant; rotated refresh tokens are kept in the token store.
    Oauth2RefreshToken {
        /// The token endpoint URL.
        #[serde(deserialize_with = "crate::config::http_url")]
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret (omit for a public client).
        #[serde(default)]
        client_secret: Option<Secret>,
        /// The refresh token obtained when the user authorized dovetail.
        refresh_token: Secret,
        /// How the client secret is sent: `client_secret_basic` (default) or `client_secret_post`.
        #[serde(default)]
        client_auth: ClientAuth,
        /// Scopes to request.
        #[serde(default)]
        scopes: Vec<String>,
        /// Refresh this many seconds before the token expires (default 60).
        #[serde(default = "default_skew_secs", deserialize_with = "crate::config::in_range_req::<_, _, 0, 86_400>")]
        #[schemars(range(min = 0, max = 86_400))]
        refresh_skew_secs: u64,
    },
}

impl AuthConfig {
    /// Build the provider. `tokens` keeps rotated refresh tokens (refresh-token grant only).
    pub fn build(&self, tokens: Option<Arc<dyn TokenStore>>) -> Result<Arc<dyn Auth>, Error> {
        self.build_with(tokens, None, None)
    }

    /// Like [`build`](Self::build), sending OAuth2 token requests through `http` when given
    /// (so they share the client's proxy and CA settings) and measuring token expiry on
    /// `clock` when given (the client's clock; default [`crate::TokioClock`]).
    ///
    /// OAuth2 providers are the process's: every connector configured with the same token
    /// endpoint, client, secret, refresh token and scopes (and the same token store and
    /// clock) gets the one provider already built, so there is one in-memory refresh token
    /// and one single-flight refresh per credential. The first
    /// connector's `http`, skew and client authentication settings are the ones it keeps.
    pub fn build_with(
        &self,
        tokens: Option<Arc<dyn TokenStore>>,
        http: Option<reqwest::Client>,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<Arc<dyn Auth>, Error> {
        let Some(identity) = self.oauth2_identity() else { return self.build_private(tokens, http, clock) };
        let key = format!(
            "{identity}:{}:{}",
            tokens.as_ref().map_or(0, crate::shared::identity),
            clock.as_ref().map_or(0, crate::shared::identity)
        );
        crate::shared::provider(key, || self.build_private(tokens, http, clock))
    }

    /// What makes two OAuth2 configurations one credential (a hash: it covers the secrets);
    /// `None` for static credentials, which have no state to share.
    fn oauth2_identity(&self) -> Option<String> {
        let (grant, url, id, secret, refresh, scopes) = match self {
            AuthConfig::Oauth2ClientCredentials { token_url, client_id, client_secret, scopes, .. } => {
                ("client_credentials", token_url, client_id, Some(client_secret), None, scopes)
            }
            AuthConfig::Oauth2RefreshToken { token_url, client_id, client_secret, refresh_token, scopes, .. } => {
                ("refresh_token", token_url, client_id, client_secret.as_ref(), Some(refresh_token), scopes)
            }
            _ => return None,
        };
        let secret = secret.map(Secret::expose).unwrap_or_default();
        let refresh = refresh.map(Secret::expose).unwrap_or_default();
        Some(super::short_hash(&[grant, url, id, secret, refresh, &scopes.join(" ")]))
    }

    /// A provider of this client's own, shared with nobody.
    fn build_private(
        &self,
        tokens: Option<Arc<dyn TokenStore>>,
        http: Option<reqwest::Client>,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<Arc<dyn Auth>, Error> {
        let settings = |url: &str, id: &str, secret: Option<&Secret>, ca: ClientAuth, scopes: &[String], skew: u64| {
            let mut s = OAuth2Settings::new(url, id, secret.cloned());
            s.client_auth = ca;
            s.scopes = scopes.to_vec();
            s.refresh_skew = std::time::Duration::from_secs(skew);
            s
        };
        Ok(match self {
            AuthConfig::Bearer { token } => Arc::new(StaticBearer::new(token.clone())),
            AuthConfig::ApiKey { key, placement, prefix } => match placement {
                ApiKeyPlacement::Header(name) => Arc::new(ApiKey::header(name, key.clone(), prefix.clone())?),
                ApiKeyPlacement::Query(name) => {
                    if prefix.is_some() {
                        return Err(Error::config("`prefix` applies only to an API key sent in a header"));
                    }
                    Arc::new(ApiKey::query(name, key.clone()))
                }
            },
            AuthConfig::Basic { username, password } => Arc::new(Basic::new(username.clone(), password.clone())),
            AuthConfig::Oauth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                client_auth,
                scopes,
                refresh_skew_secs,
            } => {
                let s = settings(token_url, client_id, Some(client_secret), *client_auth, scopes, *refresh_skew_secs);
                let mut p = OAuth2ClientCredentials::new(s)?;
                if let Some(h) = http {
                    p = p.with_http_client(h);
                }
                if let Some(c) = clock {
                    p = p.with_clock(c);
                }
                Arc::new(p)
            }
            AuthConfig::Oauth2RefreshToken {
                token_url,
                client_id,
                client_secret,
                refresh_token,
                client_auth,
                scopes,
                refresh_skew_secs,
            } => {
                let s =
                    settings(token_url, client_id, client_secret.as_ref(), *client_auth, scopes, *refresh_skew_secs);
                let mut p = OAuth2RefreshToken::new(s, refresh_token.clone(), tokens)?;
                if let Some(h) = http {
                    p = p.with_http_client(h);
                }
                if let Some(c) = clock {
                    p = p.with_clock(c);
                }
                Arc::new(p)
            }
        })
    }
}
