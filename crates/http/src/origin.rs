//! Where a client may send requests: the credential-origin rule.
//!
//! A client with a base URL, `http.allowed_origins` or credentials is *scoped*: every
//! request it sends — and so every credential it carries (auth header, API key in a header
//! or the query, basic auth, a cookie) — goes only to the origin (scheme, host, port) of its
//! base URL or to an origin listed in `allowed_origins`. Token requests go to the token
//! endpoint, which only the OAuth2 provider talks to. Anything else is refused before a
//! byte is sent: a pagination link or body URL ([`crate::paginate`]), a child stream's
//! URL, a stored position written for another origin, a redirect to another origin
//! (same-origin redirects are followed, 307/308 resending the body). A client with none of
//! the three (a bench, an ad-hoc download) is unscoped and follows redirects as reqwest does.
//!
//! The rule applies to clients without credentials too: it is one rule, and the `headers`
//! of an `http` block may carry something a user thinks of as secret.

use std::fmt;

use dovetail_core::Error;
use reqwest::Url;
use schemars::JsonSchema;
use serde::Deserialize;

/// An origin (RFC 6454): scheme, host and port, written `https://host` or
/// `http://host:8080` (a scheme's default port left out, the host lowercased).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// The origin of an http(s) URL; `None` for other schemes and URLs without a host.
    pub fn of(url: &Url) -> Option<Origin> {
        let o = url.origin();
        (o.is_tuple() && matches!(url.scheme(), "http" | "https")).then(|| Origin(o.ascii_serialization()))
    }

    /// The origin as text (`https://host[:port]`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of `http.allowed_origins`: an exact origin such as `https://uploads.example.com`
/// (no wildcard, path, query or user info), checked when the config is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AllowedOrigin(Origin);

impl AllowedOrigin {
    /// The origin.
    pub fn origin(&self) -> &Origin {
        &self.0
    }
}

impl TryFrom<String> for AllowedOrigin {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        parse_origin(&text).map(AllowedOrigin)
    }
}

impl std::str::FromStr for AllowedOrigin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_origin(s).map(AllowedOrigin)
    }
}

impl JsonSchema for AllowedOrigin {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AllowedOrigin".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An exact origin: scheme, host and optional port, e.g. `https://uploads.example.com` \
                            (no wildcard, path, query or user info).",
            "type": "string",
            "pattern": "^https?://[^/*?#@]+/?$"
        })
    }
}

fn parse_origin(text: &str) -> Result<Origin, String> {
    let bad = |why: &str| {
        format!(
            "`{text}` is not an origin ({why}); write scheme, host and optional port, e.g. `https://uploads.example.com`"
        )
    };
    if text.contains('*') {
        return Err(bad("wildcards are not allowed: list each origin"));
    }
    let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("no user info"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no path, query or fragment"));
    }
    Origin::of(&url).ok_or_else(|| bad("no host"))
}

/// The origins a scoped client may send to: its base URL's and the allowed ones.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    base: Option<Origin>,
    allowed: Vec<Origin>,
    /// (scheme, host, port) of every permitted origin: what `permits` compares without
    /// building an origin string per request.
    tuples: Vec<(String, String, u16)>,
}

/// (scheme, host, port) of an http(s) URL.
fn tuple(url: &Url) -> Option<(&str, &str, u16)> {
    let scheme = url.scheme();
    matches!(scheme, "http" | "https").then_some(())?;
    Some((scheme, url.host_str()?, url.port_or_known_default()?))
}

impl Scope {
    /// The scope of a client, or `None` when it is unscoped (no base URL, no allow-list, no
    /// credentials). A client with credentials but nowhere to send them is a Config error.
    pub(crate) fn new(
        base: Option<&Url>,
        allowed: &[AllowedOrigin],
        credentialed: bool,
    ) -> Result<Option<Scope>, Error> {
        let base = match base {
            Some(u) => Some(Origin::of(u).ok_or_else(|| {
                Error::config(format!("http.base_url `{u}` has no http(s) origin to send requests to"))
            })?),
            None => None,
        };
        let allowed: Vec<Origin> = allowed.iter().map(|a| a.0.clone()).collect();
        if base.is_none() && allowed.is_empty() {
            if credentialed {
                return Err(Error::config(
                    "a client with credentials needs a base_url (or `http.allowed_origins`): credentials go only to \
                     the origins they were configured for",
                ));
            }
            return Ok(None);
        }
        let tuples = base
            .iter()
            .chain(&allowed)
            .filter_map(|o| Url::parse(o.as_str()).ok())
            .filter_map(|u| tuple(&u).map(|(s, h, p)| (s.to_owned(), h.to_owned(), p)))
            .collect();
        Ok(Some(Scope { base, allowed, tuples }))
    }

    /// Whether a request to `url` may be sent.
    pub(crate) fn permits(&self, url: &Url) -> bool {
        tuple(url).is_some_and(|t| self.tuples.iter().any(|(s, h, p)| (s.as_str(), h.as_str(), *p) == t))
    }

