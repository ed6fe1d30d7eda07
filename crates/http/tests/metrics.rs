//! The `metrics` counters and histograms of one short run, captured by a recorder installed
//! for this test's thread (`metrics::set_default_local_recorder`). The test runs on tokio's
//! current-thread runtime, so every task that records (the client, its auth provider,
//! hyper's connection tasks) is polled on that thread; wiremock serves from its own threads
//! and records nothing.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{builder, secs};
use dovetail_core::Secret;
use dovetail_http::auth::{OAuth2ClientCredentials, OAuth2Settings};
use dovetail_http::{FakeClock, MemoryResponseCache, Request};
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// A metric's name and its labels, sorted.
type Id = (String, Vec<(String, String)>);

/// Keeps every counter and histogram by name and sorted labels.
#[derive(Default)]
struct Capture {
    counters: Mutex<BTreeMap<Id, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<Id, Arc<Samples>>>,
}

fn id(key: &Key) -> Id {
    let mut labels: Vec<_> = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.counters.lock().unwrap().entry(id(key)).or_default().clone())
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.histograms.lock().unwrap().entry(id(key)).or_default().clone())
    }
}

impl Capture {
    /// The sum of counter `name` over the label sets that include every pair in `labels`.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let has = |ls: &[(String, String)]| labels.iter().all(|(k, v)| ls.iter().any(|(a, b)| a == k && b == v));
        self.counters
            .lock()
            .unwrap()
            .iter()
            .filter(|((n, ls), _)| n == name && has(ls))
            .map(|(_, c)| c.load(Ordering::SeqCst))
            .sum()
    }
    /// Every sample of histogram `name`, all label sets together, sorted.
    fn samples(&self, name: &str) -> Vec<f64> {
        let mut out: Vec<f64> = self
            .histograms
            .lock()
            .unwrap()
            .iter()
            .filter(|((n, _), _)| n == name)
            .flat_map(|(_, s)| s.0.lock().unwrap().clone())
            .collect();
        out.sort_by(f64::total_cmp);
        out
    }
    fn names(&self) -> Vec<String> {
        let c = self.counters.lock().unwrap();
        let h = self.histograms.lock().unwrap();
        c.keys().chain(h.keys()).map(|(n, _)| n.clone()).collect()
    }
}

fn token(access: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600}))
}

