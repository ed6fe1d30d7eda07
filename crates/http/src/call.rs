//! One attempt of a logical request and what follows it: a [`Call`] is a request in flight
//! (what every attempt needs, what the attempts said). An attempt waits for the rate
//! limiter and a host slot, adds credentials, sends, reads the whole body and follows
//! [`classify`]'s [`Step`]; after a failed attempt, [`retry_allowed`] decides between a
//! wait and the give-up error. The decisions are `classify`'s; this file does the IO, the
//! logs and the figures.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dovetail_core::remote::CachedResponse;
use dovetail_core::{Error, ErrorKind, HttpFailure};
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;

use crate::cache;
use crate::circuit::Admit;
use crate::classify::{Context, Step, classify, floor_wait, http_failure, retry_allowed, status_error, status_kind};
use crate::client::Inner;
use crate::limit::Limiter;
use crate::observe::{self, AttemptEvent, Host, SentSecrets};
use crate::request::{Request, Response};
use crate::retry::{Attempt, AttemptOutcome, fmt_duration, server_wait};

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

/// An attempt that failed in a way another attempt may fix.
pub(crate) struct Failed {
    outcome: AttemptOutcome,
    /// The wait the remote asked for; the backoff applies without one.
    server: Option<Duration>,
    /// A rate limit's vendor floor when no header gave a wait (doubles per attempt).
    floor: Option<Duration>,
    /// The kind the request fails as if this was its last attempt.
    kind: ErrorKind,
    cause: Option<Cause>,
    /// What the response said (status `None`: none came), for that error.
    http: Option<HttpFailure>,
}

/// What one attempt led to.
pub(crate) enum Next<T> {
    /// A 2xx whose body decoded.
    Answered(Response, T),
    /// A 304 answered from the cache (not yet decoded).
    Cached(Response),
    /// Send again at once: the credential was refreshed after a 401.
    Again,
    /// The attempt failed; the budget decides whether another follows.
    Failed(Failed),
    /// The request fails with this error.
    Fail(Error),
}

/// What follows a failed attempt.
pub(crate) enum After {
    /// The wait is over: attempt again.
    Retry,
    /// Retries are spent, and the last good response is served instead (`use_cache`);
    /// boxed, as this is rare and the response large.
    Stale(Box<Response>),
    /// Retries are spent: the request fails with this error.
    Fail(Error),
}

/// A whole response, as read.
struct Received {
    status: StatusCode,
    headers: HeaderMap,
    url: Url,
    body: Bytes,
    latency: Duration,
}

/// One logical request in flight: what every attempt needs, and what the attempts so far
/// said.
pub(crate) struct Call<'a> {
    inner: &'a Inner,
    req: &'a Request,
    url: &'a Url,
    /// The URL as logs and errors show it (secrets redacted).
    shown: &'a str,
    host: &'a Host,
    cached: Option<&'a CachedResponse>,
    cache_key: Option<&'a str>,
    /// When the request began (monotonic).
    start: Duration,
    pub(crate) admit: Admit,
    /// The request may be sent more than once (idempotent, keyed or marked repeatable).
    may_retry: bool,
    /// The current attempt, 1-based.
    pub(crate) n: u32,
    attempts: Vec<Attempt>,
    /// The credential was refreshed after a 401 (once per request).
    reauthorized: bool,
    /// The last error response's body excerpt, secrets scrubbed.
    last_body: String,
}

