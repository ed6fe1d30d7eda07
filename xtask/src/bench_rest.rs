//! `cargo xtask bench-rest`: an API sync end to end. The fake vendor runs as its own process
//! (no faults, cursor pagination, pages of 100); `dovetail run` syncs it through the REST
//! connector into SQLite, drift checking on as always. Reported per record count: records/s
//! of the whole `dovetail` process (start-up included), its CPU-seconds per 100k records and
//! its peak RSS, N runs each (`--runs`, default 3). After each run the rows in the SQLite
//! table must be the vendor's records; the targets are judged on the medians and a miss
//! fails the bench unless `--no-judge`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::bench::parse_count;
use crate::bench_judge::{Judging, Verdict, cpu_per_100k, median, require_arrived, sqlite_rows};
use crate::rss::{Measured, run_measured};
use crate::util::{cargo, display_command, dovetail_run, flag_values, fmt_duration, target_dir};

/// Record counts when none are given.
pub const DEFAULT_RECORDS: &[u64] = &[200_000, 1_000_000];
/// Throughput target (records/s, whole process).
pub const TARGET_RECORDS_PER_SEC: f64 = 150_000.0;
/// Peak RSS target.
pub const TARGET_RSS_MIB: f64 = 32.0;

/// The sink of this bench's pipeline.
const SQLITE_SINK: &str = "kind = \"sqlite\"\npath = \"warehouse.db\"\n";

/// The pipeline: the vendor's items, cursor pagination, pages of 100, into `sink` (the
/// body of its `[pipelines.bench.sink]` table).
pub fn pipeline_config(url: &str, sink: &str) -> String {
    format!(
        r#"[pipelines.bench]
batch_size = 1000

[pipelines.bench.source]
kind = "rest"
base_url = "{url}"

[[pipelines.bench.source.streams]]
name = "items"
path = "/v1/items"
query = {{ limit = "100" }}
records = "/data"
primary_key = ["id"]
pagination = {{ type = "cursor", pointer = "/meta/next_cursor", param = "cursor" }}
incremental = {{ cursor_field = "updated_at", param = "updated_since" }}

[pipelines.bench.sink]
{sink}"#
    )
}

/// What to run: record counts, and runs of each.
#[derive(Debug, PartialEq)]
pub struct Args {
    records: Vec<u64>,
    judging: Judging,
}

/// Parses `[--records N]... [--runs K] [--no-judge]`.
pub fn parse_args(args: &[String]) -> Result<Args> {
    let (judging, rest) = Judging::take(args)?;
    let mut records = Vec::new();
    let usage = "usage: cargo xtask bench-rest [--records N]... [--runs K] [--no-judge]";
    for (_, v) in flag_values(&rest, &["--records"], usage)? {
        records.push(parse_count(v)?);
    }
    Ok(Args { records: if records.is_empty() { DEFAULT_RECORDS.to_vec() } else { records }, judging })
}

/// One record count's runs.
struct Row {
    records: u64,
    runs: Vec<Measured>,
}

impl Row {
    fn rates(&self) -> Vec<f64> {
        self.runs.iter().map(|m| self.records as f64 / m.wall.as_secs_f64().max(1e-9)).collect()
    }
    fn median(&self) -> f64 {
        median(&self.rates())
    }
    fn range(&self) -> (f64, f64) {
        let rates = self.rates();
        let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
        (min, rates.iter().copied().fold(0.0, f64::max))
    }
    fn rss(&self) -> f64 {
        median(&self.runs.iter().map(Measured::max_rss_mib).collect::<Vec<_>>())
    }
    fn cpu_per_100k(&self) -> f64 {
        median(&self.runs.iter().map(|m| cpu_per_100k(m.cpu, self.records)).collect::<Vec<_>>())
    }
}

/// Builds both release binaries and runs the bench; `Ok(false)` when a judged target is missed.
pub fn main(root: &Path, args: &[String]) -> Result<bool> {
    let Args { records, judging } = parse_args(args)?;
    let runs = judging.runs;
    let mut build = cargo(root);
    build.args(["build", "--release", "-p", "dovetail-runner", "-p", "dovetail-fake-vendor"]);
    println!("bench-rest: running: {}", display_command(&build));
    if !build.status().context("running cargo build")?.success() {
        bail!("bench-rest: `{}` failed", display_command(&build));
    }
    let release = target_dir(root).join("release");
    let (dovetail, vendor) = (release.join("dovetail"), release.join("dovetail-fake-vendor"));
    let mut rows = Vec::new();
    for n in records {
        let mut row = Row { records: n, runs: vec![] };
        for run in 1..=runs {
            let (m, arrived) = one(&dovetail, &vendor, n)?;
            require_arrived(&format!("bench-rest: {n} records, run {run}/{runs}"), n, arrived)?;
            println!(
                "bench-rest: {n} records, run {run}/{runs}: {}, {:.0} records/s, {:.2} CPU-s per 100k, peak RSS {:.1} MiB, {arrived} rows",
                fmt_duration(m.wall),
                n as f64 / m.wall.as_secs_f64().max(1e-9),
                cpu_per_100k(m.cpu, n),
                m.max_rss_mib()
            );
            row.runs.push(m);
        }
        rows.push(row);
    }
    println!(
        "\n{:>10} {:>18} {:>20} {:>18} {:>15}",
        "records", "median records/s", "min – max records/s", "median peak RSS", "CPU-s per 100k"
    );
    for r in &rows {
        let (min, max) = r.range();
        println!(
            "{:>10} {:>18.0} {:>20} {:>18.1} {:>15.2}",
            r.records,
            r.median(),
            format!("{min:.0} – {max:.0}"),
            r.rss(),
            r.cpu_per_100k()
        );
    }
    Ok(verdict(&rows).finish("bench-rest", judging))
}

