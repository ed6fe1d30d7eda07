//! A whole run's log output — dovetail's events and those of reqwest/hyper/rustls (through
//! the `log` bridge), at TRACE, as text and as JSON — with an OAuth2 refresh-token provider
//! that rotates its refresh token, an API key in the query and a URL carrying secret query
//! values. No secret value may appear in the logs or in any error's `report()`.
//!
//! Its own test binary: it installs a global subscriber, so every thread's events are seen.

mod common;

use std::sync::Arc;

use common::{Capture, MemoryTokenStore, builder};
use dovetail_http::auth::AuthConfig;
use dovetail_http::{FakeClock, Request};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CLIENT_SECRET: &str = "cs-SECRET-a1a1";
const RT_OLD: &str = "rt-SECRET-old-b2b2";
const RT_NEW: &str = "rt-SECRET-new-c3c3";
const RT_REVOKED: &str = "rt-SECRET-revoked-d4d4";
const AT_1: &str = "at-SECRET-e5e5";
const AT_2: &str = "at-SECRET-f6f6";
const API_KEY: &str = "ak-SECRET-g7g7";
const Q_TOKEN: &str = "qt-SECRET-h8h8";
const Q_SIG: &str = "sig-SECRET-i9i9";
const ALL: &[&str] = &[CLIENT_SECRET, RT_OLD, RT_NEW, RT_REVOKED, AT_1, AT_2, API_KEY, Q_TOKEN, Q_SIG];

fn token(access: &str, refresh: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"access_token": access, "expires_in": 3600, "refresh_token": refresh}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_log_line_or_error() {
    let (text, js) = (Capture::default(), Capture::default());
    let (tw, jw) = (text.clone(), js.clone());
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || tw.clone()))
        .with(tracing_subscriber::fmt::layer().json().with_span_list(true).with_writer(move || jw.clone()))
        .try_init()
        .expect("the only subscriber of this test binary (also bridges `log` records)");

    let server = MockServer::start().await;
    // Token endpoint: the configured refresh token is rotated, the rotated one is rotated
    // again (to itself), a third one is revoked with a description quoting it.
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains(format!("refresh_token={RT_OLD}")))
        .respond_with(token(AT_1, RT_NEW))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains(format!("refresh_token={RT_NEW}")))
        .respond_with(token(AT_2, RT_NEW))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_grant", "error_description": format!("token {RT_REVOKED} was revoked")}),
        ))
        .mount(&server)
        .await;
    // API: the first access token is refused (401 → refresh → retry), the URL with secret
    // query values fails twice (503 echoing them) then succeeds; /fail reflects the request's
    // credentials (Authorization header and query string) in a 400 body.
    let echo = format!("bad: {AT_1} {Q_TOKEN} {Q_SIG}");
    Mock::given(path("/me"))
        .and(header("authorization", format!("Bearer {AT_1}").as_str()))
        .respond_with(ResponseTemplate::new(401).set_body_string(echo.clone()))
        .mount(&server)
        .await;
    Mock::given(path("/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": 1})))
        .mount(&server)
        .await;
    Mock::given(path("/signed"))
        .and(query_param("signature", Q_SIG))
        .respond_with(ResponseTemplate::new(503).set_body_string(echo.clone()))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(path("/signed")).respond_with(ResponseTemplate::new(200).set_body_string("{}")).mount(&server).await;
    let reflect = |r: &wiremock::Request| {
        let auth = r.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        ResponseTemplate::new(400).set_body_string(format!("bad: {auth} {}", r.url.query().unwrap_or("")))
    };
    Mock::given(path("/fail")).respond_with(reflect).mount(&server).await;

    let clock = FakeClock::new();
    let signed = || Request::get("/signed").query("access_token", Q_TOKEN).query("signature", Q_SIG).query("page", "2");
    let mut errors = Vec::new();

    // 1. OAuth2 refresh-token grant, client_secret_post so the secret is in the form body.
    let cfg: AuthConfig = serde_json::from_value(json!({
        "type": "oauth2_refresh_token", "token_url": format!("{}/token", server.uri()),
        "client_id": "client-1", "client_secret": CLIENT_SECRET, "refresh_token": RT_OLD,
        "client_auth": "client_secret_post"
    }))
    .unwrap();
    let auth = cfg.build_with(Some(Arc::new(MemoryTokenStore::default())), None, Some(clock.clone())).unwrap();
    let client = builder(&server.uri(), &clock).auth(auth).build().unwrap();
    tracing::info!(?cfg, ?client, "configured");
    client.send(Request::get("/me")).await.unwrap();
    client.send(signed()).await.unwrap();
    errors.push(client.send(Request::get("/fail").query("access_token", Q_TOKEN)).await.unwrap_err());

    // 2. An API key in the query.
    let cfg: AuthConfig =
        serde_json::from_value(json!({"type": "api_key", "key": API_KEY, "in": {"query": "api_key"}})).unwrap();
    let client = builder(&server.uri(), &clock).auth(cfg.build(None).unwrap()).build().unwrap();
    tracing::info!(?cfg, ?client, "configured");
    client.send(Request::get("/me")).await.unwrap();
    client.send(signed()).await.unwrap();
    errors.push(client.send(Request::get("/fail").query("signature", Q_SIG)).await.unwrap_err());

    // 3. A revoked refresh token: the vendor's description quotes it.
    let cfg: AuthConfig = serde_json::from_value(json!({
        "type": "oauth2_refresh_token", "token_url": format!("{}/token", server.uri()),
        "client_id": "client-1", "client_secret": CLIENT_SECRET, "refresh_token": RT_REVOKED
    }))
    .unwrap();
    let client = builder(&server.uri(), &clock).auth(cfg.build(None).unwrap()).build().unwrap();
    errors.push(client.send(Request::get("/me")).await.unwrap_err());
    for e in &errors {
        tracing::error!(error = %e.report(), ?e, "request failed");
    }

    let (text, js) = (text.text(), js.text());
    assert!(text.contains("reqwest::connect"), "reqwest's own records are captured too:\n{text}");
    assert!(text.contains("requesting an OAuth2 token") && text.contains("saved a rotated OAuth2 refresh token"));
    assert!(text.contains("access_token=[redacted]") && text.contains("signature=[redacted]"), "{text}");
    assert!(text.contains("page=2"), "{text}");
    let sent = server.received_requests().await.unwrap();
    assert!(sent.iter().any(|r| r.url.query().is_some_and(|q| q.contains(API_KEY))), "the key was really sent");
    assert!(text.contains("invalid_grant") && js.contains("invalid_grant"), "{text}");
    assert!(js.lines().count() > 10 && js.lines().all(|l| l.starts_with('{')), "{js}");
    for s in ALL {
        assert!(!text.contains(s), "`{s}` leaked into the text logs:\n{text}");
        assert!(!js.contains(s), "`{s}` leaked into the JSON logs:\n{js}");
        for e in &errors {
            assert!(!e.report().contains(s), "`{s}` leaked into an error: {}", e.report());
        }
    }
    assert!(errors[0].report().contains("bad: [redacted] access_token=[redacted]"), "{}", errors[0].report());
    assert!(errors[1].report().contains("signature=[redacted]&api_key=[redacted]"), "{}", errors[1].report());
    assert!(errors[2].report().contains("token [redacted] was revoked"), "{}", errors[2].report());
}
