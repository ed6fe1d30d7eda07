//! Errors carry what the response said as data (`HttpFailure`: status, the remote's wait,
//! headers of interest, never a credential), a classifier's verdicts end to end, requests
//! marked repeatable. (A client whose URL paths hold a secret: `logs.rs`.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestAuth, builder, secs};
use dovetail_core::ErrorKind;
use dovetail_http::{Clock, FakeClock, Request, StatusCode, Verdict, Wait};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn mount(server: &MockServer, p: &str, t: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(path(p)).respond_with(t);
    match times {
        Some(n) => mock.up_to_n_times(n).mount(server).await,
        None => mock.mount(server).await,
    }
}

#[tokio::test]
async fn a_refused_status_carries_its_status_wait_and_headers_of_interest() {
    let server = MockServer::start().await;
    let not_found = ResponseTemplate::new(404)
        .set_body_string("no such repo")
        .insert_header("x-github-request-id", "AB:12")
        .insert_header("x-ratelimit-remaining", "4999")
        .insert_header("set-cookie", "session=s3cr3t")
        .insert_header("content-type", "application/json");
    mount(&server, "/missing", not_found, None).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).auth(TestAuth::bearer("t-s3cr3t")).build().unwrap();
    let e = client.send(Request::get("/missing")).await.unwrap_err();
    assert_eq!((e.kind(), e.status()), (&ErrorKind::Permanent, Some(404)));
    let http = e.http().unwrap();
    assert_eq!(http.header("x-github-request-id"), Some("AB:12"));
    assert_eq!(http.header("x-ratelimit-remaining"), Some("4999"));
    assert_eq!((http.header("set-cookie"), http.header("content-type")), (None, None));
    assert!(!format!("{http:?}").contains("s3cr3t"), "{http:?}");
    assert_eq!(http.retry_after_ms, None);
    assert!(e.message().starts_with("HTTP 404 Not Found: no such repo"), "the message is unchanged: {e}");
}

#[tokio::test]
async fn a_spent_budget_carries_the_last_response_and_a_transport_failure_no_status() {
    let server = MockServer::start().await;
    mount(&server, "/down", ResponseTemplate::new(503).insert_header("retry-after", "2"), None).await;
    mount(&server, "/slow", ResponseTemplate::new(429).insert_header("retry-after", "3600"), None).await;
    mount(&server, "/bad", ResponseTemplate::new(200).set_body_string("{\"items\": ["), None).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).build().unwrap();

    let e = client.send(Request::get("/down")).await.unwrap_err();
    assert_eq!((e.kind(), e.status()), (&ErrorKind::Transient, Some(503)));
    assert_eq!((e.http().unwrap().retry_after_ms, e.http().unwrap().header("retry-after")), (Some(2000), Some("2")));
    assert_eq!(clock.sleeps(), vec![secs(2); 3]);

    let e = client.send(Request::get("/slow")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::RateLimited { until: Some(clock.now() + secs(3600)) });
    assert_eq!((e.status(), e.http().unwrap().retry_after_ms), (Some(429), Some(3_600_000)));
    // The host's gate stays closed for the hour: nothing is sent to it before then.
    let e = client.send(Request::get("/bad")).await.unwrap_err();
    assert_eq!((e.kind(), e.status()), (&ErrorKind::RateLimited { until: Some(clock.now() + secs(3600)) }, None));
    assert!(e.message().contains("not sent"), "{e}");
    clock.advance(secs(3600));

    let e = client.send_json::<serde_json::Value>(Request::get("/bad")).await.unwrap_err();
    assert_eq!((e.kind(), e.status()), (&ErrorKind::Data, Some(200)), "{e}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let e = builder(&nowhere, &clock).build().unwrap().send(Request::get("/x")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Transient);
    assert!(e.http().is_some_and(|h| h.status.is_none()), "a transport failure: no status: {:?}", e.http());
}

#[tokio::test]
async fn a_classifier_can_say_this_403_is_a_rate_limit_until_t() {
    let server = MockServer::start().await;
    mount(&server, "/limited", ResponseTemplate::new(403).set_body_string("quota"), Some(1)).await;
    mount(&server, "/limited", ResponseTemplate::new(200), None).await;
    mount(&server, "/always", ResponseTemplate::new(403).set_body_string("quota"), None).await;
    mount(&server, "/gone", ResponseTemplate::new(503).set_body_string("retired"), None).await;
    let clock = FakeClock::new();
    let until = clock.now() + secs(90);
    let client = builder(&server.uri(), &clock)
        .classifier(Arc::new(move |s, _, body| match (s.as_u16(), body) {
            (403, b"quota") => Some(Verdict::RateLimited(Wait::Until(until))),
            (503, b"retired") => Some(Verdict::Fail(ErrorKind::Permanent)),
            _ => None,
        }))
        .build()
        .unwrap();
    client.send(Request::get("/limited")).await.unwrap();
    assert_eq!(clock.sleeps(), vec![secs(90)], "waited until T");

    // Still limited at T, and T is now past: the wait is 0, then the budget is spent.
    let e = client.send(Request::get("/always")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::RateLimited { until: Some(clock.now()) }, "{e}");
    assert_eq!(e.status(), Some(403));

    let e = client.send(Request::get("/gone")).await.unwrap_err();
    assert_eq!((e.kind(), e.status()), (&ErrorKind::Permanent, Some(503)));
    assert_eq!(server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == "/gone").count(), 1);
}

#[tokio::test]
async fn a_rate_limit_verdict_without_a_wait_slows_the_host_down() {
    let server = MockServer::start().await;
    mount(&server, "/x", ResponseTemplate::new(403).set_body_string("slow down"), Some(1)).await;
    mount(&server, "/x", ResponseTemplate::new(200), None).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock)
        .classifier(Arc::new(|s, _, body| {
            (s == StatusCode::FORBIDDEN && body == b"slow down").then_some(Verdict::RateLimited(Wait::Headers))
        }))
        .build()
        .unwrap();
    client.send(Request::get("/x")).await.unwrap();
    assert_eq!(clock.sleeps().len(), 1, "the backoff");
    for _ in 0..3 {
        client.send(Request::get("/x")).await.unwrap();
    }
    let paced = clock.sleeps()[1..].to_vec();
    assert!(!paced.is_empty() && paced.iter().all(|d| *d <= Duration::from_millis(10)), "paced: {paced:?}");
}

#[tokio::test]
async fn a_post_marked_repeatable_is_retried_without_an_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).up_to_n_times(1).mount(&server).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).build().unwrap();
    let r = client.send(Request::post("/hook").body("{}").repeatable(true)).await.unwrap();
    assert_eq!(r.attempts, 2);
    let sent = server.received_requests().await.unwrap();
    assert!(sent.iter().all(|r| r.body == b"{}" && !r.headers.contains_key("idempotency-key")));
}
