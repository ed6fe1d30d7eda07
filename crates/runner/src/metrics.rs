//! Prometheus metrics on `--metrics-addr` (with `/healthz` and `/readyz`, `crate::health`): installs the `metrics` recorder (before any
//! connector is built, since dovetail-http caches its handles per client and host), serves
//! the text format over HTTP, and turns the engine's progress callbacks and run reports
//! into the engine's metrics. docs/metrics.md lists every metric.
//!
//! The engine's counts come from [`dovetail_core::Progress`] (once per batch, never per
//! record), so core stays free of metrics calls and a scrape mid-run sees live counts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use dovetail_core::{Progress, RunOutcome, RunReport, StreamReport};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use metrics::{Counter, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets (seconds) of HTTP latencies and waits: 5 ms to 2 minutes.
const HTTP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Buckets (seconds) of whole runs: 1 s to 2 hours.
const RUN_BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0];

/// Reads one counter of a stream report.
type Count = fn(&StreamReport) -> u64;

/// The stage labels of `dovetail_records_total`, with the report counter each one follows.
const STAGES: [(&str, Count); 9] = [
    ("read", |r| r.read),
    ("filtered", |r| r.filtered),
    ("mapped", |r| r.mapped),
    ("written", |r| r.written),
    ("skipped_unchanged", |r| r.skipped_unchanged),
    ("superseded", |r| r.superseded),
    ("dead_lettered", |r| r.dead_lettered),
    ("deleted", |r| r.deleted),
    ("replayed", |r| r.replayed),
];

/// Installs the Prometheus recorder and serves it on `addr` (`host:port`; port 0 picks a
/// free one). Returns the bound address, which is also logged as `metrics on http://…`.
pub async fn serve(addr: &str) -> anyhow::Result<SocketAddr> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Prefix("dovetail_http_".into()), HTTP_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("dovetail_run_duration_seconds".into()), RUN_BUCKETS)?
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        dovetail_core::Error::config(format!("cannot serve metrics on `{addr}` (--metrics-addr)")).with_source(e)
    })?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "metrics on http://{bound}/metrics");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        // Histograms buffer samples until rendered; upkeep drains them when nobody scrapes.
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(accept(listener, handle));
    Ok(bound)
}

async fn accept(listener: tokio::net::TcpListener, handle: PrometheusHandle) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let handle = handle.clone();
                async move {
                    // `/healthz` and `/readyz` beside the metrics (crate::health); anything else is the scrape.
                    if let Some((status, body)) = crate::health::respond(req.uri().path()).await {
                        return Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body.to_string())))
                                .unwrap_or_default(),
                        );
                    }
                    Ok(Response::builder()
                        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                        .body(Full::new(Bytes::from(handle.render())))
                        .unwrap_or_default())
                }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

/// HELP lines for every metric family, dovetail-http's included: the recorder is installed
/// here, so the binary describes them all (a scrape shows no family without HELP). The HTTP
/// families are per host, not per pipeline: pipelines on one host share its client and limits.
fn describe() {
    describe_http();
    metrics::describe_counter!("dovetail_records_total", "Records per pipeline, stream and stage");
    metrics::describe_counter!("dovetail_runs_total", "Finished pipeline runs by outcome");
    metrics::describe_histogram!("dovetail_run_duration_seconds", Unit::Seconds, "Duration of pipeline runs");
    metrics::describe_counter!("dovetail_drift_events_total", "Drift events (path, change) reported by runs");
    metrics::describe_gauge!("dovetail_outbox_pending", "Records waiting in a stream's outbox after its last run");
    metrics::describe_gauge!(
        "dovetail_last_success_timestamp_seconds",
        Unit::Seconds,
        "Unix time at which the pipeline's last successful run finished"
    );
    metrics::describe_gauge!("dovetail_run_in_progress", "1 while a run of the pipeline is going");
    metrics::describe_gauge!("dovetail_paused_streams", "Streams of the pipeline paused by its last run");
    metrics::describe_counter!("dovetail_alerts_total", "Alerts fired by condition and delivery result");
    metrics::describe_counter!("dovetail_schedule_skipped_ticks_total", "`--every` ticks skipped by a run in progress");
}

