//! `dovetail demo`: the fake vendor in-process with moderate faults, the demo pipeline from
//! `examples/demo.toml` through the REST connector into SQLite, and a report that says what
//! happened in words a newcomer follows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dovetail_core::{DriftClass, ErrorKind, RunOptions, RunOutcome, RunReport};
use dovetail_fake_vendor::{AuthMode, FakeVendor, VendorConfig};

use crate::cli::DemoArgs;
use crate::interpolate::Lookup;
use crate::output::count;
use crate::{config, output};

/// The demo pipeline, for a binary run outside the repository.
const DEMO_TOML: &str = include_str!("../../../../examples/demo.toml");
/// The demo vendor.
const VENDOR_TOML: &str = include_str!("../../../../examples/demo-vendor.toml");

/// The process environment, plus the variables the demo fills in.
struct DemoEnv(BTreeMap<&'static str, String>);

impl Lookup for DemoEnv {
    fn env(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned().or_else(|| std::env::var(name).ok())
    }
}

/// Run the demo; the exit code is the run's.
pub async fn run(args: &DemoArgs) -> anyhow::Result<i32> {
    let (config_path, vendor_text) = files(args)?;
    let mut vendor_cfg = VendorConfig::parse(&vendor_text).map_err(|e| anyhow::anyhow!("demo vendor config: {e}"))?;
    vendor_cfg.port = 0;
    if let Some(n) = args.records {
        vendor_cfg.records = n;
    }
    let (client_secret, refresh_token) = match &vendor_cfg.auth {
        AuthMode::OAuth2 { client_secret, refresh_token, .. } => {
            (client_secret.clone(), refresh_token.clone().unwrap_or_default())
        }
        _ => (String::new(), String::new()),
    };
    let faults = vendor_cfg.faults.clone();
    let rate = vendor_cfg.rate_limit;
    let records = vendor_cfg.records;
    let vendor = FakeVendor::start(vendor_cfg).await?;
    let env = DemoEnv(BTreeMap::from([
        ("DOVETAIL_DEMO_URL", vendor.base_url()),
        ("DOVETAIL_DEMO_CLIENT_SECRET", client_secret),
        ("DOVETAIL_DEMO_REFRESH_TOKEN", refresh_token),
    ]));
    let project = config::load_with(&config_path, &env)?;
    // The vendor is new on every demo run, so refresh tokens rotated by an earlier one mean
    // nothing to it: start from the configured token.
    if let Some(dir) = project.state_path.parent() {
        let _ = std::fs::remove_file(dir.join("tokens.json"));
    }
    let state = super::open_state(&project.state_path)?;
    let before = state.runs(None, 1).await?.first().map(|r| r.id).unwrap_or(0);

    output::out(&format!(
        "dovetail demo: a fake vendor with {records} records is up at {} — {}\n\n",
        vendor.base_url(),
        fault_words(&faults, rate.as_ref().map(|r| (r.per_second, r.burst)))
    ))?;
    let cancel = super::cancel_on_signal();
    let mut code = 0;
    for spec in &project.pipelines {
        let pipeline = spec.build(state.clone())?;
        let opts = RunOptions {
            cancel: cancel.clone(),
            progress: crate::progress::for_run(Some(pipeline.source())),
            ..Default::default()
        };
        let report = pipeline.run(opts).await?;
        output::out(&output::run_summary(&report, "pipeline"))?;
        let dead = state.dead_letters(Some(&report.pipeline), None, 1000).await?;
        let stats = vendor.stats();
        output::out(&story(&report, &dead, before, &project.state_path, &sink_paths(&config_path)?, stats.requests))?;
        code = if code != 0 { code } else { super::run::report_code(&report) };
    }
    vendor.shutdown().await;
    Ok(code)
}

/// The demo's config file and vendor config: `--config` (default `examples/demo.toml` when
/// it exists, else a copy of the built-in one under `target/dovetail-demo/`).
fn files(args: &DemoArgs) -> anyhow::Result<(PathBuf, String)> {
    let config = match &args.demo_config {
        Some(p) => p.clone(),
        None if Path::new("examples/demo.toml").exists() => PathBuf::from("examples/demo.toml"),
        None => {
            // The built-in file's paths (`../target/dovetail-demo/...`) land in
            // `./target/dovetail-demo/` when it sits in `./dovetail-demo/`.
            let dir = PathBuf::from("dovetail-demo");
            std::fs::create_dir_all(&dir)?;
            let p = dir.join("demo.toml");
            if !p.exists() {
                std::fs::write(&p, DEMO_TOML)?;
            }
            p
        }
    };
    let vendor_file = config.with_file_name("demo-vendor.toml");
    let vendor = if vendor_file.exists() { std::fs::read_to_string(&vendor_file)? } else { VENDOR_TOML.to_owned() };
    Ok((config, vendor))
}

/// The `path` of each SQLite sink in the config, resolved against its folder.
fn sink_paths(config: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(config)?;
    let doc: toml::Table = toml::from_str(&text)?;
    let base = config.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    if let Some(pipelines) = doc.get("pipelines").and_then(toml::Value::as_table) {
        for p in pipelines.values() {
            if let Some(path) = p.get("sink").and_then(|s| s.get("path")).and_then(toml::Value::as_str) {
                out.push(base.join(path));
            }
        }
    }
    Ok(out)
}

fn fault_words(f: &dovetail_fake_vendor::Faults, rate: Option<(f64, u32)>) -> String {
    let mut w = Vec::new();
    if let Some((r, b)) = rate {
        w.push(format!("a rate limit of {r} requests/s (burst {b}) that dovetail is not told about"));
    }
    if f.error_503_ratio > 0.0 {
        w.push(format!("{:.0}% of requests answered 503", f.error_503_ratio * 100.0));
    }
    w.push("access tokens that expire every few seconds and refresh tokens that rotate".into());
    if f.null_ratio > 0.0 {
        w.push("nulls where values were promised".into());
    }
    if let Some(k) = f.drift_after {
        w.push(format!("a field that changes type after record {k}"));
    }
    w.join(", ")
}

/// The run in words: what dovetail survived, what it wrote, where things are.
fn story(
    r: &RunReport,
    dead: &[dovetail_core::state::DeadLetter],
    previous_run: i64,
    state_path: &Path,
    sinks: &[PathBuf],
    vendor_requests: u64,
) -> String {
    let mut out = String::from("\nWhat happened:\n");
    let written = r.total(|s| s.written);
    let unchanged = r.total(|s| s.skipped_unchanged) + r.total(|s| s.filtered);
    if written == 0 && r.outcome == RunOutcome::Succeeded {
        out.push_str(&format!(
            "  - Nothing new at the vendor: 0 records written ({unchanged} already delivered were skipped). This rerun changed nothing.\n"
        ));
    } else {
        out.push_str(&format!(
            "  - {} records read, {written} written, {unchanged} skipped as already delivered, {} dead-lettered.\n",
            r.total(|s| s.read),
            r.total(|s| s.dead_lettered)
        ));
    }
    if let Some(h) = r.http.get("source") {
        let by = |c: &str| h.retry_causes.get(c).copied().unwrap_or(0);
        let server_errors: u64 = h.retry_causes.iter().filter(|(c, _)| c.starts_with('5')).map(|(_, n)| n).sum();
        out.push_str(&format!(
            "  - {} ({}; the vendor counted {vendor_requests}, token requests included).\n",
            count(h.requests, "HTTP request", "HTTP requests"),
            count(h.attempts, "attempt", "attempts")
        ));
        if server_errors > 0 {
            out.push_str(&format!(
                "  - Survived {} (5xx): each retried with backoff and jitter.\n",
                count(server_errors, "server error", "server errors")
            ));
        }
        // dovetail-http's retry cause for an attempt held back because no token could be had.
        let token_failures = by("token endpoint");
        if token_failures > 0 {
            out.push_str(&format!(
                "  - Survived {} (the token endpoint answered 5xx or nothing): the requests waiting for a token were retried with backoff.\n",
                count(token_failures, "failed token request", "failed token requests")
            ));
        }
        let other: u64 = h.retries - server_errors - by("429") - token_failures;
        if other > 0 {
            let more = count(other, "more attempt", "more attempts");
            out.push_str(&format!("  - Retried {more} (connection errors, broken bodies).\n"));
        }
        out.push_str(&format!(
            "  - Rate limit: {} waiting for the vendor's budget to refill, {} refused with 429.\n",
            output::duration(h.rate_limit_wait_ms),
            count(h.by_status.get("429").copied().unwrap_or(0), "request", "requests")
        ));
        out.push_str(&format!(
            "  - OAuth2: {} (the first token and refreshes before each expiry); rotated refresh tokens saved before use.\n",
            count(h.token_requests, "token request", "token requests")
        ));
        if h.not_modified > 0 {
            out.push_str(&format!(
                "  - {} responses were not modified (304) and came from the cache.\n",
                h.not_modified
            ));
        }
        for d in &h.deprecations {
            out.push_str(&format!(
                "  - The vendor marked {} deprecated{}.\n",
                d.endpoint,
                d.sunset.as_ref().map(|s| format!(" (sunset {s})")).unwrap_or_default()
            ));
        }
    }
    for (stream, s) in &r.streams {
        let nulls: u64 = s.drift.iter().filter(|d| d.change == DriftClass::NullValue).map(|d| d.count).sum();
        if nulls > 0 {
            out.push_str(&format!(
                "  - Survived nulls where the schema promises values ({nulls} values in `{stream}`): kept as null and reported by path above, not dropped.\n"
            ));
        }
        for d in s.drift.iter().filter(|d| d.change != DriftClass::NullValue) {
            let what = match d.change {
                DriftClass::TypeChanged => format!("arrived as {} where the schema says {}", d.observed, d.expected),
                DriftClass::NewField => "is a field the schema does not know".to_owned(),
                DriftClass::MissingField => "was missing".to_owned(),
                DriftClass::EnumValue => format!("took the new value {} (the schema lists {})", d.observed, d.expected),
                DriftClass::ColumnType => {
                    format!("arrived as {} in a SQLite column made for {}", d.observed, d.expected)
                }
                DriftClass::NullValue => d.change.to_string(), // told above, with the other nulls
            };
            out.push_str(&format!(
                "  - Detected drift in `{stream}`: {} {what} in {} records, from {}; kept and reported, not dropped.\n",
                d.path, d.count, d.first_at
            ));
        }
    }
    let new_dead: Vec<_> = dead.iter().filter(|d| d.created_at.as_str() >= r.started_at.as_str()).collect();
    if new_dead.is_empty() {
        out.push_str("  - Dead letters: none this run.\n");
    } else {
        out.push_str(&format!("  - Dead letters ({}), each with its reason:\n", new_dead.len()));
        for d in new_dead.iter().take(5) {
            out.push_str(&format!("      #{}: {}\n", d.id, output::truncate(&d.reason, 120)));
        }
    }
    let shown = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    for s in sinks {
        out.push_str(&format!("  - Data: {} (SQLite; one table per stream).\n", shown(s)));
    }
    out.push_str(&format!(
        "  - State: {} (checkpoints, ledger, dead letters, run history; tokens in tokens.json beside it).\n",
        shown(state_path)
    ));
    if previous_run > 0 {
        out.push_str(
            "  Run `dovetail demo` again: the vendor starts fresh, dovetail remembers, and nothing is written twice.\n",
        );
    } else {
        out.push_str("  Run `dovetail demo` again: dovetail resumes from its checkpoint and writes nothing new.\n");
    }
    if r.exit_code != 0 && r.exit_code != ErrorKind::Interrupted.exit_code() {
        out.push_str(&format!(
            "  The run did not succeed: {}\n",
            r.error.clone().unwrap_or_else(|| r.outcome.to_string())
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_names_each_retry_cause_once_and_in_its_own_words() {
        let mut h = dovetail_core::HttpReport {
            requests: 30,
            attempts: 33,
            retries: 6,
            token_requests: 5,
            ..Default::default()
        };
        for (cause, n) in [("503", 2), ("500", 1), ("429", 1), ("token endpoint", 1), ("timeout", 1)] {
            h.retry_causes.insert(cause.into(), n);
        }
        h.by_status.insert("429".into(), 1);
        let r =
            RunReport { outcome: RunOutcome::Succeeded, http: [("source".to_owned(), h)].into(), ..Default::default() };
        let text = story(&r, &[], 0, Path::new("state.db"), &[], 36);
        for line in [
            "  - 30 HTTP requests (33 attempts; the vendor counted 36, token requests included).\n",
            "  - Survived 3 server errors (5xx): each retried with backoff and jitter.\n",
            "  - Survived 1 failed token request (the token endpoint answered 5xx or nothing): the requests waiting for a token were retried with backoff.\n",
            "  - Retried 1 more attempt (connection errors, broken bodies).\n",
            "  - Rate limit: 0ms waiting for the vendor's budget to refill, 1 request refused with 429.\n",
            "  - OAuth2: 5 token requests",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
