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
use crate::util::{cargo, display_command, dovetail_run, fmt_duration, target_dir};

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

/// Parses `[--records N]...`.
pub fn parse_args(args: &[String]) -> Result<Vec<u64>> {
    let mut records = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = if arg == "--records" {
            Some(it.next().context("--records needs a number")?.as_str())
        } else {
            arg.strip_prefix("--records=")
        };
        match value {
            Some(v) => records.push(parse_count(v)?),
            None => bail!("bench-rest: unknown argument `{arg}` (usage: cargo xtask bench-rest [--records N]...)"),
        }
    }
    Ok(if records.is_empty() { DEFAULT_RECORDS.to_vec() } else { records })
}

/// Builds both release binaries and runs the bench.
pub fn main(root: &Path, args: &[String]) -> Result<()> {
    let records = parse_args(args)?;
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
        let m = one(&dovetail, &vendor, n)?;
        let rate = n as f64 / m.wall.as_secs_f64().max(1e-9);
        println!(
            "bench-rest: {n} records: {}, {rate:.0} records/s, peak RSS {:.1} MiB",
            fmt_duration(m.wall),
            m.max_rss_mib()
        );
        rows.push((n, rate, m.max_rss_mib()));
    }
    println!("\n{:>10} {:>12} {:>13}", "records", "records/s", "peak RSS MiB");
    for (n, rate, rss) in &rows {
        println!("{n:>10} {rate:>12.0} {rss:>13.1}");
    }
    println!("\ntargets (printed, not enforced):");
    for (n, rate, rss) in &rows {
        let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
        println!(
            "  {n}: ≥ {TARGET_RECORDS_PER_SEC:.0} records/s → {rate:.0} {}; peak RSS < {TARGET_RSS_MIB:.0} MiB → {rss:.1} {}",
            mark(*rate >= TARGET_RECORDS_PER_SEC),
            mark(*rss < TARGET_RSS_MIB)
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
