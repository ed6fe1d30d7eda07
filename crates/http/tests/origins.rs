//! The credential-origin rule over loopback HTTP: requests, next-page links, stored
//! positions and redirects that point at another origin are refused before anything is
//! sent there; one token provider and one rate budget per credential per process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Capture, MemoryTokenStore, builder};
use dovetail_core::{ErrorKind, Secret};
use dovetail_http::auth::{ApiKey, Auth, AuthConfig, Basic, StaticBearer};
use dovetail_http::paginate::{PageState, PageStyle};
use dovetail_http::{FakeClock, HttpConfig, RateBudget, Request};
use serde_json::json;
use wiremock::matchers::{body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn bearer() -> Arc<dyn Auth> {
    Arc::new(StaticBearer::new(Secret::new("tok-secret")))
}

/// The four ways a static credential travels, each with the text a leak would show.
fn static_credentials() -> Vec<(&'static str, Arc<dyn Auth>)> {
    vec![
        ("bearer", bearer()),
        ("header API key", Arc::new(ApiKey::header("X-Api-Key", Secret::new("key-secret"), None).unwrap())),
        ("query API key", Arc::new(ApiKey::query("api_key", Secret::new("key-secret")))),
        ("basic", Arc::new(Basic::new("user", Secret::new("pw-secret")))),
    ]
}

async fn nothing_reached(other: &MockServer, what: &str) {
    let got = other.received_requests().await.unwrap();
    assert!(got.is_empty(), "{what}: the other origin received {} request(s): {:?}", got.len(), got.first());
}

#[tokio::test]
async fn a_request_outside_the_base_origin_is_refused_unless_allowed() {
    let (api, other) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_json(json!([]))).mount(&other).await;
    let clock = FakeClock::new();
    let client = builder(&api.uri(), &clock).auth(bearer()).build().unwrap();
    let e = client.send(Request::get(format!("{}/steal", other.uri()))).await.unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::Permanent);
    let msg = e.report();
    assert!(msg.contains(&format!("refused to send a request to {}", other.uri())), "{msg}");
    assert!(msg.contains(&format!("{} (the base URL)", api.uri())), "{msg}");
    assert!(e.next_step().contains("http.allowed_origins"), "{}", e.next_step());
    nothing_reached(&other, "absolute URL").await;

    // Listed in `allowed_origins`, the same request goes, with the credential.
    let allowed = builder(&api.uri(), &clock).auth(bearer()).allowed_origin(&other.uri()).build().unwrap();
    allowed.send(Request::get(format!("{}/ok", other.uri()))).await.unwrap();
    let got = other.received_requests().await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers.get("authorization").unwrap(), "Bearer tok-secret");
}

#[tokio::test]
async fn next_page_links_to_another_origin_stop_the_listing() {
    let (api, other) = (MockServer::start().await, MockServer::start().await);
    let foreign = format!("{}/l?page=2", other.uri());
    Mock::given(method("GET"))
        .and(path("/link"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([1]))
                .insert_header("link", format!("<{foreign}>; rel=\"next\"").as_str()),
        )
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/next"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [1], "next": foreign})))
        .mount(&api)
        .await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_json(json!([]))).mount(&other).await;
    let clock = FakeClock::new();
    let client = builder(&api.uri(), &clock).auth(bearer()).build().unwrap();

    let e = client.paginate(Request::get("/link"), PageStyle::LinkHeader).next_page().await.unwrap_err();
    let msg = e.report();
    assert!(msg.contains("the `Link` header's next page"), "{msg}");
    assert!(msg.contains(&other.uri()) && msg.contains(&api.uri()), "both origins named: {msg}");
    assert!(e.next_step().contains("`http.allowed_origins`"), "{}", e.next_step());

    let body = PageStyle::NextUrl { pointer: "/next".into() };
    let e = client.paginate(Request::get("/next"), body.clone()).items_at("/data").next_page().await.unwrap_err();
    assert!(e.report().contains("the next-page URL in the body at `/next`"), "{}", e.report());
    nothing_reached(&other, "next-page links").await;

    // An allowed origin is followed.
    let allowed = builder(&api.uri(), &clock).auth(bearer()).allowed_origin(&other.uri()).build().unwrap();
    let mut p = allowed.paginate(Request::get("/link"), PageStyle::LinkHeader);
    assert_eq!(p.next_page().await.unwrap().unwrap().items, vec![json!(1)]);
    assert!(p.next_page().await.unwrap().is_none(), "the allowed origin's empty page ends the listing");
    assert_eq!(other.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_api_key_echoed_in_a_next_link_stays_out_of_the_stored_position() {
    let api = MockServer::start().await;
    let next = format!("<{}/l?page=2&api_key=key-secret>; rel=\"next\"", api.uri());
    Mock::given(method("GET"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([2])))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([1])).insert_header("link", next.as_str()))
        .mount(&api)
        .await;
    let auth: Arc<dyn Auth> = Arc::new(ApiKey::query("api_key", Secret::new("key-secret")));
    let client = builder(&api.uri(), &FakeClock::new()).auth(auth).build().unwrap();
    let mut p = client.paginate(Request::get("/l"), PageStyle::LinkHeader);
    p.next_page().await.unwrap().unwrap();
    let stored = serde_json::to_string(p.state().unwrap()).unwrap();
    assert!(!stored.contains("key-secret"), "the API key reached the position: {stored}");
    assert!(stored.contains("page=2"), "{stored}");
    assert_eq!(p.next_page().await.unwrap().unwrap().items, vec![json!(2)]);
    let sent = api.received_requests().await.unwrap();
    let second = sent[1].url.query().unwrap().to_owned();
    assert_eq!(second.matches("api_key=key-secret").count(), 1, "the key is sent once: {second}");
}

