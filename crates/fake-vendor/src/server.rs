//! The request pipeline: down switch, redirects, latency, dice, auth, rate limit, handler, response shaping.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::{Method, Request, Response};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::AuthState;
use crate::config::{Faults, VendorConfig};
use crate::conn::{self, Body};
use crate::data::{Created, Dataset};
use crate::ratelimit::Buckets;
use crate::stats::Counters;
use crate::{api, control, redirect};

/// Largest request body accepted (writes and token requests are small).
const MAX_BODY: usize = 1 << 20;
/// RFC 9745 form of 2026-01-01T00:00:00Z.
const DEPRECATION: &str = "@1767225600";
/// 2026-07-01T00:00:00Z, the default `Sunset`.
const SUNSET_EPOCH: u64 = 1_782_864_000;

/// State shared by every connection and the handle.
pub(crate) struct Shared {
    pub(crate) base_url: String,
    pub(crate) page_size_default: u64,
    pub(crate) page_size_max: u64,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) shutdown: CancellationToken,
}

/// Everything mutable, behind one lock that is never held across an await.
pub(crate) struct Inner {
    pub(crate) data: Dataset,
    pub(crate) faults: Faults,
    pub(crate) down: bool,
    pub(crate) auth: AuthState,
    pub(crate) buckets: Option<Buckets>,
    pub(crate) rec: Counters,
    pub(crate) created: Created,
    /// Token requests that got past the ratio faults, for `token_error_503_every`.
    token_requests: u64,
    /// Requests that reached the fault dice, for `drop_every` and `error_503_every`.
    diced: u64,
    /// Malformed pages answered since start, for `malformed_page_times`.
    pub(crate) malformed_served: u64,
    rng: fastrand::Rng,
}