fn describe_http() {
    use metrics::{describe_counter as counter, describe_histogram as histogram};
    counter!("dovetail_http_requests_total", "Logical HTTP requests (each may take several attempts) by outcome");
    histogram!(
        "dovetail_http_request_seconds",
        Unit::Seconds,
        "Duration of logical requests, retries and waits included"
    );
    counter!("dovetail_http_attempts_total", "HTTP attempts sent, by status (or `error`)");
    histogram!("dovetail_http_attempt_seconds", Unit::Seconds, "Latency of each attempt, send to full body");
    counter!("dovetail_http_429_total", "Attempts answered 429 Too Many Requests");
    counter!("dovetail_http_retries_total", "Waits before a retry");
    histogram!("dovetail_http_wait_seconds", Unit::Seconds, "Waits by reason: retry backoff or rate limit");
    counter!("dovetail_http_slowdowns_total", "429s without a wait header, after which the client halved its rate");
    counter!("dovetail_http_token_requests_total", "OAuth2 token requests (first token and refreshes)");
    counter!("dovetail_http_cache_hits_total", "Responses served from the response cache, by kind");
    counter!("dovetail_http_circuit_open_total", "Times the circuit breaker opened for a host");
    counter!("dovetail_http_deprecated_total", "Deprecation or Sunset headers seen, per endpoint");
}

/// The [`Progress`] handed to the engine: counts each stream's records into
/// `dovetail_records_total` as batches complete, then passes the call on (progress bars).
pub struct PipelineProgress {
    pipeline: String,
    inner: Option<Arc<dyn Progress>>,
    streams: Mutex<HashMap<String, StreamCounters>>,
}

/// One stream's counter handles and the counts already added to them.
struct StreamCounters {
    handles: Vec<Counter>,
    seen: [u64; STAGES.len()],
}

impl PipelineProgress {
    /// Progress for one run of `pipeline`, forwarding to `inner` when given.
    pub fn shared(pipeline: &str, inner: Option<Arc<dyn Progress>>) -> Arc<dyn Progress> {
        Arc::new(PipelineProgress { pipeline: pipeline.to_owned(), inner, streams: Mutex::default() })
    }

    /// Adds what `report` counts beyond what was added for `stream` so far.
    fn count(&self, stream: &str, report: &StreamReport) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let c = streams.entry(stream.to_owned()).or_insert_with(|| StreamCounters {
            handles: STAGES
                .iter()
                .map(|(stage, _)| {
                    metrics::counter!("dovetail_records_total", "pipeline" => self.pipeline.clone(),
                        "stream" => stream.to_owned(), "stage" => *stage)
                })
                .collect(),
            seen: [0; STAGES.len()],
        });
        for (i, (_, get)) in STAGES.iter().enumerate() {
            let now = get(report);
            if now > c.seen[i] {
                c.handles[i].increment(now - c.seen[i]);
                c.seen[i] = now;
            }
        }
    }
}

impl Progress for PipelineProgress {
    fn started(&self, stream: &str) {
        self.count(stream, &StreamReport::default());
        if let Some(p) = &self.inner {
            p.started(stream);
        }
    }
    fn batch(&self, stream: &str, report: &StreamReport) {
        self.count(stream, report);
        if let Some(p) = &self.inner {
            p.batch(stream, report);
        }
    }
    fn finished(&self, stream: &str, report: &StreamReport) {
        self.count(stream, report);
        if let Some(p) = &self.inner {
            p.finished(stream, report);
        }
    }
}

/// A run of `pipeline` starts (`true`) or ended (`false`).
pub fn in_progress(pipeline: &str, running: bool) {
    metrics::gauge!("dovetail_run_in_progress", "pipeline" => pipeline.to_owned()).set(if running { 1.0 } else { 0.0 });
}

/// The per-run metrics of a finished run: outcome, duration, drift, outbox, pauses and the
/// last success time.
pub fn run_finished(report: &RunReport) {
    let p = report.pipeline.clone();
    metrics::counter!("dovetail_runs_total", "pipeline" => p.clone(), "outcome" => report.outcome.as_str())
        .increment(1);
    metrics::histogram!("dovetail_run_duration_seconds", "pipeline" => p.clone())
        .record(report.duration_ms as f64 / 1000.0);
    let mut paused = 0.0;
    for (stream, s) in &report.streams {
        for d in &s.drift {
            metrics::counter!("dovetail_drift_events_total", "pipeline" => p.clone(), "stream" => stream.clone(),
                "change" => d.change.as_str())
            .increment(1);
        }
        metrics::gauge!("dovetail_outbox_pending", "pipeline" => p.clone(), "stream" => stream.clone())
            .set(s.outbox_pending as f64);
        if s.outcome == RunOutcome::Paused {
            paused += 1.0;
        }
    }
    metrics::gauge!("dovetail_paused_streams", "pipeline" => p.clone()).set(paused);
    if report.outcome == RunOutcome::Succeeded && !report.dry_run {
        let at = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        metrics::gauge!("dovetail_last_success_timestamp_seconds", "pipeline" => p).set(at);
    }
}

