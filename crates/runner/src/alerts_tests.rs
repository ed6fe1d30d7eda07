use dovetail_core::drift::DriftEvent;
use dovetail_core::report::Deprecation;
use dovetail_core::{DriftClass, HttpReport, RunOutcome, StreamReport};
use dovetail_fake_vendor::Recorder;
use dovetail_http::FakeClock;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

fn report(outcome: RunOutcome, streams: &[(&str, StreamReport)]) -> RunReport {
    RunReport {
        pipeline: "crm".into(),
        run_id: 7,
        started_at: "2026-11-28T06:00:00Z".into(),
        finished_at: "2026-11-28T06:01:00Z".into(),
        outcome,
        streams: streams.iter().map(|(n, s)| (n.to_string(), s.clone())).collect(),
        ..Default::default()
    }
}

fn drift(path: &str) -> DriftEvent {
    DriftEvent {
        path: path.into(),
        change: DriftClass::TypeChanged,
        expected: "number".into(),
        observed: "string".into(),
        count: 3,
        first_seen: "2026-11-28T06:00:01Z".into(),
        first_at: "GET /v1/items item 2".into(),
    }
}

fn now() -> jiff::Timestamp {
    "2026-11-28T06:02:00Z".parse().unwrap()
}

fn conditions(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.condition).collect()
}

#[test]
fn a_failed_run_raises_one_failure_alert_naming_the_run_and_the_failed_stream() {
    let mut r = report(
        RunOutcome::Failed,
        &[
            (
                "items",
                StreamReport {
                    outcome: RunOutcome::Failed,
                    error: Some("transient: 503".into()),
                    ..Default::default()
                },
            ),
            ("users", StreamReport { outcome: RunOutcome::Succeeded, ..Default::default() }),
        ],
    );
    r.error = Some("transient: 503 from GET /v1/items\ncaused by: x".into());
    r.exit_code = 6;
    let alerts = evaluate(&AlertsConfig::default(), &r, &Before::default(), now());
    assert_eq!(conditions(&alerts), ["failure"]);
    let a = &alerts[0];
    assert_eq!((a.pipeline.as_str(), a.run_id, a.outcome), ("crm", Some(7), RunOutcome::Failed));
    assert_eq!(serde_json::to_value(a).unwrap()["outcome"], "failed", "the webhook's JSON");
    assert_eq!(a.streams, ["items"]);
    assert_eq!(a.summary, "pipeline `crm` failed (exit code 6): transient: 503 from GET /v1/items");
    assert_eq!(a.details["stream_errors"]["items"], "transient: 503");
    assert_eq!(a.details["exit_code"], 6);
}

#[test]
fn only_a_pause_the_run_added_alerts() {
    let paused = StreamReport { outcome: RunOutcome::Paused, paused: Some("down".into()), ..Default::default() };
    let r = report(RunOutcome::Paused, &[("items", paused.clone()), ("users", paused)]);
    let before = Before { paused: ["users".to_owned()].into(), ..Default::default() };
    let alerts = evaluate(&AlertsConfig::default(), &r, &before, now());
    assert_eq!(conditions(&alerts), ["pause"]);
    assert_eq!(alerts[0].streams, ["items"]);
    assert_eq!(alerts[0].summary, "pipeline `crm` paused stream `items`");
    let before = Before { paused: ["users".to_owned(), "items".to_owned()].into(), ..Default::default() };
    assert!(evaluate(&AlertsConfig::default(), &r, &before, now()).is_empty());
}

