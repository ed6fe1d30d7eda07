//! GitHub App authentication through `dovetail run`, against a double of GitHub's app
//! endpoints (wiremock) that checks each JWT's RS256 signature with the public half of a key
//! generated here, and hands out installation tokens the listings then require.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use dovetail_e2e::vendor::count;
use dovetail_e2e::{Scratch, show};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 77;

/// A fresh RSA key: its PKCS#8 PEM and its public half (PKCS#1 DER).
fn key() -> (String, Vec<u8>) {
    let k = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der = k.as_der().unwrap();
    let b64 = STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
    (pem, k.public_key().as_ref().to_vec())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// `POST /app/installations/{id}/access_tokens`: the JWT must verify and be GitHub-valid;
/// each call mints `ghs_installation_N`, valid for `ttl`.
struct AccessTokens {
    public: Vec<u8>,
    minted: Arc<AtomicUsize>,
    ttl: Duration,
}

impl Respond for AccessTokens {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(jwt) = auth.strip_prefix("Bearer ") else { return ResponseTemplate::new(401) };
        let parts: Vec<&str> = jwt.split('.').collect();
        let [h, c, sig] = parts[..] else { return ResponseTemplate::new(401) };
        let key = signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.public);
        let signed = key.verify(format!("{h}.{c}").as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap_or_default());
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap_or_default()).unwrap_or_default();
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).unwrap_or_default()).unwrap_or_default();
        let (iat, exp, now) = (claims["iat"].as_u64().unwrap_or(0), claims["exp"].as_u64().unwrap_or(0), unix_now());
        let valid = signed.is_ok()
            && header["alg"] == "RS256"
            && claims["iss"].as_str().and_then(|s| s.parse().ok()) == Some(APP_ID)
            && iat + 30 <= now
            && exp > now
            && exp - iat <= 600;
        if !valid {
            return ResponseTemplate::new(401)
                .set_body_json(json!({"message": "A JSON web token could not be decoded"}));
        }
        let n = self.minted.fetch_add(1, Ordering::SeqCst) + 1;
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::try_from(self.ttl).unwrap();
        ResponseTemplate::new(201).set_body_json(json!({
            "token": format!("ghs_installation_{n}"),
            "expires_at": expires.to_string(),
            "permissions": {"pull_requests": "read"},
        }))
    }
}

/// A pull request listing page that only an installation token opens.
fn pulls(id: u64, next: Option<&str>, base: &str) -> ResponseTemplate {
    let f: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../connectors/github/fixtures/pull_requests.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut pr = f["exchanges"][0]["response"]["body"][0].clone();
    pr["id"] = json!(id);
    let mut t = ResponseTemplate::new(200).set_body_json(json!([pr]));
    if let Some(q) = next {
        t = t.insert_header("link", format!("<{base}/repos/octo/hello/pulls?{q}>; rel=\"next\"").as_str());
    }
    t
}

struct Double {
    server: MockServer,
    minted: Arc<AtomicUsize>,
}

