//! Redaction applied when fixtures are saved: credentials never reach a fixture file.
//!
//! Three passes over every exchange:
//! 1. headers named in [`Redactor::drop_header`] are removed;
//! 2. values under secret-looking names become `[redacted]` — the credential headers
//!    (`Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`), and any header, query
//!    parameter, form field or JSON key with a word of [`dovetail_http::SECRET_PARAM_WORDS`]
//!    (`token`, `key`, `secret`, `password`, `signature`, `auth`) or a name added with
//!    [`Redactor::secret_name`]; the values removed are remembered;
//! 3. every string (path, query and header values, bodies) is scrubbed of the caller's
//!    secrets ([`Redactor::secret`]) and of the values remembered in pass 2 (8 characters or
//!    more), raw and form-encoded — so a token echoed in a body or a next URL goes too.
//!
//! Names are split into words (`access_token`, `X-Api-Key`, `clientSecret`), so `author` or
//! `monkey` are not secret; `idempotency-key` is kept by default (it is not a credential and
//! sink fixtures need it), and [`Redactor::keep_name`] keeps more.

use dovetail_http::SECRET_PARAM_WORDS;
use serde_json::Value;

use crate::format::{Exchange, Fixture, REDACTED};

/// Header names whose values are always credentials.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];
/// Names never redacted by default.
const KEEP: &[&str] = &["idempotency-key", "idempotency_key", "idempotencykey"];
/// Values found under secret names shorter than this are not scrubbed elsewhere (a
/// `token_type` of `Bearer` must not erase every `Bearer` in the file).
const MIN_LEARNED: usize = 8;

/// What to remove from fixtures before they are saved.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
    names: Vec<String>,
    keep: Vec<String>,
    drop_headers: Vec<String>,
}

impl Redactor {
    /// The default rules (module docs).
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// A secret value to replace wherever it appears (bodies and URLs included).
    pub fn secret(mut self, value: impl Into<String>) -> Redactor {
        let v = value.into();
        if !v.is_empty() {
            self.secrets.push(v);
        }
        self
    }

    /// One more header, query, form or JSON field name whose values are secret.
    pub fn secret_name(mut self, name: &str) -> Redactor {
        self.names.push(name.to_ascii_lowercase());
        self
    }

    /// A name whose values are kept although it looks secret (e.g. a `page_token` cursor).
    pub fn keep_name(mut self, name: &str) -> Redactor {
        self.keep.push(name.to_ascii_lowercase());
        self
    }

    /// A header left out of the file entirely (request and response side), e.g. a
    /// per-request trace id that would stop replayed requests from matching.
    pub fn drop_header(mut self, name: &str) -> Redactor {
        self.drop_headers.push(name.to_ascii_lowercase());
        self
    }

    /// Whether values under `name` are redacted.
    pub fn is_secret_name(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        if KEEP.contains(&lower.as_str()) || self.keep.contains(&lower) {
            return false;
        }
        CREDENTIAL_HEADERS.contains(&lower.as_str())
            || self.names.contains(&lower)
            || words(name).iter().any(|w| SECRET_PARAM_WORDS.contains(&w.as_str()))
    }

    /// Redact `fixture` in place.
    pub fn redact(&self, fixture: &mut Fixture) {
        self.redact_exchanges(&mut fixture.exchanges);
    }

    /// Pass 2 alone on a JSON value (for messages that quote a body).
    pub(crate) fn redact_value(&self, v: &mut Value) {
        self.redact_json(v, &mut Vec::new());
    }

    /// Redact `exchanges` in place, as one scenario.
    pub(crate) fn redact_exchanges(&self, exchanges: &mut [Exchange]) {
        let mut learned = Vec::new();
        for x in exchanges.iter_mut() {
            self.structural(x, &mut learned);
        }
        let mut secrets: Vec<String> = self.secrets.clone();
        secrets.extend(learned.into_iter().filter(|s| s.chars().count() >= MIN_LEARNED && s != REDACTED));
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        if secrets.is_empty() {
            return;
        }
        let variants: Vec<String> = secrets
            .iter()
            .flat_map(|s| [s.clone(), form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()])
            .collect();
        let mut scrub = |s: &str| {
            let mut out: Option<String> = None;
            for v in &variants {
                let cur = out.as_deref().unwrap_or(s);
                if cur.contains(v.as_str()) {
                    out = Some(cur.replace(v.as_str(), REDACTED));
                }
            }
            out
        };
        for x in exchanges.iter_mut() {
            if let Some(p) = scrub(&x.request.path) {
                x.request.path = p;
            }
            x.map_strings(&mut scrub);
        }
    }

    /// Passes 1 and 2 on one exchange.
    fn structural(&self, x: &mut Exchange, learned: &mut Vec<String>) {
        for headers in [&mut x.request.headers, &mut x.response.headers] {
            headers.retain(|k, _| !self.drop_headers.contains(&k.to_ascii_lowercase()));
            for (k, v) in headers.iter_mut() {
                if self.is_secret_name(k) && v != REDACTED {
                    // `Bearer abc`: `abc` may appear alone elsewhere.
                    if let Some((_, cred)) = v.split_once(' ') {
                        learned.push(cred.trim().to_owned());
                    }
                    learned.push(std::mem::replace(v, REDACTED.to_owned()));
                }
            }
        }
        for (k, v) in &mut x.request.query {
            if self.is_secret_name(k) && v != REDACTED {
                learned.push(std::mem::replace(v, REDACTED.to_owned()));
            }
        }
        let form = x.request.headers.get("content-type").is_some_and(|c| c.contains("x-www-form-urlencoded"));
        if form && let Some(t) = &mut x.request.body.body_text {
            *t = self.redact_form(t, learned);
        }
        for v in [&mut x.request.body.body, &mut x.response.body.body].into_iter().flatten() {
            self.redact_json(v, learned);
        }
    }

    fn redact_form(&self, text: &str, learned: &mut Vec<String>) -> String {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| {
                let v = if self.is_secret_name(&k) && v != REDACTED {
                    learned.push(v.into_owned());
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        encoded.replace("%5Bredacted%5D", REDACTED)
    }

    fn redact_json(&self, v: &mut Value, learned: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if self.is_secret_name(k) && !x.is_null() {
                        collect_strings(x, learned);
                        *x = Value::String(REDACTED.to_owned());
                    } else {
                        self.redact_json(x, learned);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.redact_json(x, learned)),
            _ => {}
        }
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s != REDACTED => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// `name` split into lower-case words at non-alphanumerics and lower→upper case changes:
/// `X-Api-Key` → `x api key`, `clientSecret` → `client secret`.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_whole_words() {
        let r = Redactor::new();
        for n in ["Authorization", "Cookie", "X-Api-Key", "access_token", "clientSecret", "password", "auth"] {
            assert!(r.is_secret_name(n), "{n}");
        }
        for n in ["author", "monkey", "tokens_used", "Idempotency-Key", "x-ratelimit-remaining", "www-authenticate"] {
            assert!(!r.is_secret_name(n), "{n}");
        }
        assert!(Redactor::new().secret_name("X-Session").is_secret_name("x-session"));
        assert!(!Redactor::new().keep_name("page_token").is_secret_name("page_token"));
    }
}
