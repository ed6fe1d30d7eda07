//! The crash harness: a source × sink path, killed at every named failpoint and at random
//! moments, rerun after each kill, then run clean; the sink must hold each key once with the
//! source's last version, and a second clean run must write nothing.
//!
//! A path joins with one line in `tests/tests/crash_paths.rs`:
//! `crash_path!(rest_cursor_to_sqlite, RestSource::cursor(), SqliteSink);`. A new sink
//! implements [`CrashSink`] (its config table and a reader of what it holds), a new source
//! [`CrashSource`] (its data, its config table and what the sink must end with); see
//! docs/connector-guide.md, "Joining the crash harness".
//!
//! The fleet path ([`fleet`]) kills a `dovetail worker` on PostgreSQL state while it holds
//! the stream's lease and has a second worker take over after the lease expired. The
//! Stripe paths ([`stripe`]) write to a Stripe double that outlives each run; a sink such as
//! Stripe's checks its own accounting too ([`CrashSink::audit`]: creations per
//! `Idempotency-Key`, ids in the ledger), and `files_to_stripe_held_creates` kills runs at
//! the moments the double picks: a create made and its answer held.
//!
//! `DOVETAIL_CRASH_SEED` replays a sweep (the seed is printed first), `DOVETAIL_CRASH_KILLS`
//! sets the random kills per path (default 5; `cargo xtask crash --kills 20`). Each path
//! prints one `crash-path:` line that `cargo xtask crash` tabulates.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Scratch, show, spawn_until};

pub mod fleet;
pub mod sinks;
pub mod sources;
pub mod stripe;

/// The pipeline every path runs, and its batch size: small, so a run has dozens of batches
/// for a kill to land between.
pub const PIPELINE: &str = "crash";
/// Records per batch (and per page for paged sources).
pub const BATCH: u64 = 25;
/// Failpoints of the engine, reached by every sink.
pub const ENGINE_FAILPOINTS: &[&str] = &["after_sink_commit", "after_checkpoint"];
/// Each failpoint is armed at these hit counts, in turn, on one run history.
pub const FAILPOINT_HITS: &[u64] = &[2, 6];
/// Random kills per path when `DOVETAIL_CRASH_KILLS` is not set.
pub const DEFAULT_KILLS: u64 = 5;

/// One stream as the harness checks it: its key field and the fields compared.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Stream name (the SQLite table, the JSONL file, the REST sink's stream).
    pub name: String,
    /// The key field (one field; its value as text is the key).
    pub key: String,
    /// Fields compared with the source's last version, as text.
    pub fields: Vec<String>,
}

/// What a started source puts in the config.
#[derive(Debug, Clone)]
pub struct SourceSetup {
    /// The `[pipelines.crash.source]` table, its streams included.
    pub toml: String,
    /// The streams, as the sink must hold them.
    pub streams: Vec<StreamSpec>,
    /// Lines for `[pipelines.crash.streams.STREAM]` (e.g. `sync_mode = "full_refresh"`).
    pub stream_lines: Vec<(String, String)>,
}

/// Rows of one stream: key → field values as text, one entry per stored row (so a key
/// stored twice appears twice).
pub type Rows = Vec<(String, Vec<String>)>;

/// A source a crash path reads from. `start` is called once per run history, on a fresh
/// scratch directory: it writes its data or starts its vendor anew.
pub trait CrashSource: Send {
    /// Writes the source's data into `s` (or starts its vendor) and says how to configure it.
    fn start(&mut self, s: &Scratch) -> SourceSetup;
    /// What the sink must hold at the end, per stream: key → the last version's fields.
    fn expected(&mut self, s: &Scratch) -> BTreeMap<String, BTreeMap<String, Vec<String>>>;
    /// Records the vendor served since `start` (`None` for sources that are not a vendor).
    fn fetched(&self) -> Option<u64>;
    /// Called after the `n`-th kill of a run history (from 1), before the rerun: a source
    /// whose records change between runs changes them here.
    fn after_kill(&mut self, _n: u64) {}
}