/// The double: app endpoints plus a two-page pulls listing (`per_page=1`) whose first page
/// answers after `page_delay`.
async fn double(public: Vec<u8>, ttl: Duration, page_delay: Duration) -> Double {
    let server = MockServer::start().await;
    let minted = Arc::new(AtomicUsize::new(0));
    let tokens = AccessTokens { public, minted: minted.clone(), ttl };
    Mock::given(method("POST"))
        .and(path(format!("/app/installations/{INSTALLATION}/access_tokens")))
        .respond_with(tokens)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/orgs/octo/installation"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": INSTALLATION, "account": {"login": "octo"}})),
        )
        .mount(&server)
        .await;
    let base = server.uri();
    let q2 = "state=all&sort=updated&direction=desc&per_page=1&page=2";
    for tok in ["ghs_installation_1", "ghs_installation_2", "ghs_installation_3"] {
        let bearer = format!("Bearer {tok}");
        Mock::given(method("GET"))
            .and(path("/repos/octo/hello/pulls"))
            .and(wiremock::matchers::query_param("page", "2"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(pulls(2, None, &base))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/repos/octo/hello/pulls"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(pulls(1, Some(q2), &base).set_delay(page_delay))
            .with_priority(2)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/repos/octo/hello/releases"))
        .and(wiremock::matchers::header_regex("authorization", "^Bearer ghs_installation_"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    Double { server, minted }
}

fn config(s: &Scratch, base_url: &str, app: &str, streams: &str) -> String {
    format!(
        r#"[pipelines.gh.source]
kind = "github"
base_url = "{base_url}"
owner = "octo"
owner_type = "org"
repositories = ["hello"]
streams = [{streams}]
app = {{ app_id = {APP_ID}, private_key = "${{file:{key}}}", {app} }}
http = {{ retry = {{ max_attempts = 2, base_delay_ms = 1, max_delay_ms = 2 }} }}

[pipelines.gh.source.stream_options.pull_requests]
per_page = 1

[pipelines.gh.sink]
kind = "sqlite"
path = "out.db"
"#,
        key = s.path("app.pem").display()
    )
}

async fn run(s: &Scratch) -> (std::process::Output, Value) {
    let out = dovetail_e2e::vendor::output_async(s.cmd(&["run", "--json"])).await;
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    (out, report)
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Installation found by owner, one token minted for two streams running at once (single
/// flight), the token sent to the listings and never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_installation_token_is_minted_once_for_all_streams() {
    let (pem, public) = key();
    let d = double(public, Duration::from_secs(3600), Duration::ZERO).await;
    let s = Scratch::new();
    s.write("app.pem", &pem);
    s.write(
        "dovetail.toml",
        &config(&s, &d.server.uri(), "installation_owner = \"octo\"", "\"pull_requests\", \"releases\""),
    );
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "pull_requests", "written"), 2, "{report:#}");
    assert_eq!(d.minted.load(Ordering::SeqCst), 1, "one installation token for both streams");
    let all = text(&out);
    assert!(!all.contains("ghs_installation_"), "a token was printed: {all}");
    assert!(!all.contains("PRIVATE KEY") && !all.contains(&pem[40..80]), "the key was printed");
}

/// A token close to its expiry is replaced before it is used again: the second page goes
/// out with a second token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installation_token_is_refreshed_before_it_expires() {
    let (pem, public) = key();
    let d = double(public, Duration::from_secs(2), Duration::from_millis(1500)).await;
    let s = Scratch::new();
    s.write("app.pem", &pem);
    s.write(
        "dovetail.toml",
        &config(&s, &d.server.uri(), &format!("installation_id = {INSTALLATION}"), "\"pull_requests\""),
    );
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "pull_requests", "written"), 2, "{report:#}");
    assert_eq!(d.minted.load(Ordering::SeqCst), 2, "the token was not refreshed before its expiry");
}

/// A key that is no RSA key is a config error (exit 3) that never prints it; a suspended
/// installation (403 on `access_tokens`) is an auth error (exit 4) saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_exit_3_and_a_suspended_installation_exit_4() {
    let (_, public) = key();
    let d = double(public, Duration::from_secs(3600), Duration::ZERO).await;
    let s = Scratch::new();
    let junk = "-----BEGIN RSA PRIVATE KEY-----\nTm90QVJlYWxLZXlCdXRTZWNyZXRCeXRlcw==\n-----END RSA PRIVATE KEY-----\n";
    s.write("app.pem", junk);
    s.write(
        "dovetail.toml",
        &config(&s, &d.server.uri(), &format!("installation_id = {INSTALLATION}"), "\"pull_requests\""),
    );
    let out = dovetail_e2e::vendor::output_async(s.cmd(&["run", "--json"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(text(&out).contains("app.private_key"), "{}", show(&out));
    assert!(!text(&out).contains("Tm90QVJl"), "the key was printed: {}", show(&out));
    // PEM around DER that is no RSA key: found at the first signature, the same exit 3.
    s.write("app.pem", "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n");
    let out = dovetail_e2e::vendor::output_async(s.cmd(&["run", "--json"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(text(&out).contains("app.private_key") && !text(&out).contains("MAMCAQA"), "{}", show(&out));
    assert_eq!(d.minted.load(Ordering::SeqCst), 0);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/app/installations/{INSTALLATION}/access_tokens")))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(json!({"message": "This installation has been suspended"})),
        )
        .mount(&server)
        .await;
    let (pem, _) = key();
    s.write("app.pem", &pem);
    s.write(
        "dovetail.toml",
        &config(&s, &server.uri(), &format!("installation_id = {INSTALLATION}"), "\"pull_requests\""),
    );
    let (out, _) = run(&s).await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let all = text(&out);
    assert!(all.contains("installation is suspended or was removed"), "{all}");
    assert!(all.contains("install (or unsuspend) the app"), "{all}");
}