#[tokio::test(flavor = "current_thread")]
async fn counters_match_a_run_with_a_retry_a_429_a_cache_hit_and_a_token_refresh() {
    let rec = Capture::default();
    let _guard = metrics::set_default_local_recorder(&rec);

    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("at-1")).up_to_n_times(1).mount(&server).await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("at-2")).mount(&server).await;
    // A retry: one 503, then 200.
    Mock::given(path("/flaky")).respond_with(ResponseTemplate::new(503)).up_to_n_times(1).mount(&server).await;
    Mock::given(path("/flaky")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    // A 429 with Retry-After: 3, then 200.
    Mock::given(path("/limited"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/limited")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    // A cache hit: 200 with an ETag, then 304 to the conditional request.
    Mock::given(path("/cached"))
        .and(header("if-none-match", "\"v1\""))
        .respond_with(ResponseTemplate::new(304))
        .mount(&server)
        .await;
    Mock::given(path("/cached"))
        .respond_with(ResponseTemplate::new(200).insert_header("etag", "\"v1\"").set_body_string("[1]"))
        .mount(&server)
        .await;
    Mock::given(path("/after-refresh")).respond_with(ResponseTemplate::new(200)).mount(&server).await;

    let clock = FakeClock::new();
    let settings = OAuth2Settings::new(format!("{}/token", server.uri()), "client-1", Some(Secret::new("cs-1")));
    let auth = Arc::new(OAuth2ClientCredentials::new(settings).unwrap().with_clock(clock.clone()));
    let client =
        builder(&server.uri(), &clock).auth(auth).cache(Arc::new(MemoryResponseCache::new(10))).build().unwrap();

    assert_eq!(client.send(Request::get("/flaky")).await.unwrap().attempts, 2);
    assert_eq!(client.send(Request::get("/limited")).await.unwrap().attempts, 2);
    assert!(!client.send(Request::get("/cached")).await.unwrap().from_cache);
    assert!(client.send(Request::get("/cached")).await.unwrap().from_cache);
    clock.advance(secs(3600)); // the token expired: the next request refreshes it
    client.send(Request::get("/after-refresh")).await.unwrap();

    let names = rec.names();
    let c = |name: &str, labels: &[(&str, &str)]| rec.counter(name, labels);
    // 5 logical requests: 4 answered by the server, 1 (the 304) from the cache.
    assert_eq!(c("dovetail_http_requests_total", &[]), 5, "{names:?}");
    assert_eq!(c("dovetail_http_requests_total", &[("outcome", "ok")]), 4);
    assert_eq!(c("dovetail_http_requests_total", &[("outcome", "cache")]), 1);
    // 7 attempts: flaky 503 + 200, limited 429 + 200, cached 200 + 304, after-refresh 200.
    assert_eq!(c("dovetail_http_attempts_total", &[]), 7);
    assert_eq!(c("dovetail_http_attempts_total", &[("status", "503")]), 1);
    assert_eq!(c("dovetail_http_attempts_total", &[("status", "304")]), 1);
    assert_eq!(c("dovetail_http_attempts_total", &[("status", "200")]), 4);
    assert_eq!(c("dovetail_http_retries_total", &[]), 2);
    assert_eq!(c("dovetail_http_429_total", &[]), 1);
    assert_eq!(c("dovetail_http_cache_hits_total", &[("kind", "not_modified")]), 1);
    assert_eq!(c("dovetail_http_cache_hits_total", &[]), 1);
    assert_eq!(c("dovetail_http_token_requests_total", &[]), 2, "the first token and its refresh");
    assert_eq!(c("dovetail_http_slowdowns_total", &[]), 0, "the 429 said how long to wait");
    assert_eq!(c("dovetail_http_circuit_open_total", &[]), 0);
    // Every counter carries the host; waits are recorded once each, the 429's as 3 s.
    let host = server.address().to_string();
    assert_eq!(c("dovetail_http_requests_total", &[("host", &host)]), 5, "host label is `ip:port`");
    let waits = rec.samples("dovetail_http_wait_seconds");
    assert_eq!(waits.len(), 2, "{waits:?}");
    assert!(waits[0] <= 0.1 && waits[1] == 3.0, "a jittered backoff and the Retry-After: {waits:?}");
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 2, "{sleeps:?}");
    assert_eq!((sleeps[0].as_secs_f64(), sleeps[1]), (waits[0], secs(3)), "recorded waits are the waits slept");
    assert_eq!(rec.samples("dovetail_http_attempt_seconds").len(), 7);
    assert_eq!(rec.samples("dovetail_http_request_seconds").len(), 5);
}

#[tokio::test(flavor = "current_thread")]
async fn an_attempt_held_back_by_the_token_endpoint_is_a_retry_but_not_an_attempt_sent() {
    let rec = Capture::default();
    let _guard = metrics::set_default_local_recorder(&rec);
    let server = MockServer::start().await;
    let down = ResponseTemplate::new(503).set_body_json(json!({"error": "unavailable"}));
    Mock::given(method("POST")).and(path("/token")).respond_with(down).up_to_n_times(1).mount(&server).await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("at-1")).mount(&server).await;
    Mock::given(path("/me")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let clock = FakeClock::new();
    let settings = OAuth2Settings::new(format!("{}/token", server.uri()), "client-1", Some(Secret::new("cs-1")));
    let auth = Arc::new(OAuth2ClientCredentials::new(settings).unwrap().with_clock(clock.clone()));
    let client = builder(&server.uri(), &clock).auth(auth).build().unwrap();

    client.send(Request::get("/me")).await.unwrap();
    let c = |name: &str| rec.counter(name, &[]);
    assert_eq!(c("dovetail_http_attempts_total"), 1, "only the attempt that reached the API: {:?}", rec.names());
    assert_eq!(rec.samples("dovetail_http_attempt_seconds").len(), 1);
    assert_eq!(c("dovetail_http_retries_total"), 1, "the held-back attempt was retried after a backoff");
    assert_eq!(c("dovetail_http_token_requests_total"), 2, "the failed token request and the one that worked");
    assert_eq!(c("dovetail_http_requests_total"), 1);
}