#[test]
fn only_drift_not_already_open_alerts() {
    let s = StreamReport {
        outcome: RunOutcome::Succeeded,
        drift: vec![drift("/price"), drift("/qty")],
        ..Default::default()
    };
    let r = report(RunOutcome::Succeeded, &[("items", s)]);
    let before = Before {
        open_drift: [("items".into(), "/price".into(), DriftClass::TypeChanged, "string".into())].into(),
        ..Default::default()
    };
    let alerts = evaluate(&AlertsConfig::default(), &r, &before, now());
    assert_eq!(conditions(&alerts), ["drift"]);
    let events = alerts[0].details["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["path"], "/qty");
    assert_eq!(alerts[0].summary, "pipeline `crm`: new response drift (/qty type_changed)");
}

#[test]
fn dead_letters_alert_from_the_threshold_on() {
    let s = StreamReport { outcome: RunOutcome::Succeeded, dead_lettered: 4, ..Default::default() };
    let r = report(RunOutcome::Succeeded, &[("items", s)]);
    let cfg = |n| AlertsConfig { dead_letter_threshold: Some(n), ..Default::default() };
    assert!(evaluate(&cfg(5), &r, &Before::default(), now()).is_empty());
    let alerts = evaluate(&cfg(4), &r, &Before::default(), now());
    assert_eq!(conditions(&alerts), ["dead_letters"]);
    assert_eq!(alerts[0].details["per_stream"]["items"], 4);
}

#[test]
fn a_sunset_within_the_window_or_past_alerts_once_for_all_endpoints() {
    let mut r = report(RunOutcome::Succeeded, &[]);
    let dep = |endpoint: &str, sunset: &str| Deprecation {
        endpoint: endpoint.into(),
        deprecation: None,
        sunset: Some(sunset.into()),
    };
    r.http.insert(
        "source".into(),
        HttpReport {
            deprecations: vec![
                dep("GET /v1/items", "Tue, 15 Dec 2026 00:00:00 GMT"),
                dep("GET /v1/old", "Wed, 01 Jul 2026 00:00:00 GMT"),
                dep("GET /v1/later", "Fri, 01 Oct 2027 00:00:00 GMT"),
            ],
            ..Default::default()
        },
    );
    let alerts = evaluate(&AlertsConfig::default(), &r, &Before::default(), now());
    assert_eq!(conditions(&alerts), ["sunset"]);
    let eps = alerts[0].details["endpoints"].as_array().unwrap();
    let names: Vec<&str> = eps.iter().map(|e| e["endpoint"].as_str().unwrap()).collect();
    assert_eq!(names, ["GET /v1/items", "GET /v1/old"]);
    assert_eq!(eps[0]["days_left"], 16);
    assert!(eps[1]["days_left"].as_i64().unwrap() < 0, "{eps:?}");
    let narrow = AlertsConfig { sunset_within_days: Some(10), ..Default::default() };
    assert_eq!(evaluate(&narrow, &r, &Before::default(), now())[0].details["endpoints"].as_array().unwrap().len(), 1);
}

#[test]
fn on_limits_the_conditions() {
    let s = StreamReport { outcome: RunOutcome::Failed, dead_lettered: 9, ..Default::default() };
    let r = report(RunOutcome::Failed, &[("items", s)]);
    let all = evaluate(&AlertsConfig::default(), &r, &Before::default(), now());
    assert_eq!(conditions(&all), ["failure", "dead_letters"]);
    let only = AlertsConfig { on: Some(vec![Condition::DeadLetters]), ..Default::default() };
    assert_eq!(conditions(&evaluate(&only, &r, &Before::default(), now())), ["dead_letters"]);
}

struct Env;

impl crate::interpolate::Lookup for Env {
    fn env(&self, name: &str) -> Option<String> {
        (name == "HOOK_URL").then(|| "https://hooks.example.test/T000/s3cr3t-hook-token".to_owned())
    }
}

const PIPELINE: &str = r#"[pipelines.orders.source]
kind = "files"

[[pipelines.orders.source.streams]]
name = "orders"
path = "orders.jsonl"
primary_key = ["id"]

[pipelines.orders.sink]
kind = "sqlite"
path = "out.db"

[pipelines.orders.alerts]
"#;

fn load(alerts: &str) -> Result<crate::config::Project, String> {
    load_inner(alerts)
}

fn load_err(alerts: &str) -> String {
    match load_inner(alerts) {
        Ok(_) => panic!("loaded: {alerts}"),
        Err(e) => e,
    }
}

fn load_inner(alerts: &str) -> Result<crate::config::Project, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dovetail.toml");
    std::fs::write(&path, format!("{PIPELINE}{alerts}\n")).unwrap();
    crate::config::load_with(&path, &Env).map_err(|e| {
        let msg = e.message().to_owned();
        msg.split_once("dovetail.toml").map(|(_, rest)| rest.to_owned()).unwrap_or(msg)
    })
}