/// A run of `pipeline` that could not start (lock held, state store down).
pub fn run_not_started(pipeline: &str) {
    metrics::counter!("dovetail_runs_total", "pipeline" => pipeline.to_owned(), "outcome" => RunOutcome::NotStarted.as_str())
        .increment(1);
}

/// An alert for `condition` was delivered (`ok`) or not.
pub fn alert(pipeline: &str, condition: &'static str, ok: bool) {
    let result = if ok { "delivered" } else { "failed" };
    metrics::counter!("dovetail_alerts_total", "pipeline" => pipeline.to_owned(), "condition" => condition,
        "result" => result)
    .increment(1);
}

/// An `--every` tick arrived while the previous run was still going.
pub fn skipped_tick() {
    metrics::counter!("dovetail_schedule_skipped_ticks_total").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_adds_only_what_is_new_per_stage() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let p = PipelineProgress::shared("pl", None);
            p.started("items");
            p.batch("items", &StreamReport { read: 100, mapped: 90, dead_lettered: 10, ..Default::default() });
            p.batch("items", &StreamReport { read: 250, mapped: 240, dead_lettered: 10, ..Default::default() });
            p.finished("items", &StreamReport { read: 250, mapped: 240, written: 240, ..Default::default() });
        });
        let text = handle.render();
        let value = |stage: &str| -> String {
            let needle = format!("dovetail_records_total{{pipeline=\"pl\",stream=\"items\",stage=\"{stage}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&needle))
                .unwrap_or_else(|| panic!("no {stage} in:\n{text}"))
                .to_owned()
        };
        assert_eq!(value("read"), "250");
        assert_eq!(value("mapped"), "240");
        assert_eq!(value("written"), "240");
        assert_eq!(value("dead_lettered"), "10");
        assert_eq!(value("deleted"), "0");
    }

    #[test]
    fn a_finished_run_sets_drift_outbox_pause_outcome_and_last_success() {
        use dovetail_core::drift::{DriftClass, DriftEvent};
        let drift = |path: &str, change| DriftEvent {
            path: path.into(),
            change,
            expected: "number".into(),
            observed: "string".into(),
            count: 7,
            first_seen: String::new(),
            first_at: String::new(),
        };
        let mut report =
            RunReport { pipeline: "pl".into(), outcome: RunOutcome::Paused, duration_ms: 2500, ..Default::default() };
        report.streams.insert(
            "a".into(),
            StreamReport {
                outcome: RunOutcome::Paused,
                outbox_pending: 12,
                drift: vec![
                    drift("/price", DriftClass::TypeChanged),
                    drift("/tags", DriftClass::TypeChanged),
                    drift("/x", DriftClass::NewField),
                ],
                ..Default::default()
            },
        );
        report.streams.insert("b".into(), StreamReport { outcome: RunOutcome::Succeeded, ..Default::default() });
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            run_finished(&report);
            run_finished(&RunReport { pipeline: "ok".into(), outcome: RunOutcome::Succeeded, ..Default::default() });
        });
        let text = handle.render();
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
                .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        };
        // One event per (path, change) per run, not per record.
        assert_eq!(value(r#"dovetail_drift_events_total{pipeline="pl",stream="a",change="type_changed"}"#), 2.0);
        assert_eq!(value(r#"dovetail_drift_events_total{pipeline="pl",stream="a",change="new_field"}"#), 1.0);
        assert_eq!(value(r#"dovetail_outbox_pending{pipeline="pl",stream="a"}"#), 12.0);
        assert_eq!(value(r#"dovetail_outbox_pending{pipeline="pl",stream="b"}"#), 0.0);
        assert_eq!(value(r#"dovetail_paused_streams{pipeline="pl"}"#), 1.0);
        assert_eq!(value(r#"dovetail_runs_total{pipeline="pl",outcome="paused"}"#), 1.0);
        assert_eq!(value(r#"dovetail_run_duration_seconds_sum{pipeline="pl"}"#), 2.5);
        // Only a successful run sets the last-success time.
        assert!(!text.contains(r#"dovetail_last_success_timestamp_seconds{pipeline="pl"}"#), "{text}");
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        let last = value(r#"dovetail_last_success_timestamp_seconds{pipeline="ok"}"#);
        assert!((now - 60.0..=now + 1.0).contains(&last), "{last} vs {now}");
    }
}