/// A sink a crash path writes to. `start` is called once per run history.
pub trait CrashSink: Send {
    /// Starts what the sink needs and returns its `[pipelines.crash.sink]` table.
    fn start(&mut self, s: &Scratch, streams: &[StreamSpec]) -> String;
    /// What the sink holds for `stream`, one entry per stored row.
    fn rows(&mut self, s: &Scratch, stream: &StreamSpec) -> Rows;
    /// Named failpoints this sink reaches: the engine's, plus its own.
    fn failpoints(&self) -> Vec<&'static str> {
        ENGINE_FAILPOINTS.to_vec()
    }
    /// What the sink's own accounting shows wrong beyond its rows, after a history's clean
    /// run (default: nothing to check): the Stripe sink's creations per `Idempotency-Key`
    /// and its ids in the ledger.
    fn audit(&mut self, _s: &Scratch, _streams: &[StreamSpec]) -> Audit {
        Audit::default()
    }
    /// Whether what the sink needs exists here; a path whose sink is not available is
    /// skipped (a PostgreSQL sink where none exists and `DOVETAIL_ALLOW_NO_PG=1`).
    fn available(&self) -> bool {
        true
    }
}

/// Problems a sink's [`CrashSink::audit`] found, one line each.
#[derive(Debug, Default)]
pub struct Audit {
    /// Records unaccounted for (an object whose id the ledger does not hold).
    pub lost: Vec<String>,
    /// Objects created more than once (under one idempotency key, or without one).
    pub duplicated: Vec<String>,
}

/// A source × sink path.
pub struct CrashPath {
    /// The path's name (the test's name).
    pub name: String,
    source: Box<dyn CrashSource>,
    sink: Box<dyn CrashSink>,
}

/// What a sweep found on one path.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Failpoint aborts.
    pub failpoints: u64,
    /// Random SIGKILLs that landed while the run was live.
    pub kills: u64,
    /// Keys missing from the sink or holding another value than the source's last.
    pub lost: u64,
    /// Rows beyond one per key, and keys the source never had.
    pub duplicated: u64,
    /// Records the vendor served beyond one clean pass (`None` for file sources).
    pub refetched: Option<u64>,
    /// Records a second clean run wrote (must be 0).
    pub rewritten: u64,
    /// What went wrong, for the failure message.
    pub notes: Vec<String>,
}

impl CrashPath {
    /// The path `name`: `source` into `sink`.
    pub fn new(name: &str, source: impl CrashSource + 'static, sink: impl CrashSink + 'static) -> Self {
        CrashPath { name: name.to_owned(), source: Box::new(source), sink: Box::new(sink) }
    }

    /// A fresh run history: a new scratch directory, the source's data, the sink, the config.
    fn start(&mut self) -> (Scratch, Vec<StreamSpec>) {
        let s = Scratch::new();
        let setup = self.source.start(&s);
        let sink = self.sink.start(&s, &setup.streams);
        let mut toml = format!("[pipelines.{PIPELINE}]\nbatch_size = {BATCH}\n\n{}\n\n{sink}\n", setup.toml);
        let mut named: Vec<&str> = setup.stream_lines.iter().map(|(n, _)| n.as_str()).collect();
        named.dedup();
        for name in named {
            toml.push_str(&format!("\n[pipelines.{PIPELINE}.streams.{name}]\n"));
            for (_, l) in setup.stream_lines.iter().filter(|(n, _)| n == name) {
                toml.push_str(&format!("{l}\n"));
            }
        }
        s.write("dovetail.toml", &toml);
        (s, setup.streams)
    }