#[tokio::test]
async fn a_position_stored_for_another_origin_is_refused_naming_reset() {
    let (api, old) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_json(json!([]))).mount(&api).await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_json(json!([]))).mount(&old).await;
    let client = builder(&api.uri(), &FakeClock::new()).auth(bearer()).build().unwrap();
    let style = PageStyle::Cursor { pointer: "/next".into(), param: "cursor".into() };

    // A cursor stamped with the server it came from.
    let stamped = PageState { cursor: Some("c1".into()), origin: Some(old.uri()), ..PageState::default() };
    let e = client.paginate_from(Request::get("/l"), style, stamped).next_page().await.unwrap_err();
    let msg = e.report();
    assert!(msg.contains(&format!("written for {}", old.uri())) && msg.contains(&api.uri()), "{msg}");
    assert!(e.next_step().contains("dovetail reset PIPELINE STREAM"), "{}", e.next_step());
    assert!(
        e.in_pipeline("p").in_stream("items").next_step().contains("`dovetail reset p items`"),
        "the hint names the stream once the engine adds its context"
    );

    // A next URL stored before positions were stamped: checked by its own origin.
    let legacy = PageState { url: Some(format!("{}/l?page=2", old.uri())), ..PageState::default() };
    let e = client.paginate_from(Request::get("/l"), PageStyle::LinkHeader, legacy).next_page().await.unwrap_err();
    assert!(e.report().contains(&format!("points at {}", old.uri())), "{}", e.report());
    nothing_reached(&old, "stored positions").await;
    assert!(api.received_requests().await.unwrap().is_empty(), "nothing was read from the new origin either");
}

#[tokio::test]
async fn a_cross_origin_redirect_is_never_followed_with_any_credential() {
    let (api, other) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_json(json!([]))).mount(&other).await;
    for status in [301, 302, 303, 307, 308] {
        Mock::given(path(format!("/moved/{status}")))
            .respond_with(
                ResponseTemplate::new(status).insert_header("location", format!("{}/landed", other.uri()).as_str()),
            )
            .mount(&api)
            .await;
    }
    let clock = FakeClock::new();
    for (name, auth) in static_credentials() {
        let client = builder(&api.uri(), &clock).auth(auth).build().unwrap();
        for status in [301, 302, 303, 307, 308] {
            let e = client.send(Request::get(format!("/moved/{status}"))).await.unwrap_err();
            let msg = e.report();
            assert_eq!(*e.kind(), ErrorKind::Permanent, "{name} {status}: {msg}");
            assert!(msg.contains(&format!("redirecting to {}", other.uri())), "{name} {status}: {msg}");
            assert!(msg.contains("never follows a redirect to another origin"), "{name} {status}: {msg}");
        }
    }
    nothing_reached(&other, "redirects").await;
}

#[tokio::test]
async fn same_origin_redirects_are_followed_and_307_resends_the_body() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/old"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", "/new"))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path("/new"))
        .and(body_string("{\"a\":1}"))
        .and(header("authorization", "Bearer tok-secret"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 7})))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/see-other"))
        .respond_with(ResponseTemplate::new(303).insert_header("location", format!("{}/result", api.uri()).as_str()))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/result"))
        .and(header("authorization", "Bearer tok-secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&api)
        .await;
    let client = builder(&api.uri(), &FakeClock::new()).auth(bearer()).build().unwrap();
    let created = client.send(Request::post("/old").json(&json!({"a": 1})).idempotency_key("k")).await.unwrap();
    assert_eq!(created.status.as_u16(), 201);
    assert_eq!(created.url.path(), "/new");
    let seen = client.send(Request::get("/see-other")).await.unwrap();
    assert_eq!(seen.url.path(), "/result");
}

#[tokio::test]
async fn a_token_endpoint_redirect_is_not_followed() {
    let (auth_server, other, api) = (MockServer::start().await, MockServer::start().await, MockServer::start().await);
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", format!("{}/token", other.uri()).as_str()))
        .mount(&auth_server)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&other).await;
    let config: AuthConfig = toml::from_str(&format!(
        "type = \"oauth2_refresh_token\"\ntoken_url = \"{}/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         refresh_token = \"rt-secret\"",
        auth_server.uri()
    ))
    .unwrap();
    let client = builder(&api.uri(), &FakeClock::new()).auth(config.build(None).unwrap()).build().unwrap();
    let e = client.send(Request::get("/x")).await.unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::Auth, "{}", e.report());
    assert!(e.report().contains(&format!("redirecting to {}", other.uri())), "{}", e.report());
    assert!(!e.report().contains("rt-secret"));
    nothing_reached(&other, "token endpoint redirect").await;
}

