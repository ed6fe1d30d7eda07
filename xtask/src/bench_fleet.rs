//! `cargo xtask bench-fleet`: how `dovetail worker` fleets scale, and what they cost the
//! PostgreSQL that coordinates them.
//!
//! **Scaling.** The fake vendor (its own process) answers every request after 20 ms, so a
//! stream's pass is I/O-bound; S pipelines (default 16) of one REST stream each read all of
//! its N records (pages of 100) into SQLite files of their own, each on a yearly cron
//! schedule (one tick per run, never a boundary during one). 1, 2 and 4 `dovetail worker
//! --concurrency 1` processes share them, each pass in a fresh state schema. The window is
//! read from the state, not from sleeps: from the first `claim` to the last `release` in
//! `lease_history` (server timestamps), after polling until every unit's `done_tick` is set.
//! records/s = S × N / window, median of K runs (`--runs`, the worker counts interleaved so a
//! busy moment of a shared machine hits each alike); every SQLite table must hold N rows (a
//! mismatch fails, judged or not). Targets: ≥ 1.8× from 1 to 2 workers, ≥ 3× from 1 to 4.
//! Workers' CPU-seconds (user + sys, `wait4`) per 100k records are printed.
//!
//! **Lease SQL.** With `pg_stat_statements` loaded (the bench's own cluster preloads it),
//! the statements of each pass are counted by kind — claim, poll (due units, ticks), renew,
//! release, fence check (before each sink write) — and divided by the batches committed
//! and by the stream-minutes held (claim → release per unit). The epoch check inside each
//! commit adds no statement, so it is not counted.
//!
//! **Workers per PostgreSQL.** For each `--idle` count (default 8, 32, 128) that many
//! workers run the same pipelines once (claims under contention: their server time), then
//! idle for 20 s, polling for due work every second and heartbeating every 10 s (the
//! defaults): lease statements per second, server execution ms per second, the server's CPU
//! (its processes' `/proc` times, when it runs on this machine), connections per worker.
//!
//! The server comes from `--url` / `DOVETAIL_BENCH_PG_URL` (a user that may create schemas
//! and, for the counts, `pg_stat_statements` preloaded) or is the testkit's throwaway
//! durable cluster (`dovetail-test-pg`). `--debug` runs a debug build (the rules of a shared
//! machine: say so beside any figure).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{TestPg, parse_count};
use crate::bench_fleet_idle::{idle, idle_row, print_idle};
use crate::bench_judge::{Judging, Verdict, cpu_per_100k, median, require_arrived, sqlite_rows};
use crate::bench_pg::psql;
use crate::bench_rest::{Vendor, start_vendor_with};
use crate::rss::{spawn, wait_measured};
use crate::util::{cargo, display_command, dovetail_cmd, flag_values, fmt_duration, target_dir};

/// Worker counts of the scaling runs when none are given.
const DEFAULT_WORKERS: &[usize] = &[1, 2, 4];
/// Idle fleet sizes when none are given.
const DEFAULT_IDLE: &[usize] = &[8, 32, 128];
/// Pipelines (one stream each) when `--streams` is not given.
const DEFAULT_STREAMS: usize = 16;
/// Records the vendor serves (each stream reads all) when `--records` is not given.
const DEFAULT_RECORDS: u64 = 5_000;
/// The vendor's delay per request.
const LATENCY_MS: &str = "20";
/// Scaling targets: (workers, at least this many times one worker's records/s).
const TARGETS: &[(usize, f64)] = &[(2, 1.8), (4, 3.0)];
/// Workers started at once: a bigger fleet starts in waves, each once the one before has
/// registered (128 processes connecting and migrating at the same moment time out on a
/// small machine; a real fleet's hosts do not start in the same millisecond).
const WAVE: usize = 16;
/// How long a pass may take before the bench gives up.
const PASS_TIMEOUT: Duration = Duration::from_secs(900);
/// Where the server's URL comes from without `--url`.
const URL_ENV: &str = "DOVETAIL_BENCH_PG_URL";
/// The settings of the bench's own cluster: statement counts, and room for the idle fleets.
const CLUSTER_SETTINGS: &[&str] = &["shared_preload_libraries=pg_stat_statements", "max_connections=600"];
const USAGE: &str = "usage: cargo xtask bench-fleet [--workers 1,2,4] [--idle 8,32,128|none] [--streams S] \
                     [--records N] [--runs K] [--no-judge] [--url postgres://…] [--debug]";

