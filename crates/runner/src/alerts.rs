//! Alerts (`[pipelines.NAME.alerts]`): after each run, the conditions that hold — failure,
//! a new pause, new drift, dead letters over a threshold, a `Sunset` date close by — each
//! become one JSON alert, POSTed to a webhook and/or piped into a command's stdin. At most
//! one alert per condition per run; a hook that fails is logged and never fails the run.
//! The webhook is POSTed through dovetail-http (a client scoped to the webhook's origin, its
//! path treated as a secret, `proxy` / `ca_certificates` as a connector's `http` block, its
//! retries and `Retry-After` handling). docs/alerts.md describes the body.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dovetail_core::{DriftClass, Error, RunOutcome, RunReport, Secret, StateStore};
use dovetail_http::auth::Basic;
use dovetail_http::{Clock, HttpClient, HttpConfig, Request, RetryPolicy, Verdict};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::de::DeTable;

use crate::diag::{Doc, offset_of};

/// `[pipelines.NAME.alerts]`: where and when a pipeline's alerts go.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// URL to POST each alert to (JSON body). Treated as a secret (it often carries a
    /// token): never logged beyond its scheme and host. Use `${ENV}` to keep it out of the file.
    pub webhook: Option<Secret>,
    /// Program and arguments run once per alert, with the JSON body on stdin.
    pub command: Option<Vec<String>>,
    /// Conditions that alert: `failure`, `pause`, `drift`, `dead_letters`, `sunset` (default: all).
    pub on: Option<Vec<Condition>>,
    /// `dead_letters` alerts when a run dead-letters at least this many records (default 1).
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 1, 1_000_000_000>")]
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub dead_letter_threshold: Option<u64>,
    /// `sunset` alerts when an endpoint's `Sunset` date is at most this many days away,
    /// or past (default 30).
    #[serde(default, deserialize_with = "dovetail_http::in_range::<_, _, 0, 3650>")]
    #[schemars(range(min = 0, max = 3650))]
    pub sunset_within_days: Option<u64>,
    /// Explicit proxy URL for the webhook, as a connector's `http.proxy`; without it
    /// HTTPS_PROXY / HTTP_PROXY / NO_PROXY are honoured.
    pub proxy: Option<String>,
    /// PEM files with extra trusted CA certificates for the webhook, as a connector's
    /// `http.ca_certificates` (a receiver behind a private CA).
    #[serde(default)]
    pub ca_certificates: Vec<PathBuf>,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The run failed (or could not start).
    Failure,
    /// The run paused a stream that was not paused before it.
    Pause,
    /// The run saw drift that was not already open in the stream's drift history.
    Drift,
    /// The run dead-lettered at least `dead_letter_threshold` records.
    DeadLetters,
    /// A vendor endpoint's `Sunset` date is within `sunset_within_days`.
    Sunset,
}

impl Condition {
    fn name(self) -> &'static str {
        match self {
            Condition::Failure => "failure",
            Condition::Pause => "pause",
            Condition::Drift => "drift",
            Condition::DeadLetters => "dead_letters",
            Condition::Sunset => "sunset",
        }
    }
}

impl AlertsConfig {
    fn wants(&self, c: Condition) -> bool {
        self.on.as_ref().is_none_or(|on| on.contains(&c))
    }

    /// Checks what serde cannot: the webhook is an http(s) URL, the command names a program.
    pub fn validate(&self, doc: &Doc, root: &DeTable<'_>, pipeline: &str) -> Result<(), Error> {
        let at = |key: &str| offset_of(root, &["pipelines", pipeline, "alerts", key]);
        if let Some(url) = &self.webhook {
            // The message never repeats the URL: it may hold a token.
            match reqwest::Url::parse(url.expose()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
                Ok(u) => {
                    return Err(doc.error(
                        at("webhook"),
                        format!("`alerts.webhook` must be an http or https URL, not `{}:`", u.scheme()),
                    ));
                }
                Err(e) => return Err(doc.error(at("webhook"), format!("`alerts.webhook` is not a URL ({e})"))),
            }
        }
        if self.command.as_ref().is_some_and(|c| c.first().is_none_or(|p| p.trim().is_empty())) {
            return Err(doc.error(at("command"), "`alerts.command` must name a program: [\"/path/to/hook\", \"arg\"]"));
        }
        self.validate_transport(doc, &at)?;
        if self.webhook.is_none() && self.command.is_none() {
            return Err(doc.error(
                offset_of(root, &["pipelines", pipeline, "alerts"]),
                "[alerts] needs a `webhook` or a `command` to send alerts to",
            ));
        }
        Ok(())
    }
}

