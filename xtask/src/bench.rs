//! `cargo xtask bench`: JSONL → SQLite throughput and peak memory of the release binary.
//!
//! For each record count: generate a JSONL file, then N times (`--runs`, default 3), in a
//! fresh directory, run `dovetail run` on it (first run: every record is written) and again
//! unchanged (rerun: the ledger skips everything). Each run is a child process measured for
//! wall time, CPU time and peak RSS; after each, the rows in the SQLite table must be the
//! records generated, and the rerun must write 0. The targets are judged on the median of
//! the first runs at each count: a miss fails the bench unless `--no-judge`.
//!
//! `--state pg` runs every count a second time with the state in PostgreSQL (a throwaway
//! durable cluster from the testkit's `dovetail-test-pg`, a fresh database per run) and
//! judges its first runs within 2× of the SQLite-state ones.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::bench_judge::{Judging, Verdict, cpu_per_100k, median, require_arrived, sqlite_rows};
use crate::rss::{Measured, run_measured};
use crate::util::{cargo, display_command, dovetail_run, fmt_duration, target_dir};

/// Record counts when none are given.
pub const DEFAULT_RECORDS: &[u64] = &[100_000, 1_000_000, 3_000_000];
/// Throughput target for the first run.
pub const TARGET_RECORDS_PER_SEC: f64 = 200_000.0;
/// Peak RSS target.
pub const TARGET_RSS_MIB: f64 = 48.0;

/// The pipeline the bench runs (in a run directory beside `customers.jsonl`).
pub const CONFIG: &str = r#"[pipelines.bench]
batch_size = 1000

[pipelines.bench.source]
kind = "files"

[[pipelines.bench.source.streams]]
name = "customers"
path = "../customers.jsonl"
primary_key = ["id"]

[pipelines.bench.sink]
kind = "sqlite"
path = "warehouse.db"
"#;

const USAGE: &str = "usage: cargo xtask bench [--records N]... [--runs K] [--no-judge] [--keep] [--state pg]";
/// PostgreSQL state's first run may take this many times SQLite state's.
pub const PG_STATE_SLOWDOWN_MAX: f64 = 2.0;

/// Command-line options.
#[derive(Debug, PartialEq)]
pub struct Options {
    /// Record counts to run, in order.
    pub records: Vec<u64>,
    /// Keep the generated directories (and print where they are).
    pub keep: bool,
    /// Runs per count, and whether a miss fails.
    pub judging: Judging,
    /// Also run with the state in PostgreSQL (`--state pg`).
    pub state_pg: bool,
}

/// Parses `[--records N]... [--runs K] [--no-judge] [--keep]`. N may use `_` separators or
/// a `k` / `m` suffix.
pub fn parse_args(args: &[String]) -> Result<Options> {
    let (judging, args) = Judging::take(args)?;
    let mut records = Vec::new();
    let mut keep = false;
    let mut state_pg = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let state = if arg == "--state" { it.next().map(String::as_str) } else { arg.strip_prefix("--state=") };
        if arg == "--state" || arg.starts_with("--state=") {
            state_pg = match state {
                Some("pg") => true,
                Some("sqlite") => false,
                _ => bail!("bench: --state takes `pg` or `sqlite` ({USAGE})"),
            };
            continue;
        }
        let value = if arg == "--records" {
            Some(it.next().context("--records needs a number")?.as_str())
        } else {
            arg.strip_prefix("--records=")
        };
        if let Some(v) = value {
            records.push(parse_count(v)?);
        } else if arg == "--keep" {
            keep = true;
        } else {
            bail!("bench: unknown argument `{arg}` ({USAGE})");
        }
    }
    if records.is_empty() {
        records = DEFAULT_RECORDS.to_vec();
    }
    Ok(Options { records, keep, judging, state_pg })
}

pub fn parse_count(v: &str) -> Result<u64> {
    let clean = v.replace('_', "").to_ascii_lowercase();
    let (digits, mult) = if let Some(d) = clean.strip_suffix('k') {
        (d, 1_000)
    } else if let Some(d) = clean.strip_suffix('m') {
        (d, 1_000_000)
    } else {
        (clean.as_str(), 1)
    };
    let n: u64 = digits.parse().with_context(|| format!("--records: `{v}` is not a count"))?;
    if n == 0 {
        bail!("--records: must be at least 1");
    }
    Ok(n * mult)
}

