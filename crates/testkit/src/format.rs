//! The fixture file format: one pretty-printed JSON file per scenario holding its exchanges
//! in the order they happened (see the crate README for the documented format).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FixtureError;

/// Placeholder for the API's base URL in fixture files, replaced by the replay server's.
pub const BASE_URL: &str = "{{base_url}}";
/// What a secret value becomes in a fixture file.
pub const REDACTED: &str = "[redacted]";
/// Version of the format written by this crate.
pub const FORMAT_VERSION: u32 = 1;

/// One scenario: recorded exchanges in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Format version ([`FORMAT_VERSION`]).
    #[serde(default = "version_one")]
    pub version: u32,
    /// The exchanges, in the order they were recorded (the replay order of duplicates).
    pub exchanges: Vec<Exchange>,
}

fn version_one() -> u32 {
    FORMAT_VERSION
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture { version: FORMAT_VERSION, exchanges: Vec::new() }
    }
}

/// One request and the response it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// What the client sent (the parts that identify it).
    pub request: RecordedRequest,
    /// What the server answered.
    pub response: RecordedResponse,
}

/// The identifying parts of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireRequest", from = "WireRequest")]
pub struct RecordedRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Path as sent (percent-encoded), without the query.
    pub path: String,
    /// Decoded query pairs; matched as a multiset (order-insensitive).
    pub query: Vec<(String, String)>,
    /// Relevant headers (lower-case names; repeated values joined with `, `); each must be
    /// sent with this value, or with any value when it is `[redacted]`.
    pub headers: BTreeMap<String, String>,
    /// The body, when there was one.
    pub body: Body,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireResponse", from = "WireResponse")]
pub struct RecordedResponse {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names; repeated values joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The body, when there was one.
    pub body: Body,
}

impl RecordedResponse {
    /// A response with this status and no headers or body.
    pub fn new(status: u16) -> RecordedResponse {
        RecordedResponse { status, headers: BTreeMap::new(), body: Body::default() }
    }
}

/// A body, stored so that fixtures diff nicely: JSON as a JSON value (`body`), other UTF-8
/// text as a string (`body_text`), anything else as base64 (`body_base64`); in the file
/// these are fields of the request or response object, at most one of them present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Body {
    /// A JSON body.
    pub body: Option<Value>,
    /// A non-JSON text body.
    pub body_text: Option<String>,
    /// A binary body, base64 (standard alphabet, padded).
    pub body_base64: Option<String>,
}

/// [`RecordedRequest`] as written: the body's fields inline (serde's `flatten` would lose
/// `deny_unknown_fields`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    method: String,
    path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    query: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

/// [`RecordedResponse`] as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireResponse {
    status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

impl From<RecordedRequest> for WireRequest {
    fn from(r: RecordedRequest) -> Self {
        let Body { body, body_text, body_base64 } = r.body;
        WireRequest { method: r.method, path: r.path, query: r.query, headers: r.headers, body, body_text, body_base64 }
    }
}

impl From<WireRequest> for RecordedRequest {
    fn from(w: WireRequest) -> Self {
        let body = Body { body: w.body, body_text: w.body_text, body_base64: w.body_base64 };
        RecordedRequest { method: w.method, path: w.path, query: w.query, headers: w.headers, body }
    }
}

impl From<RecordedResponse> for WireResponse {
    fn from(r: RecordedResponse) -> Self {
        let Body { body, body_text, body_base64 } = r.body;
        WireResponse { status: r.status, headers: r.headers, body, body_text, body_base64 }
    }
}

impl From<WireResponse> for RecordedResponse {
    fn from(w: WireResponse) -> Self {
        let body = Body { body: w.body, body_text: w.body_text, body_base64: w.body_base64 };
        RecordedResponse { status: w.status, headers: w.headers, body }
    }
}

impl Body {
    /// A JSON body.
    pub fn json(v: Value) -> Body {
        Body { body: Some(v), ..Body::default() }
    }

    /// A text body.
    pub fn text(s: impl Into<String>) -> Body {
        Body { body_text: Some(s.into()), ..Body::default() }
    }

    /// Raw bytes as a body: JSON if they parse as JSON, else text if UTF-8, else base64.
    pub fn from_bytes(b: &[u8]) -> Body {
        if b.is_empty() {
            return Body::default();
        }
        if let Ok(v) = serde_json::from_slice::<Value>(b) {
            return Body::json(v);
        }
        match std::str::from_utf8(b) {
            Ok(s) => Body::text(s),
            Err(_) => Body { body_base64: Some(BASE64.encode(b)), ..Body::default() },
        }
    }