impl AlertsConfig {
    /// Checks the webhook's `proxy` and `ca_certificates` now rather than when an alert is
    /// due (the message never repeats the proxy URL: it may hold a password).
    fn validate_transport(&self, doc: &Doc, at: &dyn Fn(&str) -> usize) -> Result<(), Error> {
        if self.webhook.is_none() && (self.proxy.is_some() || !self.ca_certificates.is_empty()) {
            let key = if self.proxy.is_some() { "proxy" } else { "ca_certificates" };
            return Err(doc.error(at(key), format!("`alerts.{key}` applies to the webhook: set `alerts.webhook`")));
        }
        if let Some(p) = &self.proxy
            && reqwest::Proxy::all(p).is_err()
        {
            return Err(doc.error(at("proxy"), "`alerts.proxy` is not a proxy URL (e.g. `http://proxy.internal:3128`)"));
        }
        for f in &self.ca_certificates {
            let what = match std::fs::read(f) {
                Err(e) => Some(format!("cannot read {} ({e})", f.display())),
                Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                    Ok(certs) if !certs.is_empty() => None,
                    _ => Some(format!("{} holds no PEM certificate", f.display())),
                },
            };
            if let Some(what) = what {
                return Err(doc.error(at("ca_certificates"), format!("`alerts.ca_certificates`: {what}")));
            }
        }
        Ok(())
    }
}

/// What the state store knew before a run: the streams already paused and the drift
/// already open, so only what the run added alerts.
#[derive(Debug, Default)]
pub struct Before {
    paused: BTreeSet<String>,
    open_drift: BTreeSet<(String, String, DriftClass, String)>,
}

/// Reads [`Before`] for `pipeline` (nothing when the conditions that need it are off).
pub async fn before(cfg: &AlertsConfig, pipeline: &str, state: &Arc<dyn StateStore>) -> Before {
    let mut b = Before::default();
    if cfg.wants(Condition::Pause) {
        match state.paused(Some(pipeline)).await {
            Ok(p) => b.paused = p.into_iter().map(|p| p.stream).collect(),
            Err(e) => tracing::warn!(pipeline, error = %e.report(), "alerts: cannot read paused streams"),
        }
    }
    if cfg.wants(Condition::Drift) {
        match state.drift_events(Some(pipeline)).await {
            Ok(d) => {
                b.open_drift = d
                    .into_iter()
                    .filter(|d| d.accepted_at.is_none())
                    .map(|d| (d.stream, d.path, d.change, d.observed))
                    .collect();
            }
            Err(e) => tracing::warn!(pipeline, error = %e.report(), "alerts: cannot read drift history"),
        }
    }
    b
}

/// One alert: the JSON body sent to the webhook and the command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Pipeline name.
    pub pipeline: String,
    /// Run id in the state store (`null` when the run could not start).
    pub run_id: Option<i64>,
    /// `failure`, `pause`, `drift`, `dead_letters` or `sunset`.
    pub condition: &'static str,
    /// One sentence saying what happened.
    pub summary: String,
    /// The run's outcome (`succeeded`, `failed`, `paused`, `interrupted`, `not_started`).
    pub outcome: RunOutcome,
    /// Streams the condition concerns.
    pub streams: Vec<String>,
    /// What happened, per condition (see docs/alerts.md).
    pub details: Value,
    /// What to do about it, when dovetail knows (failures and pauses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
    /// Run start (RFC 3339).
    pub started_at: Option<String>,
    /// Run end (RFC 3339).
    pub finished_at: Option<String>,
    /// dovetail's version.
    pub dovetail_version: &'static str,
}

