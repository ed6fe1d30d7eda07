//! What the builder takes from code and from an `HttpConfig` block, observed over loopback:
//! proxies (explicit and from the environment, with `NO_PROXY`), extra CA certificates,
//! every config field that shows on the wire, and the in-memory cache's body cap.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{builder, secs};
use dovetail_core::ErrorKind;
use dovetail_http::{FakeClock, HttpClient, HttpConfig, MemoryResponseCache, Request};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The host a request was addressed to: its absolute-form URL's, which must match `Host`.
fn target_host(r: &wiremock::Request) -> String {
    let host = r.headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(r.url.host_str(), Some(host), "absolute-form target and Host header agree");
    host.to_owned()
}

// ---------------------------------------------------------------- proxy

#[tokio::test]
async fn an_explicit_proxy_receives_plain_http_requests_in_absolute_form() {
    let proxy = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/things"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&proxy)
        .await;
    let client = HttpClient::builder("test").proxy(&proxy.uri()).build().unwrap();
    let r = client.send(Request::get("http://api.example.invalid/v1/things?page=2")).await.unwrap();
    assert_eq!(&r.body[..], b"[]");
    let sent = proxy.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].url.as_str(), "http://api.example.invalid/v1/things?page=2", "absolute-form request line");
    assert_eq!(target_host(&sent[0]), "api.example.invalid");
}

#[test]
fn a_proxy_that_is_not_a_url_is_a_config_error() {
    let e = HttpClient::builder("test").proxy("not a url").build().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Config);
    assert!(e.to_string().contains("http.proxy"), "{e}");
}

const CHILD: &str = "DOVETAIL_TEST_PROXY_CHILD";

/// The environment proxy (`HTTP_PROXY`) is used without any builder call, and `NO_PROXY`
/// exempts the hosts it names. Environment variables are process-wide (and setting them is
/// `unsafe` in edition 2024), so the client runs in a child process of this test binary
/// (`env_proxy_child` below) whose environment is set by the parent.
#[tokio::test]
async fn environment_proxy_is_honoured_and_no_proxy_exempts_hosts() {
    let (proxy, direct) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("via proxy"))
        .mount(&proxy)
        .await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_string("direct")).mount(&direct).await;
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["env_proxy_child", "--exact", "--nocapture", "--test-threads=1"]);
    for v in ["http_proxy", "https_proxy", "all_proxy", "ALL_PROXY", "HTTPS_PROXY", "no_proxy", "REQUEST_METHOD"] {
        cmd.env_remove(v);
    }
    cmd.env(CHILD, direct.uri()).env("HTTP_PROXY", proxy.uri()).env("NO_PROXY", "127.0.0.1,localhost");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && log.contains("1 passed"), "child failed:\n{log}");

    let via_proxy = proxy.received_requests().await.unwrap();
    assert_eq!(via_proxy.len(), 1, "only the non-exempt host went through the proxy");
    assert_eq!(via_proxy[0].url.as_str(), "http://api.example.invalid/v1/things");
    assert_eq!(target_host(&via_proxy[0]), "api.example.invalid");
    let direct_sent = direct.received_requests().await.unwrap();
    assert_eq!(direct_sent.len(), 1);
    assert_eq!(direct_sent[0].url.path(), "/direct");
}

/// Runs only as the child of the test above (a no-op otherwise).
#[tokio::test]
async fn env_proxy_child() {
    let Ok(direct) = std::env::var(CHILD) else { return };
    let client = HttpClient::builder("test").build().unwrap();
    let r = client.send(Request::get("http://api.example.invalid/v1/things")).await.unwrap();
    assert_eq!(&r.body[..], b"via proxy");
    let r = client.send(Request::get(format!("{direct}/direct"))).await.unwrap();
    assert_eq!(&r.body[..], b"direct", "NO_PROXY=127.0.0.1 goes direct");
}

// ---------------------------------------------------------------- extra CA certificates

#[test]
fn a_valid_ca_pem_is_accepted_from_code_and_from_config() {
    let pem = std::fs::read(fixture("test-ca.pem")).unwrap();
    HttpClient::builder("test").add_ca_pem(&pem).build().unwrap();
    let cfg: HttpConfig =
        serde_json::from_value(serde_json::json!({"ca_certificates": [fixture("test-ca.pem")]})).unwrap();
    HttpClient::builder("test").config(&cfg).unwrap().build().unwrap();
}