/// What to run.
#[derive(Debug, PartialEq)]
struct Options {
    workers: Vec<usize>,
    idle: Vec<usize>,
    streams: usize,
    records: u64,
    url: Option<String>,
    debug: bool,
    judging: Judging,
}

/// `1,2,4` → [1, 2, 4]; `none` → [].
fn parse_list(flag: &str, v: &str) -> Result<Vec<usize>> {
    if v == "none" {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|n| n.trim().parse::<usize>().ok().filter(|n| *n > 0))
        .collect::<Option<Vec<_>>>()
        .with_context(|| format!("{flag}: `{v}` is not a list of positive counts like `1,2,4`"))
}

fn parse_args(args: &[String]) -> Result<Options> {
    let (judging, mut rest) = Judging::take(args)?;
    let debug = rest.iter().any(|a| a == "--debug");
    rest.retain(|a| a != "--debug");
    let mut o = Options {
        workers: DEFAULT_WORKERS.to_vec(),
        idle: DEFAULT_IDLE.to_vec(),
        streams: DEFAULT_STREAMS,
        records: DEFAULT_RECORDS,
        url: std::env::var(URL_ENV).ok().filter(|u| !u.is_empty()),
        debug,
        judging,
    };
    let flags = ["--workers", "--idle", "--streams", "--records", "--url"];
    for (flag, v) in flag_values(&rest, &flags, USAGE)? {
        match flag {
            "--workers" => o.workers = parse_list(flag, v)?,
            "--idle" => o.idle = parse_list(flag, v)?,
            "--streams" => {
                o.streams =
                    v.parse().ok().filter(|s| *s > 0).with_context(|| format!("--streams: `{v}` is not a count"))?
            }
            "--records" => o.records = parse_count(v)?,
            _ => o.url = Some(v.to_owned()),
        }
    }
    if o.workers.is_empty() && o.idle.is_empty() {
        bail!("--workers none and --idle none: nothing to run ({USAGE})");
    }
    Ok(o)
}

/// The binaries a pass starts.
pub(crate) struct Bins {
    dovetail: PathBuf,
    vendor: PathBuf,
}

/// Where passes write their state: a server URL, a schema per pass.
pub(crate) struct Server {
    pub(crate) url: String,
    /// Whether `pg_stat_statements` answers (preloaded and installed).
    pub(crate) statements: bool,
}