/// The alerts a finished run raises, in condition order; `now` is the current time.
pub fn evaluate(cfg: &AlertsConfig, report: &RunReport, before: &Before, now: jiff::Timestamp) -> Vec<Alert> {
    let base = |condition: Condition, summary: String, streams: Vec<String>, details: Value| Alert {
        pipeline: report.pipeline.clone(),
        run_id: Some(report.run_id),
        condition: condition.name(),
        summary,
        outcome: report.outcome,
        streams,
        details,
        next_step: matches!(condition, Condition::Failure | Condition::Pause)
            .then(|| report.next_step.clone())
            .flatten(),
        started_at: Some(report.started_at.clone()),
        finished_at: Some(report.finished_at.clone()),
        dovetail_version: env!("CARGO_PKG_VERSION"),
    };
    let p = &report.pipeline;
    let mut out = Vec::new();
    let want = |c| cfg.wants(c);
    if want(Condition::Failure) && report.outcome == RunOutcome::Failed {
        let failed: BTreeMap<&String, &Option<String>> = report
            .streams
            .iter()
            .filter(|(_, s)| s.outcome == RunOutcome::Failed)
            .map(|(n, s)| (n, &s.error))
            .collect();
        let error = report.error.clone().unwrap_or_default();
        out.push(base(
            Condition::Failure,
            format!("pipeline `{p}` failed (exit code {}): {}", report.exit_code, first_line(&error)),
            failed.keys().map(|s| s.to_string()).collect(),
            json!({ "error": error, "exit_code": report.exit_code, "stream_errors": failed }),
        ));
    }
    if want(Condition::Pause) {
        let paused: BTreeMap<&String, &Option<String>> = report
            .streams
            .iter()
            .filter(|(n, s)| s.outcome == RunOutcome::Paused && !before.paused.contains(*n))
            .map(|(n, s)| (n, &s.paused))
            .collect();
        if !paused.is_empty() {
            let names: Vec<String> = paused.keys().map(|s| s.to_string()).collect();
            out.push(base(
                Condition::Pause,
                format!("pipeline `{p}` paused {}", list("stream", &names)),
                names,
                json!({ "reasons": paused, "error": report.error }),
            ));
        }
    }
    if want(Condition::Drift) {
        let mut events = Vec::new();
        for (stream, s) in &report.streams {
            for d in &s.drift {
                let key = (stream.clone(), d.path.clone(), d.change, d.observed.clone());
                if !before.open_drift.contains(&key) {
                    events.push(json!({ "stream": stream, "path": d.path, "change": d.change, "expected": d.expected,
                        "observed": d.observed, "count": d.count, "first_at": d.first_at }));
                }
            }
        }
        if !events.is_empty() {
            let streams: BTreeSet<String> =
                events.iter().filter_map(|e| e["stream"].as_str().map(String::from)).collect();
            let paths: Vec<String> =
                events.iter().map(|e| format!("{} {}", e["path"].as_str().unwrap_or(""), e["change"])).collect();
            out.push(base(
                Condition::Drift,
                format!("pipeline `{p}`: new response drift ({})", paths.join(", ").replace('"', "")),
                streams.into_iter().collect(),
                json!({ "events": events }),
            ));
        }
    }
    let threshold = cfg.dead_letter_threshold.unwrap_or(1).max(1);
    let dead = report.total(|s| s.dead_lettered);
    if want(Condition::DeadLetters) && dead >= threshold {
        let per: BTreeMap<&String, u64> =
            report.streams.iter().filter(|(_, s)| s.dead_lettered > 0).map(|(n, s)| (n, s.dead_lettered)).collect();
        out.push(base(
            Condition::DeadLetters,
            format!("pipeline `{p}` dead-lettered {dead} records in one run (threshold {threshold})"),
            per.keys().map(|s| s.to_string()).collect(),
            json!({ "dead_lettered": dead, "threshold": threshold, "per_stream": per }),
        ));
    }
    let days = cfg.sunset_within_days.unwrap_or(30);
    if want(Condition::Sunset) {
        let mut endpoints = Vec::new();
        for (role, http) in &report.http {
            for d in &http.deprecations {
                let Some(at) = d.sunset.as_deref().and_then(sunset_time) else { continue };
                let left = at.duration_since(now).as_secs().div_euclid(86_400);
                if left <= days as i64 {
                    endpoints.push(json!({ "connector": role, "endpoint": d.endpoint, "sunset": d.sunset,
                        "sunset_at": at.to_string(), "days_left": left, "deprecation": d.deprecation }));
                }
            }
        }
        if !endpoints.is_empty() {
            let first = &endpoints[0];
            out.push(base(
                Condition::Sunset,
                format!(
                    "pipeline `{p}`: vendor endpoint {} stops working on {} ({} endpoint(s) within {days} days)",
                    first["endpoint"].as_str().unwrap_or(""),
                    first["sunset"].as_str().unwrap_or(""),
                    endpoints.len()
                ),
                Vec::new(),
                json!({ "within_days": days, "endpoints": endpoints }),
            ));
        }
    }
    out
}