#[test]
fn alerts_config_loads_with_an_interpolated_webhook() {
    let p = load("webhook = \"${HOOK_URL}\"\non = [\"failure\", \"sunset\"]\nsunset_within_days = 14").unwrap();
    let a = p.pipelines[0].alerts.as_ref().unwrap();
    assert_eq!(a.webhook.as_ref().unwrap().expose(), "https://hooks.example.test/T000/s3cr3t-hook-token");
    assert_eq!(a.on, Some(vec![Condition::Failure, Condition::Sunset]));
    assert_eq!(a.sunset_within_days, Some(14));
    assert!(!format!("{a:?}").contains("s3cr3t"), "the webhook URL is a secret: {a:?}");
    assert_eq!(webhook_origin(a.webhook.as_ref().unwrap()), "https://hooks.example.test");
}

#[test]
fn bad_alerts_config_names_the_line_and_the_field() {
    let err = load_err("webhook = \"https://x.test/h\"\non = [\"failure\", \"explosion\"]");
    assert!(err.starts_with(":15:") && err.contains("explosion") && err.contains("dead_letters"), "{err}");
    let err = load_err("webhook = \"ftp://x.test/secret-path\"");
    assert_eq!(err, ":14: `alerts.webhook` must be an http or https URL, not `ftp:`");
    let err = load_err("webhook = \"not a url s3cr3t\"");
    assert!(err.starts_with(":14: `alerts.webhook` is not a URL") && !err.contains("s3cr3t"), "{err}");
    let err = load_err("command = []");
    assert!(err.starts_with(":14: `alerts.command` must name a program"), "{err}");
    let err = load_err("on = [\"failure\"]");
    assert!(err.contains("needs a `webhook` or a `command`"), "{err}");
    let err = load_err("webhook = \"https://x.test/h\"\nproxy = \"http://user:pw@not a host\"");
    assert_eq!(
        err, ":15: `alerts.proxy` is not a proxy URL (e.g. `http://proxy.internal:3128`)",
        "never the URL: {err}"
    );
    let err = load_err("webhook = \"https://x.test/h\"\nca_certificates = [\"/nonexistent/ca.pem\"]");
    assert!(err.starts_with(":15: `alerts.ca_certificates`: cannot read /nonexistent/ca.pem"), "{err}");
    let err = load_err("webhook = \"https://x.test/h\"\nca_certificates = [\"Cargo.toml\"]");
    assert_eq!(err, ":15: `alerts.ca_certificates`: Cargo.toml holds no PEM certificate", "{err}");
    let err = load_err("command = [\"/bin/true\"]\nproxy = \"http://proxy.test:3128\"");
    assert_eq!(err, ":15: `alerts.proxy` applies to the webhook: set `alerts.webhook`");
}

/// The http crate's test CA (a valid PEM certificate).
const TEST_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../http/tests/fixtures/test-ca.pem");

#[test]
fn the_webhook_takes_a_proxy_and_ca_certificates_like_a_connector() {
    let p = load(&format!(
        "webhook = \"${{HOOK_URL}}\"\nproxy = \"http://proxy.internal:3128\"\nca_certificates = [{TEST_CA:?}]"
    ))
    .unwrap();
    let a = p.pipelines[0].alerts.as_ref().unwrap();
    assert_eq!(a.proxy.as_deref(), Some("http://proxy.internal:3128"));
    assert_eq!(a.ca_certificates, [PathBuf::from(TEST_CA)]);
    Webhook::new(a.webhook.as_ref().unwrap(), a, None).expect("a client with that proxy and CA");
}

fn hook(url: &str) -> AlertsConfig {
    AlertsConfig { webhook: Some(Secret::new(url)), ..Default::default() }
}

fn failure_alert() -> Alert {
    let mut r = report(RunOutcome::Failed, &[]);
    r.error = Some("transient: 503".into());
    evaluate(&AlertsConfig::default(), &r, &Before::default(), now()).remove(0)
}

/// POSTs the failure alert to `cfg`'s webhook on `clock`; whether it was delivered, and the body.
async fn deliver(cfg: &AlertsConfig, clock: Option<Arc<dyn Clock>>) -> (bool, Vec<u8>) {
    let alert = failure_alert();
    let body = serde_json::to_vec(&alert).unwrap();
    let webhook = Webhook::new(cfg.webhook.as_ref().unwrap(), cfg, clock).unwrap();
    (webhook.post(&body, &alert).await, body)
}

