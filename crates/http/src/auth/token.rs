//! One OAuth2 token request (RFC 6749 §4.4 / §6) and the mapping of its failures to
//! dovetail errors. Token-endpoint errors quote the vendor's `error` and
//! `error_description`; no secret ever reaches an error message or a log line.

use std::time::Duration;

use dovetail_core::{Error, ErrorKind, Secret};
use serde::Deserialize;

use super::oauth2::{ClientAuth, OAuth2Settings};

/// A successful token response.
pub(crate) struct Fetched {
    pub(crate) access: Secret,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) refresh: Option<Secret>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<Secret>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// POST `params` (the grant) as a form to the token endpoint, authenticating the client per
/// `s.client_auth`. `secrets` are scrubbed from any body excerpt quoted in an error.
pub(crate) async fn request(
    http: &reqwest::Client,
    url: &reqwest::Url,
    s: &OAuth2Settings,
    grant: &str,
    mut params: Vec<(&'static str, String)>,
    secrets: &[&str],
) -> Result<Fetched, Error> {
    if !s.scopes.is_empty() {
        params.push(("scope", s.scopes.join(" ")));
    }
    let mut req = http.post(url.clone()).header(reqwest::header::ACCEPT, "application/json");
    match (&s.client_auth, &s.client_secret) {
        (ClientAuth::ClientSecretBasic, Some(secret)) => {
            let v = super::sensitive_header(&super::simple::basic_value(&s.client_id, secret.expose()))?;
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        (ClientAuth::ClientSecretPost, Some(secret)) => {
            params.push(("client_id", s.client_id.clone()));
            params.push(("client_secret", secret.expose().to_owned()));
        }
        (_, None) => params.push(("client_id", s.client_id.clone())),
    }
    let endpoint = endpoint_name(url);
    let resp = req.form(&params).send().await.map_err(|e| {
        Error::transient(format!("cannot reach the OAuth2 token endpoint {endpoint}")).with_source(e.without_url())
    })?;
    let status = resp.status();
    // Only the target's origin: its path or query could quote something of ours.
    let resp_location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| url.join(l).ok())
        .map(|u| u.origin().ascii_serialization());
    let body = resp.bytes().await.map_err(|e| {
        Error::transient(format!("reading the response of the OAuth2 token endpoint {endpoint} failed"))
            .with_source(e.without_url())
    })?;
    if status.is_success() {
        let r: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            // Never quote a 2xx body: it may hold a token.
            Error::new(
                ErrorKind::Auth,
                format!("the OAuth2 token endpoint {endpoint} answered {status} without an `access_token`"),
            )
        })?;
        return Ok(Fetched {
            access: r.access_token,
            expires_in: r.expires_in.as_ref().and_then(seconds).map(Duration::from_secs),
            refresh: r.refresh_token.filter(|t| !t.expose().is_empty()),
        });
    }
    if status.is_redirection() {
        let to = resp_location.map(|l| format!(" to {l}")).unwrap_or_default();
        return Err(Error::new(
            ErrorKind::Auth,
            format!(
                "the OAuth2 token endpoint {endpoint} answered {status}, redirecting{to}: token requests carry the \
                 client secret and refresh token, so dovetail does not follow redirects from the token endpoint"
            ),
        )
        .with_hint("set `token_url` to the endpoint's final URL (as the vendor documents it), then run again"));
    }
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Error::transient(format!("the OAuth2 token endpoint {endpoint} answered {status}")));
    }
    Err(match serde_json::from_slice::<ErrorResponse>(&body) {
        Ok(e) => vendor_error(&endpoint, grant, status, &e, secrets),
        Err(_) => Error::new(
            ErrorKind::Auth,
            format!(
                "the OAuth2 token endpoint {endpoint} refused the {grant} grant with {status}: {}",
                excerpt(&body, secrets)
            ),
        ),
    })
}

/// The token URL without query or fragment, for messages.
fn endpoint_name(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// `expires_in` as whole seconds: vendors send numbers, numeric strings, or decimals.
fn seconds(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn vendor_error(
    endpoint: &str,
    grant: &str,
    status: reqwest::StatusCode,
    e: &ErrorResponse,
    secrets: &[&str],
) -> Error {
    let hint = match (e.error.as_str(), grant) {
        ("invalid_grant", "refresh_token") => {
            "the refresh token was revoked or expired; re-authorize and configure the new refresh token"
        }
        ("invalid_grant", _) => "the grant was rejected",
        ("invalid_client", _) => "client authentication failed; check client_id, client_secret and client_auth",
        ("unauthorized_client", _) => "this client may not use this grant type",
        ("invalid_scope", _) => "a requested scope is invalid, unknown or not granted to this client",
        ("unsupported_grant_type", _) => "the endpoint does not support this grant type",
        _ => "the token endpoint refused the request",
    };
    let desc = match &e.error_description {
        Some(d) => format!(" ({:?})", scrub(d, secrets)),
        None => String::new(),
    };
    let err = Error::new(
        ErrorKind::Auth,
        format!(
            "the OAuth2 token endpoint {endpoint} refused the {grant} grant with {status}: {}{desc}: {hint}",
            scrub(&e.error, secrets)
        ),
    );
    match (e.error.as_str(), grant) {
        ("invalid_grant", "refresh_token") => err.with_hint(
            "re-authorize with the vendor, put the new refresh token where the config's `refresh_token` points \
             (a changed configured token replaces the stored rotated one), then run again",
        ),
        ("invalid_client", _) => {
            err.with_hint("check client_id, client_secret and client_auth in the config, then run again")
        }
        _ => err,
    }
}

/// At most 200 characters of a body, secrets replaced.
fn excerpt(body: &[u8], secrets: &[&str]) -> String {
    // Scrub before cutting, so a secret cut in half cannot leave its start behind.
    scrub(&String::from_utf8_lossy(body), secrets).chars().take(200).collect()
}

fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, "[redacted]");
    }
    out
}
