//! Static providers (bearer, API key, basic) and `AuthConfig`.

use dovetail_core::Secret;
use dovetail_http::auth::{ApiKey, Auth, AuthConfig, Basic, StaticBearer};
use serde_json::json;

fn request(url: &str) -> reqwest::Request {
    reqwest::Request::new(reqwest::Method::GET, url.parse().unwrap())
}

fn header(req: &reqwest::Request, name: &str) -> String {
    req.headers()[name].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn bearer_sets_a_sensitive_authorization_header() {
    let auth = StaticBearer::new(Secret::new("tok-123"));
    let mut req = request("https://api.example.com/x");
    auth.apply(&mut req).await.unwrap();
    assert_eq!(header(&req, "authorization"), "Bearer tok-123");
    assert!(req.headers()["authorization"].is_sensitive());
    assert!(!auth.on_unauthorized(&reqwest::header::HeaderMap::new()).await.unwrap());
    assert!(!format!("{auth:?}").contains("tok-123"));
}

#[tokio::test]
async fn basic_header_is_base64_of_user_colon_password() {
    let auth = Basic::new("Aladdin", Secret::new("open sesame"));
    let mut req = request("https://api.example.com/x");
    auth.apply(&mut req).await.unwrap();
    // RFC 7617's example.
    assert_eq!(header(&req, "authorization"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    assert!(req.headers()["authorization"].is_sensitive());
    assert!(!auth.on_unauthorized(&reqwest::header::HeaderMap::new()).await.unwrap());
}

#[tokio::test]
async fn api_key_in_a_header_with_prefix() {
    let auth = ApiKey::header("X-Api-Key", Secret::new("k-1"), Some("Token ".into())).unwrap();
    let mut req = request("https://api.example.com/x");
    auth.apply(&mut req).await.unwrap();
    assert_eq!(header(&req, "x-api-key"), "Token k-1");
    assert!(auth.secret_query_params().is_empty());
    assert!(ApiKey::header("bad header", Secret::new("k"), None).is_err());
}

#[tokio::test]
async fn api_key_in_the_query_is_reported_for_redaction_and_not_duplicated() {
    let auth = ApiKey::query("api_key", Secret::new("k-2"));
    let mut req = request("https://api.example.com/x?page=2&api_key=old");
    auth.apply(&mut req).await.unwrap();
    auth.apply(&mut req).await.unwrap();
    assert_eq!(req.url().query(), Some("page=2&api_key=k-2"));
    assert_eq!(auth.secret_query_params(), vec!["api_key".to_owned()]);
}

#[test]
fn credential_ids_are_short_stable_hashes_without_the_secret() {
    let a = ApiKey::query("api_key", Secret::new("secret-value-1"));
    let b = ApiKey::query("api_key", Secret::new("secret-value-2"));
    assert_eq!(a.credential_id(), ApiKey::query("k", Secret::new("secret-value-1")).credential_id());
    assert_ne!(a.credential_id(), b.credential_id());
    assert_eq!(a.credential_id().len(), 16);
    assert!(a.credential_id().chars().all(|c| c.is_ascii_hexdigit()));
    assert!(!a.credential_id().contains("secret"));
}

#[tokio::test]
async fn config_builds_each_provider() {
    let cases = [
        (json!({"type": "bearer", "token": "t"}), "authorization", "Bearer t"),
        (json!({"type": "basic", "username": "u", "password": "p"}), "authorization", "Basic dTpw"),
        (json!({"type": "api_key", "key": "k", "in": {"header": "X-Key"}}), "x-key", "k"),
    ];
    for (cfg, name, value) in cases {
        let cfg: AuthConfig = serde_json::from_value(cfg).unwrap();
        let auth = cfg.build(None).unwrap();
        let mut req = request("https://api.example.com/");
        auth.apply(&mut req).await.unwrap();
        assert_eq!(header(&req, name), value);
    }
    let q: AuthConfig = serde_json::from_value(json!({"type": "api_key", "key": "k", "in": {"query": "key"}})).unwrap();
    assert_eq!(q.build(None).unwrap().secret_query_params(), vec!["key".to_owned()]);
    let oauth: AuthConfig = serde_json::from_value(json!({
        "type": "oauth2_refresh_token", "token_url": "https://id.example.com/token",
        "client_id": "c", "refresh_token": "r", "client_auth": "client_secret_post", "scopes": ["a", "b"]
    }))
    .unwrap();
    let built = oauth.build(None).unwrap();
    assert!(!format!("{built:?} {oauth:?}").contains("\"r\""));
}

#[test]
fn config_rejects_unknown_fields_and_bad_combinations() {
    let err = serde_json::from_value::<AuthConfig>(json!({"type": "bearer", "token": "t", "tokn": "x"})).unwrap_err();
    assert!(err.to_string().contains("tokn"), "{err}");
    let err = serde_json::from_value::<AuthConfig>(json!({"type": "oauth2_client_credentials",
        "token_url": "https://x/token", "client_id": "c", "client_secret": "s", "scope": "a"}))
    .unwrap_err();
    assert!(err.to_string().contains("scope"), "{err}");
    let cfg: AuthConfig =
        serde_json::from_value(json!({"type": "api_key", "key": "k", "in": {"query": "key"}, "prefix": "T "})).unwrap();
    assert!(cfg.build(None).is_err());
    // A token URL that is not http(s) is refused while the config is read.
    for bad in ["not a url", "ftp://x/token"] {
        let err = serde_json::from_value::<AuthConfig>(json!({"type": "oauth2_client_credentials",
            "token_url": bad, "client_id": "c", "client_secret": "s"}))
        .unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}

#[test]
fn config_schema_documents_every_variant() {
    let schema = serde_json::to_string(&schemars::schema_for!(AuthConfig)).unwrap();
    for name in
        ["bearer", "api_key", "basic", "oauth2_client_credentials", "oauth2_refresh_token", "client_secret_post"]
    {
        assert!(schema.contains(name), "{name} missing from the schema");
    }
    assert!(schema.contains("Refresh this many seconds before the token expires"));
}
