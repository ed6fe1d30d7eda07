//! Everything logged during a run with secrets (bearer header, API-key query parameter,
//! secret query values echoed in bodies) is captured and searched for those secrets.

mod common;

use std::sync::Arc;

use common::{Capture, TestAuth, builder};
use dovetail_http::{FakeClock, Request};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BEARER: &str = "bearer-SECRET-1111";
const QUERY_KEY: &str = "apikey-SECRET-2222";
const TOKEN_PARAM: &str = "token-SECRET-3333";

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let (capture, _guard) = Capture::trace_on_this_thread();

    let server = MockServer::start().await;
    let echo = format!("bad credentials {BEARER} {QUERY_KEY} {TOKEN_PARAM}");
    Mock::given(path("/a"))
        .respond_with(ResponseTemplate::new(503).set_body_string(echo.clone()).insert_header("x-request-id", "req-42"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/a"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("deprecation", "true")
                .insert_header("sunset", "Sat, 01 Aug 2026 00:00:00 GMT"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(400).set_body_string(echo)).mount(&server).await;
    let clock = FakeClock::new();
    let auth = Arc::new(TestAuth { token: BEARER.into(), query_key: Some(QUERY_KEY.into()), ..TestAuth::default() });
    let client = builder(&server.uri(), &clock).auth(auth).build().unwrap();

    client.send(Request::get("/a").query("access_token", TOKEN_PARAM).query("page", "1")).await.unwrap();
    let e = client.send(Request::get("/b").query("access_token", TOKEN_PARAM)).await.unwrap_err();
    tracing::error!(error = %e.report(), "run failed");

    let logs = capture.text();
    for secret in [BEARER, QUERY_KEY, TOKEN_PARAM] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs:\n{logs}");
        assert!(!e.report().contains(secret), "{secret} leaked into the error");
    }
    assert!(logs.contains("request_id=\"req-42\""), "{logs}");
    assert!(logs.contains("access_token=[redacted]") && logs.contains("page=1"), "{logs}");
    assert!(logs.contains("deprecated") && logs.contains("GET /a") && logs.contains("01 Aug 2026"), "{logs}");
    assert!(logs.contains("outcome=\"ok\"") && logs.contains("attempts=2"), "{logs}");
    assert!(e.report().contains("bad credentials [redacted]"), "{}", e.report());
}
