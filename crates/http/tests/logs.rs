//! Everything logged during a run with secrets (bearer header, API-key query parameter,
//! secret query values echoed in bodies, a secret URL path) is captured and searched for
//! those secrets.

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

/// At INFO a request is one line whatever its retries: the request's INFO event carries its
/// last attempt's fields and the attempt count; each attempt's own event, a failed one
/// included, is DEBUG (a retry that later succeeded is no warning).
#[tokio::test]
async fn at_info_a_request_is_one_line_and_its_retried_attempts_are_debug() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    let ok = || {
        ResponseTemplate::new(200)
            .set_body_string("hello")
            .insert_header("x-request-id", "req-ok")
            .insert_header("x-ratelimit-remaining", "41")
    };
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(503).insert_header("x-request-id", "req-503"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET")).respond_with(ok()).mount(&server).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).build().unwrap();

    // What INFO shows: the lines that are not DEBUG.
    let info = |logs: &str| logs.lines().filter(|l| !l.contains("DEBUG")).map(str::to_owned).collect::<Vec<_>>();
    client.send(Request::get("/once").query("access_token", TOKEN_PARAM)).await.unwrap();
    let logs = capture.text();
    let lines = info(&logs);
    assert_eq!(lines.len(), 1, "{logs}");
    let line = &lines[0];
    assert!(line.contains("INFO") && line.contains("http request"), "{line}");
    for field in [
        "method=GET",
        "/once?access_token=[redacted]",
        "outcome=\"ok\"",
        "attempts=1",
        "status=200",
        "latency_ms=",
        "bytes=5",
        "rate_limit_remaining=\"41\"",
        "request_id=\"req-ok\"",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(!logs.contains(TOKEN_PARAM), "{logs}");

    client.send(Request::get("/flaky")).await.unwrap();
    let logs = capture.text();
    let flaky: Vec<String> = info(&logs).into_iter().skip(1).collect();
    assert_eq!(flaky.len(), 1, "{logs}");
    assert!(flaky[0].contains("INFO") && flaky[0].contains("http request"), "{logs}");
    assert!(flaky[0].contains("attempts=2") && flaky[0].contains("status=200"), "{logs}");
    assert!(flaky[0].contains("request_id=\"req-ok\""), "{logs}");
    let retried = logs.lines().find(|l| l.contains("http attempt") && l.contains("status=503")).unwrap_or_default();
    assert!(retried.contains("DEBUG") && retried.contains("attempt=1"), "{logs}");
    assert!(retried.contains("request_id=\"req-503\"") && retried.contains("bytes=0"), "{logs}");
}

/// A client whose URLs hold a secret in their path (an alert webhook): logs and errors
/// show only the origin, and body excerpts are scrubbed of the path.
#[tokio::test]
async fn a_secret_path_is_never_shown() {
    const TOKEN: &str = "T000-hook-s3cr3t";
    let (capture, _guard) = Capture::trace_on_this_thread();
    let server = MockServer::start().await;
    let echo = format!("no hook at /hooks/{TOKEN} signed abcd");
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(404).set_body_string(echo)).mount(&server).await;
    let clock = FakeClock::new();
    let client = builder(&server.uri(), &clock).secret_path().build().unwrap();
    let url = format!("{}/hooks/{TOKEN}?sig=abcd", server.uri());
    let e = client.send(Request::post(url).body("{}")).await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    let report = e.report();
    assert!(report.contains(&format!("POST {}/[redacted]", server.uri())), "{report}");
    // Every path segment and query value is scrubbed from the body excerpt, not only the token.
    assert!(report.contains("no hook at /[redacted]/[redacted] signed [redacted]"), "{report}");
    let logs = capture.text();
    assert!(logs.contains("status=404") && logs.contains("/[redacted]"), "{logs}");
    for text in [&report, &logs] {
        assert!(!text.contains(TOKEN) && !text.contains("abcd"), "{text}");
    }
}
