//! The replay server over loopback: matching, ordered duplicates, strict unmatched answers.

use std::sync::Arc;

use dovetail_core::{ErrorKind, Secret};
use dovetail_http::auth::StaticBearer;
use dovetail_http::{HttpClient, Request};
use dovetail_testkit::{Fixture, FixtureServer, UNMATCHED_STATUS};
use serde_json::{Value, json};

fn fixture(v: Value) -> Fixture {
    Fixture::from_json(&v.to_string()).unwrap()
}

fn get(path: &str, query: Value, headers: Value, status: u16, body: Value) -> Value {
    json!({
        "request": {"method": "GET", "path": path, "query": query, "headers": headers},
        "response": {"status": status, "headers": {"content-type": "application/json"}, "body": body},
    })
}

async fn send(url: String, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, String) {
    let mut rb = reqwest::Client::new().get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let (status, h) = (r.status().as_u16(), r.headers().clone());
    (status, h, r.text().await.unwrap())
}

#[tokio::test]
async fn duplicates_are_served_in_order_and_the_last_repeats() {
    let etag_200 = json!({
        "request": {"method": "GET", "path": "/r"},
        "response": {"status": 200, "headers": {"etag": "\"v1\""}, "body": {"v": 1}},
    });
    let not_modified = json!({
        "request": {"method": "GET", "path": "/r", "headers": {"if-none-match": "\"v1\""}},
        "response": {"status": 304, "headers": {"etag": "\"v1\""}},
    });
    let server = FixtureServer::start(fixture(json!({"exchanges": [
        get("/x", json!([]), json!({}), 503, json!({"error": "unavailable"})),
        get("/x", json!([]), json!({}), 200, json!({"n": 1})),
        etag_200,
        not_modified,
    ]})))
    .await
    .unwrap();
    let url = |p: &str| format!("{}{p}", server.base_url());
    assert_eq!(send(url("/x"), &[]).await.0, 503);
    assert_eq!(send(url("/x"), &[]).await.2, r#"{"n":1}"#);
    assert_eq!(send(url("/x"), &[]).await.0, 200, "the last duplicate repeats");
    let (status, headers, body) = send(url("/r"), &[]).await;
    assert_eq!((status, headers["etag"].to_str().unwrap(), body.as_str()), (200, "\"v1\"", r#"{"v":1}"#));
    let inm = [("if-none-match", "\"v1\"")];
    assert_eq!(send(url("/r"), &inm).await.0, 304);
    assert_eq!(send(url("/r"), &inm).await.0, 304);
    assert_eq!(send(url("/r"), &[]).await.0, 200);
    assert_eq!(server.served(), vec![1, 2, 2, 2]);
    assert!(server.unmatched().is_empty());
}

#[tokio::test]
async fn query_is_a_multiset_and_recorded_headers_must_be_sent() {
    let server = FixtureServer::start(fixture(json!({"exchanges": [get(
        "/v1/items",
        json!([["limit", "2"], ["tag", "a"], ["tag", "b"], ["cursor", "abc"]]),
        json!({"authorization": "[redacted]", "x-api-version": "2024-06-01"}),
        200,
        json!({"data": []}),
    )]})))
    .await
    .unwrap();
    let base = server.base_url();
    let headers = [("authorization", "Bearer any-token-will-do"), ("x-api-version", "2024-06-01")];
    let reordered = format!("{base}/v1/items?tag=b&cursor=abc&limit=2&tag=a");
    assert_eq!(send(reordered.clone(), &headers).await.0, 200);
    assert!(server.unmatched().is_empty());

    // Each of these misses one thing.
    assert_eq!(send(reordered.clone(), &headers[1..]).await.0, UNMATCHED_STATUS);
    assert_eq!(send(reordered.clone(), &headers[..1]).await.0, UNMATCHED_STATUS);
    assert_eq!(send(format!("{base}/v1/items?tag=b&cursor=abc&limit=2"), &headers).await.0, UNMATCHED_STATUS);
    let u = server.unmatched();
    assert_eq!(u.len(), 3);
    assert_eq!(u[0].differences, vec!["header `authorization` missing (recorded [redacted])"]);
    assert_eq!(u[1].differences, vec![r#"header `x-api-version` missing (recorded "2024-06-01")"#]);
    assert_eq!(u[2].differences, vec![r#"query `tag` missing (recorded "a")"#]);
}

#[tokio::test]
async fn an_unmatched_request_is_answered_with_the_closest_exchange_and_recorded() {
    let server = FixtureServer::start(fixture(json!({"exchanges": [
        get("/v1/users", json!([]), json!({}), 200, json!([])),
        get("/v1/items", json!([["limit", "2"], ["cursor", "abc"]]), json!({"x-api-version": "2024-06-01"}), 200, json!({})),
    ]})))
    .await
    .unwrap();
    let url = format!("{}/v1/items?limit=2&cursor=xyz&extra=1", server.base_url());
    let (status, _, body) =
        send(url, &[("x-api-version", "2023-01-01"), ("authorization", "Bearer live-secret-token")]).await;
    assert_eq!(status, UNMATCHED_STATUS);
    assert!(!body.contains("live-secret-token"), "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "no recorded exchange matches this request");
    assert_eq!(body["request"]["path"], "/v1/items");
    assert_eq!(body["request"]["headers"]["authorization"], "[redacted]");
    assert_eq!(body["closest"]["exchange"], 1);
    let want = [
        r#"query `cursor`: recorded "abc", got "xyz""#,
        r#"query `extra` not recorded (got "1")"#,
        r#"header `x-api-version`: recorded "2024-06-01", got "2023-01-01""#,
    ];
    assert_eq!(body["closest"]["differences"], json!(want));

    let u = server.unmatched();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].closest, Some(1));
    assert_eq!(u[0].differences, want);
    let shown = u[0].to_string();
    assert!(
        shown.starts_with("GET /v1/items?limit=2&cursor=xyz&extra=1: closest recorded exchange #1 differs: "),
        "{shown}"
    );
    assert_eq!(server.unused(), vec![0, 1]);
}

#[tokio::test]
async fn an_unmatched_request_fails_the_client_at_once_without_retries() {
    let server = FixtureServer::start(Fixture::default()).await.unwrap();
    let client = HttpClient::builder("testkit")
        .base_url(&server.base_url())
        .auth(Arc::new(StaticBearer::new(Secret::new("tok-0123456789"))))
        .build()
        .unwrap();
    let e = client.send(Request::get("/anything")).await.unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::Permanent, "{e}");
    let u = server.unmatched();
    assert_eq!(u.len(), 1, "one attempt, no retry");
    assert_eq!(u[0].closest, None);
    assert_eq!(u[0].to_string(), "GET /anything: the fixture has no exchanges");
}

#[tokio::test]
async fn request_bodies_match_as_json_or_form_with_redacted_wildcards() {
    let server = FixtureServer::start(fixture(json!({"exchanges": [
        {
            "request": {"method": "POST", "path": "/v1/items", "body": {"name": "a", "api_key": "[redacted]"}},
            "response": {"status": 201, "body": {"id": "obj_1"}},
        },
        {
            "request": {
                "method": "POST", "path": "/oauth/token",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
                "body_text": "grant_type=client_credentials&client_secret=[redacted]",
            },
            "response": {"status": 200, "body": {"access_token": "[redacted]"}},
        },
    ]})))
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str| http.post(format!("{}{path}", server.base_url()));
    let ok = post("/v1/items").json(&json!({"api_key": "k-live-1", "name": "a"})).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 201);
    let bad = post("/v1/items").json(&json!({"api_key": "k-live-1", "name": "b"})).send().await.unwrap();
    assert_eq!(bad.status().as_u16(), UNMATCHED_STATUS);
    let form = [("client_secret", "live-secret"), ("grant_type", "client_credentials")];
    let token = post("/oauth/token").form(&form).send().await.unwrap();
    assert_eq!(token.status().as_u16(), 200);
    let u = server.unmatched();
    assert_eq!(u.len(), 1);
    assert_eq!(
        u[0].differences,
        vec![r#"body: recorded {"api_key":"[redacted]","name":"a"}, got {"api_key":"[redacted]","name":"b"}"#]
    );
}

#[tokio::test]
async fn setup_exchanges_answer_what_the_fixture_does_not_and_are_not_counted() {
    let main = fixture(json!({"exchanges": [
        get("/props", json!([]), json!({}), 401, json!({"category": "INVALID_AUTHENTICATION"})),
        get("/items", json!([]), json!({}), 200, json!({"n": 1})),
    ]}));
    let setup = fixture(json!({"exchanges": [
        get("/props", json!([]), json!({}), 200, json!({"results": []})),
        get("/account", json!([]), json!({}), 200, json!({"timeZone": "US/Eastern"})),
    ]}));
    let server = FixtureServer::start_with_setup(main, setup).await.unwrap();
    let url = |p: &str| format!("{}{p}", server.base_url());
    assert_eq!(send(url("/props"), &[]).await.0, 401, "the fixture's own exchange answers first");
    assert_eq!(send(url("/props"), &[]).await.0, 401, "and, served, it repeats");
    for _ in 0..3 {
        assert_eq!(send(url("/account"), &[]).await.2, r#"{"timeZone":"US/Eastern"}"#);
    }
    assert_eq!(send(url("/nothing"), &[]).await.0, UNMATCHED_STATUS);
    assert_eq!(server.served(), vec![2, 0]);
    assert_eq!(server.unused(), vec![1], "setup exchanges are not counted");
    assert_eq!(server.unmatched().len(), 1);
}
