//! dovetail-http: the resilient HTTP client every API connector stands on.
//!
//! A connector builds one [`HttpClient`] (from code and its [`HttpConfig`] block) and sends
//! [`Request`]s; each logical request goes through, outer to inner:
//!
//! 0. the **origin scope** ([`origin`]): a request — and the credential it would carry —
//!    goes only to the base URL's origin or one in `http.allowed_origins`; anything else is
//!    refused before a byte is sent, redirects are followed only within one origin, and
//!    [`paginate`] refuses next-page links and stored positions for other origins;
//! 1. the per-host **circuit breaker** ([`CircuitPolicy`]): an open circuit fails fast with
//!    `ErrorKind::Unavailable` (or serves the last good response, `stale`, with `use_cache`);
//! 2. the **response cache**: GETs send `If-None-Match` / `If-Modified-Since`, a 304 is
//!    answered from the cache (`from_cache`);
//! 3. **retries** ([`RetryPolicy`]): connect errors, timeouts, 408/429/500/502/503/504, a
//!    connector [`Classifier`]'s [`Verdict`]s (retry, a rate limit with its wait, fail as a
//!    kind) and undecodable 2xx bodies, with full-jitter backoff overridden by
//!    `Retry-After` / rate-limit reset headers; non-idempotent methods only with an
//!    idempotency key (or marked [`Request::repeatable`]); the give-up error lists every
//!    attempt. What a response means is decided without IO (`classify`), and every error
//!    for a response (or a transport failure) carries it as data
//!    ([`dovetail_core::HttpFailure`]: status, the remote's wait, headers of interest);
//! 4. **rate limits** per (host, credential), shared by every client of the process on that
//!    host and credential (the strictest configured budget applies): a governor budget
//!    ([`RateBudget`]) plus the server's `Remaining: 0` / 429 signals (a 429 without a wait
//!    header halves the rate until successes restore it), and a per-host concurrency limit;
//! 5. **auth** ([`auth::Auth`]) applied on every attempt, one refresh-and-retry on a 401;
//!    OAuth2 providers built from config are shared per credential in the process;
//! 6. reqwest (rustls, proxies from the environment, extra CA certificates).
//!
//! Every wait and every OAuth2 token expiry goes through one [`Clock`], so tests run on a
//! [`FakeClock`]. Logs never carry
//! credentials: URLs are redacted ([`redact_url`]) and headers are not logged.
//! [`paginate`] turns a first request into pages. What every connector would otherwise copy
//! lives here once: [`encode_segment`] (a value as one URL path segment) and
//! [`Response::provenance`] (the provenance of the records read from a response).
//!
//! # Logs
//!
//! One event per attempt (`dovetail_http::attempt`: method, redacted URL, attempt number,
//! status or transport error, latency, response bytes, rate-limit remaining, the vendor's
//! request id) and one per logical request (`dovetail_http::request`: outcome, attempts,
//! total time, plus the fields of its last attempt). Levels are chosen so that INFO is one
//! line per request and nothing is said twice:
//!
//! - the request event is INFO whatever its outcome: a failed request's error goes to its
//!   caller, which prints it once or records it (a dead letter, a pause);
//! - an attempt event is DEBUG — a retried status or transport error, a 401 before a token
//!   refresh, the last successful attempt (repeated in the request event) — except a 2xx
//!   whose body did not decode (ERROR, with the decode error). A retry that later succeeded
//!   shows in the request's `attempts` and the client's retry figures; one that gave up is
//!   listed in the request's error.
//!
//! Trade-off: a request that succeeds at once costs one INFO line (one formatted event and,
//! with an unbuffered writer, one write) instead of two; a subscriber that counts attempts
//! must listen to `dovetail_http::attempt` at DEBUG.
//!
//! # Metrics
//!
//! Recorded through the [`metrics`](https://docs.rs/metrics) facade (install any recorder;
//! without one they cost nothing). `host` is `host:port`. The handles of a host's most
//! frequent series (200 attempts, attempt latency, `ok` requests and their duration) are
//! registered once, at the client's first request to that host, and kept: install the
//! recorder before sending requests.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `dovetail_http_requests_total` | counter | `host`, `outcome` | logical requests; `outcome` is `ok`, `cache` (a 304 answered from the cache), `stale` or the error kind (`transient`, `rate_limited`, `unavailable`, `auth`, `permanent`, `data`, ...) |
//! | `dovetail_http_request_seconds` | histogram | `host`, `outcome` | a logical request's duration, waits included |
//! | `dovetail_http_attempts_total` | counter | `host`, `status` | attempts sent; `status` is the HTTP status or `error` (connect error, timeout) |
//! | `dovetail_http_attempt_seconds` | histogram | `host` | one attempt's latency |
//! | `dovetail_http_retries_total` | counter | `host` | waits before a retry (not rate-limiter waits) |
//! | `dovetail_http_wait_seconds` | histogram | `host`, `reason` (`retry`, `rate_limit`) | the length of each retry wait and each rate-limiter wait (window reset, pacing) |
//! | `dovetail_http_429_total` | counter | `host` | 429 responses |
//! | `dovetail_http_slowdowns_total` | counter | `host` | 429s without a wait header, which halve the host's rate |
//! | `dovetail_http_cache_hits_total` | counter | `host`, `kind` | responses served from the cache: `not_modified` (304) or `stale` |
//! | `dovetail_http_circuit_open_total` | counter | `host` | times a host's circuit opened |
//! | `dovetail_http_token_requests_total` | counter | — | OAuth2 token requests (first token and every refresh) |
//! | `dovetail_http_deprecated_total` | counter | `endpoint` | first sighting of a `Deprecation` / `Sunset` header per endpoint |
#![warn(missing_docs)]

pub mod auth;
mod budget;
mod cache;
mod call;
mod circuit;
mod classify;
mod client;
pub mod clock;
mod config;
mod exec;
mod form;
#[doc(hidden)]
pub mod fuzz_entry;
mod limit;
mod observe;
pub mod origin;
pub mod paginate;
mod provenance;
mod request;
mod retry;
mod segment;
mod shared;
mod stats;

pub use cache::MemoryResponseCache;
pub use classify::{Classifier, Verdict, Wait, default_verdict, status_kind};
pub use client::{HttpClient, HttpClientBuilder};
pub use clock::{Clock, FakeClock, TokioClock};
pub use config::{
    CircuitConfig, CircuitPolicy, HttpConfig, RateBudget, RateLimitConfig, ResetStyle, RetryConfig, RetryPolicy,
    check_http_url, http_url, in_range, in_range_req, opt_http_url,
};
pub use form::{FORM_CONTENT_TYPE, form_encode, form_pairs};
pub use limit::DailyReset;
pub use observe::{REQUEST_ID_HEADERS, SECRET_PARAM_WORDS, redact_url};
pub use origin::{AllowedOrigin, Origin};
pub use request::{Request, Response};
pub use reqwest::{Method, StatusCode, Url, header};
pub use retry::{
    Attempt, AttemptOutcome, CREDENTIAL_CAUSE, RETRY_STATUSES, remaining, reset_wait, retryable_status, server_wait,
};
pub use segment::encode_segment;
pub use shared::share_budgets;
