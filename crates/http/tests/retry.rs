//! Retries over real loopback HTTP (wiremock), with waits asserted on a fake clock.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use common::{TestAuth, builder, secs};
use dovetail_core::ErrorKind;
use dovetail_http::{Clock, FakeClock, Request, StatusCode, Verdict};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn mount(server: &MockServer, m: &str, p: &str, t: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(method(m)).and(path(p)).respond_with(t);
    match times {
        Some(n) => mock.up_to_n_times(n).mount(server).await,
        None => mock.mount(server).await,
    }
}

#[tokio::test]
async fn retries_then_succeeds_with_capped_jittered_backoff() {
    let server = MockServer::start().await;
    mount(&server, "GET", "/x", ResponseTemplate::new(503), Some(2)).await;
    mount(&server, "GET", "/x", ResponseTemplate::new(200).set_body_string("ok"), None).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).build().unwrap();
    let r = client.send(Request::get("/x")).await.unwrap();
    assert_eq!((r.status, r.attempts, &r.body[..]), (StatusCode::OK, 3, &b"ok"[..]));
    let waits = clock.sleeps();
    assert_eq!(waits.len(), 2);
    assert!(waits[0] <= Duration::from_millis(100) && waits[1] <= Duration::from_millis(200), "{waits:?}");

    // The client's own figures, for run reports.
    let report = client.report();
    assert_eq!((report.requests, report.attempts, report.retries, report.failed), (1, 3, 2, 0));
    assert_eq!(report.by_status.get("503"), Some(&2));
    assert_eq!(report.by_status.get("200"), Some(&1));
    assert_eq!(report.retry_causes.get("503"), Some(&2));
    let waited: Duration = waits.iter().sum();
    assert_eq!(report.retry_wait_ms, waits.iter().map(|w| w.as_millis() as u64).sum::<u64>(), "{waited:?}");
    let again = client.clone().report().since(&report);
    assert_eq!((again.requests, again.attempts), (0, 0), "clones share the figures; `since` subtracts");
}

#[tokio::test]
async fn gives_up_listing_every_attempt_and_the_last_body() {
    let server = MockServer::start().await;
    mount(&server, "GET", "/x", ResponseTemplate::new(502).set_body_string("upstream exploded"), None).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).build().unwrap();
    let e = client.send(Request::get("/x").query("access_token", "s3cr3t-value")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Transient);
    let msg = e.to_string();
    assert!(msg.contains("gave up after 4 attempts"), "{msg}");
    for n in 1..=4 {
        assert!(msg.contains(&format!("#{n} 502")), "{msg}");
    }
    assert_eq!(msg.matches("waited").count(), 3, "{msg}");
    assert!(msg.contains("last body: upstream exploded"), "{msg}");
    assert!(msg.contains("GET http://") && msg.contains("access_token=[redacted]") && !msg.contains("s3cr3t"));
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn retry_after_seconds_and_http_date_are_honoured() {
    let server = MockServer::start().await;
    let clock = FakeClock::new();
    let date = httpdate::fmt_http_date(clock.now() + secs(20 + 7));
    mount(&server, "GET", "/x", ResponseTemplate::new(429).insert_header("retry-after", "7"), Some(1)).await;
    mount(&server, "GET", "/x", ResponseTemplate::new(503).insert_header("retry-after", date.as_str()), Some(1)).await;
    mount(&server, "GET", "/x", ResponseTemplate::new(200), None).await;
    let client = builder(&server.uri(), &clock).build().unwrap();
    client.send(Request::get("/x")).await.unwrap();
    // 7 s, then the date 27 s after the start = 20 s after the first wait.
    assert_eq!(clock.sleeps(), vec![secs(7), secs(20)]);
}