/// The targets at each count, by the medians: ≥ 150k records/s, ≤ 32 MiB.
fn verdict(rows: &[Row]) -> Verdict {
    let mut v = Verdict::default();
    for r in rows {
        let (rate, rss) = (r.median(), r.rss());
        v.check(
            format!("{} records ≥ {TARGET_RECORDS_PER_SEC:.0} records/s: {rate:.0}", r.records),
            rate >= TARGET_RECORDS_PER_SEC,
        );
        v.check(format!("{} records peak RSS ≤ {TARGET_RSS_MIB:.0} MiB: {rss:.1}", r.records), rss <= TARGET_RSS_MIB);
    }
    v
}

/// Kills the vendor when the run is over, however it ends.
pub struct Vendor(Child);

impl Drop for Vendor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the fake vendor (`vendor_bin`) serving `n` records on a free port: the process
/// (killed on drop) and its base URL.
pub fn start_vendor(vendor_bin: &Path, n: u64) -> Result<(Vendor, String)> {
    start_vendor_with(vendor_bin, n, &[])
}

/// [`start_vendor`] with more of the vendor's flags (`--latency-ms 20`).
pub fn start_vendor_with(vendor_bin: &Path, n: u64, flags: &[&str]) -> Result<(Vendor, String)> {
    let mut cmd = Command::new(vendor_bin);
    cmd.args(["--port", "0", "--records", &n.to_string()]).args(flags).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().with_context(|| format!("starting {}", vendor_bin.display()))?;
    let stdout = child.stdout.take().context("vendor stdout")?;
    let vendor = Vendor(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("reading the vendor's listening line")?;
    let url = line.trim().strip_prefix("listening on ").context("the vendor did not print `listening on URL`")?;
    Ok((vendor, url.to_owned()))
}

/// One run against a fresh vendor: its measure and the rows that arrived in SQLite.
fn one(dovetail: &Path, vendor_bin: &Path, n: u64) -> Result<(Measured, u64)> {
    let dir = tempfile::Builder::new().prefix("dovetail-bench-rest-").tempdir().context("creating a temp dir")?;
    let (vendor, url) = start_vendor(vendor_bin, n)?;
    let config = dir.path().join("dovetail.toml");
    fs::write(&config, pipeline_config(&url, SQLITE_SINK))?;
    let (out, err) = (dir.path().join("run.stdout"), dir.path().join("run.stderr"));
    let mut run = dovetail_run(dovetail, dir.path(), &config, &out, &err)?;
    run.env("RUST_LOG", "warn");
    let m = run_measured(&mut run)?;
    drop(vendor);
    if !m.status.success() {
        let stderr = fs::read_to_string(&err).unwrap_or_default();
        bail!(
            "bench-rest: dovetail run failed ({}):\n{}",
            m.status,
            stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    Ok((m, sqlite_rows(&dir.path().join("warehouse.db"), "items")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments_give_counts_and_runs_with_defaults() {
        assert_eq!(args(&[]).unwrap(), Args { records: DEFAULT_RECORDS.to_vec(), judging: Judging::default() });
        assert_eq!(
            args(&["--records", "1000", "--records=2000", "--runs", "5", "--no-judge"]).unwrap(),
            Args { records: vec![1000, 2000], judging: Judging { runs: 5, judge: false } }
        );
        assert_eq!(args(&["--runs=1"]).unwrap().judging.runs, 1);
        for bad in [&["--runs", "0"][..], &["--runs", "x"], &["--runs"], &["--fast"]] {
            assert!(args(bad).is_err(), "{bad:?} was accepted");
        }
    }

    fn m(wall_ms: u64, rss_mib: u64) -> Measured {
        let d = std::time::Duration::from_millis(wall_ms);
        Measured { status: std::process::ExitStatus::default(), wall: d, max_rss_kib: rss_mib * 1024, cpu: d * 2 }
    }

    #[test]
    fn the_verdict_is_on_the_medians() {
        // 300k records: 1.5 s = 200k/s, 3 s = 100k/s.
        let row = Row { records: 300_000, runs: vec![m(1_500, 25), m(3_000, 40), m(1_600, 26), m(1_400, 24)] };
        assert_eq!(row.median().round(), 187_500.0, "even count: the lower of the middle two");
        assert_eq!(row.range(), (100_000.0, 300_000.0 / 1.4));
        assert_eq!(row.rss(), 25.0);
        assert_eq!(row.cpu_per_100k(), 1.0);
        assert_eq!(verdict(&[row]).missed().count(), 0, "one slow, fat run of four does not decide it");
        let slow = Row { records: 300_000, runs: vec![m(2_500, 25), m(1_000, 25), m(2_200, 40)] };
        let v = verdict(&[slow]);
        assert_eq!(v.missed().collect::<Vec<_>>(), ["300000 records ≥ 150000 records/s: 136364"]);
        assert!(!v.finish("bench-rest", Judging::default()));
        assert!(v.finish("bench-rest", Judging { runs: 3, judge: false }));
    }
}
