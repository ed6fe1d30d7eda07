//! `dovetail demo`: the fake vendor in-process with moderate faults, the demo pipeline from
//! `examples/demo.toml` through the REST connector into SQLite, and a report that says what
//! happened in words a newcomer follows.
//!
//! On a first run (no run in the state yet) the pipelines first run in a child `dovetail run`
//! that the demo kills (SIGKILL) once the sink holds a third of the vendor's records; the demo
//! then resumes in-process from the child's last checkpoint, meets a page of malformed JSON
//! answered 200, and on the run after it finds its SQLite sink locked by another writer
//! partway (the records wait in the outbox, and the next run delivers them first). The closing story and `--json`
//! are built from the run report, the vendor's own counters and the sink's rows: nothing is
//! claimed that the counters do not show.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dovetail_core::{DriftClass, RunOptions, RunOutcome, RunReport};
use dovetail_fake_vendor::{AuthMode, FakeVendor, Stats, VendorConfig, VendorHandle};
use serde::Serialize;

use crate::cli::DemoArgs;
use crate::interpolate::Lookup;
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

/// What `dovetail demo --json` prints: counts taken from the vendor, the sink and the state,
/// not from the run's own claims.
#[derive(Debug, Serialize)]
struct DemoJson {
    /// Records the vendor holds.
    vendor_records: u64,
    /// Rows in the sink's tables (one per stream), all runs together.
    sink_rows: u64,
    /// Keys that appear in more than one sink row.
    duplicate_keys: u64,
    /// Distinct keys among the pipeline's dead letters, all runs together.
    dead_lettered_keys: u64,
    /// Records written by this demo's in-process runs (the killed child's count is not known;
    /// the sink's rows are the truth).
    written: u64,
    /// Whether the child run was killed mid-run, and whether the next run resumed it.
    crash: Crash,
    /// The outbox over this demo's in-process runs: what waited while the sink was down.
    outbox: Outbox,
    /// Each fault the demo configured, with the counter that shows it happened.
    faults: BTreeMap<&'static str, u64>,
    /// The vendor's counters.
    vendor: Stats,
    /// The exit code of the demo (the last run's).
    exit_code: i32,
    /// The in-process run's report.
    report: RunReport,
}

/// The crash the demo stages on a first run.
#[derive(Debug, Default, Serialize)]
struct Crash {
    /// The child `dovetail run` was killed with SIGKILL.
    killed: bool,
    /// Records the vendor had served when it was.
    at_records_served: u64,
    /// The run after it resumed from a checkpoint.
    resumed: bool,
}

/// The outbox over the demo's in-process runs, from their reports.
#[derive(Debug, Default, Serialize)]
struct Outbox {
    /// Records queued in the outbox because the sink was down.
    queued: u64,
    /// Records delivered from the outbox once it was back.
    delivered: u64,
    /// Records still waiting after the last run.
    pending: u64,
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
    let auth = vendor_cfg.auth.clone();
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
    let state_dir = project.state_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let _ = std::fs::remove_file(state_dir.join("tokens.json"));
    let state = super::open_state(&project.state_path)?;
    let before = state.runs(None, 1).await?.first().map(|r| r.id).unwrap_or(0);
    let say = |text: &str| if args.json { Ok(()) } else { output::out(text) };

