//! Bearer, API key and OAuth2 (client credentials, rotating refresh tokens, revocation, expiry).

mod common;

use std::time::Duration;

use common::{client, header, start_with};
use dovetail_fake_vendor::{AuthMode, VendorConfig};
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