impl<'a> Call<'a> {
    /// A request about to be sent: `shown` is its URL as logs show it, `may_retry` whether
    /// it may be sent more than once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        inner: &'a Inner,
        req: &'a Request,
        url: &'a Url,
        shown: &'a str,
        host: &'a Host,
        cached: Option<&'a CachedResponse>,
        cache_key: Option<&'a str>,
        may_retry: bool,
    ) -> Self {
        Call {
            inner,
            req,
            url,
            shown,
            host,
            cached,
            cache_key,
            start: inner.clock.monotonic(),
            admit: Admit::Go,
            may_retry,
            n: 0,
            attempts: Vec::new(),
            reauthorized: false,
            last_body: String::new(),
        }
    }

    /// Where an error happened: only built when there is one.
    pub(crate) fn at(&self) -> String {
        format!("{} {}", self.req.method, self.shown)
    }

    /// The host's limiter (for this client's credential) and concurrency slots, joined on
    /// first use.
    fn limits(&self) -> (&'a Limiter, &'a Semaphore) {
        let (inner, host) = (self.inner, self.host);
        let (limiter, slots) =
            host.limits(|| (inner.limits.limiter(&host.key, &inner.credential), inner.limits.slots(&host.key)));
        (&**limiter, &**slots)
    }

    /// Logs and counts the logical request; `last` is its last attempt when it succeeded
    /// (that attempt's event was only DEBUG).
    pub(crate) fn done(&self, outcome: &'static str, n: u32, last: Option<&AttemptEvent<'_>>) {
        self.inner.stats.request(outcome);
        let total = self.inner.clock.monotonic().saturating_sub(self.start);
        observe::request_done(&self.req.method, self.shown, self.host, outcome, n, total, last)
    }

    /// The event of the current attempt.
    fn event<'e>(
        &self,
        status: Option<StatusCode>,
        error: Option<&'e str>,
        latency: Duration,
        bytes: usize,
        headers: &'e HeaderMap,
    ) -> AttemptEvent<'e>
    where
        'a: 'e,
    {
        AttemptEvent {
            method: &self.req.method,
            url: self.shown,
            attempt: self.n,
            status,
            error,
            latency,
            bytes,
            headers,
            request_id_headers: &self.inner.request_id_headers,
            host: self.host,
        }
    }

    /// The request fails with `e`: a probe that ended without a verdict lets another through.
    pub(crate) fn fail(&self, e: Error) -> Error {
        if self.admit == Admit::Probe {
            self.inner.circuits.release_probe(&self.host.key);
        }
        self.done(e.kind().name(), self.n, None);
        e.at(self.at())
    }

    /// The last good response, when the request asked for one instead of failing
    /// (`use_cache`) and one is cached; logged as a `stale` request of `n` attempts.
    pub(crate) fn stale(&self, n: u32) -> Option<Response> {
        let c = self.cached.filter(|_| self.req.use_cache)?;
        observe::cache_hit(&self.host.key, "stale");
        self.done("stale", n, None);
        Some(cache::to_response(c, self.url.clone(), n, true))
    }

    /// One attempt: wait for the rate limiter and a slot, add credentials, send, read the
    /// whole response, and say what it led to.
    pub(crate) async fn attempt<T>(&mut self, decode: &impl Fn(&Response) -> Result<T, Error>) -> Next<T> {
        let inner = self.inner;
        let clock = inner.clock.as_ref();
        let (limiter, slots) = self.limits();
        let ready_from = clock.monotonic();
        let gate = limiter.gate(clock).filter(|g| *g >= Duration::from_secs(1));
        if let Some(g) = gate {
            inner.stats.waiting(Some(clock.now() + g));
        }
        let ready = limiter.ready(clock, &self.host.key, inner.retry.max_rate_limit_wait).await;
        if gate.is_some() {
            inner.stats.waiting(None);
        }
        if let Err(gate) = ready {
            return Next::Fail(self.spent(gate));
        }
        let waited = clock.monotonic().saturating_sub(ready_from);
        if !waited.is_zero() {
            inner.stats.rate_limit_wait(waited);
        }
        let permit = crate::limit::acquire(slots).await;
        let mut rq = self.prepare();
        if let Some(a) = &inner.auth
            && let Err(e) = a.apply(&mut rq).await
        {
            drop(permit);
            return self.not_sent(e);
        }
        // What to scrub from a body excerpt; worked out only when one is needed.
        let secrets = SentSecrets::capture(&rq, self.url);
        // What a 401 rejected, so the provider drops that credential only if still current.
        let sent_headers = inner.auth.as_ref().filter(|_| !self.reauthorized).map(|_| rq.headers().clone());
        let t0 = Instant::now();
        let result = exchange(inner, rq).await;
        drop(permit);
        match result {
            Ok(Ok((status, headers, url, body))) => {
                let r = Received { status, headers, url, body, latency: t0.elapsed() };
                self.on_response(r, &secrets, sent_headers, decode).await
            }
            Ok(Err(e)) => self.transport_failed(e, t0.elapsed()),
            Err(_elapsed) => {
                let msg = format!("timeout: no complete response within {}", fmt_duration(inner.timeout));
                inner.stats.attempt(None);
                observe::attempt(&self.event(None, Some(&msg), t0.elapsed(), 0, &HeaderMap::new()));
                Next::Failed(Failed {
                    outcome: AttemptOutcome::Error(msg),
                    server: None,
                    floor: None,
                    kind: ErrorKind::Transient,
                    cause: None,
                    http: Some(HttpFailure::default()),
                })
            }
        }
    }

    /// The API said its budget is spent for `gate` more (a response with nothing remaining
    /// and a reset that far away), longer than the longest rate-limit wait taken: the
    /// request is not sent, and fails as rate-limited until then.
    fn spent(&self, gate: Duration) -> Error {
        let inner = self.inner;
        let until = inner.clock.now() + gate;
        let e = Error::new(
            ErrorKind::RateLimited { until: Some(until) },
            format!(
                "rate limited: the API's budget is spent and allows requests again in {} (at {}), longer than \
                 `http.retry.max_rate_limit_wait_ms` ({}); not sent",
                fmt_duration(gate),
                observe::rfc3339(until),
                fmt_duration(inner.retry.max_rate_limit_wait)
            ),
        );
        self.done(e.kind().name(), self.n.saturating_sub(1), None);
        e.at(self.at())
    }

    /// The request as reqwest sends it, credentials not yet added.
    fn prepare(&self) -> reqwest::Request {
        let (inner, req) = (self.inner, self.req);
        let mut rq = reqwest::Request::new(req.method.clone(), self.url.clone());
        // A fresh request has no headers: the client's are a plain copy.
        if !inner.headers.is_empty() {
            *rq.headers_mut() = inner.headers.clone();
        }
        if !req.headers.is_empty() {
            rq.headers_mut().extend(req.headers.clone());
        }
        if let Some(c) = self.cached {
            cache::add_validators(rq.headers_mut(), c);
        }
        *rq.body_mut() = req.body.clone().map(reqwest::Body::from);
        rq
    }

    /// No credential could be had: a token endpoint that may answer later is waited for
    /// like a failed attempt (nothing was sent, so even a request that may not be repeated
    /// can wait); anything else fails the request.
    fn not_sent<T>(&self, e: Error) -> Next<T> {
        if !e.kind().disposition().retries() {
            return Next::Fail(e);
        }
        observe::attempt_not_sent(&self.req.method, self.shown, self.n, e.message());
        Next::Failed(Failed {
            outcome: AttemptOutcome::Credential(e.message().to_owned()),
            server: None,
            floor: None,
            kind: ErrorKind::Transient,
            cause: Some(Cause::Credential(e)),
            http: None,
        })
    }

    /// No response: a connect error or a broken body is retried, a request reqwest could
    /// not build or a redirect loop is not.
    fn transport_failed<T>(&self, e: reqwest::Error, latency: Duration) -> Next<T> {
        // reqwest's Display includes the URL, which may carry secrets.
        let e = e.without_url();
        let msg = transport_message(&e);
        self.inner.stats.attempt(None);
        observe::attempt(&self.event(None, Some(&msg), latency, 0, &HeaderMap::new()));
        if e.is_builder() || e.is_redirect() {
            return Next::Fail(Error::permanent(msg).with_source(e).with_http(HttpFailure::default()));
        }
        Next::Failed(Failed {
            outcome: AttemptOutcome::Error(msg),
            server: None,
            floor: None,
            kind: ErrorKind::Transient,
            cause: Some(Cause::Transport(e)),
            http: Some(HttpFailure::default()),
        })
    }

    /// A response: log and learn from it, then follow its [`Step`].
    async fn on_response<T>(
        &mut self,
        r: Received,
        secrets: &SentSecrets,
        sent_headers: Option<HeaderMap>,
        decode: &impl Fn(&Response) -> Result<T, Error>,
    ) -> Next<T> {
        let inner = self.inner;
        let clock = inner.clock.as_ref();
        let (limiter, _) = self.limits();
        inner.stats.attempt(Some(r.status.as_u16()));
        let cx = Context {
            cached: self.cached.is_some(),
            reauthorize: inner.auth.is_some() && !self.reauthorized,
            scoped: inner.scope.is_some(),
            classifier: inner.classifier.as_ref(),
            clock,
            reset_style: inner.retry.reset_style,
        };
        let step = classify(r.status, &r.headers, &r.body, &cx);
        // A success's event waits for the verdict on its body (see `observe`).
        if !matches!(step, Step::Success | Step::NotModified) {
            observe::attempt(&self.event(Some(r.status), None, r.latency, r.body.len(), &r.headers));
        }
        inner.deprecations.check(&self.req.method, &r.url, &r.headers, &inner.stats);
        limiter.observe(clock, &r.headers, inner.retry.reset_style);
        let step = match step {
            Step::Reauthorize => match self.reauthorize(sent_headers).await {
                Ok(true) => return Next::Again,
                Ok(false) => classify(r.status, &r.headers, &r.body, &Context { reauthorize: false, ..cx }),
                Err(e) => return Next::Fail(e),
            },
            step => step,
        };
        match step {
            Step::Success => self.succeeded(r, secrets, decode).await,
            Step::NotModified => self.not_modified(r),
            step => self.refused(step, &r, secrets),
        }
    }

    /// A 401: the provider drops the credential the attempt carried; `Ok(true)` when a
    /// fresh one is worth an immediate retry (recorded as this attempt's outcome).
    async fn reauthorize(&mut self, sent_headers: Option<HeaderMap>) -> Result<bool, Error> {
        self.reauthorized = true;
        let Some(a) = &self.inner.auth else { return Ok(false) };
        let retry = a.on_unauthorized(&sent_headers.unwrap_or_default()).await?;
        if retry {
            self.attempts.push(Attempt { number: self.n, outcome: AttemptOutcome::Status(401), wait: None });
        }
        Ok(retry)
    }

    /// A 304 answered from the cached copy.
    fn not_modified<T>(&self, r: Received) -> Next<T> {
        let Some(c) = self.cached else { return Next::Fail(Error::internal("a 304 was answered without a cache")) };
        let ev = self.event(Some(r.status), None, r.latency, r.body.len(), &r.headers);
        observe::attempt(&ev);
        self.inner.circuits.success(&self.host.key);
        self.limits().0.succeeded();
        observe::cache_hit(&self.host.key, "not_modified");
        self.done("cache", self.n, Some(&ev));
        Next::Cached(cache::to_response(c, r.url, self.n, false))
    }

    /// A 2xx: decode it (and store it in the cache), or retry a body that does not decode.
    async fn succeeded<T>(
        &mut self,
        r: Received,
        secrets: &SentSecrets,
        decode: &impl Fn(&Response) -> Result<T, Error>,
    ) -> Next<T> {
        let inner = self.inner;
        let (latency, bytes) = (r.latency, r.body.len());
        let resp = Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
            url: r.url,
            from_cache: false,
            stale: false,
            attempts: self.n,
        };
        let ev = self.event(Some(resp.status), None, latency, bytes, &resp.headers);
        match decode(&resp) {
            Ok(v) => {
                observe::attempt(&ev);
                inner.circuits.success(&self.host.key);
                self.limits().0.succeeded();
                if let (Some(c), Some(k)) = (&inner.cache, self.cache_key) {
                    let entry = cache::to_cached(resp.status, &resp.headers, &resp.body);
                    if let Err(e) = c.put(k, &entry).await {
                        tracing::warn!(target: "dovetail_http::cache", error = %e.report(), "response cache store failed");
                    }
                }
                self.done("ok", self.n, Some(&ev));
                Next::Answered(resp, v)
            }
            Err(e) => {
                // A success status with a body that is not what was asked for is an error
                // worth its own line, with the cause (not a WARN that only says `200`).
                let cause = e.report();
                let ev = AttemptEvent { error: Some(&cause), ..ev };
                observe::attempt_undecodable(&ev);
                self.last_body = self.excerpt(&resp.body, secrets);
                Next::Failed(Failed {
                    outcome: AttemptOutcome::Undecodable(resp.status.as_u16()),
                    server: None,
                    floor: None,
                    // The server answers, but what it sends never decodes: bad data, not an outage.
                    kind: ErrorKind::Data,
                    cause: Some(Cause::Decode(e)),
                    http: Some(http_failure(Some(resp.status), &resp.headers, None, &inner.request_id_headers)),
                })
            }
        }
    }

    /// A response that is not an answer: retried, or the request's error.
    fn refused<T>(&mut self, step: Step<'_>, r: &Received, secrets: &SentSecrets) -> Next<T> {
        let inner = self.inner;
        self.last_body = self.excerpt(&r.body, secrets);
        let http = |wait| http_failure(Some(r.status), &r.headers, wait, &inner.request_id_headers);
        let retry = |server: Option<Duration>, floor: Option<Duration>, kind: ErrorKind| {
            let outcome = AttemptOutcome::Status(r.status.as_u16());
            Next::Failed(Failed { outcome, server, floor, kind, cause: None, http: Some(http(server)) })
        };
        // A second 401 (the credential was refreshed once) is what a 401 is.
        let kind = step.failure_kind().unwrap_or_else(|| status_kind(r.status));
        match step {
            Step::Retry { wait } => retry(wait, None, kind),
            Step::RateLimited { wait, floor } => retry(wait, floor, kind),
            Step::RedirectRefused { location } => {
                inner.circuits.success(&self.host.key);
                let e = crate::origin::redirect_refused(&r.url, r.status, location);
                Next::Fail(e.with_http(http(None)))
            }
            Step::Fail(_) | Step::Reauthorize | Step::Success | Step::NotModified => self.final_status(kind, r),
        }
    }

    /// A status that is not retried: the host is up, the request fails as `kind`.
    fn final_status<T>(&self, kind: ErrorKind, r: &Received) -> Next<T> {
        let inner = self.inner;
        inner.circuits.success(&self.host.key);
        let wait = server_wait(r.status, &r.headers, inner.clock.now(), inner.retry.reset_style);
        let http = http_failure(Some(r.status), &r.headers, wait, &inner.request_id_headers);
        let kind = match (kind, wait) {
            (ErrorKind::RateLimited { until: None }, Some(w)) => {
                ErrorKind::RateLimited { until: Some(inner.clock.now() + w) }
            }
            (kind, _) => kind,
        };
        Next::Fail(status_error(kind, r.status, &self.last_body, http))
    }

    /// At most 512 bytes of `body`, every secret the attempt sent scrubbed.
    fn excerpt(&self, body: &[u8], secrets: &SentSecrets) -> String {
        let inner = self.inner;
        observe::excerpt(body, &secrets.values(self.url, &inner.secret_params, inner.secret_path))
    }

    /// After a failed attempt: wait and let another follow if the budget allows, else give up.
    pub(crate) async fn after(&mut self, f: Failed) -> After {
        let inner = self.inner;
        let clock = inner.clock.as_ref();
        let (limiter, _) = self.limits();
        let rate_limited = matches!(f.kind, ErrorKind::RateLimited { .. });
        let wait = match (f.server, f.floor) {
            (Some(w), _) => w,
            (None, Some(first)) => floor_wait(first, self.n),
            (None, None) => inner.backoff.wait(&inner.retry, self.n),
        };
        if f.server.is_some() || f.floor.is_some() {
            // Every request on this (host, credential) waits too, not only this one.
            limiter.block_for(clock, wait);
        } else if rate_limited {
            // "Too fast" without saying how fast is fine: hold the group and pace.
            limiter.slow_down(clock, &self.host.key, wait);
        }
        let elapsed = clock.monotonic().saturating_sub(self.start);
        let repeatable = self.may_retry || matches!(f.outcome, AttemptOutcome::Credential(_));
        if retry_allowed(&inner.retry, repeatable, self.n, elapsed, wait, rate_limited) {
            if rate_limited {
                inner.stats.rate_limited_retry(f.outcome.cause(), wait);
                observe::rate_limited_wait(&self.host.key, self.shown, self.n, wait, clock.now() + wait);
                inner.stats.waiting(Some(clock.now() + wait));
            } else {
                inner.stats.retry(f.outcome.cause(), wait);
            }
            self.attempts.push(Attempt { number: self.n, outcome: f.outcome, wait: Some(wait) });
            observe::retry_wait(&self.host.key, wait);
            clock.sleep(wait).await;
            if rate_limited {
                inner.stats.waiting(None);
            }
            return After::Retry;
        }
        self.give_up(f, repeatable, elapsed, wait)
    }

    /// The retries are spent (or not allowed): an error listing every attempt and the last
    /// body, or the last good response when the request asked for it.
    fn give_up(&mut self, f: Failed, repeatable: bool, elapsed: Duration, wait: Duration) -> After {
        let n = self.n;
        let inner = self.inner;
        let undecodable = match f.outcome {
            AttemptOutcome::Undecodable(status) => Some(status),
            _ => None,
        };
        self.attempts.push(Attempt { number: n, outcome: f.outcome, wait: None });
        let list: Vec<String> = self.attempts.iter().map(ToString::to_string).collect();
        let until = inner.clock.now() + wait;
        let why = if let ErrorKind::RateLimited { .. } = f.kind
            && repeatable
            && wait > inner.retry.max_rate_limit_wait
        {
            format!(
                "rate limited: the API allows requests again in {} (at {}), longer than \
                 `http.retry.max_rate_limit_wait_ms` ({}), so the stream stops here; {n} attempts",
                fmt_duration(wait),
                crate::observe::rfc3339(until),
                fmt_duration(inner.retry.max_rate_limit_wait)
            )
        } else if repeatable {
            format!("gave up after {n} attempts in {}", fmt_duration(elapsed))
        } else {
            format!("not retried ({} without an idempotency key)", self.req.method)
        };
        let mut message = format!("{why}: {}", list.join("; "));
        if !self.last_body.is_empty() {
            message.push_str(&format!("; last body: {}", self.last_body));
        }
        self.inner.circuits.failure(&self.host.key, list.last().map(String::as_str).unwrap_or(""));
        if let Some(stale) = self.stale(n) {
            return After::Stale(Box::new(stale));
        }
        let kind = match f.kind {
            ErrorKind::RateLimited { .. } => ErrorKind::RateLimited { until: Some(until) },
            other => other,
        };
        let mut err = Error::new(kind, message);
        if let Some(status) = undecodable {
            // Whether the page becomes a dead letter is the connector's call; say only what
            // happened (a connector that dead-letters it says so instead).
            err = err.with_hint(format!(
                "the API answered {status} with a body that did not decode (the cause is above); nothing \
                 was dead-lettered for it: fix the API's answer or the connector's config for it, then run \
                 `dovetail run {{pipeline}}` again"
            ));
        }
        if let Some(c) = f.cause {
            err = err.with_source(c);
        }
        if let Some(http) = f.http {
            err = err.with_http(http);
        }
        self.done(err.kind().name(), n, None);
        After::Fail(err.at(self.at()))
    }
}

