//! What one logical request does, outer to inner: circuit check → cache lookup → for each
//! attempt: rate-limit gate and budget → host concurrency slot → auth → send → read the
//! whole body → classify (success, 304, 401, retryable, final) → wait → again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dovetail_core::{Error, ErrorKind};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::cache;
use crate::circuit::Admit;
use crate::client::HttpClient;
use crate::observe::{self, AttemptEvent, Host};
use crate::request::{Request, Response};
use crate::retry::{Attempt, AttemptOutcome, fmt_duration, retryable_status, server_wait};

/// The cause of the last failed attempt, kept as the error's source.
#[derive(Debug, thiserror::Error)]
enum Cause {
    #[error(transparent)]
    Transport(reqwest::Error),
    #[error(transparent)]
    Decode(Error),
    #[error(transparent)]
    Credential(Error),
}

enum Step {
    Retry { outcome: AttemptOutcome, server: Option<Duration>, cause: Option<Cause> },
    Fail(Error),
}

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
        let decode_finish = |r: Response| decode(&r).map(|v| finish(r, v));
        let inner = &*self.inner;
        let clock = inner.clock.as_ref();
        if let Some(e) = &req.error {
            return Err(Error::config(e.clone()));
        }
        let url = self.resolve(&req)?;
        let shown = observe::redact(&url, &inner.secret_params);
        // Where an error happened: only built when there is one.
        let at = || format!("{} {shown}", req.method);
        if let Some(scope) = &inner.scope
            && !scope.permits(&url)
        {
            tracing::warn!(target: "dovetail_http::request", method = %req.method, url = %shown,
                "refused: the URL is outside the origins this client may send to");
            return Err(crate::origin::refused(scope, &url, "the request's URL").at(at()));
        }
        let host_entry = self.host(&url);
        let host = &host_entry.key;
        let credential = inner.credential.as_str();
        let cache_key = (inner.cache.is_some() && req.method == Method::GET && (req.cacheable || req.use_cache))
            .then(|| cache::key(&req.method, &shown, credential));
        let cached = match (&inner.cache, &cache_key) {
            (Some(c), Some(k)) => c.get(k).await.unwrap_or_else(|e| {
                tracing::warn!(target: "dovetail_http::cache", error = %e.report(), "response cache lookup failed");
                None
            }),
            _ => None,
        };
        let start = clock.monotonic();
        // `last`: the last attempt when it succeeded (its event was only DEBUG).
        let done = |outcome: &'static str, n: u32, last: Option<&AttemptEvent<'_>>| {
            inner.stats.request(outcome);
            let total = clock.monotonic().saturating_sub(start);
            observe::request_done(&req.method, &shown, &host_entry, outcome, n, total, last)
        };
        let admit = match inner.circuits.admit(host) {
            Ok(a) => a,
            Err(e) => {
                if req.use_cache
                    && let Some(c) = &cached
                {
                    observe::cache_hit(host, "stale");
                    done("stale", 0, None);
                    return decode_finish(cache::to_response(c, url.clone(), 0, true)).map_err(|e| e.at(at()));
                }
                done(e.kind().name(), 0, None);
                return Err(e.at(at()));
            }
        };
        let may_retry = is_idempotent(&req.method) || req.headers.contains_key(inner.retry.idempotency_header.as_str());
        let (limiter, slots) = host_entry.limits(|| (inner.limits.limiter(host, credential), inner.limits.slots(host)));
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut reauthorized = false;
        let mut last_body = String::new();
        let mut n = 0u32;
        // The event of attempt `n`.
        macro_rules! event {
            ($status:expr, $error:expr, $latency:expr, $bytes:expr, $headers:expr) => {
                AttemptEvent {
                    method: &req.method,
                    url: &shown,
                    attempt: n,
                    status: $status,
                    error: $error,
                    latency: $latency,
                    bytes: $bytes,
                    headers: $headers,
                    request_id_headers: &inner.request_id_headers,
                    host: &host_entry,
                }
            };
        }
        loop {
            n += 1;
            let ready_from = clock.monotonic();
            limiter.ready(clock, host).await;
            let waited = clock.monotonic().saturating_sub(ready_from);
            if !waited.is_zero() {
                inner.stats.rate_limit_wait(waited);
            }
            let permit = crate::limit::acquire(slots).await;
            let mut rq = reqwest::Request::new(req.method.clone(), url.clone());
            // A fresh request has no headers: the client's are a plain copy.
            if !inner.headers.is_empty() {
                *rq.headers_mut() = inner.headers.clone();
            }
            if !req.headers.is_empty() {
                rq.headers_mut().extend(req.headers.clone());
            }
            if let (Some(c), true) = (&cached, inner.cache.is_some()) {
                cache::add_validators(rq.headers_mut(), c);
            }
            *rq.body_mut() = req.body.clone().map(reqwest::Body::from);
            let credential_error = match &inner.auth {
                Some(a) => a.apply(&mut rq).await.err(),
                None => None,
            };
            let step = if let Some(e) = credential_error {
                drop(permit);
                if e.kind().is_retryable() {
                    // Nothing was sent, so even a request that may not be repeated can wait
                    // for the token endpoint to answer again.
                    observe::attempt_not_sent(&req.method, &shown, n, e.message());
                    let outcome = AttemptOutcome::Credential(e.message().to_owned());
                    Step::Retry { outcome, server: None, cause: Some(Cause::Credential(e)) }
                } else {
                    Step::Fail(e)
                }
            } else {
                // What to scrub from a body excerpt; worked out only when one is needed.
                let secrets = observe::SentSecrets::capture(&rq, &url);
                // What a 401 rejected, so the provider drops that credential only if still current.
                let sent_headers = inner.auth.as_ref().filter(|_| !reauthorized).map(|_| rq.headers().clone());
                let t0 = Instant::now();
                let exchange = async {
                    match inner.http.execute(rq).await {
                        Ok(mut r) => {
                            // Reading the body does not need the headers: take them instead of cloning.
                            let (status, headers, final_url) =
                                (r.status(), std::mem::take(r.headers_mut()), r.url().clone());
                            r.bytes().await.map(|b| (status, headers, final_url, b))
                        }
                        Err(e) => Err(e),
                    }
                };
                // One timer for the whole attempt, body included (reqwest's own timeout arms one
                // for the request and another for the body).
                let result = tokio::time::timeout(inner.timeout, exchange).await;
                drop(permit);
                match result {
                    Err(_elapsed) => {
                        let msg = format!("timeout: no complete response within {}", fmt_duration(inner.timeout));
                        inner.stats.attempt(None);
                        observe::attempt(&event!(None, Some(&msg), t0.elapsed(), 0, &HeaderMap::new()), false);
                        Step::Retry { outcome: AttemptOutcome::Error(msg), server: None, cause: None }
                    }
                    Ok(Err(e)) => {
                        // reqwest's Display includes the URL, which may carry secrets.
                        let e = e.without_url();
                        let msg = transport_message(&e);
                        inner.stats.attempt(None);
                        observe::attempt(&event!(None, Some(&msg), t0.elapsed(), 0, &HeaderMap::new()), false);
                        if e.is_builder() || e.is_redirect() {
                            Step::Fail(Error::permanent(msg).with_source(e))
                        } else {
                            Step::Retry {
                                outcome: AttemptOutcome::Error(msg),
                                server: None,
                                cause: Some(Cause::Transport(e)),
                            }
                        }
                    }
                    Ok(Ok((status, headers, final_url, body))) => {
                        let (latency, bytes) = (t0.elapsed(), body.len());
                        inner.stats.attempt(Some(status.as_u16()));
                        // A success's event waits for the verdict on its body (see `observe`).
                        let answered = status.is_success() || (status == StatusCode::NOT_MODIFIED && cached.is_some());
                        if !answered {
                            observe::attempt(&event!(Some(status), None, latency, bytes, &headers), false);
                        }
                        inner.deprecations.check(&req.method, &final_url, &headers, &inner.stats);
                        limiter.observe(clock, &headers, inner.retry.reset_style);
                        if status == StatusCode::NOT_MODIFIED
                            && let Some(c) = &cached
                        {
                            let ev = event!(Some(status), None, latency, bytes, &headers);
                            observe::attempt(&ev, true);
                            inner.circuits.success(host);
                            limiter.succeeded();
                            observe::cache_hit(host, "not_modified");
                            done("cache", n, Some(&ev));
                            return decode_finish(cache::to_response(c, final_url, n, false)).map_err(|e| e.at(at()));
                        }
                        if status == StatusCode::UNAUTHORIZED
                            && !reauthorized
                            && let Some(a) = &inner.auth
                        {
                            reauthorized = true;
                            match a.on_unauthorized(&sent_headers.unwrap_or_default()).await {
                                Ok(true) => {
                                    attempts.push(Attempt {
                                        number: n,
                                        outcome: AttemptOutcome::Status(401),
                                        wait: None,
                                    });
                                    continue;
                                }
                                Ok(false) => {}
                                Err(e) => {
                                    done(e.kind().name(), n, None);
                                    return Err(e.at(at()));
                                }
                            }
                        }
                        if status.is_success() {
                            let resp = Response {
                                status,
                                headers,
                                body,
                                url: final_url,
                                from_cache: false,
                                stale: false,
                                attempts: n,
                            };
                            let ev = event!(Some(status), None, latency, bytes, &resp.headers);
                            match decode(&resp) {
                                Ok(v) => {
                                    observe::attempt(&ev, true);
                                    inner.circuits.success(host);
                                    limiter.succeeded();
                                    if let (Some(c), Some(k)) = (&inner.cache, &cache_key) {
                                        let entry = cache::to_cached(resp.status, &resp.headers, &resp.body);
                                        if let Err(e) = c.put(k, &entry).await {
                                            tracing::warn!(target: "dovetail_http::cache", error = %e.report(), "response cache store failed");
                                        }
                                    }
                                    done("ok", n, Some(&ev));
                                    return Ok(finish(resp, v));
                                }
                                Err(e) => {
                                    observe::attempt(&ev, false);
                                    last_body =
                                        observe::excerpt(&resp.body, &secrets.values(&url, &inner.secret_params));
                                    Step::Retry {
                                        outcome: AttemptOutcome::Undecodable(status.as_u16()),
                                        server: None,
                                        cause: Some(Cause::Decode(e)),
                                    }
                                }
                            }
                        } else {
                            last_body = observe::excerpt(&body, &secrets.values(&url, &inner.secret_params));
                            let verdict = inner.classifier.as_ref().and_then(|c| c(status, &headers, &body));
                            let location = headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
                            if let (true, Some(location), true) =
                                (status.is_redirection(), location, inner.scope.is_some())
                            {
                                // The redirect policy stopped at another origin (see `origin`).
                                inner.circuits.success(host);
                                Step::Fail(crate::origin::redirect_refused(&final_url, status, location))
                            } else if verdict.unwrap_or_else(|| retryable_status(status)) {
                                let server = server_wait(status, &headers, clock.now(), inner.retry.reset_style);
                                Step::Retry { outcome: AttemptOutcome::Status(status.as_u16()), server, cause: None }
                            } else {
                                inner.circuits.success(host);
                                Step::Fail(status_error(status, &last_body))
                            }
                        }
                    }
                }
            };
            let (outcome, server, cause) = match step {
                Step::Fail(e) => {
                    if admit == Admit::Probe {
                        inner.circuits.release_probe(host);
                    }
                    done(e.kind().name(), n, None);
                    return Err(e.at(at()));
                }
                Step::Retry { outcome, server, cause } => (outcome, server, cause),
            };
            let wait = server.unwrap_or_else(|| inner.backoff.wait(&inner.retry, n));
            if server.is_some() {
                // Every request on this (host, credential) slows down, not only this one.
                limiter.block_for(clock, wait);
            } else if outcome == AttemptOutcome::Status(429) {
                // "Too fast" without saying how fast is fine: hold the group and pace.
                limiter.slow_down(clock, host, wait);
            }
            let elapsed = clock.monotonic().saturating_sub(start);
            let repeatable = may_retry || matches!(outcome, AttemptOutcome::Credential(_));
            if repeatable && n < inner.retry.max_attempts && elapsed + wait <= inner.retry.max_elapsed {
                inner.stats.retry(outcome.cause(), wait);
                attempts.push(Attempt { number: n, outcome, wait: Some(wait) });
                observe::retry_wait(host, wait);
                clock.sleep(wait).await;
                continue;
            }
            let rate_limited = outcome == AttemptOutcome::Status(429);
            let undecodable = matches!(outcome, AttemptOutcome::Undecodable(_));
            attempts.push(Attempt { number: n, outcome, wait: None });
            let list: Vec<String> = attempts.iter().map(ToString::to_string).collect();
            let why = if !repeatable {
                format!("not retried ({} without an idempotency key)", req.method)
            } else {
                format!("gave up after {n} attempts in {}", fmt_duration(elapsed))
            };
            let mut message = format!("{why}: {}", list.join("; "));
            if !last_body.is_empty() {
                message.push_str(&format!("; last body: {last_body}"));
            }
            inner.circuits.failure(host, list.last().map(String::as_str).unwrap_or(""));
            if req.use_cache
                && let Some(c) = &cached
            {
                observe::cache_hit(host, "stale");
                done("stale", n, None);
                return decode_finish(cache::to_response(c, url.clone(), n, true)).map_err(|e| e.at(at()));
            }
            let kind = if rate_limited {
                ErrorKind::RateLimited { retry_after_ms: server.map(|w| w.as_millis() as u64) }
            } else if undecodable {
                // The server answers, but what it sends never decodes: bad data, not an outage.
                ErrorKind::Data
            } else {
                ErrorKind::Transient
            };
            let mut err = Error::new(kind, message);
            if let Some(c) = cause {
                err = err.with_source(c);
            }
            done(err.kind().name(), n, None);
            return Err(err.at(at()));
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

fn transport_message(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "transport error"
    };
    match std::error::Error::source(e) {
        Some(inner) => format!("{what}: {inner}"),
        None => what.to_owned(),
    }
}

fn status_error(status: StatusCode, body: &str) -> Error {
    let kind = match status.as_u16() {
        401 | 403 | 407 => ErrorKind::Auth,
        429 => ErrorKind::RateLimited { retry_after_ms: None },
        _ => ErrorKind::Permanent,
    };
    let mut msg = format!("HTTP {status}");
    if !body.is_empty() {
        msg.push_str(&format!(": {body}"));
    }
    Error::new(kind, msg)
}
