//! Bearer, API key (header or query), HTTP Basic and OAuth2 (client credentials, rotating refresh tokens, revocation, expiry).

mod common;

use std::time::Duration;

use common::{client, header, start_with};
use dovetail_fake_vendor::{AuthMode, RateLimit, VendorConfig};
use serde_json::Value;

fn oauth(lifetime: f64, rotate: bool) -> VendorConfig {
    VendorConfig {
        records: 10,
        auth: AuthMode::OAuth2 {
            client_id: "cid".into(),
            client_secret: "shh".into(),
            refresh_token: Some("rt0".into()),
            token_lifetime_secs: lifetime,
            rotate_refresh_tokens: rotate,
        },
        ..VendorConfig::default()
    }
}

async fn token(c: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = c.post(format!("{base}/oauth/token")).form(form).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn items_status(c: &reqwest::Client, base: &str, bearer: &str) -> (u16, Value, Option<String>) {
    let resp = c.get(format!("{base}/v1/items?limit=1")).bearer_auth(bearer).send().await.unwrap();
    let www = header(resp.headers(), "www-authenticate").map(str::to_owned);
    (resp.status().as_u16(), resp.json().await.unwrap(), www)
}

#[tokio::test]
async fn static_bearer_and_api_key() {
    let c = client();
    let vendor =
        start_with(VendorConfig { auth: AuthMode::Bearer { token: "t0k".into() }, ..Default::default() }).await;
    let base = vendor.base_url();
    assert_eq!(items_status(&c, &base, "t0k").await.0, 200);
    let (status, body, www) = items_status(&c, &base, "nope").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));
    assert_eq!(www.as_deref(), Some("Bearer error=\"invalid_token\""));
    assert_eq!(c.get(format!("{base}/v1/items")).send().await.unwrap().status().as_u16(), 401);

    let key = AuthMode::ApiKey { header: "X-Api-Key".into(), value: "k1".into() };
    let vendor = start_with(VendorConfig { auth: key, ..Default::default() }).await;
    let url = format!("{}/v1/items/1", vendor.base_url());
    assert_eq!(c.get(&url).header("x-api-key", "k1").send().await.unwrap().status().as_u16(), 200);
    assert_eq!(c.get(&url).header("x-api-key", "k2").send().await.unwrap().status().as_u16(), 401);
    assert_eq!(vendor.stats().unauthorized, 1);
}

