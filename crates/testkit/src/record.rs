//! [`Recorder`]: record mode. A proxy on loopback in front of a live API; the connector under
//! test is pointed at [`Recorder::base_url`] and uses its own client unchanged, every
//! exchange is forwarded (reqwest, no redirects followed, identity encoding) and captured,
//! and [`Recorder::save`] writes the scenario as a redacted fixture file.
//!
//! Absolute URLs of the live API in responses (a `Link` header, a `next` URL in a body) are
//! rewritten to the recorder's own URL before the client sees them, so pagination keeps
//! going through the recorder; in the saved file both become `{{base_url}}`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::json;

use crate::capture::{capture_request, capture_response};
use crate::error::FixtureError;
use crate::format::{BASE_URL, Exchange, Fixture, replace_base};
use crate::redact::Redactor;
use crate::server::{self, Handler, Incoming, Loopback, Reply};

/// Request headers not forwarded: hop-by-hop ones, the client's `Host`, and
/// `Accept-Encoding` (the live API answers uncompressed, so bodies are stored as sent).
const NOT_FORWARDED: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "accept-encoding",
];
/// Response headers not passed back (the body is re-framed by the recorder).
const NOT_RETURNED: &[&str] = &["content-length", "connection", "keep-alive", "transfer-encoding", "trailer"];

/// A recording proxy in front of a live API; dropping it stops the proxy.
#[derive(Debug)]
pub struct Recorder {
    base_url: String,
    state: Arc<Proxy>,
    _server: Loopback,
}

#[derive(Debug)]
struct Proxy {
    upstream: String,
    own: String,
    client: reqwest::Client,
    seq: AtomicU64,
    log: Mutex<Vec<Captured>>,
}

/// One exchange as it happened (live URLs, secrets and all), kept only in memory.
#[derive(Debug, Clone)]
struct Captured {
    seq: u64,
    request: Incoming,
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Recorder {
    /// Start a recorder forwarding to `upstream`, the live API's base URL (`https://host`
    /// or `https://host/api/v3`): a request for `/path?q` goes to `upstream/path?q`.
    pub async fn start(upstream: &str) -> Result<Recorder, FixtureError> {
        let upstream = upstream.trim_end_matches('/').to_owned();
        match reqwest::Url::parse(&upstream) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => return Err(FixtureError::Upstream(upstream)),
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_gzip()
            .build()
            .map_err(|e| FixtureError::Bind(std::io::Error::other(e)))?;
        let (listener, addr) = server::bind().await?;
        let own = format!("http://{addr}");
        let state =
            Arc::new(Proxy { upstream, own: own.clone(), client, seq: AtomicU64::new(0), log: Mutex::new(Vec::new()) });
        let server = server::serve(listener, state.clone());
        Ok(Recorder { base_url: own, state, _server: server })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash: the base URL to give the client.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Exchanges captured so far.
    pub fn len(&self) -> usize {
        self.state.lock().len()
    }

    /// Nothing captured yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget what was captured (to record the next scenario with the same recorder).
    pub fn clear(&self) {
        self.state.lock().clear();
    }

    /// The captured exchanges in arrival order as a fixture: live and recorder URLs replaced
    /// by `{{base_url}}`, then redacted by `redactor`.
    pub fn fixture(&self, redactor: &Redactor) -> Fixture {
        let mut log = self.state.lock().clone();
        log.sort_by_key(|c| c.seq);
        let mut exchanges: Vec<Exchange> = log
            .iter()
            .map(|c| Exchange {
                request: capture_request(&c.request),
                response: capture_response(c.status, &c.headers, &c.body),
            })
            .collect();
        let (upstream, own) = (&self.state.upstream, &self.state.own);
        for x in &mut exchanges {
            x.map_strings(&mut |s| match replace_base(s, upstream, BASE_URL) {
                Some(t) => Some(replace_base(&t, own, BASE_URL).unwrap_or(t)),
                None => replace_base(s, own, BASE_URL),
            });
        }
        let mut fixture = Fixture::new(exchanges);
        redactor.redact(&mut fixture);
        fixture
    }

    /// Write [`Recorder::fixture`] to `path` (parent directories created) and return it.
    pub fn save(&self, path: impl AsRef<Path>, redactor: &Redactor) -> Result<Fixture, FixtureError> {
        let fixture = self.fixture(redactor);
        fixture.save(path)?;
        Ok(fixture)
    }
}

impl Proxy {
    fn lock(&self) -> MutexGuard<'_, Vec<Captured>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn forward(&self, req: &Incoming) -> Result<(u16, Vec<(String, String)>, Bytes), reqwest::Error> {
        let query = req.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
        let url = format!("{}{}{query}", self.upstream, req.path);
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut rb = self.client.request(method, url);
        for (k, v) in req.headers.iter().filter(|(k, _)| !NOT_FORWARDED.contains(&k.as_str())) {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if !req.body.is_empty() {
            rb = rb.body(req.body.clone());
        }
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = resp.bytes().await?;
        Ok((status, headers, body))
    }
}

impl Handler for Proxy {
    async fn handle(&self, req: Incoming) -> Reply {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (status, headers, body) = match self.forward(&req).await {
            Ok(r) => r,
            Err(e) => {
                let detail = e.without_url().to_string();
                return Reply::json(502, &json!({"error": "recorder: the live API did not answer", "detail": detail}));
            }
        };
        self.lock().push(Captured { seq, request: req, status, headers: headers.clone(), body: body.clone() });
        // Live URLs point back at the recorder, so the client keeps recording.
        let rewrite = |s: &str| replace_base(s, &self.upstream, &self.own);
        let headers = headers
            .into_iter()
            .filter(|(k, _)| !NOT_RETURNED.contains(&k.as_str()))
            .map(|(k, v)| {
                let v = rewrite(&v).unwrap_or(v);
                (k, v)
            })
            .collect();
        let body = match std::str::from_utf8(&body).ok().and_then(rewrite) {
            Some(t) => Bytes::from(t),
            None => body,
        };
        Reply { status, headers, body }
    }
}
