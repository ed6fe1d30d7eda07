//! The client and the real OAuth2 providers together, over loopback: single-flight refresh
//! under concurrent requests and the 401 → refresh → one retry rule. Token expiry follows
//! the same `FakeClock` as the client.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{builder, secs};
use dovetail_core::{ErrorKind, Secret};
use dovetail_http::auth::{OAuth2ClientCredentials, OAuth2Settings};
use dovetail_http::{FakeClock, HttpClient, Request};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn token(access: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600}))
}

fn provider(server: &MockServer, clock: &Arc<FakeClock>) -> Arc<OAuth2ClientCredentials> {
    let s = OAuth2Settings::new(format!("{}/token", server.uri()), "client-1", Some(Secret::new("cs-1234")));
    Arc::new(OAuth2ClientCredentials::new(s).unwrap().with_clock(clock.clone()))
}

/// A client on a fake clock whose OAuth2 provider uses `server`'s `/token`.
fn oauth_client(server: &MockServer) -> (HttpClient, Arc<FakeClock>) {
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).auth(provider(server, &clock)).build().unwrap();
    (client, clock)
}

/// `m p` answers 200 `{"id": 7}` to `Bearer <access>`.
async fn ok_with(server: &MockServer, access: &str, m: &str, p: &str) {
    Mock::given(method(m))
        .and(path(p))
        .and(header("authorization", format!("Bearer {access}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 7})))
        .mount(server)
        .await;
}

async fn count(server: &MockServer, p: &str) -> usize {
    server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == p).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_on_an_expired_token_cause_one_token_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("at-1")).up_to_n_times(1).mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token("at-2").set_delay(Duration::from_millis(200)))
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .and(header("authorization", "Bearer at-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([1])))
        .mount(&server)
        .await;
    Mock::given(path("/items")).respond_with(ResponseTemplate::new(401)).mount(&server).await;
    let clock = FakeClock::new();
    let auth = provider(&server, &clock);
    let client = builder(&server.uri(), &clock).auth(auth).max_concurrency(64).build().unwrap();
    client.send(Request::get("/warm")).await.unwrap_err(); // fetches at-1 (404 from wiremock)
    assert_eq!(count(&server, "/token").await, 1);

    clock.advance(secs(3600));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let client = client.clone();
        tasks.spawn(async move { client.send_json::<Vec<u32>>(Request::get("/items")).await });
    }
    let results = tasks.join_all().await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|v| v == &[1])), "{results:?}");
    assert_eq!(count(&server, "/token").await, 2, "exactly one token request for the 50 requests");
    assert_eq!(count(&server, "/items").await, 50, "no request went out with the expired token");
}

async fn client_with_401_once(server: &MockServer) -> (HttpClient, Arc<FakeClock>) {
    Mock::given(method("POST")).and(path("/token")).respond_with(token("at-1")).up_to_n_times(1).mount(server).await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("at-2")).mount(server).await;
    ok_with(server, "at-2", "GET", "/me").await;
    Mock::given(path("/me")).respond_with(ResponseTemplate::new(401)).mount(server).await;
    Mock::given(path("/never")).respond_with(ResponseTemplate::new(401).set_body_string("no")).mount(server).await;
    oauth_client(server)
}

#[tokio::test]
async fn a_401_refreshes_the_token_and_retries_once() {
    let server = MockServer::start().await;
    let (client, clock) = client_with_401_once(&server).await;
    let me: serde_json::Value = client.send_json(Request::get("/me")).await.unwrap();
    assert_eq!(me["id"], 7);
    assert_eq!(count(&server, "/token").await, 2, "the 401 caused exactly one refresh");
    assert_eq!(count(&server, "/me").await, 2);
    let sent = server.received_requests().await.unwrap();
    let auths: Vec<_> =
        sent.iter().filter(|r| r.url.path() == "/me").map(|r| r.headers["authorization"].clone()).collect();
    assert_eq!(auths, ["Bearer at-1", "Bearer at-2"]);
    assert!(clock.sleeps().is_empty(), "a 401 retry does not back off");

    // The fresh token is reused: no further token request.
    client.send(Request::get("/me")).await.unwrap();
    assert_eq!(count(&server, "/token").await, 2);
}

