//! [`FixtureServer`]: recorded exchanges served over loopback, strictly.
//!
//! A request matches a recorded exchange when the method, the path, the query (as a
//! multiset) and every recorded request header agree — a `[redacted]` value only needs to be
//! present — and, when a body was recorded, the body (JSON compared as values, a `[redacted]`
//! JSON string matching anything; form bodies compared like queries). Among the matching
//! exchanges the first one not yet served answers, and once all have been served the last
//! one repeats: a 503 then a 200, or a 200 then a 304, replay in order. Anything else gets
//! [`UNMATCHED_STATUS`] with a JSON body naming the closest recorded exchange and what
//! differed, and is kept for [`FixtureServer::unmatched`].
//!
//! [`FixtureServer::start_with_setup`] adds *setup exchanges*: what a connector asks before
//! its streams are known (a properties API, account info). They answer only a request no
//! exchange of the fixture matches, as often as asked (in order, the last repeating), and
//! are not counted in [`FixtureServer::served`] / [`FixtureServer::unused`], so indices and
//! counts stay the fixture's own.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::capture::capture_request;
use crate::error::FixtureError;
use crate::format::{BASE_URL, Body, Exchange, Fixture, REDACTED, RecordedRequest, RecordedResponse, replace_base};
use crate::redact::Redactor;
use crate::server::{self, Handler, Incoming, Loopback, Reply, parse_pairs};

/// Status of the answer to a request no recorded exchange matches: outside the statuses a
/// client retries, so a test fails at once instead of backing off.
pub const UNMATCHED_STATUS: u16 = 599;

/// A request the replay server could not match.
#[derive(Debug, Clone, PartialEq)]
pub struct Unmatched {
    /// The request as received (relevant headers only, secrets redacted).
    pub request: RecordedRequest,
    /// Index of the closest recorded exchange, if there are any.
    pub closest: Option<usize>,
    /// What differs between the request and the closest exchange.
    pub differences: Vec<String>,
}

impl fmt::Display for Unmatched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.request.method, self.request.path)?;
        if !self.request.query.is_empty() {
            let q: Vec<String> = self.request.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "?{}", q.join("&"))?;
        }
        match self.closest {
            Some(i) => write!(f, ": closest recorded exchange #{i} differs: {}", self.differences.join("; ")),
            None => f.write_str(": the fixture has no exchanges"),
        }
    }
}

/// Recorded exchanges served on `127.0.0.1`; dropping it stops the server.
#[derive(Debug)]
pub struct FixtureServer {
    base_url: String,
    state: Arc<Replay>,
    _server: Loopback,
}

#[derive(Debug)]
struct Replay {
    exchanges: Vec<Exchange>,
    setup: Vec<Exchange>,
    inner: Mutex<State>,
}

#[derive(Debug)]
struct State {
    served: Vec<usize>,
    setup_served: Vec<usize>,
    unmatched: Vec<Unmatched>,
}

impl FixtureServer {
    /// Serve `fixture` on a free loopback port, `{{base_url}}` replaced by the server's URL.
    pub async fn start(fixture: Fixture) -> Result<FixtureServer, FixtureError> {
        FixtureServer::start_with_setup(fixture, Fixture::new(Vec::new())).await
    }

    /// Serve `fixture`, and `setup`'s exchanges for requests none of it matches (see the
    /// module docs): neither counted in `served` nor in `unused`.
    pub async fn start_with_setup(fixture: Fixture, setup: Fixture) -> Result<FixtureServer, FixtureError> {
        let (listener, addr) = server::bind().await?;
        let base_url = format!("http://{addr}");
        let (mut exchanges, mut setup) = (fixture.exchanges, setup.exchanges);
        for x in exchanges.iter_mut().chain(setup.iter_mut()) {
            x.map_strings(&mut |s| replace_base(s, BASE_URL, &base_url));
        }
        let served = vec![0; exchanges.len()];
        let setup_served = vec![0; setup.len()];
        let inner = Mutex::new(State { served, setup_served, unmatched: Vec::new() });
        let state = Arc::new(Replay { exchanges, setup, inner });
        let server = server::serve(listener, state.clone());
        Ok(FixtureServer { base_url, state, _server: server })
    }

