//! `cargo xtask bench-rest`: an API sync end to end. The fake vendor runs as its own process
//! (no faults, cursor pagination, pages of 100); `dovetail run` syncs it through the REST
//! connector into SQLite, drift checking on as always. Reported per record count: records/s
//! of the whole `dovetail` process (start-up included) and its peak RSS. Figures are
//! printed, not enforced.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::bench::parse_count;
use crate::rss::{Measured, run_measured};
use crate::util::{cargo, display_command, dovetail_run, flag_values, fmt_duration, target_dir};

/// Record counts when none are given.
pub const DEFAULT_RECORDS: &[u64] = &[200_000, 1_000_000];
/// Throughput target (records/s, whole process).
pub const TARGET_RECORDS_PER_SEC: f64 = 150_000.0;
/// Peak RSS target.
pub const TARGET_RSS_MIB: f64 = 32.0;

/// The pipeline: the vendor's items, cursor pagination, pages of 100, into SQLite.
fn pipeline_config(url: &str) -> String {
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
kind = "sqlite"
path = "warehouse.db"
"#
    )
}

/// Runs per record count when `--runs` is not given: the verdict is on the median, so one
/// slow moment of a shared machine does not decide it.
pub const DEFAULT_RUNS: usize = 3;

/// What to run: record counts, and runs of each.
#[derive(Debug, PartialEq)]
pub struct Args {
    records: Vec<u64>,
    runs: usize,
}

/// Parses `[--records N]... [--runs K]`.
pub fn parse_args(args: &[String]) -> Result<Args> {
    let mut records = Vec::new();
    let mut runs = DEFAULT_RUNS;
    let usage = "usage: cargo xtask bench-rest [--records N]... [--runs K]";
    for (name, v) in flag_values(args, &["--records", "--runs"], usage)? {
        if name == "--records" {
            records.push(parse_count(v)?);
        } else {
            runs =
                v.parse().ok().filter(|k| *k > 0).with_context(|| format!("--runs: `{v}` is not a positive number"))?;
        }
    }
    Ok(Args { records: if records.is_empty() { DEFAULT_RECORDS.to_vec() } else { records }, runs })
}

/// One record count's runs: records/s of each, and the peak RSS of each.
struct Row {
    records: u64,
    rates: Vec<f64>,
    rss: Vec<f64>,
}

impl Row {
    /// The median rate (the lower middle one for an even count: never flattering).
    fn median(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r[(r.len() - 1) / 2]
    }
    fn range(&self) -> (f64, f64) {
        let min = self.rates.iter().copied().fold(f64::INFINITY, f64::min);
        (min, self.rates.iter().copied().fold(0.0, f64::max))
    }
    fn peak_rss(&self) -> f64 {
        self.rss.iter().copied().fold(0.0, f64::max)
    }
}

/// Builds both release binaries and runs the bench.
pub fn main(root: &Path, args: &[String]) -> Result<()> {
    let Args { records, runs } = parse_args(args)?;
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
        let mut row = Row { records: n, rates: vec![], rss: vec![] };
        for run in 1..=runs {
            let m = one(&dovetail, &vendor, n)?;
            let rate = n as f64 / m.wall.as_secs_f64().max(1e-9);
            println!(
                "bench-rest: {n} records, run {run}/{runs}: {}, {rate:.0} records/s, peak RSS {:.1} MiB",
                fmt_duration(m.wall),
                m.max_rss_mib()
            );
            row.rates.push(rate);
            row.rss.push(m.max_rss_mib());
        }
        rows.push(row);
    }
    println!("\n{:>10} {:>18} {:>20} {:>18}", "records", "median records/s", "min – max records/s", "max peak RSS MiB");
    for r in &rows {
        let (min, max) = r.range();
        println!(
            "{:>10} {:>18.0} {:>20} {:>18.1}",
            r.records,
            r.median(),
            format!("{min:.0} – {max:.0}"),
            r.peak_rss()
        );
    }
    println!("\ntargets (printed, not enforced; records/s by the median of {runs} runs, RSS by the highest):");
    for r in &rows {
        let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
        let (rate, rss) = (r.median(), r.peak_rss());
        println!(
            "  {}: ≥ {TARGET_RECORDS_PER_SEC:.0} records/s → {rate:.0} {}; peak RSS < {TARGET_RSS_MIB:.0} MiB → {rss:.1} {}",
            r.records,
            mark(rate >= TARGET_RECORDS_PER_SEC),
            mark(rss < TARGET_RSS_MIB)
        );
    }
    Ok(())
}

/// Kills the vendor when the run is over, however it ends.
struct Vendor(Child);

impl Drop for Vendor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn one(dovetail: &Path, vendor_bin: &Path, n: u64) -> Result<Measured> {
    let dir = tempfile::Builder::new().prefix("dovetail-bench-rest-").tempdir().context("creating a temp dir")?;
    let mut cmd = Command::new(vendor_bin);
    cmd.args(["--port", "0", "--records", &n.to_string()]).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().with_context(|| format!("starting {}", vendor_bin.display()))?;
    let stdout = child.stdout.take().context("vendor stdout")?;
    let vendor = Vendor(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("reading the vendor's listening line")?;
    let url = line.trim().strip_prefix("listening on ").context("the vendor did not print `listening on URL`")?;
    let config = dir.path().join("dovetail.toml");
    fs::write(&config, pipeline_config(url))?;
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
    let stdout = fs::read_to_string(&out).unwrap_or_default();
    if !stdout.contains(&format!(" {n} ")) {
        println!("bench-rest: note: the summary does not mention {n} records:\n{stdout}");
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments_give_counts_and_runs_with_defaults() {
        assert_eq!(args(&[]).unwrap(), Args { records: DEFAULT_RECORDS.to_vec(), runs: DEFAULT_RUNS });
        assert_eq!(
            args(&["--records", "1000", "--records=2000", "--runs", "5"]).unwrap(),
            Args { records: vec![1000, 2000], runs: 5 }
        );
        assert_eq!(args(&["--runs=1"]).unwrap().runs, 1);
        for bad in [&["--runs", "0"][..], &["--runs", "x"], &["--runs"], &["--fast"]] {
            assert!(args(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_verdict_is_on_the_lower_median_and_the_highest_rss() {
        let row = Row { records: 10, rates: vec![170.0, 120.0, 160.0, 150.0], rss: vec![25.0, 26.5, 24.0, 25.5] };
        assert_eq!(row.median(), 150.0, "even count: the lower of the middle two");
        assert_eq!(row.range(), (120.0, 170.0));
        assert_eq!(row.peak_rss(), 26.5);
        let odd = Row { records: 10, rates: vec![3.0, 1.0, 2.0], rss: vec![1.0] };
        assert_eq!(odd.median(), 2.0);
    }
}
