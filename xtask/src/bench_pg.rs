//! `cargo xtask bench-pg --url postgres://… [--records N]... [--runs K] [--no-judge]`: JSONL →
//! PostgreSQL through `dovetail run` (the postgres sink, SQLite state), beside the physical
//! limit on the same server: the same records loaded by `psql` with one `COPY` into a
//! temporary table and one `INSERT … ON CONFLICT … DO UPDATE … WHERE … IS DISTINCT FROM` merge.
//! Then the fake vendor (as `bench-rest` starts it) → PostgreSQL, and one such run killed
//! with `kill -9` once half its batches are committed, followed by a rerun.
//! Each run writes into a schema of its own; the rows in the table are counted after each
//! run and a mismatch fails the bench. Targets (medians): the first run within 1.5× the raw
//! load, an unchanged rerun ≥ 300,000 records/s, REST → PostgreSQL ≥ 100,000 records/s, the
//! rerun after the kill fetching no more than the records not committed and one page in
//! flight, dovetail's peak RSS ≤ 48 MiB.
//!
//! `--debug` runs a debug build, to try the bench out (its figures mean nothing). The server
//! comes from `--url` or `DOVETAIL_BENCH_PG_URL` (a superuser or a user that may
//! create schemas; the bench drops the schemas it made); `psql` from `PATH`.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{parse_count, write_records};
use crate::bench_judge::{Judging, Verdict, cpu_per_100k, median, require_arrived};
use crate::bench_rest::{pipeline_config, start_vendor};
use crate::rss::{Measured, run_measured};
use crate::util::{cargo, display_command, dovetail_run, flag_values, fmt_duration, target_dir};

/// Record counts when none are given.
const DEFAULT_RECORDS: &[u64] = &[1_000_000];
/// The first run may take this many times the raw COPY + merge.
const TARGET_FIRST_RATIO: f64 = 1.5;
/// Unchanged rerun throughput target (records/s).
const TARGET_RERUN_PER_SEC: f64 = 300_000.0;
/// Peak RSS target.
const TARGET_RSS_MIB: f64 = 48.0;
/// Fake vendor REST → PostgreSQL throughput target (records/s, whole process).
const TARGET_REST_PER_SEC: f64 = 100_000.0;
/// The pipelines' `batch_size` (records per sink transaction).
const BATCH: u64 = 1000;
/// The vendor's page size: a rerun after a kill may fetch one page in flight beyond what
/// was not committed.
const PAGE: u64 = 100;
/// Where the server's URL comes from without `--url`.
const URL_ENV: &str = "DOVETAIL_BENCH_PG_URL";
const USAGE: &str =
    "usage: cargo xtask bench-pg [--url postgres://…] [--records N]... [--runs K] [--no-judge] [--debug]";

/// The raw load: the generated lines into a temporary table, merged with one statement.
const RAW_SQL: &str = r#"CREATE TABLE {schema}.customers (id numeric PRIMARY KEY, active boolean, amount numeric,
  email text, name text, qty numeric, tags jsonb, updated_at text, _synced_at timestamptz);
BEGIN;
CREATE TEMP TABLE stage (doc jsonb) ON COMMIT DROP;
\copy stage (doc) FROM '{file}'
INSERT INTO {schema}.customers AS t SELECT (doc->>'id')::numeric, (doc->>'active')::boolean, (doc->>'amount')::numeric,
  doc->>'email', doc->>'name', (doc->>'qty')::numeric, doc->'tags', doc->>'updated_at', now() FROM stage
ON CONFLICT (id) DO UPDATE SET active = EXCLUDED.active, amount = EXCLUDED.amount, email = EXCLUDED.email,
  name = EXCLUDED.name, qty = EXCLUDED.qty, tags = EXCLUDED.tags, updated_at = EXCLUDED.updated_at,
  _synced_at = EXCLUDED._synced_at
WHERE ROW(t.active, t.amount, t.email, t.name, t.qty, t.tags, t.updated_at)
  IS DISTINCT FROM ROW(EXCLUDED.active, EXCLUDED.amount, EXCLUDED.email, EXCLUDED.name, EXCLUDED.qty, EXCLUDED.tags, EXCLUDED.updated_at);
COMMIT;
"#;

