//! What one logical request does, outer to inner: origin scope → circuit check → cache
//! lookup → for each attempt ([`crate::call`]): rate-limit gate and budget → host
//! concurrency slot → auth → send → read the whole body → follow `classify`'s step
//! (success, 304 from the cache, 401 refresh, retry, rate limit, failure) → wait → again.
//!
//! This file owns the entry points (`send`, `send_json`, `send_decode`), the checks before
//! the first attempt, and the request loop, which only dispatches on what an attempt led to.

use std::sync::Arc;

use dovetail_core::Error;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use crate::cache;
use crate::call::{After, Call, Next};
use crate::client::HttpClient;
use crate::observe::{self, Host};
use crate::request::{Request, Response};

impl HttpClient {
    /// Send `req` and return the response (2xx, or a 304 answered from the cache).
    pub async fn send(&self, req: Request) -> Result<Response, Error> {
        // Boxed: the request loop's state is large and would otherwise be copied as the
        // caller's futures are built and moved.
        Box::pin(self.send_inner(req, |_| Ok(()), |r, ()| r)).await
    }

    /// Send `req` and decode its JSON body; a body that fails to decode is retried.
    pub async fn send_json<T: DeserializeOwned>(&self, req: Request) -> Result<T, Error> {
        self.send_decode(req, Response::json).await
    }

    /// Send `req` and turn the response into `T` with `decode`. A 2xx whose `decode` fails
    /// (e.g. a truncated body) is retried like a transient failure.
    pub async fn send_decode<T>(
        &self,
        req: Request,
        decode: impl Fn(&Response) -> Result<T, Error>,
    ) -> Result<T, Error> {
        Box::pin(self.send_inner(req, decode, |_, v| v)).await
    }

    /// The request loop; `finish` turns the decoded response into the result (so `send`
    /// returns the response itself without cloning it).
    async fn send_inner<T, R>(
        &self,
        req: Request,
        decode: impl Fn(&Response) -> Result<T, Error>,
        finish: impl Fn(Response, T) -> R,
    ) -> Result<R, Error> {
        let inner = &*self.inner;
        if let Some(e) = &req.error {
            return Err(Error::config(e.clone()));
        }
        let url = self.resolve(&req)?;
        let redacted = observe::redact(&url, &inner.secret_params);
        // A client whose URLs hold a secret in their path shows only their origin.
        let hidden = inner.secret_path.then(|| observe::origin_only(&url));
        let shown = hidden.as_deref().unwrap_or(&redacted);
        if let Some(scope) = &inner.scope
            && !scope.permits(&url)
        {
            tracing::warn!(target: "dovetail_http::request", method = %req.method, url = %shown,
                "refused: the URL is outside the origins this client may send to");
            return Err(crate::origin::refused(scope, &url, "the request's URL").at(format!("{} {shown}", req.method)));
        }
        let host = self.host(&url);
        let cache_key = (inner.cache.is_some() && req.method == Method::GET && (req.cacheable || req.use_cache))
            .then(|| cache::key(&req.method, &redacted, &inner.credential));
        let cached = match (&inner.cache, &cache_key) {
            (Some(c), Some(k)) => c.get(k).await.unwrap_or_else(|e| {
                tracing::warn!(target: "dovetail_http::cache", error = %e.report(), "response cache lookup failed");
                None
            }),
            _ => None,
        };
        let may_retry = req.repeatable
            || is_idempotent(&req.method)
            || req.headers.contains_key(inner.retry.idempotency_header.as_str());
        let mut call = Call::new(inner, &req, &url, shown, &host, cached.as_ref(), cache_key.as_deref(), may_retry);
        let decode_finish = |r: Response| decode(&r).map(|v| finish(r, v));
        call.admit = match inner.circuits.admit(&host.key) {
            Ok(a) => a,
            Err(e) => {
                return match call.stale(0) {
                    Some(r) => decode_finish(r).map_err(|e| e.at(call.at())),
                    None => {
                        call.done(e.kind().name(), 0, None);
                        Err(e.at(call.at()))
                    }
                };
            }
        };
        loop {
            call.n += 1;
            let failed = match call.attempt(&decode).await {
                Next::Answered(r, v) => return Ok(finish(r, v)),
                Next::Cached(r) => return decode_finish(r).map_err(|e| e.at(call.at())),
                Next::Again => continue,
                Next::Fail(e) => return Err(call.fail(e)),
                Next::Failed(f) => f,
            };
            match call.after(failed).await {
                After::Retry => {}
                After::Stale(r) => return decode_finish(*r).map_err(|e| e.at(call.at())),
                After::Fail(e) => return Err(e),
            }
        }
    }

    pub(crate) fn resolve(&self, req: &Request) -> Result<Url, Error> {
        let mut url = match (Url::parse(&req.url), &self.inner.base) {
            (Ok(u), _) => Ok(u),
            (Err(_), Some(base)) => base.join(&req.url),
            (Err(e), None) => Err(e),
        }
        .map_err(|e| Error::config(format!("bad request URL `{}`", req.url)).with_source(e))?;
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&req.query);
        }
        Ok(url)
    }

    /// The [`Host`] of `url` (`host:port`, the key of its circuit, limiter and metrics, and
    /// its metrics handles): the base URL's is built once, others on first use and kept
    /// (up to [`MAX_HOSTS`]), so a request allocates nothing for it.
    fn host(&self, url: &Url) -> Arc<Host> {
        let (host, port) = (url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0));
        if let Some((base_host, base_port, h)) = &self.inner.base_host
            && (base_host.as_str(), *base_port) == (host, port)
        {
            return h.clone();
        }
        let mut hosts = self.inner.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, h)) = hosts.iter().find(|(h, p, _)| (h.as_str(), *p) == (host, port)) {
            return h.clone();
        }
        let h = Arc::new(Host::new(Arc::from(host_key(host, port))));
        if hosts.len() < MAX_HOSTS {
            hosts.push((host.to_owned(), port, h.clone()));
        }
        h
    }
}

/// Hosts (other than the base URL's) whose [`Host`] a client keeps.
const MAX_HOSTS: usize = 64;

/// The circuit / limiter / metrics key of a host.
pub(crate) fn host_key(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

fn is_idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE)
}