#[test]
fn malformed_ca_pems_are_config_errors_naming_the_problem() {
    let broken_base64 = b"-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n-----END CERTIFICATE-----\n";
    let e = HttpClient::builder("test").add_ca_pem(broken_base64).build().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Config);
    assert!(e.to_string().contains("http.ca_certificates") && e.to_string().contains("PEM"), "{e}");

    // Well-formed PEM whose content is not a certificate (DER garbage).
    let not_der = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let e = HttpClient::builder("test").add_ca_pem(not_der).build().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Config, "{e}");

    // Text with no certificate in it at all is refused, not silently trusted as nothing.
    let e = HttpClient::builder("test").add_ca_pem(b"just some text\n").build().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("no certificate"), "{e}");

    let cfg: HttpConfig =
        serde_json::from_value(serde_json::json!({"ca_certificates": ["/nonexistent/ca.pem"]})).unwrap();
    let e = HttpClient::builder("test").config(&cfg).unwrap().build().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Config);
    assert!(e.to_string().contains("cannot read /nonexistent/ca.pem"), "{e}");
}

// ---------------------------------------------------------------- HttpConfig

const FULL_CONFIG: &str = r#"
base_url = "http://api.example.invalid/v2/"
api_version = "2024-06-01"
connect_timeout_ms = 2000
timeout_ms = 300
proxy = "PROXY"
ca_certificates = ["CA"]
max_concurrency = 4
request_id_headers = ["X-Acme-Trace"]

[headers]
x-from-config = "cfg"

[retry]
max_attempts = 2
base_delay_ms = 10
max_delay_ms = 20
max_elapsed_ms = 60000
reset_style = "delta_seconds"

[rate_limit]
per_minute = 60
burst = 2

[circuit]
failure_threshold = 1
cool_down_ms = 5000
"#;

/// Every field set in TOML; the server is reached only through the configured proxy, so
/// each answer proves the proxy and base URL too.
#[tokio::test]
async fn every_config_field_reaches_the_wire() {
    let server = MockServer::start().await;
    let toml = FULL_CONFIG.replace("PROXY", &server.uri()).replace("CA", fixture("test-ca.pem").to_str().unwrap());
    let cfg: HttpConfig = toml::from_str(&toml).unwrap();
    Mock::given(path("/v2/slow")).respond_with(ResponseTemplate::new(200).set_delay(secs(5))).mount(&server).await;
    Mock::given(path("/v2/down")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    Mock::given(path("/v2/reset"))
        .respond_with(ResponseTemplate::new(429).insert_header("x-ratelimit-reset", "7"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("x-acme-version", "2024-06-01"))
        .and(header("x-custom", "yes"))
        .and(header("x-from-config", "cfg"))
        .and(header("user-agent", format!("dovetail/{} (acme)", env!("CARGO_PKG_VERSION")).as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let clock = FakeClock::new();
    let client = HttpClient::builder("acme")
        .base_url("https://api.acme.test/v1/") // config wins
        .header("x-custom", "yes")
        .api_version("x-acme-version", "2020-01-01") // config pins another version
        .clock(clock.clone())
        .config(&cfg)
        .unwrap()
        .build()
        .unwrap();

    // Headers (version, custom, user agent) and base URL: only the fully matching mock says ok.
    assert_eq!(&client.send(Request::get("things")).await.unwrap().body[..], b"ok");
    // Rate limit: burst 2 at 60/min, so a third request waits about a second.
    client.send(Request::get("things")).await.unwrap();
    client.send(Request::get("things")).await.unwrap();
    let waited: Duration = clock.sleeps().iter().sum();
    assert!(waited >= Duration::from_millis(900) && waited <= secs(1), "{:?}", clock.sleeps());
    // Reset style delta_seconds: `X-RateLimit-Reset: 7` is a 7 s wait, not an epoch date.
    let before = clock.sleeps().len();
    client.send(Request::get("reset")).await.unwrap();
    assert!(clock.sleeps()[before..].contains(&secs(7)), "{:?}", clock.sleeps());
    // Timeout 300 ms, 2 attempts: the slow endpoint fails as transient, naming the timeout.
    let e = client.send(Request::get("slow")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Transient);
    assert!(
        e.to_string().contains("gave up after 2 attempts")
            && e.to_string().contains("timeout: no complete response within 300ms"),
        "{e}"
    );
    // Circuit: threshold 1 was reached by that request, so the host is now unavailable...
    let e = client.send(Request::get("down")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Unavailable, "{e}");
    // ...for the 5 s cool-down.
    clock.advance(secs(5));
    let e = client.send(Request::get("down")).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Transient, "the probe went out: {e}");
    let sent = server.received_requests().await.unwrap();
    assert!(sent.iter().all(|r| r.url.host_str() == Some("api.example.invalid")), "all through the proxy");
    assert_eq!(sent.iter().filter(|r| r.url.path() == "/v2/slow").count(), 2, "retry.max_attempts = 2");
    assert_eq!(sent.iter().filter(|r| r.url.path() == "/v2/down").count(), 2, "the probe's 2 attempts");
}

#[test]
fn unknown_config_keys_are_rejected_by_name() {
    let e = toml::from_str::<HttpConfig>("timeout_ms = 1\ntimeout = 30\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `timeout`"), "{e}");
    let e = toml::from_str::<HttpConfig>("[retry]\nmax_attempt = 3\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `max_attempt`"), "{e}");
    let e = toml::from_str::<HttpConfig>("[circuit]\ncooldown_ms = 3\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `cooldown_ms`"), "{e}");
}

