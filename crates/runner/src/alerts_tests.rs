use dovetail_core::drift::DriftEvent;
use dovetail_core::report::Deprecation;
use dovetail_core::{DriftClass, HttpReport, RunOutcome, StreamReport};

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
}