/// Send `rq` and read the whole body, under one timer for the whole attempt, body included
/// (reqwest's own timeout arms one for the request and another for the body).
async fn exchange(
    inner: &Inner,
    rq: reqwest::Request,
) -> Result<Result<(StatusCode, HeaderMap, Url, Bytes), reqwest::Error>, tokio::time::error::Elapsed> {
    let exchange = async {
        let mut r = inner.http.execute(rq).await?;
        // Reading the body does not need the headers: take them instead of cloning.
        let (status, headers, url) = (r.status(), std::mem::take(r.headers_mut()), r.url().clone());
        r.bytes().await.map(|b| (status, headers, url, b))
    };
    tokio::time::timeout(inner.timeout, exchange).await
}

/// What a failed exchange without a response was, named by its cause, then the innermost
/// error's words: `timeout`, `broken response body`, `TLS error`, `connection refused`,
/// `connection dropped` (closed or reset before an answer), else `connect error` or
/// `transport error`. The name before the colon is the retry cause the report counts.
fn transport_message(e: &reqwest::Error) -> String {
    let mut innermost: Option<&(dyn std::error::Error + 'static)> = None;
    let mut named: Option<&str> = None;
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        named = named.or_else(|| transport_cause(c));
        innermost = Some(c);
        cur = c.source();
    }
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_body() || e.is_decode() {
        // A body cut short reads as a dropped connection underneath; what failed is the body.
        "broken response body"
    } else if let Some(named) = named {
        named
    } else if e.is_connect() {
        "connect error"
    } else {
        "transport error"
    };
    match innermost {
        Some(inner) => format!("{what}: {inner}"),
        None => what.to_owned(),
    }
}

/// The cause one error in a transport failure's chain names, if it names one.
fn transport_cause(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use std::io::ErrorKind as Io;
    if e.is::<rustls::Error>() {
        return Some("TLS error");
    }
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        // The server closed the connection before answering (hyper's "SendRequest").
        return (h.is_incomplete_message() || h.is_canceled()).then_some("connection dropped");
    }
    let io = e.downcast_ref::<std::io::Error>()?;
    match io.kind() {
        _ if io.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => Some("TLS error"),
        Io::ConnectionRefused => Some("connection refused"),
        Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => Some("connection dropped"),
        Io::TimedOut => Some("timeout"),
        _ => None,
    }
}
