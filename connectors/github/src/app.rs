//! GitHub App authentication: a JWT signed RS256 with the app's private key (`iat` 60 s in
//! the past for clock drift, `exp` 9 minutes on, under GitHub's 10-minute cap) finds the
//! installation (by id, or by owner: `/orgs/{o}/installation`, then `/users/{o}/installation`)
//! and mints its access token (`POST /app/installations/{id}/access_tokens`, valid one hour).
//! Both tokens are kept by dovetail-http's [`MintedBearer`] (refreshed before expiry, single
//! flight across streams, in memory only) and sent only to `base_url`'s origin: the app
//! endpoints are called through a client on the same base URL.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use dovetail_core::{Error, ErrorKind, Secret};
use dovetail_http::auth::{MintedBearer, Minter};
use dovetail_http::{HttpClient, HttpClientBuilder, Request, encode_segment};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::config::AppConfig;

/// How long a JWT is valid (GitHub refuses more than 10 minutes).
const JWT_TTL: Duration = Duration::from_secs(9 * 60);
/// How far `iat` is set in the past, for clock drift.
const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// Refresh an installation token this long before it expires.
pub const REFRESH_SKEW: Duration = Duration::from_secs(5 * 60);

/// The app's JWTs.
struct Jwt {
    app_id: String,
    key: EncodingKey,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubAppJwt").field("app_id", &self.app_id).finish_non_exhaustive()
    }
}

/// A key that is no RSA key: a config error that never quotes it.
fn bad_key() -> Error {
    Error::config("`app.private_key` is not an RSA private key in PEM form")
        .with_hint("give the `.pem` file GitHub generated for the app, e.g. `private_key = \"${file:/path/app.pem}\"`")
}

impl Jwt {
    /// Decode the key's PEM (its RSA content is checked by the first signature: `build`
    /// does no crypto).
    fn new(app: &AppConfig) -> Result<Jwt, Error> {
        let key = EncodingKey::from_rsa_pem(app.private_key.expose().trim().as_bytes()).map_err(|_| bad_key())?;
        Ok(Jwt { app_id: app.app_id.to_string(), key })
    }

    fn sign(&self) -> Result<Secret, Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let claims = serde_json::json!({
            "iat": (now - JWT_BACKDATE).as_secs(),
            "exp": (now + JWT_TTL).as_secs(),
            "iss": self.app_id,
        });
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key).map(Secret::new).map_err(|_| bad_key())
    }
}

#[async_trait]
impl Minter for Jwt {
    async fn mint(&self) -> Result<(Secret, Option<Duration>), Error> {
        Ok((self.sign()?, Some(JWT_TTL - JWT_BACKDATE)))
    }
    fn identity(&self) -> String {
        format!("github-app-jwt:{}", self.app_id)
    }
}

/// Which installation's tokens are minted.
#[derive(Debug)]
enum Installation {
    Id(u64),
    Owner(String),
}

/// Installation access tokens of one app installation.
#[derive(Debug)]
struct InstallationTokens {
    /// A client on the source's base URL that authenticates as the app (JWT).
    app: HttpClient,
    app_id: u64,
    installation: Installation,
    id: OnceCell<u64>,
}

#[derive(Deserialize)]
struct AccessToken {
    token: Secret,
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct InstallationRef {
    id: u64,
}

impl InstallationTokens {
    fn unusable(&self, what: &str, e: Error) -> Error {
        if !matches!(e.status(), Some(401 | 403 | 404)) {
            return e;
        }
        let status = e.status().unwrap_or_default();
        Error::new(ErrorKind::Auth, format!("GitHub App {}: {what} answered {status}", self.app_id)).with_hint(
            "the app is not installed there, or its installation is suspended or was removed: install (or \
             unsuspend) the app on the account in its GitHub settings (Settings → GitHub Apps / Installed \
             GitHub Apps), check `app.app_id`, `app.installation_id` / `app.installation_owner` and that the \
             key belongs to this app, then run again",
        )
    }

    async fn installation_id(&self) -> Result<u64, Error> {
        let owner = match &self.installation {
            Installation::Id(id) => return Ok(*id),
            Installation::Owner(o) => o,
        };
        self.id
            .get_or_try_init(|| async {
                let o = encode_segment(owner);
                match self.app.send_json::<InstallationRef>(Request::get(format!("orgs/{o}/installation"))).await {
                    Ok(r) => Ok(r.id),
                    Err(e) if e.status() == Some(404) => self
                        .app
                        .send_json::<InstallationRef>(Request::get(format!("users/{o}/installation")))
                        .await
                        .map(|r| r.id)
                        .map_err(|e| self.unusable(&format!("the installation lookup for `{owner}`"), e)),
                    Err(e) => Err(self.unusable(&format!("the installation lookup for `{owner}`"), e)),
                }
            })
            .await
            .copied()
    }
}

#[async_trait]
impl Minter for InstallationTokens {
    async fn mint(&self) -> Result<(Secret, Option<Duration>), Error> {
        let id = self.installation_id().await?;
        let req = Request::post(format!("app/installations/{id}/access_tokens")).cacheable(false);
        let t: AccessToken = self
            .app
            .send_json(req)
            .await
            .map_err(|e| self.unusable(&format!("the access token request of installation {id}"), e))?;
        // GitHub's tokens live an hour; without a readable expiry assume that.
        let ttl = t
            .expires_at
            .and_then(|at| at.parse::<jiff::Timestamp>().ok())
            .and_then(|at| Duration::try_from(at.duration_since(jiff::Timestamp::now())).ok())
            .unwrap_or(Duration::from_secs(3600));
        Ok((t.token, Some(ttl)))
    }
    fn identity(&self) -> String {
        match &self.installation {
            Installation::Id(id) => format!("github-app:{}:{id}", self.app_id),
            Installation::Owner(o) => format!("github-app:{}:owner:{o}", self.app_id),
        }
    }
}

/// The auth of a source configured with `app`: installation tokens minted through `app`
/// (a client builder on the source's base URL, without auth).
pub fn provider(config: &AppConfig, app: HttpClientBuilder) -> Result<Arc<MintedBearer>, Error> {
    let installation = match (config.installation_id, &config.installation_owner) {
        (Some(id), None) => Installation::Id(id),
        (None, Some(o)) if !o.trim().is_empty() && !o.contains('/') => Installation::Owner(o.clone()),
        (None, Some(o)) => return Err(Error::config(format!("`app.installation_owner` must be a login, not `{o}`"))),
        _ => {
            return Err(Error::config("`app` needs exactly one of `installation_id` and `installation_owner`"));
        }
    };
    let jwt = Arc::new(Jwt::new(config)?);
    let app = app.auth(Arc::new(MintedBearer::new(jwt, Duration::from_secs(60)))).build()?;
    let tokens = InstallationTokens { app, app_id: config.app_id, installation, id: OnceCell::new() };
    Ok(Arc::new(MintedBearer::new(Arc::new(tokens), REFRESH_SKEW)))
}
