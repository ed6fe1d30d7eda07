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
        #[serde(default = "default_skew_secs")]
        refresh_skew_secs: u64,
    },
    /// OAuth2 refresh token grant; rotated refresh tokens are kept in the token store.
    Oauth2RefreshToken {
        /// The token endpoint URL.
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
        #[serde(default = "default_skew_secs")]
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
    pub fn build_with(
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