    say(&format!(
        "dovetail demo: a fake vendor with {records} records is up at {} — {}\n\n",
        vendor.base_url(),
        fault_words(&faults, rate.as_ref().map(|r| (r.per_second, r.burst)), &auth, before == 0)
    ))?;
    let sinks = sink_paths(&config_path)?;
    let stream_names: Vec<String> = project.pipelines.iter().flat_map(|p| p.stream_names()).collect();
    let stream_names: Vec<&str> = stream_names.iter().map(String::as_str).collect();
    let mut crash = Crash::default();
    let mut staged_malformed = None;
    let mut outbox = Outbox::default();
    if before == 0 {
        let log = state_dir.join("demo-crashed-run.log");
        let plan = (records, sinks.as_slice(), stream_names.as_slice());
        if let Some(served) = crash_run(&config_path, &env, &vendor, plan, &log).await? {
            crash = Crash { killed: true, at_records_served: served, resumed: false };
            // A page two past the checkpoint answers 200 with a body that never parses, once.
            let rows = sink_counts(&sinks, &stream_names).map(|(rows, _)| rows).unwrap_or(0);
            let v = vendor.stats();
            let page = (v.records_served / v.pages_served.max(1)).max(1);
            let mut f = vendor.faults();
            (f.malformed_page, f.malformed_page_times) = (Some(rows / page + 2), 1);
            staged_malformed = f.malformed_page;
            vendor.set_faults(f);
            say(&format!(
                "A first `dovetail run` was killed (SIGKILL) after the vendor had served {served} records; resuming it here.\n\n"
            ))?;
        }
    }
    let cancel = super::cancel_on_signal();
    let mut code = 0;
    let mut last = None;
    let mut written = 0;
    // Every in-process run's report: a fault shows in whichever run met it.
    let mut runs = Vec::new();
    for spec in &project.pipelines {
        let mut again = staged_malformed.is_some();
        // A run after the crash finds the sink locked partway.
        let mut sink_down = crash.killed;
        let report = loop {
            let pipeline = spec.build(state.clone())?;
            let progress = if args.json { None } else { crate::progress::for_run(Some(pipeline.source())) };
            let opts = RunOptions { cancel: cancel.clone(), progress, ..Default::default() };
            // The vendor's counters at this run's start: the story tells this run's share.
            let at_start = vendor.stats();
            let lock = sink_down.then(|| SinkLock::midway(&sinks, &stream_names));
            let report = pipeline.run(opts).await;
            let locked = lock.is_some_and(SinkLock::release);
            sink_down &= !locked;
            let report = report?;
            crash.resumed |= report.streams.values().any(|s| s.resumed);
            written += report.total(|s| s.written);
            outbox.queued += report.total(|s| s.outbox_queued);
            outbox.delivered += report.total(|s| s.outbox_delivered);
            outbox.pending = report.total(|s| s.outbox_pending);
            say(&output::run_summary(&report, "pipeline"))?;
            runs.push(report.clone());
            if locked && report.total(|s| s.outbox_pending) > 0 {
                say(&format!(
                    "\nAnother writer held the sink's database locked past its busy timeout: from then on the run queued {} in the outbox (in the state database, each batch with its checkpoint) and the stream paused. Running again, as a schedule would: the outbox is delivered first.\n\n",
                    output::count(report.total(|s| s.outbox_queued), "record", "records")
                ))?;
                continue;
            }
            if again
                && report.outcome != RunOutcome::Succeeded
                && vendor.stats().malformed_pages > at_start.malformed_pages
            {
                again = false;
                say(
                    "\nThe vendor answered a page 200 with malformed JSON: the stream stopped at the checkpoint before it (the error names the URL), nothing past it was taken for granted. Running again, as a schedule would:\n\n",
                )?;
                continue;
            }
            break (report, at_start);
        };
        let (report, at_start) = report;
        let dead = state.dead_letters(Some(&report.pipeline), None, 100_000).await?;
        let stats = vendor.stats();
        let demo = crate::story::Demo { previous_run: before, vendor: &stats, at_start: &at_start, auth: &auth };
        say(&crate::story::story(&report, &dead, &project.state_path, &sinks, Some(&demo)))?;
        code = if code != 0 { code } else { super::run::report_code(&report) };
        last = Some((report, dead));
    }
    let vendor_records = vendor.records_held();
    let stats = vendor.stats();
    vendor.shutdown().await;
    let Some((report, dead)) = last else { return Ok(code) };
    let streams: Vec<&str> = report.streams.keys().map(String::as_str).collect();
    let (sink_rows, duplicate_keys) = sink_counts(&sinks, &streams)?;
    let dead_keys: BTreeSet<(&str, &str)> =
        dead.iter().filter_map(|d| d.key.as_deref().map(|k| (d.stream.as_str(), k))).collect();
    let counted = DemoJson {
        vendor_records,
        sink_rows,
        duplicate_keys,
        dead_lettered_keys: dead_keys.len() as u64,
        written,
        faults: fault_counters(&faults, rate.is_some(), &runs, &stats, (&crash, staged_malformed, &outbox), records),
        crash,
        outbox,
        vendor: stats,
        exit_code: code,
        report,
    };
    if args.json {
        output::out(&format!("{}\n", serde_json::to_string(&counted)?))?;
    } else {
        say(&closing(&counted))?;
    }
    Ok(code)
}