    /// Lost and duplicated records of the sink against the source; the second clean run.
    fn check(&mut self, s: &Scratch, streams: &[StreamSpec], tally: &mut Tally, baseline: Option<u64>) {
        let fetched = self.source.fetched();
        if let (Some(f), Some(b)) = (fetched, baseline) {
            *tally.refetched.get_or_insert(0) += f.saturating_sub(b);
        }
        let expected = self.source.expected(s);
        for spec in streams {
            let want = expected.get(&spec.name).cloned().unwrap_or_default();
            let mut seen: BTreeMap<String, u64> = BTreeMap::new();
            for (key, fields) in self.sink.rows(s, spec) {
                *seen.entry(key.clone()).or_default() += 1;
                match want.get(&key) {
                    None => {
                        tally.duplicated += 1;
                        note(tally, format!("{}: key {key} is not in the source", spec.name));
                    }
                    Some(w) if *w != fields => {
                        tally.lost += 1;
                        note(tally, format!("{}: key {key} holds {fields:?}, the source's last is {w:?}", spec.name));
                    }
                    Some(_) => {}
                }
            }
            for (key, n) in &seen {
                if *n > 1 {
                    tally.duplicated += n - 1;
                    note(tally, format!("{}: key {key} stored {n} times", spec.name));
                }
            }
            for key in want.keys().filter(|k| !seen.contains_key(*k)) {
                tally.lost += 1;
                note(tally, format!("{}: key {key} is missing", spec.name));
            }
        }
        let audit = self.sink.audit(s, streams);
        tally.lost += audit.lost.len() as u64;
        tally.duplicated += audit.duplicated.len() as u64;
        for line in audit.lost.into_iter().chain(audit.duplicated) {
            note(tally, line);
        }
        let (out, report) = s.run_json(&[]);
        if !out.status.success() {
            note(tally, format!("the second clean run failed:\n{}", show(&out)));
            tally.rewritten += 1;
            return;
        }
        for spec in streams {
            let written = report["streams"][&spec.name]["written"].as_u64().unwrap_or(0);
            if written > 0 {
                tally.rewritten += written;
                note(tally, format!("{}: the second clean run wrote {written}", spec.name));
            }
        }
    }
}

fn note(tally: &mut Tally, line: String) {
    // The first few say enough; a sweep that loses everything need not print every key.
    if tally.notes.len() < 20 {
        tally.notes.push(line);
    }
}