    /// Serve the fixture file at `path`.
    pub async fn from_file(path: impl AsRef<Path>) -> Result<FixtureServer, FixtureError> {
        FixtureServer::start(Fixture::load(path)?).await
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash: the base URL to give the client.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Requests no exchange matched, in arrival order.
    pub fn unmatched(&self) -> Vec<Unmatched> {
        self.state.lock().unmatched.clone()
    }

    /// How many times each exchange (by index) has been served.
    pub fn served(&self) -> Vec<usize> {
        self.state.lock().served.clone()
    }

    /// Indices of the exchanges never served.
    pub fn unused(&self) -> Vec<usize> {
        self.state.lock().served.iter().enumerate().filter(|(_, n)| **n == 0).map(|(i, _)| i).collect()
    }
}

impl Replay {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer(&self, req: &Incoming) -> Result<Reply, Box<Unmatched>> {
        let diffs: Vec<(u32, Vec<String>)> = self.exchanges.iter().map(|x| differences(&x.request, req)).collect();
        let mut state = self.lock();
        if let Some(i) = choose(&diffs, &state.served) {
            state.served[i] += 1;
            return Ok(reply(&self.exchanges[i].response));
        }
        let setup_diffs: Vec<(u32, Vec<String>)> = self.setup.iter().map(|x| differences(&x.request, req)).collect();
        if let Some(i) = choose(&setup_diffs, &state.setup_served) {
            state.setup_served[i] += 1;
            return Ok(reply(&self.setup[i].response));
        }
        let closest = diffs.iter().enumerate().min_by_key(|(_, (score, _))| *score).map(|(i, _)| i);
        let mut x = Exchange { request: capture_request(req), response: RecordedResponse::new(UNMATCHED_STATUS) };
        Redactor::new().redact_exchanges(std::slice::from_mut(&mut x));
        let u = Unmatched {
            request: x.request,
            differences: closest.map(|i| diffs[i].1.clone()).unwrap_or_default(),
            closest,
        };
        state.unmatched.push(u.clone());
        Err(Box::new(u))
    }
}

/// Among the exchanges without differences, the first not served yet, else the last.
fn choose(diffs: &[(u32, Vec<String>)], served: &[usize]) -> Option<usize> {
    let candidates: Vec<usize> = (0..diffs.len()).filter(|i| diffs[*i].1.is_empty()).collect();
    candidates.iter().copied().find(|i| served[*i] == 0).or(candidates.last().copied())
}

fn reply(r: &RecordedResponse) -> Reply {
    let body = r.body.to_bytes().unwrap_or_default();
    let headers = r.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    Reply { status: r.status, headers, body }
}

impl Handler for Replay {
    async fn handle(&self, req: Incoming) -> Reply {
        match self.answer(&req) {
            Ok(r) => r,
            Err(u) => {
                eprintln!("dovetail-testkit: unmatched request {u}");
                Reply::json(
                    UNMATCHED_STATUS,
                    &json!({
                        "error": "no recorded exchange matches this request",
                        "request": u.request,
                        "closest": u.closest.map(|i| json!({"exchange": i, "differences": u.differences})),
                    }),
                )
            }
        }
    }
}

/// How far `req` is from `rec` (method and path count 10, anything else 1) and what differs;
/// no differences = a match. Values under secret names are never printed.
fn differences(rec: &RecordedRequest, req: &Incoming) -> (u32, Vec<String>) {
    let mut score = 0;
    let mut out = Vec::new();
    if !rec.method.eq_ignore_ascii_case(&req.method) {
        score += 10;
        out.push(format!("method: recorded {}, got {}", rec.method, req.method));
    }
    if rec.path != req.path {
        score += 10;
        out.push(format!("path: recorded {}, got {}", rec.path, req.path));
    }
    let q = pairs_differences("query", &rec.query, req.query_pairs());
    score += q.len() as u32;
    out.extend(q);
    for (name, want) in &rec.headers {
        let got: Vec<&str> =
            req.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
        let diff = if got.is_empty() {
            Some(format!("header `{name}` missing (recorded {})", show(name, want)))
        } else if want != REDACTED && got.join(", ") != *want {
            Some(format!("header `{name}`: recorded {}, got {}", show(name, want), show(name, &got.join(", "))))
        } else {
            None
        };
        if let Some(d) = diff {
            score += 1;
            out.push(d);
        }
    }
    if let Some(d) = body_difference(rec, req) {
        score += 1;
        out.push(d);
    }
    (score, out)
}

/// Multiset comparison of `(name, value)` pairs, a recorded `[redacted]` matching any value.
fn pairs_differences(what: &str, rec: &[(String, String)], mut got: Vec<(String, String)>) -> Vec<String> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (k, v) in rec.iter().filter(|(_, v)| v != REDACTED).chain(rec.iter().filter(|(_, v)| v == REDACTED)) {
        match got.iter().position(|(gk, gv)| gk == k && (gv == v || v == REDACTED)) {
            Some(i) => {
                got.remove(i);
            }
            None => missing.push((k, v)),
        }
    }
    for (k, v) in missing {
        match got.iter().position(|(gk, _)| gk == k) {
            Some(i) => {
                let (_, gv) = got.remove(i);
                out.push(format!("{what} `{k}`: recorded {}, got {}", show(k, v), show(k, &gv)));
            }
            None => out.push(format!("{what} `{k}` missing (recorded {})", show(k, v))),
        }
    }
    for (k, v) in got {
        out.push(format!("{what} `{k}` not recorded (got {})", show(&k, &v)));
    }
    out
}

