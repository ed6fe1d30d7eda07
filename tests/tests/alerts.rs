//! Issue 6, alerts: a webhook (wiremock on loopback) and a command hook receive exactly one
//! JSON alert for a failed run and one for a newly paused stream, the same body both ways;
//! no secret of the config (API key, the webhook URL's own token) reaches an alert or a log,
//! and a failing webhook is retried, logged, and does not change the run's exit code.

use dovetail_e2e::vendor::{RestPipeline, RestStream, output_async};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{AuthMode, FakeVendor, Faults, VendorConfig};
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A short retry budget, so "down past the budget" takes a fraction of a second.
const SHORT_BUDGET: &str = "{ retry = { base_delay_ms = 5, max_delay_ms = 20, max_elapsed_ms = 300 } }";

/// A webhook receiver answering `status` on `POST /hook...`.
async fn receiver(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(status)).mount(&server).await;
    server
}

/// The JSON bodies the receiver got, in order.
async fn received(server: &MockServer) -> Vec<Value> {
    let reqs = server.received_requests().await.expect("wiremock records requests");
    reqs.iter()
        .map(|r| {
            assert_eq!(r.method.as_str(), "POST");
            assert_eq!(r.headers.get("content-type").map(|v| v.to_str().unwrap()), Some("application/json"));
            serde_json::from_slice(&r.body).expect("alert body is JSON")
        })
        .collect()
}