/// One line of the table: every run of one kind at one record count.
#[derive(Debug)]
struct Row {
    records: u64,
    run: &'static str,
    /// Where the state was: `sqlite` or `pg`.
    state: &'static str,
    runs: Vec<Measured>,
}

impl Row {
    fn rates(&self) -> Vec<f64> {
        self.runs.iter().map(|m| self.records as f64 / m.wall.as_secs_f64().max(1e-9)).collect()
    }
    fn rate(&self) -> f64 {
        median(&self.rates())
    }
    fn rss(&self) -> f64 {
        median(&self.runs.iter().map(Measured::max_rss_mib).collect::<Vec<_>>())
    }
    fn wall(&self) -> f64 {
        median(&self.runs.iter().map(|m| m.wall.as_secs_f64()).collect::<Vec<_>>())
    }
    fn cpu_per_100k(&self) -> f64 {
        median(&self.runs.iter().map(|m| cpu_per_100k(m.cpu, self.records)).collect::<Vec<_>>())
    }
}

/// Counts the rows that arrived in a run directory's destination.
type RowCounter<'a> = &'a dyn Fn(&Path) -> Result<u64>;

/// Runs the benchmark; `Ok(false)` when a target is missed (and judged).
pub fn main(root: &Path, args: &[String]) -> Result<bool> {
    let opts = parse_args(args)?;
    let mut build = cargo(root);
    build.args(["build", "--release", "-p", "dovetail-runner"]);
    println!("bench: running: {}", display_command(&build));
    let status = build.status().context("running cargo build")?;
    if !status.success() {
        bail!("bench: `{}` failed ({status})", display_command(&build));
    }
    let bin = target_dir(root).join("release").join("dovetail");
    if !bin.is_file() {
        bail!("bench: {} was not built", bin.display());
    }
    let mut pg = if opts.state_pg { Some(TestPg::start(root, opts.records.len() * opts.judging.runs)?) } else { None };
    let urls = pg.as_mut().map(|p| &mut p.urls);
    run_bench(&bin, &opts, &|dir| sqlite_rows(&dir.join("warehouse.db"), "customers"), urls)
}

/// The testkit's throwaway PostgreSQL (`dovetail-test-pg`), with a database per PG run;
/// stopped and removed when this value is dropped (its stdin closes).
pub(crate) struct TestPg {
    child: std::process::Child,
    /// One URL per database, in order.
    pub(crate) urls: std::vec::IntoIter<String>,
}

impl TestPg {
    fn start(root: &Path, databases: usize) -> Result<TestPg> {
        TestPg::start_with(root, databases, &[])
    }