/// The alert for a run that could not start (lock held, state store down).
pub fn not_started(cfg: &AlertsConfig, pipeline: &str, err: &Error, started_at: &str) -> Option<Alert> {
    cfg.wants(Condition::Failure).then(|| Alert {
        pipeline: pipeline.to_owned(),
        run_id: None,
        condition: Condition::Failure.name(),
        summary: format!("pipeline `{pipeline}` could not start: {}", first_line(&err.report())),
        outcome: RunOutcome::NotStarted,
        streams: Vec::new(),
        details: json!({ "error": err.report(), "exit_code": err.kind().exit_code() }),
        next_step: Some(err.next_step()),
        started_at: Some(started_at.to_owned()),
        finished_at: Some(dovetail_core::now_rfc3339()),
        dovetail_version: env!("CARGO_PKG_VERSION"),
    })
}

/// A `Sunset` header value (an HTTP date) as a timestamp.
fn sunset_time(v: &str) -> Option<jiff::Timestamp> {
    let t = httpdate::parse_http_date(v.trim()).ok()?;
    jiff::Timestamp::try_from(t).ok()
}

/// The first line of an error, cut to 200 characters: a summary is read in a chat message;
/// the whole error is in `details`.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

fn list(what: &str, names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    let s = if names.len() == 1 { "" } else { "s" };
    format!("{what}{s} {}", quoted.join(", "))
}

/// Sends each alert to the webhook and the command; failures are logged, never returned.
pub async fn send(cfg: &AlertsConfig, alerts: Vec<Alert>) {
    send_with(cfg, alerts, None).await
}

/// [`send`], on `clock` (tests) or tokio's.
async fn send_with(cfg: &AlertsConfig, alerts: Vec<Alert>, clock: Option<Arc<dyn Clock>>) {
    if alerts.is_empty() {
        return;
    }
    let webhook = cfg.webhook.as_ref().map(|url| {
        Webhook::new(url, cfg, clock).map_err(|e| {
            tracing::warn!(webhook = %webhook_origin(url), error = %e.report(), "alert webhook: no HTTP client");
        })
    });
    for alert in alerts {
        let body = match serde_json::to_vec(&alert) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "alert body could not be encoded");
                continue;
            }
        };
        tracing::info!(pipeline = %alert.pipeline, condition = alert.condition, run_id = alert.run_id, summary = %alert.summary, "alert");
        let mut ok = true;
        match &webhook {
            Some(Ok(w)) => ok &= w.post(&body, &alert).await,
            Some(Err(())) => ok = false,
            None => {}
        }
        if let Some(cmd) = &cfg.command {
            ok &= run_command(cmd, body, &alert).await;
        }
        crate::metrics::alert(&alert.pipeline, alert.condition, ok);
    }
}

/// Attempts per webhook alert.
const WEBHOOK_ATTEMPTS: u32 = 3;
/// Whole-attempt timeout of a webhook POST.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest an alert waits for its webhook, waits included: a receiver asking for a
/// longer `Retry-After` gets the alert logged as not delivered instead.
const WEBHOOK_MAX_ELAPSED: Duration = Duration::from_secs(60);

/// `scheme://host[:port]` of a webhook, the most a log line shows of it.
fn webhook_origin(url: &Secret) -> String {
    reqwest::Url::parse(url.expose()).map(|u| u.origin().ascii_serialization()).unwrap_or_else(|_| "[invalid]".into())
}