fn body_difference(rec: &RecordedRequest, req: &Incoming) -> Option<String> {
    let Body { body, body_text, body_base64 } = &rec.body;
    if let Some(want) = body {
        return match serde_json::from_slice::<Value>(&req.body) {
            Ok(got) if json_matches(want, &got) => None,
            Ok(mut got) => {
                Redactor::new().redact_value(&mut got);
                Some(format!("body: recorded {}, got {}", excerpt(want), excerpt(&got)))
            }
            Err(_) => Some(format!("body: recorded JSON {}, got a non-JSON body", excerpt(want))),
        };
    }
    if let Some(want) = body_text {
        let got = String::from_utf8_lossy(&req.body);
        let form = rec.headers.get("content-type").is_some_and(|c| c.contains("x-www-form-urlencoded"));
        if form {
            let d = pairs_differences("form field", &parse_pairs(want), parse_pairs(&got));
            return (!d.is_empty()).then(|| d.join("; "));
        }
        return (want != REDACTED && *want != got).then(|| "body: the text differs from the recorded one".to_owned());
    }
    if body_base64.is_some() && rec.body.to_bytes().ok().is_none_or(|b| b != req.body) {
        return Some("body: the bytes differ from the recorded ones".to_owned());
    }
    None
}

/// `got` equals `want`, where a `[redacted]` string in `want` matches any value.
fn json_matches(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::String(s), _) if s == REDACTED => true,
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|g| json_matches(v, g)))
        }
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(w, g)| json_matches(w, g)),
        _ => want == got,
    }
}

/// A value quoted, or `[redacted]` when its name looks secret.
fn show(name: &str, v: &str) -> String {
    if Redactor::new().is_secret_name(name) { REDACTED.to_owned() } else { format!("{v:?}") }
}

fn excerpt(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 { format!("{}…", s.chars().take(200).collect::<String>()) } else { s }
}
