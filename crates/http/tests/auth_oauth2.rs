//! OAuth2 token manager against a wiremock token endpoint over loopback. Expiry is driven by
//! the crate's `FakeClock`, never by sleeping.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::MemoryTokenStore;
use dovetail_core::{ErrorKind, Secret};
use dovetail_http::FakeClock;
use dovetail_http::auth::{Auth, ClientAuth, OAuth2ClientCredentials, OAuth2RefreshToken, OAuth2Settings};
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CLIENT_SECRET: &str = "cs-very-secret-1";
const REFRESH: &str = "rt-configured-0001";

fn token(access: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"access_token": access, "token_type": "Bearer", "expires_in": expires_in}))
}

fn settings(server: &MockServer) -> OAuth2Settings {
    let mut s = OAuth2Settings::new(format!("{}/token", server.uri()), "client-1", Some(Secret::new(CLIENT_SECRET)));
    s.refresh_skew = Duration::from_secs(60);
    s
}

fn request() -> reqwest::Request {
    reqwest::Request::new(reqwest::Method::GET, "https://api.example.com/x".parse().unwrap())
}

async fn bearer(auth: &dyn Auth) -> String {
    let mut req = request();
    auth.apply(&mut req).await.unwrap();
    req.headers()["authorization"].to_str().unwrap().to_owned()
}

async fn token_requests(server: &MockServer) -> Vec<String> {
    let reqs = server.received_requests().await.unwrap();
    reqs.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_applies_on_an_expired_token_cause_one_token_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token("at-1", 3600).set_delay(Duration::from_millis(200)))
        .mount(&server)
        .await;
    let clock = FakeClock::new();
    let auth = Arc::new(OAuth2ClientCredentials::new(settings(&server)).unwrap().with_clock(clock.clone()));
    assert_eq!(bearer(auth.as_ref()).await, "Bearer at-1");
    assert_eq!(token_requests(&server).await.len(), 1);

    clock.advance(Duration::from_secs(3601));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let auth = Arc::clone(&auth);
        tasks.spawn(async move { bearer(auth.as_ref()).await });
    }
    let results = tasks.join_all().await;
    assert_eq!(results.len(), 50);
    assert!(results.iter().all(|h| h == "Bearer at-1"));
    assert_eq!(token_requests(&server).await.len(), 2, "exactly one token request for the 50 callers");
}

#[tokio::test]
async fn refreshes_proactively_at_expiry_minus_skew_measured_from_the_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(token("at", 3600)).mount(&server).await;
    let clock = FakeClock::new();
    let auth = OAuth2ClientCredentials::new(settings(&server)).unwrap().with_clock(clock.clone());
    bearer(&auth).await;
    clock.advance(Duration::from_secs(3600 - 60 - 1));
    bearer(&auth).await;
    assert_eq!(token_requests(&server).await.len(), 1, "still fresh one second before expiry - skew");
    clock.advance(Duration::from_secs(1));
    bearer(&auth).await;
    assert_eq!(token_requests(&server).await.len(), 2, "refreshed at expiry - skew");
}

#[tokio::test]
async fn a_401_drops_the_token_and_the_next_apply_fetches_a_new_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(token("at-1", 3600)).up_to_n_times(1).mount(&server).await;
    Mock::given(method("POST")).respond_with(token("at-2", 3600)).mount(&server).await;
    let auth = OAuth2ClientCredentials::new(settings(&server)).unwrap();
    let mut rejected = request();
    auth.apply(&mut rejected).await.unwrap();
    assert_eq!(rejected.headers()["authorization"], "Bearer at-1");
    assert!(auth.on_unauthorized(rejected.headers()).await.unwrap(), "OAuth2 allows one retry");
    assert_eq!(bearer(&auth).await, "Bearer at-2");
    // A late 401 for the old token leaves the new one alone (still allows the retry).
    assert!(auth.on_unauthorized(rejected.headers()).await.unwrap());
    assert_eq!(bearer(&auth).await, "Bearer at-2");
    assert_eq!(token_requests(&server).await.len(), 2);
    // A 401 for the current token drops it; without the rejected headers, the current one.
    let mut current = request();
    auth.apply(&mut current).await.unwrap();
    auth.on_unauthorized(current.headers()).await.unwrap();
    assert_eq!(bearer(&auth).await, "Bearer at-2");
    assert_eq!(token_requests(&server).await.len(), 3);
    auth.on_unauthorized(&reqwest::header::HeaderMap::new()).await.unwrap();
    bearer(&auth).await;
    assert_eq!(token_requests(&server).await.len(), 4);
}

#[tokio::test]
async fn client_secret_basic_and_post_and_scopes() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(token("at", 3600)).mount(&server).await;
    let mut s = settings(&server);
    s.scopes = vec!["read".into(), "write".into()];
    bearer(&OAuth2ClientCredentials::new(s.clone()).unwrap()).await;
    s.client_auth = ClientAuth::ClientSecretPost;
    bearer(&OAuth2ClientCredentials::new(s).unwrap()).await;
    let reqs = server.received_requests().await.unwrap();
    let basic = &reqs[0];
    assert_eq!(basic.headers["authorization"], "Basic Y2xpZW50LTE6Y3MtdmVyeS1zZWNyZXQtMQ==");
    let body = String::from_utf8_lossy(&basic.body);
    assert!(body.contains("grant_type=client_credentials") && body.contains("scope=read+write"), "{body}");
    assert!(!body.contains("client_secret"), "{body}");
    let post = &reqs[1];
    assert!(!post.headers.contains_key("authorization"));
    let body = String::from_utf8_lossy(&post.body);
    assert!(body.contains("client_id=client-1") && body.contains("client_secret=cs-very-secret-1"), "{body}");
}