fn config(url: &str, schema: &str) -> String {
    format!(
        r#"[pipelines.bench]
batch_size = 1000

[pipelines.bench.source]
kind = "files"

[[pipelines.bench.source.streams]]
name = "customers"
path = "../customers.jsonl"
primary_key = ["id"]

[pipelines.bench.sink]
kind = "postgres"
url = "{url}"
schema = "{schema}"
"#
    )
}

/// The binaries a bench run starts.
struct Bins {
    dovetail: std::path::PathBuf,
    vendor: std::path::PathBuf,
}

/// Runs `sql` with psql against `url`, stopping at the first error.
pub(crate) fn psql(url: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .context("running psql (is the PostgreSQL client on PATH?)")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn rows_in(url: &str, schema: &str, table: &str) -> Result<u64> {
    psql(url, &format!("SELECT count(*) FROM {schema}.{table}"))?.parse().context("reading a row count")
}

/// The body of `[pipelines.bench.sink]` writing into `schema` of `url`.
fn pg_sink(url: &str, schema: &str) -> String {
    format!("kind = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\n")
}

/// A run directory with the vendor → PostgreSQL pipeline (`schema` dropped first).
fn rest_dir(dir: &Path, name: &str, vendor: &str, url: &str, schema: &str) -> Result<std::path::PathBuf> {
    psql(url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))?;
    let run_dir = dir.join(name);
    fs::create_dir_all(&run_dir)?;
    fs::write(run_dir.join("dovetail.toml"), pipeline_config(vendor, &pg_sink(url, schema)))?;
    Ok(run_dir)
}

/// Fake vendor REST → PostgreSQL, `runs` times against a fresh vendor each: each run's
/// measure; fails unless every record arrived.
fn rest_to_pg(bins: &Bins, url: &str, dir: &Path, n: u64, runs: usize) -> Result<Vec<Measured>> {
    let mut measured = Vec::new();
    for i in 1..=runs {
        let schema = format!("bench_rest_{i}");
        let (vendor, base) = start_vendor(&bins.vendor, n)?;
        let run_dir = rest_dir(dir, &format!("rest{i}"), &base, url, &schema)?;
        let m = run_dovetail(&bins.dovetail, &run_dir, "rest")?;
        drop(vendor);
        require_arrived(&format!("bench-pg: {n} records, REST run {i}"), n, rows_in(url, &schema, "items")?)?;
        psql(url, &format!("DROP SCHEMA {schema} CASCADE"))?;
        println!(
            "bench-pg: {n} records, fake vendor REST → PostgreSQL run {i}/{runs}: {} ({:.0} records/s, {:.2} CPU-s per 100k, peak RSS {:.1} MiB)",
            fmt_duration(m.wall),
            n as f64 / m.wall.as_secs_f64().max(1e-9),
            cpu_per_100k(m.cpu, n),
            m.max_rss_mib()
        );
        measured.push(m);
    }
    Ok(measured)
}

/// `kill -9` of a vendor → PostgreSQL run once about half its batches are committed, then a
/// rerun: the records not committed at the kill and those the rerun fetched. Fails unless
/// every record is in the table after the rerun.
fn kill_and_rerun(bins: &Bins, url: &str, dir: &Path, n: u64) -> Result<(u64, u64)> {
    let schema = "bench_kill";
    let (vendor, base) = start_vendor(&bins.vendor, n)?;
    let run_dir = rest_dir(dir, "kill", &base, url, schema)?;
    let config = run_dir.join("dovetail.toml");
    let (out, err) = (run_dir.join("killed.stdout.log"), run_dir.join("killed.stderr.log"));
    let mut child =
        dovetail_run(&bins.dovetail, &run_dir, &config, &out, &err)?.spawn().context("starting dovetail")?;
    // The offsets table's epoch counts the batches committed (1,000 records each).
    let half = (n / BATCH / 2).max(1);
    let epoch_sql = format!("SELECT coalesce(max(epoch), 0) FROM {schema}._dovetail_offsets");
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("bench-pg: the run to kill ended first ({status}); use more records");
        }
        // Before the sink made its tables the query fails: nothing committed yet.
        if psql(url, &epoch_sql).ok().and_then(|e| e.parse::<u64>().ok()).unwrap_or(0) >= half {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().context("kill -9 of dovetail")?;
    child.wait()?;
    let committed = rows_in(url, schema, "items")?;
    let (out, err) = (run_dir.join("rerun.stdout.log"), run_dir.join("rerun.stderr.log"));
    let mut rerun = dovetail_run(&bins.dovetail, &run_dir, &config, &out, &err)?;
    let status = rerun.arg("--json").status().context("running dovetail")?;
    drop(vendor);
    let stdout = fs::read_to_string(&out).unwrap_or_default();
    if !status.success() {
        bail!("bench-pg: the rerun after the kill failed ({status}):\n{stdout}\n{}", fs::read_to_string(&err)?);
    }
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).context("reading the rerun's JSON report")?;
    let fetched = report["streams"]["items"]["read"].as_u64().context("the rerun's report has no `read` count")?;
    require_arrived(&format!("bench-pg: {n} records, rerun after kill -9"), n, rows_in(url, schema, "items")?)?;
    psql(url, &format!("DROP SCHEMA {schema} CASCADE"))?;
    Ok((n - committed, fetched))
}

