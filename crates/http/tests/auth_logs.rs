//! Every log line of OAuth2 flows (token fetch, rotation, 401, refresh failure) and of the
//! static providers is captured at TRACE level; no secret value may appear in it.

mod common;

use std::sync::Arc;

use common::{Capture, MemoryTokenStore};
use dovetail_http::auth::AuthConfig;
use serde_json::json;
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRETS: &[&str] =
    &["client-secret-AAA", "refresh-token-BBB", "refresh-token-CCC", "access-token-DDD", "api-key-EEE", "pw-FFF"];

#[tokio::test(flavor = "current_thread")]
async fn no_secret_appears_in_any_log_line() {
    let (capture, _guard) = Capture::trace_on_this_thread();

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("refresh_token=refresh-token-BBB"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "access-token-DDD", "expires_in": 3600, "refresh_token": "refresh-token-CCC"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&server)
        .await;

    let cfg: AuthConfig = serde_json::from_value(json!({
        "type": "oauth2_refresh_token", "token_url": format!("{}/token", server.uri()),
        "client_id": "client-1", "client_secret": "client-secret-AAA", "refresh_token": "refresh-token-BBB"
    }))
    .unwrap();
    let auth = cfg.build(Some(Arc::new(MemoryTokenStore::default()))).unwrap();
    let mut req = reqwest::Request::new(reqwest::Method::GET, "https://api.example.com/".parse().unwrap());
    auth.apply(&mut req).await.unwrap();
    tracing::info!(?auth, ?req, "applied");
    assert!(auth.on_unauthorized(req.headers()).await.unwrap());
    let err = auth.apply(&mut req).await.unwrap_err();
    tracing::error!(error = %err.report(), ?err, "refresh failed");
    tracing::info!(?cfg, "config");

    for cfg in [
        json!({"type": "api_key", "key": "api-key-EEE", "in": {"query": "api_key"}}),
        json!({"type": "basic", "username": "u", "password": "pw-FFF"}),
    ] {
        let cfg: AuthConfig = serde_json::from_value(cfg).unwrap();
        let auth = cfg.build(None).unwrap();
        let mut req = reqwest::Request::new(reqwest::Method::GET, "https://api.example.com/".parse().unwrap());
        auth.apply(&mut req).await.unwrap();
        tracing::info!(?auth, ?cfg, headers = ?req.headers(), "static provider applied");
    }

    let logs = capture.text();
    assert!(logs.contains("requesting an OAuth2 token"), "the flow was not logged:\n{logs}");
    assert!(logs.contains("saved a rotated OAuth2 refresh token"), "{logs}");
    for s in SECRETS {
        assert!(!logs.contains(s), "secret `{s}` leaked into the logs:\n{logs}");
    }
}