#[tokio::test]
async fn a_rotated_refresh_token_is_saved_before_use_and_preferred_after_a_restart() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains(format!("refresh_token={REFRESH}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "at-1", "expires_in": 3600, "refresh_token": "rt-rotated-0002"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("refresh_token=rt-rotated-0002"))
        .respond_with(token("at-2", 3600))
        .mount(&server)
        .await;
    // A store that cannot save: the new access token must not be used.
    let broken = Arc::new(MemoryTokenStore { fail: true, ..Default::default() });
    let auth = OAuth2RefreshToken::new(settings(&server), Secret::new(REFRESH), Some(broken.clone())).unwrap();
    // It holds the token in force before this rotation.
    broken.tokens.lock().unwrap().insert(auth.store_key().to_owned(), REFRESH.to_owned());
    let mut req = request();
    let err = auth.apply(&mut req).await.unwrap_err();
    assert!(err.message().contains("saving it failed"), "{err}");
    assert!(!req.headers().contains_key("authorization"), "used before it was saved");
    // The rotated token stays in force in memory (the configured one may be void by now):
    // the next fetch presents it, not the one the store still holds.
    let _ = auth.apply(&mut request()).await;
    let last = token_requests(&server).await.last().cloned().unwrap_or_default();
    assert!(last.contains("refresh_token=rt-rotated-0002"), "{last}");

    let store = Arc::new(MemoryTokenStore::default());
    let auth = OAuth2RefreshToken::new(settings(&server), Secret::new(REFRESH), Some(store.clone())).unwrap();
    assert_eq!(bearer(&auth).await, "Bearer at-1");
    assert_eq!(*store.saves.lock().unwrap(), vec!["rt-rotated-0002".to_owned()]);
    // Restart: a new provider with the same configuration and store uses the stored token.
    let auth = OAuth2RefreshToken::new(settings(&server), Secret::new(REFRESH), Some(store.clone())).unwrap();
    assert_eq!(bearer(&auth).await, "Bearer at-2");
    let bodies = token_requests(&server).await;
    assert!(bodies.last().unwrap().contains("grant_type=refresh_token&refresh_token=rt-rotated-0002"));
    // The same token returned again is not saved again.
    assert_eq!(store.saves.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_is_an_auth_error_quoting_the_vendor_without_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(
                    json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
                )
                .set_delay(Duration::from_millis(100)),
        )
        .mount(&server)
        .await;
    let auth = Arc::new(OAuth2RefreshToken::new(settings(&server), Secret::new(REFRESH), None).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let auth = Arc::clone(&auth);
        tasks.spawn(async move { auth.apply(&mut request()).await.unwrap_err() });
    }
    let errors = tasks.join_all().await;
    assert_eq!(token_requests(&server).await.len(), 1, "waiters share the failed fetch");
    for err in errors {
        assert_eq!(err.kind(), &ErrorKind::Auth);
        let text = err.report();
        assert!(text.contains("invalid_grant"), "{text}");
        assert!(text.contains("Token has been expired or revoked."), "{text}");
        assert!(text.contains("re-authorize"), "{text}");
        assert!(!text.contains(CLIENT_SECRET) && !text.contains(REFRESH), "{text}");
    }
}

#[tokio::test]
async fn non_json_errors_are_scrubbed_and_5xx_is_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_string(format!("bad client {CLIENT_SECRET} for {REFRESH}")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let auth = OAuth2RefreshToken::new(settings(&server), Secret::new(REFRESH), None).unwrap();
    let err = auth.apply(&mut request()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Auth);
    assert!(err.report().contains("bad client [redacted] for [redacted]"), "{}", err.report());
    let err = auth.apply(&mut request()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Transient, "{err}");
}

#[tokio::test]
async fn a_cancelled_apply_still_saves_and_keeps_the_rotated_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "at-1", "expires_in": 3600, "refresh_token": "rt-rotated-0003"}))
                .set_delay(Duration::from_millis(300)),
        )
        .mount(&server)
        .await;
    let store = Arc::new(MemoryTokenStore::default());
    let auth = OAuth2RefreshToken::new(settings(&server), Secret::new(REFRESH), Some(store.clone())).unwrap();
    let mut req = request();
    let cancelled = tokio::time::timeout(Duration::from_millis(50), auth.apply(&mut req)).await;
    assert!(cancelled.is_err(), "the caller gave up mid-fetch");
    // The next caller waits for the fetch that is still running instead of starting another.
    assert_eq!(bearer(&auth).await, "Bearer at-1");
    assert_eq!(token_requests(&server).await.len(), 1);
    assert_eq!(*store.saves.lock().unwrap(), vec!["rt-rotated-0003".to_owned()]);
}