#[tokio::test]
async fn a_429_past_the_budget_is_rate_limited_with_the_wait() {
    let server = MockServer::start().await;
    mount(&server, "GET", "/x", ResponseTemplate::new(429).insert_header("retry-after", "3600"), None).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).build().unwrap();
    let e = client.send(Request::get("/x")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::RateLimited { until: Some(clock.now() + secs(3600)) });
    assert!(e.message().contains("longer than `http.retry.max_rate_limit_wait_ms`"), "{e}");
    assert!(clock.sleeps().is_empty(), "never requests before the server's time");
}

/// A fake clock that notes how many requests the server had seen when each sleep began.
#[derive(Debug)]
struct WitnessClock {
    fake: Arc<FakeClock>,
    server: Arc<MockServer>,
    seen_at_sleep: Mutex<Vec<usize>>,
}

#[async_trait]
impl Clock for WitnessClock {
    fn now(&self) -> SystemTime {
        self.fake.now()
    }
    fn monotonic(&self) -> Duration {
        self.fake.monotonic()
    }
    async fn sleep(&self, d: Duration) {
        let n = self.server.received_requests().await.unwrap().len();
        self.seen_at_sleep.lock().unwrap().push(n);
        self.fake.sleep(d).await;
    }
}

#[tokio::test]
async fn remaining_zero_waits_for_the_reset_without_sending() {
    let server = Arc::new(MockServer::start().await);
    let exhausted = ResponseTemplate::new(200)
        .insert_header("x-ratelimit-remaining", "0")
        .insert_header("x-ratelimit-reset", "1700000030");
    mount(&server, "GET", "/x", exhausted, Some(1)).await;
    mount(&server, "GET", "/x", ResponseTemplate::new(200), None).await;
    let fake = FakeClock::new();
    let clock = Arc::new(WitnessClock { fake: fake.clone(), server: server.clone(), seen_at_sleep: Mutex::default() });
    let client = builder(&server.uri(), &fake).clock(clock.clone()).build().unwrap();
    client.send(Request::get("/x")).await.unwrap();
    // A clone shares the limiter: it waits for the reset too.
    client.clone().send(Request::get("/x")).await.unwrap();
    assert_eq!(fake.sleeps(), vec![secs(30)]);
    assert_eq!(*clock.seen_at_sleep.lock().unwrap(), vec![1], "the wait began before a second request was sent");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn post_is_retried_only_with_an_idempotency_key() {
    let server = MockServer::start().await;
    mount(&server, "POST", "/w", ResponseTemplate::new(503), Some(1)).await;
    mount(&server, "POST", "/w", ResponseTemplate::new(201), None).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).build().unwrap();
    let e = client.send(Request::post("/w").json(&serde_json::json!({"a": 1}))).await.unwrap_err();
    assert!(e.to_string().contains("not retried (POST without an idempotency key)"), "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    server.reset().await;
    mount(&server, "POST", "/w", ResponseTemplate::new(503), Some(1)).await;
    Mock::given(method("POST"))
        .and(header("idempotency-key", "k-1"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    let r = client.send(Request::post("/w").idempotency_key("k-1").body("x")).await.unwrap();
    assert_eq!((r.status, r.attempts), (StatusCode::CREATED, 2));
    let sent = server.received_requests().await.unwrap();
    assert!(sent.iter().all(|r| r.body == b"x"), "the buffered body is resent");
}

#[tokio::test]
async fn a_200_with_a_truncated_body_is_retried() {
    let server = MockServer::start().await;
    mount(&server, "GET", "/j", ResponseTemplate::new(200).set_body_string(r#"{"items": [1, 2"#), Some(1)).await;
    mount(&server, "GET", "/j", ResponseTemplate::new(200).set_body_string(r#"{"items": [1, 2]}"#), None).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).build().unwrap();
    let v: serde_json::Value = client.send_json(Request::get("/j")).await.unwrap();
    assert_eq!(v["items"], serde_json::json!([1, 2]));
    assert_eq!(clock.sleeps().len(), 1);

    // A body that never decodes is bad data once the retries are spent, not an outage.
    mount(&server, "GET", "/bad", ResponseTemplate::new(200).set_body_string("{\"items\": ["), None).await;
    let e = client.send_json::<serde_json::Value>(Request::get("/bad")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Data, "{e}");
    assert!(e.to_string().contains("gave up after") && e.to_string().contains("undecodable"), "{e}");
}

#[tokio::test]
async fn a_classifier_retries_secondary_rate_limits_and_403s_fail_as_auth() {
    let server = MockServer::start().await;
    let secondary = ResponseTemplate::new(403)
        .set_body_string("You have exceeded a secondary rate limit")
        .insert_header("retry-after", "60");
    mount(&server, "GET", "/s", secondary, Some(1)).await;
    mount(&server, "GET", "/s", ResponseTemplate::new(200), None).await;
    mount(&server, "GET", "/forbidden", ResponseTemplate::new(403).set_body_string("no access"), None).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock)
        .classifier(Arc::new(|s, _, body| {
            (s == StatusCode::FORBIDDEN && String::from_utf8_lossy(body).contains("secondary rate limit"))
                .then_some(Verdict::Retry)
        }))
        .build()
        .unwrap();
    client.send(Request::get("/s")).await.unwrap();
    assert_eq!(clock.sleeps(), vec![secs(60)]);
    let e = client.send(Request::get("/forbidden")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Auth);
    assert!(e.to_string().contains("no access"));
}

#[tokio::test]
async fn a_401_asks_the_provider_and_retries_once() {
    let server = MockServer::start().await;
    Mock::given(header("authorization", "Bearer t-fresh"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(401)).mount(&server).await;
    let clock = FakeClock::new();
    let auth = Arc::new(TestAuth { token: "t".into(), refreshable: true, ..TestAuth::default() });
    let client = builder(&server.uri(), &clock).auth(auth.clone()).build().unwrap();
    let r = client.send(Request::get("/me")).await.unwrap();
    assert_eq!((r.attempts, auth.unauthorized_calls()), (2, 1));
    assert!(clock.sleeps().is_empty());

    let stubborn = TestAuth::bearer("t");
    let client = builder(&server.uri(), &clock).auth(stubborn.clone()).build().unwrap();
    let e = client.send(Request::get("/me")).await.unwrap_err();
    assert_eq!((e.kind(), stubborn.unauthorized_calls()), (&ErrorKind::Auth, 1));
}

#[tokio::test]
async fn refused_connections_are_retried_then_reported_as_refused() {
    let clock = FakeClock::new();
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = builder(&base, &clock).build().unwrap();
    let e = client.send(Request::get("/x")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Transient);
    assert!(e.to_string().contains("#4 connection refused"), "named by its cause: {e}");
    assert!(std::error::Error::source(&e).is_some(), "the reqwest error is kept as the source");
}

#[tokio::test]
async fn a_bare_429_slows_every_later_request_until_successes_restore_the_rate() {
    let server = MockServer::start().await;
    mount(&server, "GET", "/x", ResponseTemplate::new(429), Some(1)).await;
    mount(&server, "GET", "/x", ResponseTemplate::new(200), None).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).build().unwrap();
    client.send(Request::get("/x")).await.unwrap();
    let backoff = clock.sleeps();
    assert_eq!(backoff.len(), 1, "the 429's retry waited its backoff");
    // Back-to-back requests from a clone are now paced (10 ms minimum spacing, as nothing
    // was measured before the 429), and each success shortens the spacing.
    let other = client.clone();
    for _ in 0..3 {
        other.send(Request::get("/x")).await.unwrap();
    }
    let paced = clock.sleeps()[1..].to_vec();
    assert!(!paced.is_empty() && paced.iter().all(|d| *d <= Duration::from_millis(10)), "{paced:?}");
    // Enough successes switch pacing off: no more waits.
    for _ in 0..60 {
        other.send(Request::get("/x")).await.unwrap();
    }
    let n = clock.sleeps().len();
    for _ in 0..5 {
        other.send(Request::get("/x")).await.unwrap();
    }
    assert_eq!(clock.sleeps().len(), n, "the rate is restored");
}