#[tokio::test]
async fn client_credentials_in_the_form_or_basic() {
    let c = client();
    let vendor = start_with(oauth(3600.0, false)).await;
    let base = vendor.base_url();
    let (status, body) =
        token(&c, &base, &[("grant_type", "client_credentials"), ("client_id", "cid"), ("client_secret", "shh")]).await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body.get("refresh_token").is_none());
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(items_status(&c, &base, access).await.0, 200);

    let resp = c
        .post(format!("{base}/oauth/token"))
        .basic_auth("cid", Some("shh"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(resp.headers(), "cache-control"), Some("no-store"));

    let (status, body) =
        token(&c, &base, &[("grant_type", "client_credentials"), ("client_id", "cid"), ("client_secret", "bad")]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    let (status, body) =
        token(&c, &base, &[("grant_type", "password"), ("client_id", "cid"), ("client_secret", "shh")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));
    assert_eq!(items_status(&c, &base, "made-up").await.0, 401);
    let stats = vendor.stats();
    assert_eq!(stats.token_grants["client_credentials"], 2);
    assert_eq!(stats.by_path["/oauth/token"], 4);
    assert_eq!(stats.unauthorized, 2);
}

#[tokio::test]
async fn every_nth_token_request_is_answered_503_without_using_up_the_refresh_token() {
    let c = client();
    let mut config = oauth(3600.0, true);
    config.faults.token_error_503_every = 2;
    let vendor = start_with(config).await;
    let base = vendor.base_url();
    let form = |rt: &str| {
        [("client_id", "cid"), ("client_secret", "shh"), ("grant_type", "refresh_token"), ("refresh_token", rt)]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
    };
    let mut rt = "rt0".to_owned();
    let mut statuses = vec![];
    for _ in 0..5 {
        let resp = c.post(format!("{base}/oauth/token")).form(&form(&rt)).send().await.unwrap();
        statuses.push(resp.status().as_u16());
        let body: Value = resp.json().await.unwrap();
        if let Some(next) = body["refresh_token"].as_str() {
            rt = next.to_owned();
        } else {
            assert_eq!(body["error"], "unavailable", "{body}");
        }
    }
    assert_eq!(statuses, [200, 503, 200, 503, 200], "the 2nd and 4th fail; the token they carried still works");
    let stats = vendor.stats();
    assert_eq!((stats.token_grants.get("refresh_token"), stats.invalid_grants), (Some(&3), 0));
    assert_eq!(stats.by_status.get(&503), Some(&2));
}

#[tokio::test]
async fn refresh_tokens_rotate_and_die_on_revocation() {
    let c = client();
    let vendor = start_with(oauth(3600.0, true)).await;
    let base = vendor.base_url();
    let creds = [("client_id", "cid"), ("client_secret", "shh"), ("grant_type", "refresh_token")];
    let refresh = |rt: &str| {
        let mut form = creds.to_vec();
        form.push(("refresh_token", rt));
        form.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>()
    };
    let resp = c.post(format!("{base}/oauth/token")).form(&refresh("rt0")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    let rt1 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, "rt0");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(items_status(&c, &base, &access).await.0, 200);

    let body: Value =
        c.post(format!("{base}/oauth/token")).form(&refresh("rt0")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "refresh token already used");
    let body: Value =
        c.post(format!("{base}/oauth/token")).form(&refresh("never")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["error_description"], "unknown refresh token");

    let resp = c.post(format!("{base}/oauth/token")).form(&refresh(&rt1)).send().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    let rt2 = body["refresh_token"].as_str().unwrap().to_owned();

    vendor.revoke_refresh_tokens();
    let resp = c.post(format!("{base}/oauth/token")).form(&refresh(&rt2)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "refresh token revoked");
    assert_eq!(items_status(&c, &base, &access).await.0, 401, "revocation kills access tokens too");

    let stats = vendor.stats();
    assert_eq!(stats.token_grants["refresh_token"], 2);
    assert_eq!(stats.invalid_grants, 3);
    assert_eq!(stats.reused_refresh_tokens, 1, "only the second use of rt0; unknown and revoked are not reuse");
}

#[tokio::test]
async fn refresh_without_rotation_keeps_the_token_valid() {
    let c = client();
    let vendor = start_with(oauth(3600.0, false)).await;
    for _ in 0..2 {
        let form =
            [("client_id", "cid"), ("client_secret", "shh"), ("grant_type", "refresh_token"), ("refresh_token", "rt0")];
        let (status, body) = token(&c, &vendor.base_url(), &form).await;
        assert_eq!(status, 200);
        assert!(body.get("refresh_token").is_none());
    }
}

#[tokio::test]
async fn access_tokens_expire_in_real_time() {
    let c = client();
    let vendor = start_with(oauth(1.0, false)).await;
    let base = vendor.base_url();
    let (_, body) =
        token(&c, &base, &[("grant_type", "client_credentials"), ("client_id", "cid"), ("client_secret", "shh")]).await;
    assert_eq!(body["expires_in"], 1);
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(items_status(&c, &base, access).await.0, 200);
    // Real time is the feature here.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body, www) = items_status(&c, &base, access).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("token expired")));
    assert!(www.is_some());
}

/// A config with this auth, 5 records, and a bucket of 2 that does not refill within a test.
fn with_auth(auth: AuthMode) -> VendorConfig {
    let rate_limit = Some(RateLimit { per_second: 0.001, burst: 2 });
    VendorConfig { records: 5, auth, rate_limit, ..VendorConfig::default() }
}

async fn status_and_message(req: reqwest::RequestBuilder) -> (u16, Option<String>) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (status, body["message"].as_str().filter(|_| status == 401).map(str::to_owned))
}