impl Shared {
    pub(crate) fn new(config: &VendorConfig, base_url: String) -> Shared {
        Shared {
            base_url,
            page_size_default: config.page_size_default.max(1),
            page_size_max: config.page_size_max.max(1),
            shutdown: CancellationToken::new(),
            inner: Mutex::new(Inner {
                data: Dataset::new(config.seed, config.records),
                faults: config.faults.clone(),
                down: false,
                auth: AuthState::new(config.auth.clone(), config.seed),
                buckets: config.rate_limit.map(Buckets::new),
                rec: Counters::default(),
                created: Created::default(),
                token_requests: 0,
                diced: 0,
                malformed_served: 0,
                rng: fastrand::Rng::with_seed(config.seed),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking handler must not wedge every later request of a test double.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts connections until shutdown.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let cancel = shared.shutdown.clone();
    conn::serve(listener, cancel, move |req, kill| handle(shared.clone(), req, kill)).await;
}

/// A handler's answer before the pipeline shapes it into a response.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Bytes,
    /// Carries an `ETag` and honours `If-None-Match`.
    pub(crate) etag: bool,
    /// A listing: gets deprecation headers when that fault is on.
    pub(crate) listing: bool,
    /// Records in a well-formed listing page, for stats.
    pub(crate) page_records: Option<u64>,
    /// A listing page answered malformed (`malformed_page`), for stats.
    pub(crate) malformed: bool,
    /// The work is done; close the connection instead of answering.
    pub(crate) drop_connection: bool,
}

impl Reply {
    pub(crate) fn json(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            etag: false,
            listing: false,
            page_records: None,
            malformed: false,
            drop_connection: false,
        }
    }

    pub(crate) fn error(status: u16, error: &str, message: &str) -> Reply {
        Reply::json(status, serde_json::json!({"error": error, "message": message}).to_string())
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// Per-request dice, always all drawn in this order so changing one ratio leaves the others' outcomes alone.
pub(crate) struct Rolls {
    drop: f64,
    e500: f64,
    e503: f64,
    truncate: f64,
    pub(crate) drop_after_create: f64,
}

/// Which endpoint a request is for.
pub(crate) enum Route {
    List(api::Style),
    Item(String),
    Comments(String),
    Create,
    Upsert(String),
    Created,
    Token,
    NotAllowed,
    NotFound,
}

impl Route {
    fn of(method: &Method, path: &str) -> (Route, &'static str) {
        let get = method == Method::GET;
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (route, template) = match segs.as_slice() {
            ["oauth", "token"] => {
                (if method == Method::POST { Route::Token } else { Route::NotAllowed }, "/oauth/token")
            }
            ["v1", "created"] => (if get { Route::Created } else { Route::NotAllowed }, "/v1/created"),
            ["v1", "items"] => match *method {
                Method::GET => (Route::List(api::Style::Cursor), "/v1/items"),
                Method::POST => (Route::Create, "/v1/items"),
                _ => (Route::NotAllowed, "/v1/items"),
            },
            ["v1", "items", style @ ("next" | "link" | "paged" | "offset")] => {
                let (s, t) = match *style {
                    "next" => (api::Style::NextUrl, "/v1/items/next"),
                    "link" => (api::Style::Link, "/v1/items/link"),
                    "paged" => (api::Style::Paged, "/v1/items/paged"),
                    _ => (api::Style::Offset, "/v1/items/offset"),
                };
                (if get { Route::List(s) } else { Route::NotAllowed }, t)
            }
            ["v1", "items", id] => match *method {
                Method::GET => (Route::Item((*id).to_owned()), "/v1/items/{id}"),
                Method::PUT => (Route::Upsert(decode_segment(id)), "/v1/items/{id}"),
                _ => (Route::NotAllowed, "/v1/items/{id}"),
            },
            ["v1", "items", id, "comments"] => {
                (if get { Route::Comments((*id).to_owned()) } else { Route::NotAllowed }, "/v1/items/{id}/comments")
            }
            _ => (Route::NotFound, "other"),
        };
        (route, template)
    }
}

fn decode_segment(s: &str) -> String {
    // Percent-decoding a path segment is form decoding without the `+` → space rule.
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Parses the query string into pairs.
pub(crate) fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Reads a request body of at most [`MAX_BODY`] bytes.
pub(crate) async fn read_body(body: Incoming) -> Option<Bytes> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    limited.collect().await.ok().map(|c| c.to_bytes())
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>, kill: Arc<Notify>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/_stats" || path.starts_with("/_control/") {
        let reply = control::handle(&shared, req).await;
        return build(reply.status, reply.headers, Body::full(reply.body));
    }
    let moved = redirect::is_moved(path);
    let (route, template) = if moved { (Route::NotFound, redirect::TEMPLATE) } else { Route::of(req.method(), path) };
    let if_none_match: Vec<String> =
        req.headers().get_all(IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
    let (faults, rolls, nth) = {
        let mut g = shared.lock();
        g.rec.request(template);
        if g.down {
            g.rec.status(503);
            let r = Reply::error(503, "unavailable", "the service is down");
            return build(r.status, r.headers, Body::full(r.body));
        }
        if moved {
            // Before the dice, so a redirect leaves the fault sequence of the requests it leads to alone.
            let r = redirect::reply(req.uri(), &g.faults, &shared.base_url);
            if (300..400).contains(&r.status) {
                g.rec.stats.redirects += 1;
            }
            g.rec.status(r.status);
            return build(r.status, r.headers, Body::full(r.body));
        }
        g.diced += 1;
        let nth = g.diced;
        let rng = &mut g.rng;
        let rolls = Rolls {
            drop: rng.f64(),
            e500: rng.f64(),
            e503: rng.f64(),
            truncate: rng.f64(),
            drop_after_create: rng.f64(),
        };
        (g.faults.clone(), rolls, nth)
    };
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let every = |n: u64| n > 0 && nth.is_multiple_of(n);
    let reply = if rolls.drop < faults.drop_ratio || every(faults.drop_every) {
        Reply { drop_connection: true, ..Reply::json(0, Bytes::new()) }
    } else if rolls.e500 < faults.error_500_ratio {
        Reply::error(500, "internal", "injected fault")
    } else if rolls.e503 < faults.error_503_ratio || every(faults.error_503_every) {
        Reply::error(503, "unavailable", "injected fault")
    } else if let Route::Token = route {
        token(&shared, req).await
    } else {
        api_call(&shared, req, route, &faults, &rolls).await
    };
    finish(&shared, reply, &if_none_match, &faults, &rolls, kill).await
}

async fn token(shared: &Shared, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let Some(body) = read_body(body).await else { return Reply::error(413, "too_large", "request body too large") };
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let mut g = shared.lock();
    g.token_requests += 1;
    let every = g.faults.token_error_503_every;
    if every > 0 && g.token_requests.is_multiple_of(every) {
        return Reply::error(503, "unavailable", "injected token-endpoint fault");
    }
    let r = g.auth.token(&parts.headers, &form, Instant::now());
    if let Some(grant) = r.granted {
        *g.rec.stats.token_grants.entry(grant).or_default() += 1;
    }
    if r.invalid_grant {
        g.rec.stats.invalid_grants += 1;
    }
    if r.reused_refresh {
        g.rec.stats.reused_refresh_tokens += 1;
    }
    Reply::json(r.status, r.body.to_string()).header("cache-control", "no-store")
}

async fn api_call(shared: &Shared, req: Request<Incoming>, route: Route, faults: &Faults, rolls: &Rolls) -> Reply {
    let now = Instant::now();
    let limit = {
        let mut g = shared.lock();
        let key = match g.auth.check(req.headers(), req.uri().query(), now) {
            Ok(key) => key,
            Err(why) => {
                return Reply::error(401, "unauthorized", why)
                    .header("www-authenticate", "Bearer error=\"invalid_token\"");
            }
        };
        let decision = g.buckets.as_mut().map(|b| b.take(&key, now));
        if let Some(d) = decision.filter(|d| !d.allowed) {
            return rate_headers(Reply::error(429, "rate_limited", "too many requests"), &d)
                .header("retry-after", d.retry_after.to_string());
        }
        g.rec.accepted(now);
        decision
    };
    let query = query_pairs(&req);
    let (parts, body) = req.into_parts();
    let body = match route {
        Route::Create | Route::Upsert(_) => match read_body(body).await {
            Some(b) => b,
            None => return Reply::error(413, "too_large", "request body too large"),
        },
        _ => Bytes::new(),
    };
    let reply = {
        let mut g = shared.lock();
        let call = api::Call { query: &query, headers: &parts.headers, body: &body, faults, rolls };
        api::dispatch(&mut g, shared, route, &call)
    };
    match limit {
        Some(d) => rate_headers(reply, &d),
        None => reply,
    }
}

fn rate_headers(reply: Reply, d: &crate::ratelimit::Decision) -> Reply {
    reply
        .header("x-ratelimit-limit", d.limit.to_string())
        .header("x-ratelimit-remaining", d.remaining.to_string())
        .header("x-ratelimit-reset", d.reset.to_string())
}

/// Whether any `If-None-Match` entry matches (weak comparison, `*` included).
fn etag_matches(if_none_match: &[String], etag: &str) -> bool {
    if_none_match.iter().flat_map(|v| v.split(',')).any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/") == etag
    })
}

async fn finish(
    shared: &Shared,
    mut reply: Reply,
    if_none_match: &[String],
    faults: &Faults,
    rolls: &Rolls,
    kill: Arc<Notify>,
) -> Response<Body> {
    if reply.drop_connection {
        shared.lock().rec.stats.dropped += 1;
        kill.notify_one();
        // The connection task drops this future together with the socket.
        return std::future::pending().await;
    }
    if reply.listing && faults.deprecation {
        let sunset = faults
            .sunset
            .clone()
            .unwrap_or_else(|| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(SUNSET_EPOCH)));
        reply = reply.header("deprecation", DEPRECATION).header("sunset", sunset);
    }
    let mut truncated = false;
    if reply.status == 200 && reply.etag {
        let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&reply.body));
        if etag_matches(if_none_match, &etag) {
            reply.status = 304;
            reply.body = Bytes::new();
            reply.page_records = None;
        }
        reply = reply.header("etag", etag);
    }
    if reply.status == 200 && reply.etag && rolls.truncate < faults.truncate_ratio {
        truncated = true;
        reply.page_records = None;
    }
    {
        let mut g = shared.lock();
        g.rec.status(reply.status);
        if let Some(n) = reply.page_records.filter(|_| reply.status == 200) {
            g.rec.stats.pages_served += 1;
            g.rec.stats.records_served += n;
        }
        if reply.malformed && reply.status == 200 {
            g.rec.stats.malformed_pages += 1;
            g.malformed_served += 1;
        }
    }
    if truncated {
        let full = reply.body.len();
        let half = reply.body.slice(..full / 2);
        reply.headers.push(("content-length", full.to_string()));
        return build(200, reply.headers, Body::truncated(half));
    }
    build(reply.status, reply.headers, Body::full(reply.body))
}

fn build(status: u16, headers: Vec<(&'static str, String)>, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    if status != 304 {
        h.insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    }
    for (name, value) in headers {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
            if name == "content-length" {
                h.insert(CONTENT_LENGTH, v);
            } else if name == "etag" {
                h.insert(ETAG, v);
            } else {
                h.append(name, v);
            }
        }
    }
    resp
}