/// The raw COPY + merge of the records at `file` into a fresh schema: its wall time.
fn raw_load(url: &str, dir: &Path, file: &Path, schema: &str) -> Result<Duration> {
    psql(url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))?;
    let script = dir.join(format!("{schema}.sql"));
    fs::write(&script, RAW_SQL.replace("{schema}", schema).replace("{file}", &file.display().to_string()))?;
    let started = Instant::now();
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f"])
        .arg(&script)
        .output()
        .context("running psql")?;
    let wall = started.elapsed();
    if !out.status.success() {
        bail!("bench-pg: the raw load failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(wall)
}

/// One `dovetail run` in `dir`; fails unless it succeeded (and, for a rerun, wrote 0).
fn run_dovetail(bin: &Path, dir: &Path, run: &str) -> Result<Measured> {
    let (out_path, err_path) = (dir.join(format!("{run}.stdout.log")), dir.join(format!("{run}.stderr.log")));
    let mut cmd = dovetail_run(bin, dir, &dir.join("dovetail.toml"), &out_path, &err_path)?;
    let m = run_measured(&mut cmd)?;
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    if !m.status.success() {
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        bail!("bench-pg: the {run} run in {} failed ({}):\n{stdout}\n{stderr}", dir.display(), m.status);
    }
    if run == "rerun" && !crate::ci::reports_zero_written(&stdout) {
        bail!("bench-pg: the rerun in {} wrote again (it must write 0):\n{stdout}", dir.display());
    }
    Ok(m)
}

/// Builds the release binary and runs the bench; `Ok(false)` when a judged target is missed.
pub fn main(root: &Path, args: &[String]) -> Result<bool> {
    let (judging, mut rest) = Judging::take(args)?;
    // A debug build tries the bench out quickly; its figures mean nothing.
    let debug = rest.iter().any(|a| a == "--debug");
    rest.retain(|a| a != "--debug");
    let mut records = Vec::new();
    let mut url = std::env::var(URL_ENV).ok();
    for (flag, v) in flag_values(&rest, &["--records", "--url"], USAGE)? {
        match flag {
            "--url" => url = Some(v.to_owned()),
            _ => records.push(parse_count(v)?),
        }
    }
    let Some(url) = url else { bail!("bench-pg needs a PostgreSQL server: --url or {URL_ENV}\n{USAGE}") };
    if records.is_empty() {
        records = DEFAULT_RECORDS.to_vec();
    }
    let mut build = cargo(root);
    build.args(["build", "-p", "dovetail-runner", "-p", "dovetail-fake-vendor"]);
    if !debug {
        build.arg("--release");
    }
    println!("bench-pg: running: {}", display_command(&build));
    if !build.status().context("running cargo build")?.success() {
        bail!("bench-pg: `{}` failed", display_command(&build));
    }
    let out = target_dir(root).join(if debug { "debug" } else { "release" });
    let bins = Bins { dovetail: out.join("dovetail"), vendor: out.join("dovetail-fake-vendor") };
    let bin = &bins.dovetail;
    let mut verdict = Verdict::default();
    for n in records {
        let dir = tempfile::Builder::new().prefix("dovetail-bench-pg-").tempdir().context("creating a temp dir")?;
        let file = dir.path().join("customers.jsonl");
        write_records(BufWriter::new(File::create(&file)?), n)?;
        let (mut raw, mut first, mut rerun): (Vec<f64>, Vec<Measured>, Vec<Measured>) = (vec![], vec![], vec![]);
        for i in 1..=judging.runs {
            let raw_schema = format!("bench_raw_{i}");
            let wall = raw_load(&url, dir.path(), &file, &raw_schema)?;
            require_arrived(
                &format!("bench-pg: {n} records, raw load {i}"),
                n,
                rows_in(&url, &raw_schema, "customers")?,
            )?;
            psql(&url, &format!("DROP SCHEMA {raw_schema} CASCADE"))?;
            let schema = format!("bench_dovetail_{i}");
            psql(&url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))?;
            let run_dir = dir.path().join(format!("run{i}"));
            fs::create_dir_all(&run_dir)?;
            fs::write(run_dir.join("dovetail.toml"), config(&url, &schema))?;
            let f = run_dovetail(bin, &run_dir, "first")?;
            require_arrived(&format!("bench-pg: {n} records, first run {i}"), n, rows_in(&url, &schema, "customers")?)?;
            let r = run_dovetail(bin, &run_dir, "rerun")?;
            require_arrived(&format!("bench-pg: {n} records, rerun {i}"), n, rows_in(&url, &schema, "customers")?)?;
            psql(&url, &format!("DROP SCHEMA {schema} CASCADE"))?;
            println!(
                "bench-pg: {n} records, run {i}/{}: raw COPY + merge {}, dovetail first run {} ({:.2}x, peak RSS {:.1} MiB), \
                 rerun {} ({:.0} records/s, peak RSS {:.1} MiB)",
                judging.runs,
                fmt_duration(wall),
                fmt_duration(f.wall),
                f.wall.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                f.max_rss_mib(),
                fmt_duration(r.wall),
                n as f64 / r.wall.as_secs_f64().max(1e-9),
                r.max_rss_mib()
            );
            raw.push(wall.as_secs_f64());
            first.push(f);
            rerun.push(r);
        }
        let secs = |v: &[Measured]| median(&v.iter().map(|m| m.wall.as_secs_f64()).collect::<Vec<_>>());
        let rss_of = |v: &[Measured]| median(&v.iter().map(Measured::max_rss_mib).collect::<Vec<_>>());
        let rss = rss_of(&first).max(rss_of(&rerun));
        let (raw, first_s, rerun_s) = (median(&raw), secs(&first), secs(&rerun));
        println!(
            "\n{n} records: raw COPY + merge {raw:.2} s | dovetail first run {first_s:.2} s ({:.2}x) | rerun {:.0} records/s | peak RSS {rss:.1} MiB",
            first_s / raw.max(1e-9),
            n as f64 / rerun_s.max(1e-9)
        );
        verdict.check(
            format!("{n}: first run {first_s:.2} s ≤ {TARGET_FIRST_RATIO}× raw {raw:.2} s"),
            first_s <= TARGET_FIRST_RATIO * raw,
        );
        let rate = n as f64 / rerun_s.max(1e-9);
        verdict
            .check(format!("{n}: rerun {rate:.0} ≥ {TARGET_RERUN_PER_SEC:.0} records/s"), rate >= TARGET_RERUN_PER_SEC);
        verdict.check(format!("{n}: peak RSS {rss:.1} ≤ {TARGET_RSS_MIB} MiB"), rss <= TARGET_RSS_MIB);

        let rest = rest_to_pg(&bins, &url, dir.path(), n, judging.runs)?;
        let rate = median(&rest.iter().map(|m| n as f64 / m.wall.as_secs_f64().max(1e-9)).collect::<Vec<_>>());
        let rss = rss_of(&rest);
        println!("{n} records: fake vendor REST → PostgreSQL {rate:.0} records/s | peak RSS {rss:.1} MiB");
        verdict.check(
            format!("{n}: REST → PostgreSQL {rate:.0} ≥ {TARGET_REST_PER_SEC:.0} records/s"),
            rate >= TARGET_REST_PER_SEC,
        );
        verdict
            .check(format!("{n}: REST → PostgreSQL peak RSS {rss:.1} ≤ {TARGET_RSS_MIB} MiB"), rss <= TARGET_RSS_MIB);

        let (uncommitted, fetched) = kill_and_rerun(&bins, &url, dir.path(), n)?;
        println!(
            "{n} records: kill -9 with {uncommitted} records not committed; the rerun fetched {fetched} (a full refetch: {n})"
        );
        verdict.check(
            format!("{n}: the rerun after kill -9 fetched {fetched} ≤ {uncommitted} not committed + one page ({PAGE})"),
            fetched <= uncommitted + PAGE,
        );
    }
    Ok(verdict.finish("bench-pg", judging))
}
