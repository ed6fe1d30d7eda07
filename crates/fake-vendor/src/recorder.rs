//! [`Recorder`]: a loopback server that answers everything `200 []` and keeps every request,
//! for tests that a credential never reaches a host it was not meant for.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::conn::{self, Body};

/// One request as the [`Recorder`] received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as received: path and query (or the absolute URL of a proxy-style request).
    pub target: String,
    /// Headers with lowercase names, values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body, decoded lossily as UTF-8.
    pub body: String,
}

/// A second loopback server that records every request; dropping it stops accepting.
#[derive(Debug)]
pub struct Recorder {
    base_url: String,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    stop: CancellationToken,
}

impl Recorder {
    /// Binds `127.0.0.1:0` and serves from a task of the current tokio runtime.
    pub async fn start() -> std::io::Result<Recorder> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let recorded = requests.clone();
        tokio::spawn(conn::serve(listener, stop.clone(), move |req, _| record(recorded.clone(), req)));
        Ok(Recorder { base_url, requests, stop })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The same as [`Recorder::base_url`]: what a redirect or next-page URL should point at.
    pub fn origin(&self) -> String {
        self.base_url.clone()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    /// Requests whose target (raw or percent-decoded), a header value or the body contains `needle`.
    ///
    /// Decoded forms are searched too (percent-encoding anywhere, the pair inside `Basic`), so
    /// a secret cannot slip past by being encoded on the way out.
    pub fn requests_containing(&self, needle: &str) -> Vec<RecordedRequest> {
        let hit = |text: &str| text.contains(needle) || decode(text).iter().any(|d| d.contains(needle));
        let mut found = self.requests();
        found.retain(|r| hit(&r.target) || hit(&r.body) || r.headers.iter().any(|(_, v)| hit(v)));
        found
    }

    /// Forgets every request received so far.
    pub fn clear(&self) {
        lock(&self.requests).clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock(requests: &Mutex<Vec<RecordedRequest>>) -> MutexGuard<'_, Vec<RecordedRequest>> {
    requests.lock().unwrap_or_else(|e| e.into_inner())
}

/// Percent-decoded (with and without `+` as space) and, for a `Basic` value, base64-decoded.
fn decode(text: &str) -> Vec<String> {
    // The whole text as one form value: `&` escaped so it does not split, `+` kept or not.
    let form = |s: String| {
        let text = format!("x={}", s.replace('&', "%26"));
        form_urlencoded::parse(text.as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    let mut out = vec![form(text.replace('+', "%2B")), form(text.to_owned())];
    let basic = text.strip_prefix("Basic ").or_else(|| text.strip_prefix("basic "));
    if let Some(bytes) = basic.and_then(|b| STANDARD.decode(b.trim()).ok()) {
        out.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    out
}

async fn record(requests: Arc<Mutex<Vec<RecordedRequest>>>, req: Request<Incoming>) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    // Frame by frame, so a body cut short still leaves what did arrive.
    let mut bytes = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    lock(&requests).push(RecordedRequest {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: parts.headers.iter().map(|(k, v)| (k.as_str().to_owned(), text(v.as_bytes()))).collect(),
        body: text(&bytes),
    });
    // Recorded before answering: once the client has the response, `requests()` shows the request.
    let mut resp = Response::new(Body::full(Bytes::from_static(b"[]")));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