/// Runs the pipelines in a child `dovetail run` and kills it (SIGKILL) once its sink holds a
/// third of the vendor's records, so that it has committed checkpoints to resume from;
/// `Some(records the vendor had served)` when it was killed, `None` when it finished first.
/// Its log goes to `log`.
async fn crash_run(
    config: &Path,
    env: &DemoEnv,
    vendor: &VendorHandle,
    (records, sinks, streams): (u64, &[PathBuf], &[&str]),
    log: &Path,
) -> anyhow::Result<Option<u64>> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("--config").arg(config).args(["run", "--json"]);
    for (name, value) in &env.0 {
        cmd.env(name, value);
    }
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::fs::File::create(log)?);
    let mut child = cmd.spawn()?;
    let threshold = (records / 3).max(1);
    loop {
        if child.try_wait()?.is_some() {
            return Ok(None);
        }
        // The sink may be mid-creation or locked by a commit: not there yet is 0.
        let rows = sink_counts(sinks, streams).map(|(rows, _)| rows).unwrap_or(0);
        if rows >= threshold {
            child.kill()?;
            child.wait()?;
            return Ok(Some(vendor.stats().records_served));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Another writer holding the demo's SQLite sink locked (an open write transaction), from
/// the moment the sink gains a row until the run ends: the sink's writes then fail busy after
/// its busy timeout, an outage, and the run queues the rest of its records in the outbox.
struct SinkLock {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<bool>,
}

impl SinkLock {
    /// Starts watching the first sink; it is locked once it holds more rows than now.
    fn midway(sinks: &[PathBuf], streams: &[&str]) -> SinkLock {
        let stop = Arc::new(AtomicBool::new(false));
        let (sinks, streams): (Vec<PathBuf>, Vec<String>) =
            (sinks.to_vec(), streams.iter().map(|s| (*s).to_owned()).collect());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let streams: Vec<&str> = streams.iter().map(String::as_str).collect();
            let rows = || sink_counts(&sinks, &streams).map(|(rows, _)| rows).unwrap_or(0);
            let start = rows();
            while rows() <= start {
                if flag.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let Some(path) = sinks.first() else { return false };
            let Ok(conn) = rusqlite::Connection::open(path) else { return false };
            // Waits for the sink's own transaction to end, then holds the write lock.
            if conn.busy_timeout(Duration::from_secs(30)).and_then(|()| conn.execute_batch("BEGIN EXCLUSIVE")).is_err()
            {
                return false;
            }
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = conn.execute_batch("ROLLBACK");
            true
        });
        SinkLock { stop, thread }
    }

    /// Lets go of the sink; whether it was locked.
    fn release(self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(false)
    }
}

/// Rows in the streams' tables of every SQLite sink, and keys (the tables' primary keys)
/// held by more than one row.
fn sink_counts(sinks: &[PathBuf], streams: &[&str]) -> anyhow::Result<(u64, u64)> {
    let (mut rows, mut dups) = (0u64, 0u64);
    for path in sinks.iter().filter(|p| p.exists()) {
        let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        for table in streams {
            let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            let mut pk = conn.prepare("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")?;
            let cols: Vec<String> = pk.query_map([table], |r| r.get(0))?.collect::<Result<_, _>>()?;
            if cols.is_empty() {
                continue;
            }
            let t = quote(table);
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?;
            let by = cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
            let d: i64 = conn.query_row(
                &format!("SELECT count(*) FROM (SELECT 1 FROM {t} GROUP BY {by} HAVING count(*) > 1)"),
                [],
                |r| r.get(0),
            )?;
            rows += n as u64;
            dups += d as u64;
        }
    }
    Ok((rows, dups))
}

/// Each fault the demo configured, with the counter that shows it happened: the vendor's own
/// where it keeps one, the in-process runs' reports for what the records carried.
fn fault_counters(
    f: &dovetail_fake_vendor::Faults,
    rate_limited: bool,
    runs: &[RunReport],
    v: &Stats,
    (crash, malformed, outbox): (&Crash, Option<u64>, &Outbox),
    records: u64,
) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    let drift = |class: DriftClass| -> u64 {
        runs.iter()
            .flat_map(|r| r.streams.values())
            .flat_map(|s| &s.drift)
            .filter(|d| d.change == class)
            .map(|d| d.count)
            .sum()
    };
    if rate_limited {
        // 429s refused, plus the seconds (rounded up) dovetail held back for the budget.
        let waited: u64 = runs.iter().flat_map(|r| r.http.values()).map(|h| h.rate_limit_wait_ms.div_ceil(1000)).sum();
        out.insert("rate_limit", v.rate_limited + waited);
    }
    if f.error_503_ratio > 0.0 || f.error_503_every > 0 {
        out.insert("error_503", v.by_status.get(&503).copied().unwrap_or(0));
    }
    if f.error_500_ratio > 0.0 {
        out.insert("error_500", v.by_status.get(&500).copied().unwrap_or(0));
    }
    if f.drop_ratio > 0.0 || f.drop_every > 0 {
        out.insert("dropped_connections", v.dropped);
    }
    if f.null_ratio > 0.0 {
        out.insert("nulls", drift(DriftClass::NullValue));
    }
    if f.drift_after.is_some_and(|k| k < records) {
        out.insert(
            "drift",
            runs.iter()
                .flat_map(|r| r.streams.values())
                .flat_map(|s| &s.drift)
                .filter(|d| d.change != DriftClass::NullValue)
                .map(|d| d.count)
                .sum(),
        );
    }
    if crash.killed {
        out.insert("crash", u64::from(crash.killed && crash.resumed));
    }
    if malformed.is_some() {
        out.insert("malformed_page", v.malformed_pages);
    }
    // Staged with the crash: records that waited in the outbox and were delivered.
    if crash.killed {
        out.insert("sink_down", outbox.delivered);
    }
    out
}