/// Whether the state holds a checkpoint inside a pass (so the next run must say it resumes).
fn has_checkpoint(s: &Scratch) -> bool {
    // Only a pass left open is resumed: a stream whose pass completed starts the next one
    // from the top (the failpoint counts hits across streams, so a kill can land after one
    // stream finished its pass while another has committed nothing yet).
    let path = s.path(".dovetail/state.db");
    path.exists()
        && s.db(".dovetail/state.db")
            .query_row(
                "SELECT count(*) FROM checkpoints WHERE json_extract(checkpoint, '$.pass_complete') = 0 \
                 AND json_type(checkpoint, '$.position') <> 'null'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .expect("reading the checkpoints")
            > 0
}

/// A clean run to completion: it must succeed. Returns how long it ran after `run started`.
fn clean_run(s: &Scratch, what: &str) -> Duration {
    let (mut child, _) = spawn_until(s.cmd(&["run"]), "run started");
    let started = Instant::now();
    let status = child.wait().expect("wait for dovetail");
    if !status.success() {
        failed(s, &format!("{what} failed ({status:?})"));
    }
    started.elapsed()
}

/// Fails the test for a run that failed; its stderr was drained to keep it running, so a
/// rerun shows what stops it.
fn failed(s: &Scratch, what: &str) -> ! {
    let again = s.run(&["run"]);
    panic!("{what}; a rerun:\n{}", show(&again));
}

/// A number from the environment, or `default`.
fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// Runs the sweep on `path` and fails the test if a record was lost or duplicated, or a
/// second clean run wrote anything. Prints the seed first and one `crash-path:` line last.
pub fn sweep(mut path: CrashPath) -> Tally {
    let seed = env_u64(
        "DOVETAIL_CRASH_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
    );
    let kills = env_u64("DOVETAIL_CRASH_KILLS", DEFAULT_KILLS);
    if !path.sink.available() {
        eprintln!("crash harness: path {} SKIPPED: its sink is not available here", path.name);
        return Tally::default();
    }
    eprintln!("crash harness: path {} seed {seed} (replay: DOVETAIL_CRASH_SEED={seed})", path.name);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = Tally::default();

    // A clean pass on fresh state: what one pass fetches, and how long it runs.
    let (s, streams) = path.start();
    let window = clean_run(&s, "the calibration run");
    let baseline = path.source.fetched();
    path.check(&s, &streams, &mut tally, None);
    tally.refetched = baseline.map(|_| 0);
    drop(s);

    // Every failpoint at each hit count, on one run history, each rerun resuming.
    let (s, streams) = path.start();
    let mut resumed = 0;
    for &n in FAILPOINT_HITS {
        for name in path.sink.failpoints() {
            let resumes = has_checkpoint(&s);
            resumed += usize::from(resumes);
            let out = s.cmd(&["run"]).env("DOVETAIL_FAILPOINT", format!("{name}:{n}")).output().expect("run dovetail");
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGABRT),
                "{}: failpoint {name}:{n} must abort the run (is the path long enough?)\n{}",
                path.name,
                show(&out)
            );
            tally.failpoints += 1;
            path.source.after_kill(tally.failpoints);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !resumes || stderr.contains("resuming from checkpoint"),
                "{}: the run after a kill resumes from its checkpoint:\n{stderr}",
                path.name
            );
        }
    }
    // The resume check above must have had something to check.
    assert!(resumed > 0, "{}: no failpoint kill left a pass open to resume", path.name);
    clean_run(&s, "the run after the failpoints");
    path.check(&s, &streams, &mut tally, baseline);
    drop(s);

    // Random SIGKILLs: each history is killed until a rerun completes the pass by itself.
    // A kill comes within one calibrated pass of `run started`; a first run that completes
    // before its kill measured a shorter pass, which becomes the window.
    let mut most = window.as_millis().max(2) as u64;
    let mut histories = 0;
    while tally.kills < kills {
        histories += 1;
        assert!(histories <= kills * 5 + 5, "{}: kills keep missing the run (a pass takes {window:?})", path.name);
        let (s, streams) = path.start();
        let mut first = true;
        loop {
            let spawned = Instant::now();
            let (mut child, _) = spawn_until(s.cmd(&["run"]), "run started");
            // The killed run's lock died with it (an OS lock): the rerun must not wait it out.
            assert!(
                first || spawned.elapsed() < Duration::from_secs(10),
                "{}: the rerun after a kill took {:?} to start",
                path.name,
                spawned.elapsed()
            );
            let started = Instant::now();
            std::thread::sleep(Duration::from_millis(rng.u64(0..most)));
            let _ = child.kill();
            let status = child.wait().expect("wait for dovetail");
            if status.signal() == Some(libc::SIGKILL) {
                tally.kills += 1;
                first = false;
                path.source.after_kill(tally.kills);
                if tally.kills < kills {
                    continue;
                }
                clean_run(&s, "the final clean run");
            } else {
                if !status.success() {
                    failed(&s, &format!("{}: a rerun after a kill failed ({status:?})", path.name));
                }
                if first {
                    most = (started.elapsed().as_millis() as u64).clamp(2, most);
                }
            }
            break;
        }
        path.check(&s, &streams, &mut tally, baseline);
    }

    finish(&path.name, &tally, seed);
    tally
}

/// Prints the path's `crash-path:` line and fails the test if a record was lost or
/// duplicated, or a second clean run wrote anything.
fn finish(name: &str, tally: &Tally, seed: u64) {
    let refetched = tally.refetched.map_or("n/a".to_owned(), |r| r.to_string());
    println!(
        "crash-path: {name} failpoints={} kills={} lost={} duplicated={} refetched={refetched} rewritten={} seed={seed}",
        tally.failpoints, tally.kills, tally.lost, tally.duplicated, tally.rewritten
    );
    assert!(
        tally.lost == 0 && tally.duplicated == 0 && tally.rewritten == 0,
        "{name}: lost {}, duplicated {}, rewritten {} (replay: DOVETAIL_CRASH_SEED={seed})\n{}",
        tally.lost,
        tally.duplicated,
        tally.rewritten,
        tally.notes.join("\n")
    );
}

/// A `#[test]` that sweeps one source × sink path: `crash_path!(name, source, sink);`.
#[macro_export]
macro_rules! crash_path {
    ($name:ident, $source:expr, $sink:expr) => {
        #[test]
        fn $name() {
            $crate::crash::sweep($crate::crash::CrashPath::new(stringify!($name), $source, $sink));
        }
    };
}

/// A record's field as the harness compares it: strings bare, everything else as JSON.
pub fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