    /// [`TestPg::start`] with server settings (`NAME=VALUE`) beside the durable ones.
    pub(crate) fn start_with(root: &Path, databases: usize, settings: &[&str]) -> Result<TestPg> {
        use std::io::BufRead;
        // Debug is enough: it only starts a server, and its dependencies are built for tests.
        let mut build = cargo(root);
        build.args(["build", "-q", "-p", "dovetail-testkit", "--bin", "dovetail-test-pg"]);
        println!("bench: running: {}", display_command(&build));
        if !build.status().context("running cargo build")?.success() {
            bail!("bench: `{}` failed", display_command(&build));
        }
        let bin = target_dir(root).join("debug").join("dovetail-test-pg");
        let mut child = std::process::Command::new(&bin)
            .args(["--databases", &databases.to_string(), "--durable"])
            .args(settings.iter().flat_map(|s| ["--set", s]))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let out = child.stdout.take().context("no stdout")?;
        let mut urls = Vec::new();
        for line in io::BufReader::new(out).lines() {
            let line = line?;
            if line == "ready" {
                println!("bench: PostgreSQL state in a throwaway durable cluster, {databases} database(s)");
                return Ok(TestPg { child, urls: urls.into_iter() });
            }
            urls.push(line);
        }
        bail!("bench: {} ended before it was ready ({:?})", bin.display(), child.wait()?)
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Generates, runs, checks what arrived, prints and judges, with `bin` as the dovetail binary;
/// with `pg`, each count runs again with its state in the next of those databases.
fn run_bench(
    bin: &Path,
    opts: &Options,
    rows_in: RowCounter<'_>,
    mut pg: Option<&mut std::vec::IntoIter<String>>,
) -> Result<bool> {
    let runs = opts.judging.runs;
    let mut rows = Vec::new();
    for &n in &opts.records {
        let dir = tempfile::Builder::new().prefix("dovetail-bench-").tempdir().context("creating a temp dir")?;
        let started = std::time::Instant::now();
        let bytes = write_records(BufWriter::new(File::create(dir.path().join("customers.jsonl"))?), n)?;
        println!(
            "bench: generated {n} records ({:.1} MiB) in {} at {}",
            bytes as f64 / (1024.0 * 1024.0),
            fmt_duration(started.elapsed()),
            dir.path().display()
        );
        let states: &[&'static str] = if pg.is_some() { &["sqlite", "pg"] } else { &["sqlite"] };
        for &state in states {
            let mut first = Row { records: n, run: "first", state, runs: vec![] };
            let mut rerun = Row { records: n, run: "rerun", state, runs: vec![] };
            for i in 1..=runs {
                // A fresh directory (and database) per run: its own state and warehouse, so each
                // first run writes all.
                let run_dir = dir.path().join(format!("run{i}-{state}"));
                fs::create_dir_all(&run_dir)?;
                let config = run_dir.join("dovetail.toml");
                let url = match (state, pg.as_mut()) {
                    ("pg", Some(urls)) => Some(urls.next().context("bench: out of PostgreSQL databases")?),
                    _ => None,
                };
                let state_toml = url.map(|u| format!("[state]\nurl = \"{u}\"\n\n")).unwrap_or_default();
                fs::write(&config, format!("{state_toml}{CONFIG}"))?;
                for row in [&mut first, &mut rerun] {
                    let m = run_dovetail(bin, &run_dir, &config, row.run)?;
                    let arrived = rows_in(&run_dir)?;
                    require_arrived(&format!("bench: {n} records, {} run {i}/{runs}", row.run), n, arrived)?;
                    println!(
                        "bench: {n} {} {i}/{runs} ({state} state): {}, {:.0} records/s, {:.2} CPU-s per 100k, peak RSS {:.1} MiB, {arrived} rows",
                        row.run,
                        fmt_duration(m.wall),
                        n as f64 / m.wall.as_secs_f64().max(1e-9),
                        cpu_per_100k(m.cpu, n),
                        m.max_rss_mib()
                    );
                    row.runs.push(m);
                }
            }
            rows.extend([first, rerun]);
        }
        if opts.keep {
            println!("bench: kept {}", dir.keep().display());
        }
    }
    print_table(&rows, runs);
    println!(
        "(peak RSS is the child's ru_maxrss from wait4; it cannot read below xtask's own high-water RSS, {:.1} MiB)",
        crate::rss::own_hwm_kib() as f64 / 1024.0
    );
    Ok(verdict(&rows).finish("bench", opts.judging))
}

fn run_dovetail(bin: &Path, dir: &Path, config: &Path, run: &str) -> Result<Measured> {
    let out_path = dir.join(format!("{run}.stdout.log"));
    let err_path = dir.join(format!("{run}.stderr.log"));
    let mut cmd = dovetail_run(bin, dir, config, &out_path, &err_path)?;
    let m = run_measured(&mut cmd)?;
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    if !m.status.success() {
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        eprintln!("--- dovetail stdout (tail) ---\n{}", tail(&stdout, 40));
        eprintln!("--- dovetail stderr (tail) ---\n{}", tail(&stderr, 40));
        bail!("bench: `dovetail run --config {}` ({run} run) failed: {}", config.display(), m.status);
    }
    if run == "rerun" && !crate::ci::reports_zero_written(&stdout) {
        bail!("bench: the rerun in {} wrote again (it must write 0):\n{}", dir.display(), tail(&stdout, 10));
    }
    Ok(m)
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn print_table(rows: &[Row], runs: usize) {
    println!("\nmedian of {runs} run(s) per line:");
    println!(
        "{:>10}  {:<6} {:<6} {:>9} {:>12} {:>20} {:>13} {:>15}",
        "records", "run", "state", "seconds", "records/s", "min – max records/s", "peak RSS MiB", "CPU-s per 100k"
    );
    for r in rows {
        let rates = r.rates();
        let (min, max) =
            (rates.iter().copied().fold(f64::INFINITY, f64::min), rates.iter().copied().fold(0.0, f64::max));
        println!(
            "{:>10}  {:<6} {:<6} {:>9.2} {:>12.0} {:>20} {:>13.1} {:>15.2}",
            r.records,
            r.run,
            r.state,
            r.wall(),
            r.rate(),
            format!("{min:.0} – {max:.0}"),
            r.rss(),
            r.cpu_per_100k()
        );
    }
    let first = |n: u64| rows.iter().find(|r| r.run == "first" && r.state == "sqlite" && r.records == n).map(Row::rss);
    // Allow allocator noise: 10% or 2 MiB, whichever is larger.
    let flat = |small: f64, large: f64| large - small <= (small * 0.10).max(2.0);
    let mark = |ok: bool| if ok { "flat" } else { "GROWING" };
    println!("memory growth (shown, not judged):");
    if let (Some(small), Some(large)) = (first(100_000), first(1_000_000)) {
        println!(
            "  first run 100k → 1M: {small:.1} → {large:.1} MiB ({:+.1} MiB)  {}",
            large - small,
            mark(flat(small, large))
        );
    } else {
        println!("  run with --records 100000 --records 1000000 to compare");
    }
    // SQLite's page caches (fixed sizes) fill while the databases grow past them; memory is
    // bounded when it stops growing once they are full.
    if let (Some(large), Some(larger)) = (first(1_000_000), first(3_000_000)) {
        println!(
            "  first run 1M → 3M (caches full): {large:.1} → {larger:.1} MiB ({:+.1} MiB)  {}",
            larger - large,
            mark(flat(large, larger))
        );
    }
}

/// The targets: first runs ≥ 200k records/s, every run ≤ 48 MiB, each by its median; with
/// PostgreSQL state, its first runs within [`PG_STATE_SLOWDOWN_MAX`]× of SQLite state's.
fn verdict(rows: &[Row]) -> Verdict {
    let mut v = Verdict::default();
    for r in rows.iter().filter(|r| r.state == "pg" && r.run == "first") {
        let Some(sqlite) = rows.iter().find(|s| s.state == "sqlite" && s.run == "first" && s.records == r.records)
        else {
            continue;
        };
        let (pg, lite) = (r.rate(), sqlite.rate());
        v.check(
            format!(
                "{} first run with PostgreSQL state within {PG_STATE_SLOWDOWN_MAX}× of SQLite state: {pg:.0} vs {lite:.0} records/s",
                r.records
            ),
            pg * PG_STATE_SLOWDOWN_MAX >= lite,
        );
    }
    for r in rows.iter().filter(|r| r.state == "sqlite") {
        if r.run == "first" {
            let rate = r.rate();
            v.check(
                format!("{} first run ≥ {TARGET_RECORDS_PER_SEC:.0} records/s: {rate:.0}", r.records),
                rate >= TARGET_RECORDS_PER_SEC,
            );
        }
        let rss = r.rss();
        v.check(format!("{} {} peak RSS ≤ {TARGET_RSS_MIB:.0} MiB: {rss:.1}", r.records, r.run), rss <= TARGET_RSS_MIB);
    }
    v
}

/// Writes `n` bench records as JSON lines (ids 1..=n); returns the bytes written.
pub fn write_records(mut w: impl Write, n: u64) -> io::Result<u64> {
    let mut line = String::with_capacity(256);
    let mut bytes = 0;
    for i in 1..=n {
        line.clear();
        record_line(i, &mut line);
        line.push('\n');
        w.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
    }
    w.flush()?;
    Ok(bytes)
}

/// One record (no newline): exact decimal `amount`, varying flags and timestamps.
pub fn record_line(i: u64, out: &mut String) {
    use std::fmt::Write as _;
    // 2024-01-01T00:00:00Z plus 13 s per record, so timestamps vary but stay in 2024.
    let updated_at = rfc3339(1_704_067_200 + i * 13);
    let _ = write!(
        out,
        r#"{{"id":{i},"name":"customer-{i}","email":"c{i}@example.com","amount":{}.{:02},"qty":{},"active":{},"updated_at":"{updated_at}","tags":["a","b"]}}"#,
        (i * 7919) % 100_000,
        i % 100,
        i % 17,
        !i.is_multiple_of(3),
    );
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn default_and_explicit_record_counts() {
        let d = parse_args(&[]).unwrap();
        assert_eq!(d.records, vec![100_000, 1_000_000, 3_000_000]);
        assert_eq!(d.judging, Judging { runs: 3, judge: true });
        let o = parse_args(&args(&[
            "--records",
            "5_000",
            "--records=2k",
            "--runs",
            "2",
            "--records",
            "1m",
            "--keep",
            "--no-judge",
        ]))
        .unwrap();
        assert_eq!(o.records, vec![5_000, 2_000, 1_000_000]);
        assert!(o.keep);
        assert_eq!(o.judging, Judging { runs: 2, judge: false });
        assert!(parse_args(&args(&["--records"])).is_err());
        assert!(parse_args(&args(&["--records", "lots"])).is_err());
        assert!(parse_args(&args(&["--fast"])).is_err());
        assert!(parse_args(&args(&["--state", "pg"])).unwrap().state_pg);
        assert!(!parse_args(&args(&["--state=sqlite"])).unwrap().state_pg);
        assert!(parse_args(&args(&["--state", "mysql"])).is_err());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_164_800 + 3_723), "2024-02-29T01:02:03Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn generated_records_are_valid_varied_and_about_150_bytes() {
        let mut buf = Vec::new();
        let n = 2_000;
        let bytes = write_records(&mut buf, n).unwrap();
        assert_eq!(bytes as usize, buf.len());
        let text = String::from_utf8(buf).unwrap();
        let mut amounts = std::collections::HashSet::new();
        let mut times = std::collections::HashSet::new();
        for (idx, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let i = idx as u64 + 1;
            assert_eq!(v["id"].to_string(), i.to_string());
            assert_eq!(v["name"], format!("customer-{i}"));
            assert_eq!(v["email"], format!("c{i}@example.com"));
            assert_eq!(v["qty"].to_string(), (i % 17).to_string());
            assert!(v["active"].is_boolean());
            assert_eq!(v["tags"], serde_json::json!(["a", "b"]));
            // The amount is a JSON number with exactly two decimals, kept as written.
            let amount = v["amount"].to_string();
            let (_, frac) = amount.split_once('.').expect("a decimal");
            assert_eq!(frac.len(), 2, "{amount}");
            amounts.insert(amount);
            let ts = v["updated_at"].as_str().unwrap().to_owned();
            assert!(ts.starts_with("2024-") && ts.ends_with('Z') && ts.len() == 20, "{ts}");
            times.insert(ts);
        }
        assert_eq!(text.lines().count() as u64, n);
        assert!(amounts.len() > 1_000 && times.len() == n as usize);
        // The millionth record is the longest.
        let mut last = String::new();
        record_line(1_000_000, &mut last);
        let avg = bytes as usize / n as usize;
        assert!((120..=170).contains(&avg) && last.len() <= 170, "avg {avg}, longest {}", last.len());
    }

    fn fake_dovetail(dir: &Path, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("dovetail");
        fs::write(&bin, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    /// A stand-in `dovetail` that "writes" `$n - lose` rows (into a `rows` file) on its first
    /// run in a directory and 0 after, logging each call to `log`.
    fn fake_sync(dir: &Path, log: &Path, lose: u64) -> std::path::PathBuf {
        fake_dovetail(
            dir,
            &format!(
                r#"[ "$1 $2" = "run --config" ] && [ "$3" = "$PWD/dovetail.toml" ] || exit 64
n=$(wc -l < ../customers.jsonl)
if [ -f .ran ]; then w=0; else w=$n; touch .ran; echo $((n - {lose})) > rows; fi
echo "$PWD $n $w" >> {log}
echo "stream read written"; echo "customers $n $w""#,
                log = log.display()
            ),
        )
    }

    fn rows_file(dir: &Path) -> Result<u64> {
        Ok(fs::read_to_string(dir.join("rows"))?.trim().parse()?)
    }

    fn opts(records: Vec<u64>, runs: usize, judge: bool) -> Options {
        Options { records, keep: false, judging: Judging { runs, judge }, state_pg: false }
    }

    #[test]
    fn runs_each_count_twice_per_run_in_its_own_directory_and_judges() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("calls.log");
        let bin = fake_sync(tmp.path(), &log, 0);
        // A shell script's speed is whatever the machine gives it: not judged here (the
        // verdict has its own test).
        assert!(run_bench(&bin, &opts(vec![300, 1_000], 2, false), &rows_file, None).unwrap());
        let calls = fs::read_to_string(&log).unwrap();
        let calls: Vec<Vec<&str>> = calls.lines().map(|l| l.split(' ').collect()).collect();
        assert_eq!(calls.len(), 8, "{calls:?}");
        let counts: Vec<(&str, &str)> = calls.iter().map(|c| (c[1], c[2])).collect();
        assert_eq!(counts[..4], [("300", "300"), ("300", "0"), ("300", "300"), ("300", "0")]);
        assert_eq!(counts[4..], [("1000", "1000"), ("1000", "0"), ("1000", "1000"), ("1000", "0")]);
        assert_eq!(calls[0][0], calls[1][0]);
        assert_ne!(calls[0][0], calls[2][0], "each run has its own directory");
        // Temp directories are gone without --keep.
        assert!(!Path::new(calls[0][0]).exists());
    }

    #[test]
    fn a_lost_record_fails_the_bench_even_unjudged() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = fake_sync(tmp.path(), &tmp.path().join("calls.log"), 1);
        let err = run_bench(&bin, &opts(vec![50], 1, false), &rows_file, None).unwrap_err();
        assert_eq!(err.to_string(), "bench: 50 records, first run 1/1: sent 50 records, 49 arrived in the destination");
    }

    #[test]
    fn a_rerun_that_writes_fails_the_bench() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = fake_dovetail(
            tmp.path(),
            "wc -l < ../customers.jsonl > rows; echo 'stream read written'; echo 'customers 5 5'",
        );
        let err = run_bench(&bin, &opts(vec![5], 1, true), &rows_file, None).unwrap_err();
        assert!(err.to_string().contains("wrote again (it must write 0)"), "{err:#}");
    }

    #[test]
    fn a_missed_target_is_a_failed_verdict() {
        let m = |wall_ms: u64, rss_mib: u64| Measured {
            status: std::process::ExitStatus::default(),
            wall: std::time::Duration::from_millis(wall_ms),
            max_rss_kib: rss_mib * 1024,
            cpu: std::time::Duration::from_millis(wall_ms),
        };
        // 100k records: 0.4 s = 250k/s; one slow run of three does not decide it.
        let fast =
            Row { records: 100_000, run: "first", state: "sqlite", runs: vec![m(400, 30), m(2_000, 30), m(450, 30)] };
        assert_eq!(verdict(&[fast]).missed().count(), 0);
        let slow =
            Row { records: 100_000, run: "first", state: "sqlite", runs: vec![m(600, 30), m(400, 30), m(700, 30)] };
        let v = verdict(&[slow]);
        assert_eq!(v.missed().collect::<Vec<_>>(), ["100000 first run ≥ 200000 records/s: 166667"]);
        assert!(!v.finish("bench", Judging::default()));
        // PostgreSQL state: judged against SQLite state's first run at the same count.
        let lite = Row { records: 100_000, run: "first", state: "sqlite", runs: vec![m(400, 30)] };
        let pg_ok = Row { records: 100_000, run: "first", state: "pg", runs: vec![m(800, 30)] };
        let pg_slow = Row { records: 100_000, run: "first", state: "pg", runs: vec![m(900, 30)] };
        assert_eq!(verdict(&[lite, pg_ok]).missed().count(), 0);
        let lite = Row { records: 100_000, run: "first", state: "sqlite", runs: vec![m(400, 30)] };
        assert_eq!(
            verdict(&[lite, pg_slow]).missed().collect::<Vec<_>>(),
            ["100000 first run with PostgreSQL state within 2× of SQLite state: 111111 vs 250000 records/s"]
        );
        let fat =
            Row { records: 100_000, run: "rerun", state: "sqlite", runs: vec![m(100, 49), m(100, 50), m(100, 20)] };
        assert_eq!(verdict(&[fat]).missed().collect::<Vec<_>>(), ["100000 rerun peak RSS ≤ 48 MiB: 49.0"]);
    }

    #[test]
    fn a_failing_dovetail_run_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = fake_dovetail(tmp.path(), "echo boom >&2; exit 3");
        let err = run_bench(&bin, &opts(vec![10], 1, true), &rows_file, None).unwrap_err();
        assert!(err.to_string().contains("(first run) failed: exit status: 3"), "{err:#}");
    }

    #[test]
    fn config_is_the_documented_pipeline() {
        let t: toml::Table = CONFIG.parse().unwrap();
        let p = &t["pipelines"]["bench"];
        assert_eq!(p["batch_size"].as_integer(), Some(1000));
        assert_eq!(p["source"]["kind"].as_str(), Some("files"));
        assert_eq!(p["source"]["streams"][0]["path"].as_str(), Some("../customers.jsonl"));
        assert_eq!(p["sink"]["kind"].as_str(), Some("sqlite"));
        assert_eq!(p["sink"]["path"].as_str(), Some("warehouse.db"));
    }
}