#[tokio::test]
async fn a_second_401_after_the_refresh_is_not_retried_again() {
    let server = MockServer::start().await;
    let (client, _clock) = client_with_401_once(&server).await;
    let err = client.send(Request::get("/never")).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Auth, "{}", err.report());
    assert!(err.report().contains("401"), "{}", err.report());
    assert_eq!(count(&server, "/never").await, 2, "one retry after the refresh, no loop");
    assert_eq!(count(&server, "/token").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_401s_for_one_old_token_cause_exactly_one_refresh() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("at-1")).up_to_n_times(1).mount(&server).await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("at-2")).mount(&server).await;
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer at-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([2])))
        .mount(&server)
        .await;
    // The server revoked at-1: half the 401s come back early, half well after the refresh.
    let revoked = |ms| ResponseTemplate::new(401).set_delay(Duration::from_millis(ms));
    Mock::given(path("/data")).respond_with(revoked(50)).up_to_n_times(10).mount(&server).await;
    Mock::given(path("/data")).respond_with(revoked(400)).mount(&server).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).auth(provider(&server, &clock)).max_concurrency(64).build().unwrap();
    client.send(Request::get("/warm")).await.unwrap_err(); // fetches at-1 (404 from wiremock)
    assert_eq!(count(&server, "/token").await, 1);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let client = client.clone();
        tasks.spawn(async move { client.send_json::<Vec<u32>>(Request::get("/data")).await });
    }
    let results = tasks.join_all().await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|v| v == &[2])), "{results:?}");
    assert_eq!(count(&server, "/token").await, 2, "exactly one refresh for the 20 rejected requests");
    let sent = server.received_requests().await.unwrap();
    let old = sent.iter().filter(|r| r.url.path() == "/data" && r.headers["authorization"] == "Bearer at-1").count();
    assert_eq!((old, count(&server, "/data").await), (20, 40), "each sent once with at-1 and retried once with at-2");
}

/// A client whose token endpoint answers `failures` × 503 before granting `at-1`; `/me` and
/// `POST /things` answer 200 to that token.
async fn client_with_flaky_token_endpoint(server: &MockServer, failures: Option<u64>) -> (HttpClient, Arc<FakeClock>) {
    let unavailable = ResponseTemplate::new(503).set_body_json(json!({"error": "unavailable"}));
    let flaky = Mock::given(method("POST")).and(path("/token")).respond_with(unavailable);
    match failures {
        Some(n) => flaky.up_to_n_times(n).mount(server).await,
        None => flaky.mount(server).await,
    }
    Mock::given(method("POST")).and(path("/token")).respond_with(token("at-1")).mount(server).await;
    ok_with(server, "at-1", "GET", "/me").await;
    ok_with(server, "at-1", "POST", "/things").await;
    oauth_client(server)
}

#[tokio::test]
async fn a_token_endpoint_503_is_retried_with_backoff_and_the_request_then_goes_out_once() {
    let server = MockServer::start().await;
    let (client, clock) = client_with_flaky_token_endpoint(&server, Some(2)).await;
    let me: serde_json::Value = client.send_json(Request::get("/me")).await.unwrap();
    assert_eq!(me["id"], 7);
    assert_eq!(count(&server, "/token").await, 3, "two 503s, then the grant");
    assert_eq!(count(&server, "/me").await, 1, "nothing was sent without a token");
    assert_eq!(clock.sleeps().len(), 2, "each failed token request was followed by a backoff wait");
    let report = client.report();
    assert_eq!(report.retry_causes.get(dovetail_http::CREDENTIAL_CAUSE), Some(&2), "{:?}", report.retry_causes);
    assert_eq!((report.requests, report.attempts, report.failed), (1, 1, 0), "one attempt reached the API");
}

#[tokio::test]
async fn a_post_without_an_idempotency_key_still_waits_for_the_token_endpoint() {
    let server = MockServer::start().await;
    let (client, _clock) = client_with_flaky_token_endpoint(&server, Some(1)).await;
    let created: serde_json::Value = client.send_json(Request::post("/things").json(&json!({"a": 1}))).await.unwrap();
    assert_eq!(created["id"], 7);
    assert_eq!(count(&server, "/things").await, 1, "the POST went out once, after the token came");
}

#[tokio::test]
async fn a_token_endpoint_that_stays_down_fails_the_request_as_transient_naming_it() {
    let server = MockServer::start().await;
    let (client, clock) = client_with_flaky_token_endpoint(&server, None).await;
    let err = client.send(Request::get("/me")).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Transient, "{}", err.report());
    let msg = err.report();
    assert!(msg.contains("gave up after 4 attempts"), "{msg}");
    assert!(msg.contains("#1 not sent: the OAuth2 token endpoint") && msg.contains("503"), "{msg}");
    assert!(!msg.contains("cs-1234"), "no client secret in the error: {msg}");
    assert_eq!((count(&server, "/token").await, count(&server, "/me").await), (4, 0));
    assert_eq!(clock.sleeps().len(), 3);
    assert_eq!(client.report().failed, 1);
}

#[tokio::test]
async fn a_refused_grant_is_not_retried() {
    let server = MockServer::start().await;
    let refused = ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"}));
    Mock::given(method("POST")).and(path("/token")).respond_with(refused).mount(&server).await;
    let (client, clock) = oauth_client(&server);
    let err = client.send(Request::get("/me")).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Auth, "{}", err.report());
    assert!(err.report().contains("invalid_client"), "{}", err.report());
    assert_eq!(count(&server, "/token").await, 1, "an Auth error is final");
    assert!(clock.sleeps().is_empty());
}