fn oauth(token_url: &str, refresh: &str) -> AuthConfig {
    toml::from_str(&format!(
        "type = \"oauth2_refresh_token\"\ntoken_url = \"{token_url}\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         refresh_token = \"{refresh}\""
    ))
    .unwrap()
}

#[tokio::test]
async fn one_token_provider_per_credential_is_shared_by_every_client() {
    let server = MockServer::start().await;
    // Rotating refresh tokens: a second provider holding `rt0` would be refused.
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string("grant_type=refresh_token&refresh_token=rt0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "at1", "expires_in": 3600, "refresh_token": "rt1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer at1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let token_url = format!("{}/token", server.uri());
    let store: Arc<dyn dovetail_core::remote::TokenStore> = Arc::new(MemoryTokenStore::default());
    let (a, b) =
        (oauth(&token_url, "rt0").build(Some(store.clone())), oauth(&token_url, "rt0").build(Some(store.clone())));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(Arc::ptr_eq(&a, &b), "same endpoint, client and credential: one provider");
    let other_user = oauth(&token_url, "another-rt").build(Some(store.clone())).unwrap();
    assert!(!Arc::ptr_eq(&a, &other_user), "another refresh token is another credential");
    let other_store: Arc<dyn dovetail_core::remote::TokenStore> = Arc::new(MemoryTokenStore::default());
    assert!(!Arc::ptr_eq(&a, &oauth(&token_url, "rt0").build(Some(other_store)).unwrap()));

    // A source and a sink of one pipeline: two clients, one token request between them.
    let source = dovetail_http::HttpClient::builder("source").base_url(&server.uri()).auth(a).build().unwrap();
    let sink = dovetail_http::HttpClient::builder("sink").base_url(&server.uri()).auth(b).build().unwrap();
    let (x, y) = tokio::join!(source.send(Request::get("/x")), sink.send(Request::get("/y")));
    x.unwrap();
    y.unwrap();
    assert_eq!(source.report().token_requests + sink.report().token_requests, 2, "both report the shared count");
}

#[tokio::test]
async fn clients_sharing_a_host_and_credential_share_the_strictest_budget() {
    let api = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_json(json!({}))).mount(&api).await;
    let clock = FakeClock::new();
    let (capture, _guard) = Capture::trace_on_this_thread();
    let budget = |requests, burst| RateBudget { requests, per: Duration::from_secs(1), burst };
    let fast = builder(&api.uri(), &clock).auth(bearer()).rate_limit(budget(10, 5)).build().unwrap();
    let slow = builder(&api.uri(), &clock).auth(bearer()).rate_limit(budget(2, 1)).build().unwrap();
    let logs = capture.text();
    assert!(logs.contains("connectors share one rate budget"), "{logs}");
    assert!(logs.contains("10/s (burst 5)") && logs.contains("using=2/s (burst 1)"), "{logs}");
    // Five requests, alternating between the clients: one budget of 2/s with burst 1.
    for i in 0..5 {
        let c = if i % 2 == 0 { &fast } else { &slow };
        c.send(Request::get("/x")).await.unwrap();
    }
    let waited: Duration = clock.sleeps().iter().sum();
    assert_eq!(waited, Duration::from_secs(2), "four waits of 500 ms: {:?}", clock.sleeps());
    // Another credential on the same host has a budget of its own.
    let mine = builder(&api.uri(), &clock)
        .auth(Arc::new(StaticBearer::new(Secret::new("another"))))
        .rate_limit(budget(10, 5))
        .build()
        .unwrap();
    let before = clock.sleeps().len();
    for _ in 0..3 {
        mine.send(Request::get("/x")).await.unwrap();
    }
    assert_eq!(clock.sleeps().len(), before, "within its own burst of 5");
}

#[test]
fn allowed_origins_are_validated_when_the_config_is_read() {
    let ok: HttpConfig = toml::from_str("allowed_origins = [\"https://uploads.example.com\"]").unwrap();
    assert_eq!(ok.allowed_origins[0].origin().as_str(), "https://uploads.example.com");
    for bad in ["https://*.example.com", "https://uploads.example.com/v1", "uploads.example.com"] {
        let e = toml::from_str::<HttpConfig>(&format!("allowed_origins = [\"{bad}\"]")).unwrap_err();
        assert!(e.to_string().contains(&format!("`{bad}` is not an origin")), "{bad}: {e}");
    }
}