impl Server {
    fn new(url: String) -> Server {
        let statements =
            psql(&url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()").is_ok();
        if !statements {
            println!("bench-fleet: pg_stat_statements is not loaded on the server: lease SQL is not counted");
        }
        Server { url, statements }
    }

    /// A fresh, empty state schema.
    fn fresh(&self, schema: &str) -> Result<()> {
        psql(&self.url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).map(drop)
    }

    pub(crate) fn reset_statements(&self) -> Result<()> {
        if self.statements {
            psql(&self.url, "SELECT pg_stat_statements_reset()")?;
        }
        Ok(())
    }

    /// One number from `sql`; 0 while the tables are not there yet (before a worker migrated).
    pub(crate) fn count(&self, sql: &str) -> u64 {
        psql(&self.url, sql).ok().and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// The config of `streams` pipelines reading the vendor at `vendor` into `out_N.db`, their
/// state in `schema` of `url`. A yearly cron tick: every pass serves exactly one tick.
fn config(url: &str, schema: &str, vendor: &str, streams: usize) -> String {
    let mut t = format!("[state]\nurl = \"{url}\"\nschema = \"{schema}\"\n");
    for n in 0..streams {
        t.push_str(&format!(
            r#"
[pipelines.s{n}]
schedule = "0 0 1 1 *"
batch_size = 1000

[pipelines.s{n}.source]
kind = "rest"
base_url = "{vendor}"

[[pipelines.s{n}.source.streams]]
name = "items"
path = "/v1/items"
query = {{ limit = "100" }}
records = "/data"
primary_key = ["id"]
pagination = {{ type = "cursor", pointer = "/meta/next_cursor", param = "cursor" }}

[pipelines.s{n}.sink]
kind = "sqlite"
path = "out_{n}.db"
"#
        ));
    }
    t
}

/// Running worker processes; killed on drop unless stopped.
pub(crate) struct Fleet {
    children: Vec<(Child, Instant)>,
    logs: Vec<PathBuf>,
}

impl Fleet {
    /// Starts `n` workers in waves of [`WAVE`], each wave once the previous one registered
    /// (`registered` counts the state's `workers` rows).
    fn start(bin: &Path, dir: &Path, n: usize, registered: &dyn Fn() -> u64) -> Result<Fleet> {
        let mut fleet = Fleet { children: Vec::new(), logs: Vec::new() };
        for i in 1..=n {
            if i > 1 && (i - 1) % WAVE == 0 {
                let started = Instant::now();
                while registered() < (i - 1) as u64 {
                    fleet.check_alive()?;
                    if started.elapsed() > PASS_TIMEOUT {
                        bail!("bench-fleet: {} workers did not register", i - 1);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let (out, err) = (dir.join(format!("w{i}.stdout.log")), dir.join(format!("w{i}.stderr.log")));
            let id = format!("w{i}");
            let args = ["worker", "--config", "dovetail.toml", "--id", &id, "--concurrency", "1"];
            let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
            let mut cmd = dovetail_cmd(bin, dir, &args, &out, &err)?;
            let started = Instant::now();
            fleet.children.push((spawn(&mut cmd).context("starting dovetail worker")?, started));
            fleet.logs.push(err);
        }
        Ok(fleet)
    }

    /// Fails, with the end of its log, when a worker has exited.
    fn check_alive(&mut self) -> Result<()> {
        for (i, (child, _)) in self.children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()? {
                bail!("bench-fleet: worker w{} exited during the pass ({status}):\n{}", i + 1, tail(&self.logs[i]));
            }
        }
        Ok(())
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|(c, _)| c.id()).collect()
    }

    /// SIGTERM to every worker, then each reaped: their CPU time, summed. Fails unless each
    /// exited 0 (a clean drain).
    fn stop(mut self) -> Result<Duration> {
        let pids: Vec<String> = self.pids().iter().map(u32::to_string).collect();
        Command::new("kill").arg("-TERM").args(&pids).status().context("running kill")?;
        let mut cpu = Duration::ZERO;
        for (i, (child, started)) in std::mem::take(&mut self.children).into_iter().enumerate() {
            let m = wait_measured(child, started)?;
            if !m.status.success() {
                bail!("bench-fleet: worker w{} did not stop cleanly ({}):\n{}", i + 1, m.status, tail(&self.logs[i]));
            }
            cpu += m.cpu;
        }
        Ok(cpu)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Polls the state until every one of `units` has served its tick.
fn wait_done(server: &Server, schema: &str, units: usize, fleet: &mut Fleet) -> Result<()> {
    let started = Instant::now();
    let sql = format!("SELECT count(*) FROM {schema}.leases WHERE done_tick IS NOT NULL");
    loop {
        fleet.check_alive()?;
        let done = server.count(&sql);
        if done >= units as u64 {
            return Ok(());
        }
        if started.elapsed() > PASS_TIMEOUT {
            bail!("bench-fleet: {done} of {units} streams done after {}", fmt_duration(PASS_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pass's window (first claim → last release, seconds), stream-minutes held and
/// takeovers, from `lease_history`.
fn window(server: &Server, schema: &str) -> Result<(f64, f64, u64)> {
    let sql = format!(
        "SELECT extract(epoch FROM max(at) FILTER (WHERE event = 'release')
                                  - min(at) FILTER (WHERE event IN ('claim', 'takeover'))),
                (SELECT coalesce(sum(s), 0) / 60 FROM (SELECT extract(epoch FROM max(at) - min(at)) AS s
                   FROM {schema}.lease_history WHERE event IN ('claim', 'takeover', 'release')
                   GROUP BY pipeline, unit, epoch) h),
                count(*) FILTER (WHERE event = 'takeover')
         FROM {schema}.lease_history"
    );
    let out = psql(&server.url, &sql)?;
    let f: Vec<&str> = out.split('|').collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).with_context(|| format!("reading `{out}`"));
    Ok((num(0)?, num(1)?, num(2)? as u64))
}

/// Lease statements by kind: calls, server execution ms, the slowest one's ms.
#[derive(Debug, Default, Clone)]
pub(crate) struct LeaseSql {
    kinds: Vec<(String, u64, f64, f64)>,
    /// Batches committed (the commit's stamp statement, which carries the epoch check).
    commits: u64,
}

/// Each lease statement of dovetail-state-pg's `lease.rs` by the words of its normalized
/// text (constants become `$n`); the migrations' DDL and the bench's own queries (which name
/// the schema) are left out.
const LEASE_SQL: &str = r#"SELECT what, sum(calls)::int8, round(sum(total_exec_time)::numeric, 3),
       round(max(max_exec_time)::numeric, 3) FROM (
  SELECT calls, total_exec_time, max_exec_time, CASE
    WHEN query LIKE 'UPDATE streams SET last_commit%' THEN 'commit'
    WHEN query ~* '^\s*(CREATE|ALTER|DROP)' THEN NULL
    WHEN query LIKE '%advisory_xact_lock_shared%' OR query LIKE '%SKIP LOCKED%'
      OR query LIKE 'INSERT INTO leases %' OR query LIKE '%SET holder = $3, epoch = epoch +%'
      OR query LIKE 'INSERT INTO lease_history%VALUES%' THEN 'claim'
    WHEN query LIKE '%unnest($2::text[])%' OR query LIKE 'INSERT INTO schedule_ticks%' THEN 'poll'
    WHEN query LIKE 'UPDATE workers SET heartbeat_at%' OR query LIKE '%SET expires_at = clock_timestamp()%'
      THEN 'renew'
    WHEN query LIKE '%done_tick = coalesce%' THEN 'release'
    WHEN query ~ '^SELECT \$\d+ FROM leases WHERE' THEN 'fence check'
    WHEN query ~ '\m(leases|lease_history|workers|schedule_ticks)\M' THEN 'other'
  END AS what
  FROM pg_stat_statements
  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND query NOT LIKE '%bench_fleet%' AND query NOT LIKE '%pg_stat_statements%') s
WHERE what IS NOT NULL GROUP BY what ORDER BY what"#;

impl LeaseSql {
    pub(crate) fn read(server: &Server) -> Result<Option<LeaseSql>> {
        if !server.statements {
            return Ok(None);
        }
        let mut sql = LeaseSql::default();
        for line in psql(&server.url, LEASE_SQL)?.lines() {
            let f: Vec<&str> = line.split('|').collect();
            let [what, calls, ms, max] = f[..] else { bail!("bench-fleet: unexpected line `{line}`") };
            let calls: u64 = calls.parse().with_context(|| format!("reading `{line}`"))?;
            if what == "commit" {
                sql.commits = calls;
            } else {
                sql.kinds.push((what.to_owned(), calls, ms.parse().unwrap_or(0.0), max.parse().unwrap_or(0.0)));
            }
        }
        Ok(Some(sql))
    }

    pub(crate) fn total(&self) -> u64 {
        self.kinds.iter().map(|k| k.1).sum()
    }

    pub(crate) fn exec_ms(&self) -> f64 {
        self.kinds.iter().map(|k| k.2).sum()
    }

    pub(crate) fn kind(&self, what: &str) -> (u64, f64, f64) {
        self.kinds.iter().find(|k| k.0 == what).map(|k| (k.1, k.2, k.3)).unwrap_or_default()
    }

    /// `claim 16, poll 40, …`.
    fn breakdown(&self) -> String {
        self.kinds.iter().map(|(w, c, _, _)| format!("{w} {c}")).collect::<Vec<_>>().join(", ")
    }
}

/// The client connections to the bench's database but this one.
pub(crate) const CONNECTIONS_SQL: &str = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
   AND backend_type = 'client backend' AND pid <> pg_backend_pid()";

/// One scaling pass.
#[derive(Clone)]
pub(crate) struct Pass {
    workers: usize,
    records: u64,
    window: f64,
    cpu: Duration,
    stream_minutes: f64,
    takeovers: u64,
    pub(crate) lease: Option<LeaseSql>,
    /// Client connections to the database once the pass was done.
    connections: u64,
}

impl Pass {
    fn rate(&self) -> f64 {
        self.records as f64 / self.window.max(1e-9)
    }
}

/// Starts the vendor and `workers` workers on a fresh schema, waits for every stream's
/// pass, reads the window and the statements, stops the fleet and counts the rows: the
/// fleet (still running, for the idle phase) is handed to `during` before it stops.
pub(crate) fn pass(
    bins: &Bins,
    server: &Server,
    dir: &Path,
    (workers, streams, records): (usize, usize, u64),
    during: &mut dyn FnMut(&Fleet) -> Result<()>,
) -> Result<Pass> {
    let schema = format!("bench_fleet_{}", dir.file_name().and_then(|n| n.to_str()).unwrap_or("x"));
    server.fresh(&schema)?;
    fs::create_dir_all(dir)?;
    let (vendor, base): (Vendor, String) = start_vendor_with(&bins.vendor, records, &["--latency-ms", LATENCY_MS])?;
    fs::write(dir.join("dovetail.toml"), config(&server.url, &schema, &base, streams))?;
    server.reset_statements()?;
    let registered = || server.count(&format!("SELECT count(*) FROM {schema}.workers"));
    let mut fleet = Fleet::start(&bins.dovetail, dir, workers, &registered)?;
    wait_done(server, &schema, streams, &mut fleet)?;
    let lease = LeaseSql::read(server)?;
    let (window, stream_minutes, takeovers) = window(server, &schema)?;
    // A pool keeps what it opened: the connections the fleet needed at its busiest.
    let connections = server.count(CONNECTIONS_SQL);
    during(&fleet)?;
    let cpu = fleet.stop()?;
    drop(vendor);
    for n in 0..streams {
        let what = format!("bench-fleet: {workers} worker(s), stream s{n}");
        require_arrived(&what, records, sqlite_rows(&dir.join(format!("out_{n}.db")), "items")?)?;
    }
    server.fresh(&schema)?;
    Ok(Pass { workers, records: records * streams as u64, window, cpu, stream_minutes, takeovers, lease, connections })
}

/// Builds the binaries, starts the server, runs the passes and the idle fleets, prints and
/// judges; `Ok(false)` when a judged target is missed.
pub fn main(root: &Path, args: &[String]) -> Result<bool> {
    let o = parse_args(args)?;
    let mut build = cargo(root);
    build.args(["build", "-p", "dovetail-runner", "-p", "dovetail-fake-vendor"]);
    if !o.debug {
        build.arg("--release");
    }
    println!("bench-fleet: running: {}", display_command(&build));
    if !build.status().context("running cargo build")?.success() {
        bail!("bench-fleet: `{}` failed", display_command(&build));
    }
    let out = target_dir(root).join(if o.debug { "debug" } else { "release" });
    let bins = Bins { dovetail: out.join("dovetail"), vendor: out.join("dovetail-fake-vendor") };
    let mut own_pg = None;
    let url = match &o.url {
        Some(u) => u.clone(),
        None => {
            let pg = own_pg.insert(TestPg::start_with(root, 1, CLUSTER_SETTINGS)?);
            pg.urls.next().context("dovetail-test-pg gave no database")?
        }
    };
    let server = Server::new(url);
    let tmp = tempfile::Builder::new().prefix("dovetail-bench-fleet-").tempdir().context("creating a temp dir")?;
    let sent = o.records * o.streams as u64;
    println!(
        "bench-fleet: {} pipelines x {} records ({sent} records per pass), vendor latency {LATENCY_MS} ms per request, \
         pages of 100, {} build",
        o.streams,
        o.records,
        if o.debug { "debug" } else { "release" }
    );
    let mut passes: Vec<Pass> = Vec::new();
    for run in 1..=o.judging.runs {
        for &w in &o.workers {
            let dir = tmp.path().join(format!("w{w}r{run}"));
            let p = pass(&bins, &server, &dir, (w, o.streams, o.records), &mut |_| Ok(()))?;
            println!(
                "bench-fleet: {w} worker(s), run {run}/{}: {sent} records in {:.2} s (first claim → last release), \
                 {:.0} records/s, workers {:.2} CPU-s per 100k, {:.2} stream-minutes, {} takeover(s), \
                 {} connection(s){}",
                o.judging.runs,
                p.window,
                p.rate(),
                cpu_per_100k(p.cpu, sent),
                p.stream_minutes,
                p.takeovers,
                p.connections,
                p.lease.as_ref().map(|l| format!("; lease SQL: {}", l.breakdown())).unwrap_or_default()
            );
            passes.push(p);
        }
    }
    let verdict = if o.workers.is_empty() { Verdict::default() } else { print_scaling(&o, &passes) };
    let mut idles = Vec::new();
    for &n in &o.idle {
        let i = idle(&bins, &server, &tmp.path().join(format!("idle{n}")), n, o.streams)?;
        println!("bench-fleet: idle fleet: {}", idle_row(&i));
        idles.push(i);
    }
    print_idle(&idles, o.streams, server.statements);
    load_average();
    Ok(verdict.finish("bench-fleet", o.judging))
}

/// The scaling table and its targets.
fn print_scaling(o: &Options, passes: &[Pass]) -> Verdict {
    println!(
        "\n{:>7} {:>17} {:>20} {:>8} {:>15} {:>15} {:>22}",
        "workers",
        "median records/s",
        "min – max records/s",
        "scaling",
        "CPU-s per 100k",
        "lease SQL/batch",
        "lease SQL/stream-min"
    );
    let rate_of = |w: usize| median(&passes.iter().filter(|p| p.workers == w).map(Pass::rate).collect::<Vec<_>>());
    let base = o.workers.contains(&1).then(|| rate_of(1));
    for &w in &o.workers {
        let mine: Vec<&Pass> = passes.iter().filter(|p| p.workers == w).collect();
        let rates: Vec<f64> = mine.iter().map(|p| p.rate()).collect();
        let (min, max) =
            (rates.iter().copied().fold(f64::INFINITY, f64::min), rates.iter().copied().fold(0.0, f64::max));
        let cpu = median(&mine.iter().map(|p| cpu_per_100k(p.cpu, p.records)).collect::<Vec<_>>());
        let per = |f: &dyn Fn(&LeaseSql, &Pass) -> f64| -> String {
            let v: Vec<f64> = mine.iter().filter_map(|p| p.lease.as_ref().map(|l| f(l, p))).collect();
            if v.is_empty() { "n/a".to_owned() } else { format!("{:.2}", median(&v)) }
        };
        println!(
            "{w:>7} {:>17.0} {:>20} {:>8} {cpu:>15.2} {:>15} {:>22}",
            rate_of(w),
            format!("{min:.0} – {max:.0}"),
            base.map(|b| format!("{:.2}x", rate_of(w) / b.max(1e-9))).unwrap_or_else(|| "n/a".into()),
            per(&|l, _| l.total() as f64 / l.commits.max(1) as f64),
            per(&|l, p| l.total() as f64 / p.stream_minutes.max(1e-9)),
        );
    }
    let mut v = Verdict::default();
    match base {
        Some(b) => {
            for &(w, times) in TARGETS.iter().filter(|(w, _)| o.workers.contains(w)) {
                let got = rate_of(w) / b.max(1e-9);
                v.check(format!("{w} workers ≥ {times}× one worker's records/s: {got:.2}×"), got >= times);
            }
        }
        None => println!("bench-fleet: no 1-worker runs: scaling is not judged"),
    }
    v
}

/// The machine's load, to print beside the figures.
fn load_average() {
    if let Ok(l) = fs::read_to_string("/proc/loadavg") {
        println!("\nload average (1, 5, 15 min): {}", l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    }
}

#[cfg(test)]
mod tests;