/// A webhook and the dovetail-http client that POSTs to it: scoped to the webhook's origin
/// (no redirect to another), its path and query treated as secrets in logs and errors,
/// user info in the URL sent as basic auth.
struct Webhook {
    client: HttpClient,
    /// The URL to POST to, without user info (a secret: never logged).
    url: Secret,
    origin: String,
}

impl Webhook {
    fn new(url: &Secret, cfg: &AlertsConfig, clock: Option<Arc<dyn Clock>>) -> Result<Webhook, Error> {
        let mut parsed = reqwest::Url::parse(url.expose())
            .map_err(|e| Error::config("`alerts.webhook` is not a URL").with_source(e))?;
        let origin = parsed.origin().ascii_serialization();
        let retry = RetryPolicy {
            max_attempts: WEBHOOK_ATTEMPTS,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(2),
            max_elapsed: WEBHOOK_MAX_ELAPSED,
            ..RetryPolicy::default()
        };
        let transport = HttpConfig {
            proxy: cfg.proxy.clone(),
            ca_certificates: cfg.ca_certificates.clone(),
            ..HttpConfig::default()
        };
        let mut b = HttpClient::builder("alerts")
            .base_url(&origin)
            // The user agent alerts have always sent, without the connector's name.
            .header("user-agent", concat!("dovetail/", env!("CARGO_PKG_VERSION")))
            .timeout(WEBHOOK_TIMEOUT)
            .retry(retry)
            // Every 5xx is worth another attempt for an alert, not only the usual ones.
            .classifier(Arc::new(|status, _, _| status.is_server_error().then_some(Verdict::Retry)))
            .secret_path()
            .config(&transport)?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            let user = percent_decoded(parsed.username());
            let password = Secret::new(percent_decoded(parsed.password().unwrap_or("")));
            b = b.auth(Arc::new(Basic::new(user, password)));
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
        }
        if let Some(c) = clock {
            b = b.clock(c);
        }
        Ok(Webhook { client: b.build()?, url: Secret::new(parsed.to_string()), origin })
    }

    /// POSTs one alert (retried on connect errors, timeouts, 408, 429 and 5xx, after the
    /// receiver's `Retry-After` when it gives one); whether it was delivered.
    async fn post(&self, body: &[u8], alert: &Alert) -> bool {
        let req = Request::post(self.url.expose())
            .header("content-type", "application/json")
            .body(body.to_vec())
            // A receiver may see an alert twice; it must not miss one.
            .repeatable(true);
        match self.client.send(req).await {
            Ok(_) => true,
            Err(e) => {
                // The report lists every attempt; URL path and query are redacted in it.
                let error = e.report();
                match e.status() {
                    Some(status) => tracing::warn!(webhook = %self.origin, status, condition = alert.condition, %error,
                        "alert webhook refused the alert"),
                    None => tracing::warn!(webhook = %self.origin, condition = alert.condition, %error,
                        "alert webhook unreachable"),
                }
                false
            }
        }
    }
}

/// `s` with `%XX` escapes decoded (user info of a URL), invalid escapes kept as they are.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How long an alert command may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

async fn run_command(cmd: &[String], body: Vec<u8>, alert: &Alert) -> bool {
    let cmd = cmd.to_vec();
    let condition = alert.condition;
    let pipeline = alert.pipeline.clone();
    let res = tokio::task::spawn_blocking(move || -> std::io::Result<std::process::ExitStatus> {
        let mut child = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("DOVETAIL_ALERT_CONDITION", condition)
            .env("DOVETAIL_ALERT_PIPELINE", &pipeline)
            .stdin(Stdio::piped())
            // dovetail's stdout carries reports (`--json`); a hook's chatter goes to stderr.
            .stdout(Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that ignores its input closes the pipe early; that is its business.
            let _ = stdin.write_all(&body).and_then(|()| stdin.write_all(b"\n"));
        }
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "killed after 30 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await;
    match res {
        Ok(Ok(s)) if s.success() => true,
        Ok(Ok(s)) => {
            tracing::warn!(condition, status = %s, "alert command failed");
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(condition, error = %e, "alert command could not run");
            false
        }
        Err(e) => {
            tracing::warn!(condition, error = %e, "alert command task ended abnormally");
            false
        }
    }
}

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod tests;