    /// The bytes to send (JSON compact); `Err` for invalid base64.
    pub fn to_bytes(&self) -> Result<Bytes, FixtureError> {
        if let Some(v) = &self.body {
            return Ok(Bytes::from(serde_json::to_vec(v).map_err(FixtureError::Json)?));
        }
        if let Some(t) = &self.body_text {
            return Ok(Bytes::from(t.clone()));
        }
        if let Some(b) = &self.body_base64 {
            return BASE64.decode(b).map(Bytes::from).map_err(|e| FixtureError::Invalid(format!("body_base64: {e}")));
        }
        Ok(Bytes::new())
    }

    /// No body.
    pub fn is_empty(&self) -> bool {
        self.body.is_none() && self.body_text.is_none() && self.body_base64.is_none()
    }

    /// Apply `f` to every string the body holds (JSON strings, not keys; the text).
    pub(crate) fn map_strings(&mut self, f: &mut dyn FnMut(&str) -> Option<String>) {
        if let Some(v) = &mut self.body {
            map_json_strings(v, f);
        }
        if let Some(t) = &mut self.body_text
            && let Some(n) = f(t)
        {
            *t = n;
        }
    }
}

/// Apply `f` to every string value in `v` (`None` = unchanged).
pub(crate) fn map_json_strings(v: &mut Value, f: &mut dyn FnMut(&str) -> Option<String>) {
    match v {
        Value::String(s) => {
            if let Some(n) = f(s) {
                *s = n;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| map_json_strings(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| map_json_strings(x, f)),
        _ => {}
    }
}

impl Exchange {
    /// Apply `f` to every string of the exchange that may hold a URL or a secret: query
    /// values, header values and bodies of both sides (`None` = unchanged).
    pub(crate) fn map_strings(&mut self, f: &mut dyn FnMut(&str) -> Option<String>) {
        let mut one = |s: &mut String| {
            if let Some(n) = f(s) {
                *s = n;
            }
        };
        self.request.query.iter_mut().for_each(|(_, v)| one(v));
        self.request.headers.values_mut().for_each(&mut one);
        self.response.headers.values_mut().for_each(&mut one);
        self.request.body.map_strings(f);
        self.response.body.map_strings(f);
    }
}

impl Fixture {
    /// A fixture of these exchanges.
    pub fn new(exchanges: Vec<Exchange>) -> Fixture {
        Fixture { exchanges, ..Fixture::default() }
    }

    /// Parse a fixture from its JSON text.
    pub fn from_json(text: &str) -> Result<Fixture, FixtureError> {
        let f: Fixture = serde_json::from_str(text).map_err(FixtureError::Json)?;
        if f.version != FORMAT_VERSION {
            return Err(FixtureError::Invalid(format!("unsupported fixture version {}", f.version)));
        }
        for (i, x) in f.exchanges.iter().enumerate() {
            let bodies = [&x.request.body, &x.response.body];
            if bodies.iter().any(|b| {
                usize::from(b.body.is_some())
                    + usize::from(b.body_text.is_some())
                    + usize::from(b.body_base64.is_some())
                    > 1
            }) {
                return Err(FixtureError::Invalid(format!(
                    "exchange {i}: more than one of body, body_text, body_base64"
                )));
            }
        }
        Ok(f)
    }

    /// The fixture as pretty-printed JSON with a stable key order (and a final newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a fixture always serializes");
        s.push('\n');
        s
    }

    /// Read a fixture file.
    pub fn load(path: impl AsRef<Path>) -> Result<Fixture, FixtureError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| FixtureError::Io(path.to_path_buf(), e))?;
        Fixture::from_json(&text).map_err(|e| FixtureError::File(path.to_path_buf(), Box::new(e)))
    }

    /// Write the fixture to `path` (creating parent directories).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), FixtureError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| FixtureError::Io(dir.to_path_buf(), e))?;
        }
        std::fs::write(path, self.to_json()).map_err(|e| FixtureError::Io(path.to_path_buf(), e))
    }
}

/// Replace `from` with `to` in `s` where `from` is not followed by a character that would
/// continue it (so `http://h:80` does not match inside `http://h:8080`); `None` if absent.
pub(crate) fn replace_base(s: &str, from: &str, to: &str) -> Option<String> {
    if from.is_empty() || !s.contains(from) {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        let continues = after.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        out.push_str(&rest[..i]);
        out.push_str(if continues { from } else { to });
        changed |= !continues;
        rest = after;
    }
    out.push_str(rest);
    changed.then_some(out)
}