async fn receiver(answers: &[(u16, Option<&str>)]) -> MockServer {
    let server = MockServer::start().await;
    for (status, retry_after) in answers {
        let mut t = ResponseTemplate::new(*status);
        if let Some(v) = retry_after {
            t = t.insert_header("retry-after", *v);
        }
        Mock::given(method("POST")).respond_with(t).up_to_n_times(1).mount(&server).await;
    }
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    server
}

#[tokio::test]
async fn a_webhook_answering_429_with_retry_after_gets_the_alert_once_after_the_wait() {
    let server = receiver(&[(429, Some("7"))]).await;
    let clock = FakeClock::new();
    let cfg = hook(&format!("{}/hook/T000/s3cr3t?token=q", server.uri()));
    let (delivered, body) = deliver(&cfg, Some(clock.clone())).await;
    assert!(delivered);
    assert_eq!(clock.sleeps(), [Duration::from_secs(7)], "the receiver's wait, not a backoff");
    let got = server.received_requests().await.unwrap();
    assert_eq!(got.len(), 2, "the 429, then the one delivery");
    for r in &got {
        assert_eq!((r.url.path(), r.url.query(), &r.body), ("/hook/T000/s3cr3t", Some("token=q"), &body));
        assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
        assert_eq!(r.headers.get("user-agent").unwrap(), concat!("dovetail/", env!("CARGO_PKG_VERSION")));
    }
}

#[tokio::test]
async fn a_wait_past_the_alerts_budget_is_not_waited_and_a_4xx_is_not_retried() {
    let server = receiver(&[(429, Some("3600"))]).await;
    let clock = FakeClock::new();
    let (delivered, _) = deliver(&hook(&format!("{}/hook", server.uri())), Some(clock.clone())).await;
    assert!(!delivered && clock.sleeps().is_empty());
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    let server = receiver(&[(400, None)]).await;
    let (delivered, _) = deliver(&hook(&format!("{}/hook", server.uri())), Some(clock.clone())).await;
    assert!(!delivered);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn every_5xx_and_a_lost_connection_are_retried_up_to_three_attempts() {
    // 501 and 505 too, not only dovetail-http's usual 500/502/503/504.
    let server = receiver(&[(501, None), (505, None)]).await;
    let clock = FakeClock::new();
    let (delivered, _) = deliver(&hook(&format!("{}/hook", server.uri())), Some(clock.clone())).await;
    assert!(delivered);
    assert_eq!((server.received_requests().await.unwrap().len(), clock.sleeps().len()), (3, 2));
    let ceilings = [Duration::from_millis(500), Duration::from_secs(1)];
    assert!(clock.sleeps().iter().zip(ceilings).all(|(w, c)| *w <= c), "{:?}", clock.sleeps());

    let server = receiver(&[(503, None), (503, None), (503, None)]).await;
    let (delivered, _) = deliver(&hook(&format!("{}/hook", server.uri())), Some(clock.clone())).await;
    assert!(!delivered);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let before = clock.sleeps().len();
    let (delivered, _) = deliver(&hook(&nowhere), Some(clock.clone())).await;
    assert!(!delivered);
    assert_eq!(clock.sleeps().len() - before, 2, "connect errors are retried");
}

#[tokio::test]
async fn the_webhook_goes_through_the_configured_proxy() {
    // The Recorder stands in for a forward proxy: it receives the absolute-form request.
    let proxy = Recorder::start().await.unwrap();
    let cfg = AlertsConfig { proxy: Some(proxy.base_url()), ..hook("http://hooks.example.invalid/hook/T000/s3cr3t") };
    let (delivered, body) = deliver(&cfg, None).await;
    assert!(delivered, "the proxy answered 200");
    let got = proxy.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].target, "http://hooks.example.invalid/hook/T000/s3cr3t");
    assert_eq!(got[0].body.as_bytes(), body);
}

#[tokio::test]
async fn user_info_in_the_webhook_url_is_sent_as_basic_auth_not_in_the_url() {
    let server = Recorder::start().await.unwrap();
    let url = server.base_url().replace("http://", "http://alert-user:p%40ss@") + "/hook";
    let (delivered, _) = deliver(&hook(&url), None).await;
    assert!(delivered);
    let got = server.requests();
    assert_eq!((got.len(), got[0].target.as_str()), (1, "/hook"));
    assert_eq!(server.requests_containing("alert-user:p@ss").len(), 1, "{got:?}");
    assert!(got[0].headers.iter().any(|(k, v)| k == "authorization" && v.starts_with("Basic ")), "{got:?}");
}