#[tokio::test]
async fn api_key_in_a_query_parameter() {
    let c = client();
    let key = "k/1+2 3";
    let vendor = start_with(with_auth(AuthMode::ApiKeyQuery { param: "api_key".into(), value: key.into() })).await;
    let url = format!("{}/v1/items/link", vendor.base_url());
    let (status, _) = status_and_message(c.get(&url).query(&[("per_page", "2"), ("api_key", key)])).await;
    assert_eq!(status, 200, "the key is compared percent-decoded");
    let denied = [
        (c.get(&url), "missing API key"),
        (c.get(&url).header("api_key", key), "missing API key"),
        (c.get(&url).query(&[("apikey", key)]), "missing API key"),
        (c.get(&url).query(&[("api_key", "k/1+2")]), "invalid API key"),
    ];
    for (req, why) in denied {
        assert_eq!(status_and_message(req).await, (401, Some(why.to_owned())));
    }
    let resp = c.get(&url).query(&[("api_key", key)]).send().await.unwrap();
    assert_eq!(header(resp.headers(), "x-ratelimit-remaining"), Some("0"), "one bucket for the key");
    let resp = c.get(&url).query(&[("api_key", key)]).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(vendor.stats().unauthorized, 4);
}

#[tokio::test]
async fn http_basic() {
    let c = client();
    let vendor = start_with(with_auth(AuthMode::Basic { username: "ann".into(), password: "p:ss%20".into() })).await;
    let url = format!("{}/v1/items/1", vendor.base_url());
    assert_eq!(status_and_message(c.get(&url).basic_auth("ann", Some("p:ss%20"))).await, (200, None));
    let denied = [
        (c.get(&url), "missing basic credentials"),
        (c.get(&url).bearer_auth("p:ss%20"), "missing basic credentials"),
        (c.get(&url).header("authorization", "Basic !!!"), "missing basic credentials"),
        (c.get(&url).basic_auth("ann", Some("p:ss ")), "invalid basic credentials"),
        (c.get(&url).basic_auth("bob", Some("p:ss%20")), "invalid basic credentials"),
    ];
    for (req, why) in denied {
        assert_eq!(status_and_message(req).await, (401, Some(why.to_owned())));
    }
    let resp = c.get(&url).basic_auth("ann", Some("p:ss%20")).send().await.unwrap();
    assert_eq!(header(resp.headers(), "x-ratelimit-remaining"), Some("0"));
    assert_eq!(vendor.stats().unauthorized, 5);
}

#[test]
fn the_new_auth_modes_load_from_toml_and_json() {
    let toml = "auth = { type = \"api_key_query\", param = \"api_key\", value = \"k\" }\n";
    let expected = AuthMode::ApiKeyQuery { param: "api_key".into(), value: "k".into() };
    assert_eq!(VendorConfig::parse(toml).unwrap().auth, expected);
    let json = r#"{"auth": {"type": "basic", "username": "u", "password": "p"}}"#;
    let expected = AuthMode::Basic { username: "u".into(), password: "p".into() };
    assert_eq!(VendorConfig::parse(json).unwrap().auth, expected);
    assert!(VendorConfig::parse("auth = { type = \"basic\", username = \"u\" }\n").is_err());
}

async fn refresh_with(c: &reqwest::Client, base: &str, rt: &str) -> Value {
    let form = [("client_id", "cid"), ("client_secret", "shh"), ("grant_type", "refresh_token"), ("refresh_token", rt)];
    token(c, base, &form).await.1
}

#[tokio::test]
async fn reused_refresh_tokens_are_counted_apart_from_other_invalid_grants() {
    let c = client();
    let vendor = start_with(oauth(3600.0, true)).await;
    let base = vendor.base_url();
    let rt1 = refresh_with(&c, &base, "rt0").await["refresh_token"].as_str().unwrap().to_owned();
    for (rt, why) in
        [("rt0", "refresh token already used"), ("rt0", "refresh token already used"), ("x", "unknown refresh token")]
    {
        assert_eq!(refresh_with(&c, &base, rt).await["error_description"], why);
    }
    vendor.revoke_refresh_tokens();
    assert_eq!(refresh_with(&c, &base, &rt1).await["error_description"], "refresh token revoked");
    let stats = vendor.stats();
    assert_eq!((stats.reused_refresh_tokens, stats.invalid_grants), (2, 4));
}