#[test]
fn config_errors_name_the_setting() {
    let cfg: HttpConfig = toml::from_str("api_version = \"2024\"").unwrap();
    let e = HttpClient::builder("test").config(&cfg).err().unwrap();
    assert!(e.to_string().contains("http.api_version"), "{e}");
    let cfg: HttpConfig = toml::from_str("[rate_limit]\nburst = 3").unwrap();
    let e = HttpClient::builder("test").config(&cfg).err().unwrap();
    assert!(e.to_string().contains("http.rate_limit"), "{e}");
    // Refused while the config is read, naming the key (issue 16: an ftp:// base URL passed).
    for bad in ["no scheme", "ftp://example.com"] {
        let e = toml::from_str::<HttpConfig>(&format!("base_url = \"{bad}\"")).unwrap_err();
        assert!(e.to_string().contains("use http:// or https://") && e.to_string().contains("base_url"), "{e}");
    }
    // Numbers out of range likewise (issue 16: `timeout_ms = 0` was accepted and failed later).
    let e = toml::from_str::<HttpConfig>("timeout_ms = 0").unwrap_err();
    assert!(e.to_string().contains("must be between 1 and 3600000, found 0"), "{e}");
}

// ---------------------------------------------------------------- cache body cap

#[tokio::test]
async fn responses_over_the_cache_body_cap_are_not_cached() {
    let server = MockServer::start().await;
    Mock::given(header("if-none-match", "\"v1\"")).respond_with(ResponseTemplate::new(304)).mount(&server).await;
    Mock::given(path("/small"))
        .respond_with(ResponseTemplate::new(200).insert_header("etag", "\"v1\"").set_body_string("tiny"))
        .mount(&server)
        .await;
    Mock::given(path("/big"))
        .respond_with(ResponseTemplate::new(200).insert_header("etag", "\"v1\"").set_body_bytes(vec![b'x'; 65]))
        .mount(&server)
        .await;
    let clock = FakeClock::new();
    let cache = Arc::new(MemoryResponseCache::new(10).with_max_body_bytes(64));
    let client = builder(&server.uri(), &clock).cache(cache.clone()).build().unwrap();
    for p in ["/small", "/big", "/small", "/big"] {
        client.send(Request::get(p)).await.unwrap();
    }
    assert_eq!(cache.len(), 1, "only the small body was stored");
    let sent = server.received_requests().await.unwrap();
    let conditional: Vec<_> = sent.iter().map(|r| (r.url.path(), r.headers.contains_key("if-none-match"))).collect();
    assert_eq!(conditional, [("/small", false), ("/big", false), ("/small", true), ("/big", false)]);
}
