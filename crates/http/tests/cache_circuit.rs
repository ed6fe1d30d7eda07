//! Conditional requests, stale serving and the circuit breaker over loopback HTTP.

mod common;

use std::sync::Arc;

use common::{TestAuth, builder, secs};
use dovetail_core::ErrorKind;
use dovetail_http::{CircuitPolicy, FakeClock, MemoryResponseCache, Request, RetryPolicy};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_304_is_answered_from_the_cache() {
    let server = MockServer::start().await;
    Mock::given(header("if-none-match", "\"v1\"")).respond_with(ResponseTemplate::new(304)).mount(&server).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).insert_header("etag", "\"v1\"").set_body_string("[1,2]"))
        .mount(&server)
        .await;
    let clock = FakeClock::new();
    let cache = Arc::new(MemoryResponseCache::new(10));
    let client = builder(&server.uri(), &clock).cache(cache.clone()).auth(TestAuth::bearer("t")).build().unwrap();
    let first = client.send(Request::get("/items")).await.unwrap();
    assert!(!first.from_cache);
    let second = client.send(Request::get("/items")).await.unwrap();
    assert!(second.from_cache && !second.stale);
    assert_eq!(&second.body[..], b"[1,2]");
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].headers.get("if-none-match").is_some());
    assert_eq!(cache.len(), 1);

    // A request kept out of the cache sends no validators and stores nothing.
    let third = client.send(Request::get("/other").cacheable(false)).await.unwrap();
    assert!(!third.from_cache);
    let sent = server.received_requests().await.unwrap();
    assert!(sent[2].headers.get("if-none-match").is_none());
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn circuit_opens_serves_stale_then_half_opens() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("good"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(503)).up_to_n_times(4).mount(&server).await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_string("back")).mount(&server).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock)
        .retry(RetryPolicy { max_attempts: 2, jitter_seed: Some(1), ..RetryPolicy::default() })
        .circuit(CircuitPolicy { failure_threshold: 2, cool_down: secs(60) })
        .cache(Arc::new(MemoryResponseCache::new(10)))
        .build()
        .unwrap();
    client.send(Request::get("/ref")).await.unwrap();
    // Two exhausted requests (2 attempts each) open the circuit.
    let stale = client.send(Request::get("/ref").use_cache(true)).await.unwrap();
    assert!(stale.stale && &stale.body[..] == b"good", "retry budget spent: last good response, flagged stale");
    let e = client.send(Request::get("/ref")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Transient);
    assert_eq!(server.received_requests().await.unwrap().len(), 5);

    // Open: no request is sent; the error says since when and why.
    let e = client.send(Request::get("/ref")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Unavailable);
    assert!(e.to_string().contains("unavailable since 2023-11-14T22:") && e.to_string().contains("503"), "{e}");
    let stale = client.send(Request::get("/ref").use_cache(true)).await.unwrap();
    assert!(stale.stale && stale.attempts == 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 5);

    // After the cool-down one probe goes through and closes the circuit.
    clock.advance(secs(60));
    let r = client.send(Request::get("/ref")).await.unwrap();
    assert_eq!(&r.body[..], b"back");
    client.send(Request::get("/other")).await.unwrap();
}

#[tokio::test]
async fn a_failed_probe_reopens_the_circuit() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock)
        .retry(RetryPolicy { max_attempts: 1, ..RetryPolicy::default() })
        .circuit(CircuitPolicy { failure_threshold: 1, cool_down: secs(30) })
        .build()
        .unwrap();
    assert_eq!(client.send(Request::get("/a")).await.unwrap_err().kind(), &ErrorKind::Transient);
    assert_eq!(client.send(Request::get("/a")).await.unwrap_err().kind(), &ErrorKind::Unavailable);
    clock.advance(secs(30));
    assert_eq!(client.send(Request::get("/a")).await.unwrap_err().kind(), &ErrorKind::Transient, "the probe");
    assert_eq!(client.send(Request::get("/a")).await.unwrap_err().kind(), &ErrorKind::Unavailable);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}
