//! How a GitHub stream ends when GitHub says "not now", through `dovetail run` against
//! GitHub-shaped responses (the `x-ratelimit-*` header set, `retry-after`, Link with
//! `rel="next"` and `rel="last"`): waits up to `http.retry.max_rate_limit_wait_ms` are
//! taken and said; longer ones stop the stream with exit 5 and the time to come back, and
//! runs before that time skip the stream without a request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dovetail_e2e::github::{self, TOKEN, fixture, run};
use dovetail_e2e::vendor::count;
use dovetail_e2e::{Scratch, show};
use serde_json::Value;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The two releases of the recorded fixture.
fn releases() -> Value {
    let file = fixture("releases");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    doc["exchanges"][0]["response"]["body"].clone()
}

fn config(base_url: &str, retry: &str) -> String {
    github::config(base_url, "releases", retry, "start_date = \"2011-01-01T00:00:00Z\"", "")
}

fn epoch_in(secs: u64) -> u64 {
    (SystemTime::now() + Duration::from_secs(secs)).duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// GitHub's rate-limit headers: `remaining` of 5000 left, the window resetting `reset_in` from now.
fn limited(status: u16, remaining: u32, reset_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/json; charset=utf-8")
        .insert_header("x-github-request-id", "CAFE:0002:AAAA:BBBB:00000002")
        .insert_header("x-ratelimit-limit", "5000")
        .insert_header("x-ratelimit-remaining", remaining.to_string().as_str())
        .insert_header("x-ratelimit-reset", epoch_in(reset_in).to_string().as_str())
        .insert_header("x-ratelimit-used", (5000 - remaining).to_string().as_str())
        .insert_header("x-ratelimit-resource", "core")
}

fn page_one(server: &MockServer, remaining: u32, reset_in: u64) -> ResponseTemplate {
    let next = format!("{}/repos/octo/hello/releases?per_page=100&page=2", server.uri());
    limited(200, remaining, reset_in)
        .insert_header("link", format!(r#"<{next}>; rel="next", <{next}>; rel="last""#).as_str())
        .set_body_json(releases())
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_primary_limit_stops_with_exit_5_and_the_time_and_runs_before_it_skip_the_stream() {
    let server = MockServer::start().await;
    let body = serde_json::json!({
        "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID CAFE:0002.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
    });
    Mock::given(method("GET"))
        .and(path("/repos/octo/hello/releases"))
        .respond_with(limited(403, 0, 1800).set_body_json(body))
        .mount(&server)
        .await;
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.uri(), "max_attempts = 3, base_delay_ms = 1, max_delay_ms = 2"));

    let (out, report) = run(&s).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "a rate limit ends as one: {}", show(&out));
    assert!(err.contains("the API allows requests again at") && err.contains("in 30 min"), "{err}");
    assert!(!err.contains("again; it resumes from the last checkpoint"), "no bare `run again`: {err}");
    assert_eq!(requests(&server).await, 1, "the reset is 30 min away: not asked again");
    assert_eq!(report["streams"]["releases"]["outcome"], "paused", "{report:#}");
    assert!(report["streams"]["releases"]["paused"].as_str().unwrap().starts_with("rate-limited until"), "{report:#}");
    assert!(!err.contains(TOKEN) && !report.to_string().contains(TOKEN));

    // A run before the time does not call GitHub, and says when to come back.
    let (out, _) = run(&s).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert!(err.contains("stream skipped: its API allows requests again at"), "{err}");
    assert!(err.contains("in 30 min"), "{err}");
    assert_eq!(requests(&server).await, 1, "the skipped run sent nothing");

    let status = s.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("rate_limited"), "{text}");

    // `resume` lifts it at once: the next run asks GitHub again.
    assert!(s.run(&["resume", "gh", "releases"]).status.success());
    let (out, _) = run(&s).await;
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_limit_with_retry_after_is_waited_out_past_max_elapsed_and_counted_as_a_rate_limit_wait() {
    let server = MockServer::start().await;
    let body = serde_json::json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."});
    Mock::given(method("GET"))
        .and(path("/repos/octo/hello/releases"))
        .respond_with(limited(429, 4990, 3000).insert_header("retry-after", "2").set_body_json(body))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/hello/releases"))
        .respond_with(limited(200, 4989, 3000).set_body_json(releases()))
        .mount(&server)
        .await;
    let s = Scratch::new();
    // The whole request may take 1 s, the API asks for 2: a rate-limit wait is taken all the same.
    s.write("dovetail.toml", &config(&server.uri(), "max_attempts = 3, max_elapsed_ms = 1000"));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "releases", "written"), 2, "{report:#}");
    let http = &report["http"]["source"];
    assert!(http["rate_limit_wait_ms"].as_u64().unwrap() >= 2000, "{report:#}");
    assert_eq!(http["retry_wait_ms"], 0, "a rate-limit wait is not a retry wait: {report:#}");
    let err = stderr(&out);
    let line = err.lines().find(|l| l.contains("rate limited by the API: waiting before the next attempt"));
    let line = line.unwrap_or_else(|| panic!("an INFO line says it waits: {err}"));
    assert!(line.contains("INFO") && line.contains("wait_ms=2000") && line.contains("until="), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_limit_without_retry_after_waits_at_least_a_minute_so_a_shorter_cap_stops_at_once() {
    let server = MockServer::start().await;
    let body = serde_json::json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."});
    Mock::given(method("GET"))
        .and(path("/repos/octo/hello/releases"))
        .respond_with(limited(403, 4990, 3000).set_body_json(body))
        .mount(&server)
        .await;
    let s = Scratch::new();
    s.write(
        "dovetail.toml",
        &config(&server.uri(), "max_attempts = 5, base_delay_ms = 1, max_rate_limit_wait_ms = 30000"),
    );
    let (out, _) = run(&s).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert_eq!(requests(&server).await, 1, "not retried fast: GitHub asks for a minute at least");
    assert!(err.contains("allows requests again in 60.0s"), "{err}");
    assert!(err.contains("the API allows requests again at") && err.contains("in 60 s"), "{err}");
}

/// Releases in two pages: the first spends the budget until `reset_in` from now, the second is empty.
async fn two_pages(reset_in: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/hello/releases"))
        .and(query_param_is_missing("page"))
        .respond_with(page_one(&server, 0, reset_in))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/hello/releases"))
        .and(query_param("page", "2"))
        .respond_with(limited(200, 4999, 3600).set_body_json(serde_json::json!([])))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_spends_the_budget_stops_before_the_next_request_or_waits_a_short_reset_out() {
    // Far reset: page 1 is delivered, page 2 is not requested, the stream stops as rate limited.
    let server = two_pages(1800).await;
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.uri(), "max_attempts = 3"));
    let (out, report) = run(&s).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert_eq!(requests(&server).await, 1, "the spent budget's reset is 30 min away: page 2 waits");
    assert_eq!(count(&report, "releases", "written"), 2, "page 1 is delivered: {report:#}");
    assert!(err.contains("the API's budget is spent and allows requests again in"), "{err}");
    assert!(err.contains("in 30 min"), "{err}");

    // Near reset (5 s in whole epoch seconds: at least 3 s even on a slow machine): waited
    // out, said at INFO, and the listing goes on.
    let server = two_pages(5).await;
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.uri(), "max_attempts = 3"));
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(requests(&server).await, 2);
    let waited = report["http"]["source"]["rate_limit_wait_ms"].as_u64().unwrap();
    assert!(waited >= 1000, "the reset was waited for: {report:#}");
    let err = stderr(&out);
    let line = err.lines().find(|l| l.contains("waiting for the API's rate limit"));
    assert!(line.is_some_and(|l| l.contains("INFO") && l.contains("until=")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_past_any_clock_stops_the_stream_like_any_long_wait() {
    // `retry-after: 18446744073709551615`: capped to a year, not a panic adding it to a clock.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/hello/releases"))
        .respond_with(limited(429, 4990, 3000).insert_header("retry-after", u64::MAX.to_string().as_str()))
        .mount(&server)
        .await;
    let s = Scratch::new();
    s.write("dovetail.toml", &config(&server.uri(), "max_attempts = 3"));
    let (out, report) = run(&s).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert!(err.contains("the API allows requests again at") && !err.contains("panicked"), "{err}");
    assert_eq!(report["streams"]["releases"]["outcome"], "paused", "{report:#}");
}