/// The last lines: what the vendor holds against what the sink holds.
fn closing(c: &DemoJson) -> String {
    let accounted = c.sink_rows + c.dead_lettered_keys;
    let verdict = if accounted == c.vendor_records && c.duplicate_keys == 0 {
        "every record accounted for, none twice".to_owned()
    } else {
        format!(
            "{} records unaccounted for, {} keys twice",
            c.vendor_records as i64 - accounted as i64,
            c.duplicate_keys
        )
    };
    format!(
        "\nThe vendor holds {} records; the sink holds {} rows ({} duplicate keys) and {} keys are dead-lettered: {verdict}.\n",
        c.vendor_records, c.sink_rows, c.duplicate_keys, c.dead_lettered_keys
    )
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

fn fault_words(f: &dovetail_fake_vendor::Faults, rate: Option<(f64, u32)>, auth: &AuthMode, crash: bool) -> String {
    let mut w = Vec::new();
    if let Some((r, b)) = rate {
        w.push(format!("a rate limit of {r} requests/s (burst {b}) that dovetail is not told about"));
    }
    if f.error_503_ratio > 0.0 {
        w.push(format!("{:.0}% of requests answered 503", f.error_503_ratio * 100.0));
    }
    if f.error_503_every > 0 {
        w.push(format!("a 503 for every {}th request", f.error_503_every));
    }
    if f.drop_ratio > 0.0 {
        w.push(format!("{:.0}% of connections dropped without an answer", f.drop_ratio * 100.0));
    }
    if f.drop_every > 0 {
        w.push(format!("every {}th connection dropped without an answer", f.drop_every));
    }
    if let AuthMode::OAuth2 { token_lifetime_secs, rotate_refresh_tokens, .. } = auth {
        let rotate = if *rotate_refresh_tokens { " and refresh tokens that rotate on every use" } else { "" };
        w.push(format!("access tokens that expire every {token_lifetime_secs} s{rotate}"));
    }
    if f.null_ratio > 0.0 {
        w.push("nulls where values were promised".into());
    }
    if let Some(k) = f.drift_after {
        w.push(format!("a field that changes type after record {k}"));
    }
    if crash {
        w.push(
            "a crash: the first run is killed midway, after it a page of malformed JSON answered 200, once, and then the sink locked by another writer for part of a run".into(),
        );
    }
    w.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intro_names_only_the_faults_configured() {
        let f = dovetail_fake_vendor::Faults { drop_every: 7, error_503_every: 6, ..Default::default() };
        let words = fault_words(&f, None, &AuthMode::None, false);
        assert_eq!(words, "a 503 for every 6th request, every 7th connection dropped without an answer");
        let oauth = AuthMode::OAuth2 {
            client_id: "c".into(),
            client_secret: "s".into(),
            refresh_token: None,
            token_lifetime_secs: 60.0,
            rotate_refresh_tokens: false,
        };
        let words = fault_words(&dovetail_fake_vendor::Faults::default(), Some((10.0, 5)), &oauth, true);
        assert_eq!(
            words,
            "a rate limit of 10 requests/s (burst 5) that dovetail is not told about, access tokens that expire every 60 s, a crash: the first run is killed midway, after it a page of malformed JSON answered 200, once, and then the sink locked by another writer for part of a run"
        );
    }
}