/// The alerts the command hook wrote (`alerts.jsonl`, one per line).
fn hooked(s: &Scratch) -> Vec<Value> {
    std::fs::read_to_string(s.path("alerts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("hook input is one JSON line"))
        .collect()
}

/// Webhook `url` plus a command hook appending its stdin to `alerts.jsonl`.
fn alerts_line(url: &str) -> String {
    format!("alerts = {{ webhook = {url:?}, command = [\"/bin/sh\", \"-c\", \"cat >> alerts.jsonl\"] }}")
}

fn pipeline(base_url: &str, policy: &str, hook: &str) -> RestPipeline {
    RestPipeline::new(base_url)
        .http(SHORT_BUDGET)
        .stream(RestStream::items_cursor(100))
        .option("items", &format!("on_unavailable = \"{policy}\""))
        .pipeline_line(&alerts_line(hook))
}

async fn run(s: &Scratch) -> (std::process::Output, Value) {
    s.run_json_async(&[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_sends_exactly_one_failure_alert_to_the_webhook_and_the_command() {
    let vendor = FakeVendor::start(VendorConfig { records: 300, ..VendorConfig::default() }).await.unwrap();
    vendor.set_down(true);
    let hook = receiver(200).await;
    let s = Scratch::new();
    pipeline(&vendor.base_url(), "fail", &format!("{}/hook", hook.uri())).write_to(&s);

    let (out, report) = run(&s).await;
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let got = received(&hook).await;
    assert_eq!(got.len(), 1, "exactly one alert: {got:#?}");
    let a = &got[0];
    assert_eq!(a["condition"], "failure", "{a:#}");
    assert_eq!(a["pipeline"], "vendor");
    assert_eq!(a["run_id"], report["run_id"], "the alert names the run");
    assert_eq!(a["outcome"], "failed");
    assert_eq!(a["streams"], serde_json::json!(["items"]));
    assert_eq!(a["started_at"], report["started_at"]);
    assert_eq!(a["finished_at"], report["finished_at"]);
    assert_eq!(a["next_step"], report["next_step"], "the alert says what to do: {a:#}");
    assert!(a["next_step"].as_str().is_some_and(|n| n.contains("dovetail run vendor")), "{a:#}");
    assert_eq!(a["dovetail_version"], env!("CARGO_PKG_VERSION"));
    let summary = a["summary"].as_str().unwrap();
    assert!(summary.starts_with("pipeline `vendor` failed (exit code 6): transient error"), "{summary}");
    assert!(summary.chars().count() <= 250, "a sentence, not a log: {summary}");
    assert_eq!(a["details"]["error"], report["error"], "the error with its context");
    assert!(a["details"]["stream_errors"]["items"].as_str().unwrap().contains("503"), "{a:#}");
    assert_eq!(hooked(&s), got, "the command hook got the same JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pause_sends_exactly_one_pause_alert_and_a_pause_that_persists_sends_none() {
    let vendor = FakeVendor::start(VendorConfig { records: 300, ..VendorConfig::default() }).await.unwrap();
    vendor.set_down(true);
    let hook = receiver(200).await;
    let s = Scratch::new();
    pipeline(&vendor.base_url(), "pause", &format!("{}/hook", hook.uri())).write_to(&s);

    let (_, report) = run(&s).await;
    assert_eq!(report["outcome"], "paused", "{report:#}");
    let got = received(&hook).await;
    assert_eq!(got.len(), 1, "exactly one alert: {got:#?}");
    let a = &got[0];
    assert_eq!((a["condition"].as_str(), a["outcome"].as_str()), (Some("pause"), Some("paused")), "{a:#}");
    assert_eq!(a["run_id"], report["run_id"]);
    assert_eq!(a["summary"], "pipeline `vendor` paused stream `items`");
    assert_eq!(a["details"]["reasons"]["items"], report["streams"]["items"]["paused"]);
    assert_eq!(hooked(&s), got, "the command hook got the same JSON");

    // Still down: the stream stays paused; that is not news.
    let (_, report) = run(&s).await;
    assert_eq!(report["outcome"], "paused", "{report:#}");
    assert_eq!(received(&hook).await.len(), 1, "no second alert for the same pause");
    // Back up: a clean run lifts the pause and alerts nothing.
    vendor.set_down(false);
    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["outcome"], "succeeded");
    assert_eq!(received(&hook).await.len(), 1);
    assert_eq!(hooked(&s).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_drift_and_a_near_sunset_alert_once_each() {
    let vendor = FakeVendor::start(VendorConfig {
        records: 300,
        faults: Faults { drift_after: Some(250), deprecation: true, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let hook = receiver(200).await;
    let s = Scratch::new();
    pipeline(&vendor.base_url(), "fail", &format!("{}/hook", hook.uri()))
        .option("items", "sync_mode = \"full_refresh\"")
        .write_to(&s);

    let (out, report) = run(&s).await;
    assert!(out.status.success(), "{}", show(&out));
    let got = received(&hook).await;
    let conditions: Vec<&str> = got.iter().map(|a| a["condition"].as_str().unwrap()).collect();
    assert_eq!(conditions, ["drift", "sunset"], "{got:#?}");
    let drift = &got[0]["details"]["events"][0];
    assert_eq!((drift["stream"].as_str(), drift["path"].as_str()), (Some("items"), Some("/price")), "{drift:#}");
    assert_eq!(drift["change"], "type_changed");
    let sunset = &got[1]["details"]["endpoints"][0];
    assert_eq!(sunset["endpoint"], "GET /v1/items", "{sunset:#}");
    assert_eq!(sunset["sunset"], "Wed, 01 Jul 2026 00:00:00 GMT");
    assert_eq!(got[1]["run_id"], report["run_id"]);

    // The same drift again is not new; the sunset still is close (it alerts each run).
    let (_, _) = run(&s).await;
    let got = received(&hook).await;
    let conditions: Vec<&str> = got.iter().map(|a| a["condition"].as_str().unwrap()).collect();
    assert_eq!(conditions, ["drift", "sunset", "sunset"], "{got:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_an_alert_or_a_log_and_a_failing_webhook_never_fails_the_run() {
    const KEY: &str = "sk-e2e-query-key-6f1d"; // tidy: not-secret (the leak test's planted secret)
    const HOOK_PATH_TOKEN: &str = "hookpath-5e2a9c";
    const HOOK_QUERY_TOKEN: &str = "hookquery-77b0d3";
    let vendor = FakeVendor::start(VendorConfig {
        records: 300,
        auth: AuthMode::ApiKey { header: "x-api-key".into(), value: "the-right-key".into() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    // The receiver is down (503): the alert is retried, then given up with a warning.
    let hook = receiver(503).await;
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url())
        .http(SHORT_BUDGET)
        // The key goes in the query string, so it is part of every URL dovetail requests.
        .auth("{ type = \"api_key\", key = \"${E2E_KEY}\", in = { query = \"api_key\" } }")
        .stream(RestStream::items_cursor(100))
        .pipeline_line(
            "alerts = { webhook = \"${E2E_HOOK}\", command = [\"/bin/sh\", \"-c\", \"cat >> alerts.jsonl\"] }",
        )
        .write_to(&s);
    let mut cmd = s.cmd(&["run", "--json"]);
    cmd.env("E2E_KEY", KEY).env("E2E_HOOK", format!("{}/hook/{HOOK_PATH_TOKEN}?token={HOOK_QUERY_TOKEN}", hook.uri()));
    let out = output_async(cmd).await;

    // The vendor refuses the key (it wants a header): an auth failure, exit code 4 — the
    // failing webhook changes nothing.
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let got = received(&hook).await;
    assert_eq!(got.len(), 3, "one alert, three attempts at a 503ing webhook");
    assert!(got.iter().all(|a| a == &got[0]), "every attempt carries the same alert");
    assert_eq!(got[0]["condition"], "failure");
    let raw = hook.received_requests().await.unwrap();
    assert_eq!(raw[0].url.path(), format!("/hook/{HOOK_PATH_TOKEN}"), "the whole secret URL is used");
    assert_eq!(raw[0].url.query(), Some(format!("token={HOOK_QUERY_TOKEN}").as_str()));
    assert_eq!(hooked(&s), got[..1], "the command hook still got it");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("alert webhook refused the alert") && stderr.contains("status=503"), "{stderr}");
    let body = serde_json::to_string(&got).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in [KEY, HOOK_PATH_TOKEN, HOOK_QUERY_TOKEN] {
        assert!(!body.contains(secret), "`{secret}` leaked into an alert: {body}");
        assert!(!stderr.contains(secret), "`{secret}` leaked into the log: {stderr}");
        assert!(!stdout.contains(secret), "`{secret}` leaked into the report: {stdout}");
    }
    // The alert still says what went wrong.
    assert!(body.contains("401"), "{body}");
}
