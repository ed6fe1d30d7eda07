//! A rotated OAuth2 refresh token survives a restart through the real `FileTokenStore`: the
//! file is owner-only, a new provider + store on the same file sends the rotated token (not
//! the configured one), and with a key the file holds no token in clear text.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use dovetail_core::remote::TokenStore;
use dovetail_core::{ErrorKind, Secret};
use dovetail_http::auth::{OAuth2RefreshToken, OAuth2Settings};
use dovetail_http::{HttpClient, Request};
use dovetail_state::{FileTokenStore, SecretKey};
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONFIGURED: &str = "rt-configured-7c1f0a";
const ROTATED: &str = "rt-rotated-93be44";
/// 32 bytes as hex, the form `DOVETAIL_SECRET_KEY` takes.
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A token endpoint that rotates `CONFIGURED` once (exactly one such request allowed) and
/// answers `ROTATED` with a second access token; an API that accepts either access token.
async fn vendor() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains(format!("refresh_token={CONFIGURED}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "at-first-run", "expires_in": 3600, "refresh_token": ROTATED})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains(format!("refresh_token={ROTATED}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "at-second-run", "expires_in": 3600})),
        )
        .expect(1)
        .mount(&server)
        .await;
    for at in ["at-first-run", "at-second-run"] {
        Mock::given(path("/me"))
            .and(header("authorization", format!("Bearer {at}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"run": at})))
            .mount(&server)
            .await;
    }
    server
}

/// One "process": open the store, build the provider and client, make one API call.
async fn run(server: &MockServer, file: &Path, key: Option<&str>) -> String {
    let key = key.map(|k| SecretKey::parse(k).unwrap());
    let store: Arc<dyn TokenStore> = Arc::new(FileTokenStore::open(file, key).unwrap());
    let settings = OAuth2Settings::new(format!("{}/token", server.uri()), "client-1", Some(Secret::new("cs-1")));
    let auth = OAuth2RefreshToken::new(settings, Secret::new(CONFIGURED), Some(store)).unwrap();
    let client = HttpClient::builder("e2e").base_url(&server.uri()).auth(Arc::new(auth)).build().unwrap();
    let me: serde_json::Value = client.send_json(Request::get("/me")).await.unwrap();
    me["run"].as_str().unwrap().to_owned()
}

fn mode(file: &Path) -> u32 {
    std::fs::metadata(file).unwrap().permissions().mode() & 0o777
}

async fn token_bodies(server: &MockServer) -> Vec<String> {
    let reqs = server.received_requests().await.unwrap();
    reqs.iter().filter(|r| r.url.path() == "/token").map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect()
}

#[tokio::test]
async fn a_rotated_refresh_token_survives_a_restart_in_an_owner_only_file() {
    let server = vendor().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");

    assert_eq!(run(&server, &file, None).await, "at-first-run");
    assert_eq!(mode(&file), 0o600, "the token file is readable only by its owner");
    // Without a key the token is stored plainly (owner-only): that is what the key is for.
    assert!(std::fs::read_to_string(&file).unwrap().contains(ROTATED));

    // Restart: a brand-new store and provider on the same file, configured as before.
    assert_eq!(run(&server, &file, None).await, "at-second-run");
    let bodies = token_bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    assert!(bodies[1].contains(&format!("refresh_token={ROTATED}")), "{}", bodies[1]);
    assert!(!bodies[1].contains(CONFIGURED), "the configured (now void) token was sent again: {}", bodies[1]);
    assert_eq!(mode(&file), 0o600);
    server.verify().await;
}

#[tokio::test]
async fn with_a_key_the_file_holds_no_token_in_clear_text() {
    let server = vendor().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");

    assert_eq!(run(&server, &file, Some(KEY_HEX)).await, "at-first-run");
    assert_eq!(mode(&file), 0o600);
    let raw = std::fs::read(&file).unwrap();
    let text = String::from_utf8_lossy(&raw);
    for needle in [ROTATED, CONFIGURED, "rt-", "at-first-run"] {
        assert!(!text.contains(needle), "`{needle}` in clear text in the sealed token file:\n{text}");
    }
    assert!(text.contains("xchacha20poly1305"), "{text}");

    // Without the key the sealed file is refused (not silently replaced by the config).
    let err = FileTokenStore::open(&file, None).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(err.report().contains("DOVETAIL_SECRET_KEY"), "{}", err.report());

    // Restart with the key: the rotated token is found and sent.
    assert_eq!(run(&server, &file, Some(KEY_HEX)).await, "at-second-run");
    assert!(token_bodies(&server).await[1].contains(&format!("refresh_token={ROTATED}")));
    server.verify().await;
}
