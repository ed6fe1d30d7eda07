//! Credential checks for API calls and the OAuth2 token endpoint.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use serde_json::{Value, json};

use crate::config::AuthMode;

/// Why an API call was refused with 401.
pub(crate) type Denied = &'static str;

/// What the token endpoint answers.
pub(crate) struct TokenReply {
    pub(crate) status: u16,
    pub(crate) body: Value,
    /// The grant type of a successful grant, for stats.
    pub(crate) granted: Option<String>,
    pub(crate) invalid_grant: bool,
    /// The refresh token presented had been rotated away by an earlier use.
    pub(crate) reused_refresh: bool,
}

pub(crate) struct AuthState {
    mode: AuthMode,
    /// access token → (expiry, client id)
    access: HashMap<String, (Instant, String)>,
    refresh_valid: HashSet<String>,
    refresh_used: HashSet<String>,
    refresh_revoked: HashSet<String>,
    counter: u64,
    rng: fastrand::Rng,
}

impl AuthState {
    pub(crate) fn new(mode: AuthMode, seed: u64) -> AuthState {
        let mut refresh_valid = HashSet::new();
        if let AuthMode::OAuth2 { refresh_token: Some(t), .. } = &mode {
            refresh_valid.insert(t.clone());
        }
        AuthState {
            mode,
            access: HashMap::new(),
            refresh_valid,
            refresh_used: HashSet::new(),
            refresh_revoked: HashSet::new(),
            counter: 0,
            rng: fastrand::Rng::with_seed(seed ^ 0xA17E),
        }
    }

    /// Checks an API call's credentials (`query` is the raw query string); `Ok` holds the rate-limit bucket key.
    pub(crate) fn check(&self, headers: &HeaderMap, query: Option<&str>, now: Instant) -> Result<String, Denied> {
        let bearer = || {
            headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim)
        };
        match &self.mode {
            AuthMode::None => Ok("*".to_owned()),
            AuthMode::Bearer { token } => match bearer() {
                None => Err("missing bearer token"),
                Some(t) if t == token => Ok(t.to_owned()),
                Some(_) => Err("invalid token"),
            },
            AuthMode::ApiKey { header, value } => match headers.get(header.as_str()).and_then(|v| v.to_str().ok()) {
                None => Err("missing API key"),
                Some(v) if v == value => Ok(v.to_owned()),
                Some(_) => Err("invalid API key"),
            },
            AuthMode::ApiKeyQuery { param, value } => {
                let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
                match pairs.filter(|(k, _)| k == param).map(|(_, v)| v).next() {
                    None => Err("missing API key"),
                    Some(v) if v == value.as_str() => Ok(v.into_owned()),
                    Some(_) => Err("invalid API key"),
                }
            }
            AuthMode::Basic { username, password } => match basic_pair(headers) {
                None => Err("missing basic credentials"),
                // Per user name, like the other modes' per-credential buckets.
                Some((u, p)) if u == *username && p == *password => Ok(u),
                Some(_) => Err("invalid basic credentials"),
            },
            AuthMode::OAuth2 { .. } => {
                let t = bearer().ok_or("missing bearer token")?;
                match self.access.get(t) {
                    None => Err("invalid token"),
                    Some((expiry, _)) if *expiry <= now => Err("token expired"),
                    // Per client, so a refreshed token keeps draining the same bucket.
                    Some((_, client)) => Ok(client.clone()),
                }
            }
        }
    }

    /// Invalidates every refresh and access token.
    pub(crate) fn revoke(&mut self) {
        let valid: Vec<String> = self.refresh_valid.drain().collect();
        self.refresh_revoked.extend(valid);
        self.access.clear();
    }

    fn mint(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{:04}_{:016x}", self.counter, self.rng.u64(..))
    }

    /// Answers `POST /oauth/token`; `form` is the decoded body.
    pub(crate) fn token(&mut self, headers: &HeaderMap, form: &[(String, String)], now: Instant) -> TokenReply {
        let AuthMode::OAuth2 { client_id, client_secret, token_lifetime_secs, rotate_refresh_tokens, .. } =
            self.mode.clone()
        else {
            return reply(404, json!({"error": "not_found", "message": "OAuth2 is not configured"}));
        };
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let (id, secret) = match basic_credentials(headers) {
            Some((id, secret)) => (Some(id), Some(secret)),
            None => (field("client_id").map(str::to_owned), field("client_secret").map(str::to_owned)),
        };
        if id.as_deref() != Some(client_id.as_str()) || secret.as_deref() != Some(client_secret.as_str()) {
            return reply(401, json!({"error": "invalid_client", "error_description": "client authentication failed"}));
        }
        let grant = field("grant_type").unwrap_or("");
        let mut new_refresh = None;
        match grant {
            "client_credentials" => {}
            "refresh_token" => {
                let presented = field("refresh_token").unwrap_or("").to_owned();
                let why = if self.refresh_valid.contains(&presented) {
                    None
                } else if self.refresh_revoked.contains(&presented) {
                    Some("refresh token revoked")
                } else if self.refresh_used.contains(&presented) {
                    Some("refresh token already used")
                } else {
                    Some("unknown refresh token")
                };
                if let Some(why) = why {
                    let mut r = reply(400, json!({"error": "invalid_grant", "error_description": why}));
                    r.invalid_grant = true;
                    r.reused_refresh = why == "refresh token already used";
                    return r;
                }
                if rotate_refresh_tokens {
                    self.refresh_valid.remove(&presented);
                    self.refresh_used.insert(presented);
                    let fresh = self.mint("rt");
                    self.refresh_valid.insert(fresh.clone());
                    new_refresh = Some(fresh);
                }
            }
            "" => return reply(400, json!({"error": "invalid_request", "error_description": "grant_type missing"})),
            _ => return reply(400, json!({"error": "unsupported_grant_type", "error_description": grant})),
        }
        let lifetime = Duration::from_millis((token_lifetime_secs.max(0.001) * 1000.0).round() as u64);
        let access = self.mint("at");
        self.access.insert(access.clone(), (now + lifetime, client_id));
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": (token_lifetime_secs.ceil() as u64).max(1),
        });
        if let Some(r) = new_refresh {
            body["refresh_token"] = Value::String(r);
        }
        TokenReply { status: 200, body, granted: Some(grant.to_owned()), invalid_grant: false, reused_refresh: false }
    }
}

fn reply(status: u16, body: Value) -> TokenReply {
    TokenReply { status, body, granted: None, invalid_grant: false, reused_refresh: false }
}

/// The user name and password of an `Authorization: Basic` header, as sent (RFC 7617).
fn basic_pair(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let (id, secret) = basic_pair(headers)?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded inside Basic.
    let unescape = |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((unescape(&id)?, unescape(&secret)?))
}