    /// The permitted origins as a sentence fragment: "http://a:1 (the base_url) and https://b".
    pub(crate) fn describe(&self) -> String {
        let mut parts: Vec<String> = self.base.iter().map(|b| format!("{b} (the base URL)")).collect();
        parts.extend(self.allowed.iter().map(|o| format!("{o} (`http.allowed_origins`)")));
        parts.join(", ")
    }
}

/// Redirects a hop at most follows.
const MAX_REDIRECTS: usize = 10;

/// reqwest's redirect policy: a scoped client follows a redirect only within the origin of
/// the URL that answered it (and so, hop by hop, within the request's own origin); the
/// refused 3xx comes back to the request loop, which reports it. Unscoped clients follow
/// up to [`MAX_REDIRECTS`] hops anywhere, like reqwest's default.
pub(crate) fn redirect_policy(scoped: bool) -> reqwest::redirect::Policy {
    if !scoped {
        return reqwest::redirect::Policy::limited(MAX_REDIRECTS);
    }
    reqwest::redirect::Policy::custom(|attempt| {
        let from = attempt.previous().last().and_then(Origin::of);
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if from.is_some() && from == Origin::of(attempt.url()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The error for a redirect the policy did not follow: `from` answered `status` with
/// `Location: location`.
pub(crate) fn redirect_refused(from: &Url, status: reqwest::StatusCode, location: &str) -> Error {
    let target = from.join(location).map(|u| shown(&u)).unwrap_or_else(|_| "an invalid URL".to_owned());
    Error::permanent(format!(
        "the API answered {status} redirecting to {target}, another origin than {}: a request that may carry \
         credentials never follows a redirect to another origin",
        shown(from)
    ))
    .with_hint(format!(
        "point the connector's base URL (or the stream's path) at {target} if that is where the API now lives and it \
         is trusted"
    ))
}

/// The origin of `url` for messages (the URL itself when it has none).
pub(crate) fn shown(url: &Url) -> String {
    Origin::of(url).map(|o| o.0).unwrap_or_else(|| crate::observe::redact_url(url, &[]))
}

/// The error for a request refused by the scope: names the refused origin, the permitted
/// ones and the key that would permit it. `what` says where the URL came from.
pub(crate) fn refused(scope: &Scope, url: &Url, what: &str) -> Error {
    Error::permanent(format!(
        "refused to send a request to {} ({what}): this connector sends requests and credentials only to {}",
        shown(url),
        scope.describe()
    ))
    .with_hint(format!(
        "if {} is the vendor's own and trusted, add it to `http.allowed_origins` in the connector's config; \
         otherwise the API pointed dovetail at a host it was not configured for",
        shown(url)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(Origin::of(&url("https://API.example.com:443/v1?x=1")).unwrap().as_str(), "https://api.example.com");
        assert_eq!(Origin::of(&url("http://127.0.0.1:8080/")).unwrap().as_str(), "http://127.0.0.1:8080");
        assert_ne!(Origin::of(&url("http://a.test/")), Origin::of(&url("https://a.test/")));
        assert_ne!(Origin::of(&url("http://a.test:1/")), Origin::of(&url("http://a.test:2/")));
        assert_eq!(Origin::of(&url("file:///etc/passwd")), None);
    }

    #[test]
    fn allowed_origins_are_exact() {
        let ok: AllowedOrigin = "https://uploads.example.com".parse().unwrap();
        assert_eq!(ok.origin().as_str(), "https://uploads.example.com");
        let ok: AllowedOrigin = "https://uploads.example.com:443/".parse().unwrap();
        assert_eq!(ok.origin().as_str(), "https://uploads.example.com");
        for bad in [
            "https://*.example.com",
            "https://uploads.example.com/v1",
            "https://uploads.example.com?x=1",
            "https://user:pw@uploads.example.com",
            "ftp://uploads.example.com",
            "uploads.example.com",
        ] {
            let e = bad.parse::<AllowedOrigin>().unwrap_err();
            assert!(e.contains(&format!("`{bad}` is not an origin")), "{bad}: {e}");
        }
    }

    #[test]
    fn a_scope_permits_its_base_origin_and_the_allowed_ones_only() {
        let allowed = vec!["https://uploads.example.com".parse::<AllowedOrigin>().unwrap()];
        let s = Scope::new(Some(&url("https://api.example.com/v3/")), &allowed, true).unwrap().unwrap();
        assert!(s.permits(&url("https://api.example.com/other/path?page=2")));
        assert!(s.permits(&url("https://uploads.example.com/x")));
        assert!(!s.permits(&url("http://api.example.com/v3/")), "another scheme is another origin");
        assert!(!s.permits(&url("https://api.example.com:8443/v3/")));
        assert!(!s.permits(&url("https://api.github.com/v3/")));
        assert!(s.permits(&url("https://API.Example.com:443/x")), "hosts and default ports are normalized");
        let v6 = Scope::new(Some(&url("http://[::1]:8080/")), &[], true).unwrap().unwrap();
        assert!(v6.permits(&url("http://[0:0::1]:8080/next")) && !v6.permits(&url("http://[::2]:8080/")));
        assert!(Scope::new(None, &[], false).unwrap().is_none(), "no base, no list, no credential: unscoped");
        let e = Scope::new(None, &[], true).unwrap_err();
        assert!(e.message().contains("needs a base_url"), "{}", e.message());
    }
}
