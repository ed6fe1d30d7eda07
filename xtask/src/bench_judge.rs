//! What the three benches share to judge themselves: `--runs N` / `--no-judge`, the median
//! of N runs, a checklist of targets that turns into the exit code, the destination's row
//! count and CPU-seconds per 100k records.
//!
//! A target is judged on the median of the runs (the lower middle one for an even count:
//! never flattering), so one slow moment of a shared machine does not decide it. What arrived
//! in the destination is checked whatever `--no-judge` says: a fast bench that lost records
//! measured nothing.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Runs per record count when `--runs` is not given.
pub const DEFAULT_RUNS: usize = 3;

/// `--runs N` and `--no-judge`, shared by the benches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judging {
    /// Runs per record count (or per bench for `bench-http`).
    pub runs: usize,
    /// Whether a missed target fails the bench (`--no-judge` turns it off).
    pub judge: bool,
}

impl Default for Judging {
    fn default() -> Self {
        Judging { runs: DEFAULT_RUNS, judge: true }
    }
}

impl Judging {
    /// Takes `--no-judge` and `--runs N` / `--runs=N` out of `args`; returns them and the rest.
    pub fn take(args: &[String]) -> Result<(Judging, Vec<String>)> {
        let mut j = Judging::default();
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let runs = if arg == "--runs" {
                Some(it.next().context("--runs needs a number")?.as_str())
            } else {
                arg.strip_prefix("--runs=")
            };
            if let Some(v) = runs {
                j.runs = v
                    .parse()
                    .ok()
                    .filter(|k| *k > 0)
                    .with_context(|| format!("--runs: `{v}` is not a positive number"))?;
            } else if arg == "--no-judge" {
                j.judge = false;
            } else {
                rest.push(arg.clone());
            }
        }
        Ok((j, rest))
    }
}

/// The median of `values` (the lower middle one for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

/// CPU-seconds (user + sys of the child) per 100,000 records.
pub fn cpu_per_100k(cpu: Duration, records: u64) -> f64 {
    cpu.as_secs_f64() * 100_000.0 / records.max(1) as f64
}

/// The targets of one bench, each met or missed.
#[derive(Debug, Default)]
pub struct Verdict {
    checks: Vec<(String, bool)>,
}

impl Verdict {
    /// Notes one target: `what` says the target and the figure.
    pub fn check(&mut self, what: impl Into<String>, ok: bool) {
        self.checks.push((what.into(), ok));
    }

    /// The missed targets.
    pub fn missed(&self) -> impl Iterator<Item = &str> {
        self.checks.iter().filter(|(_, ok)| !ok).map(|(w, _)| w.as_str())
    }

    /// Prints every target with `ok` / `MISSED` and returns whether the bench passes: every
    /// target met, or `--no-judge`.
    pub fn finish(&self, bench: &str, j: Judging) -> bool {
        let how = if j.judge { "judged" } else { "not judged (--no-judge)" };
        println!("\ntargets ({how}; each on the median of {} run(s)):", j.runs);
        for (what, ok) in &self.checks {
            println!("  {what}  {}", if *ok { "ok" } else { "MISSED" });
        }
        let missed = self.missed().count();
        if missed == 0 {
            println!("{bench}: every target met");
            true
        } else if j.judge {
            println!("{bench}: FAILED: {missed} target(s) missed");
            false
        } else {
            println!("{bench}: {missed} target(s) missed (not judged: --no-judge)");
            true
        }
    }
}

/// Rows in `table` of the SQLite database at `db`, read-only.
pub fn sqlite_rows(db: &Path, table: &str) -> Result<u64> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(db, flags).with_context(|| format!("opening {}", db.display()))?;
    let sql = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
    let n: i64 = conn
        .query_row(&sql, [], |r| r.get(0))
        .with_context(|| format!("counting the rows of `{table}` in {}", db.display()))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Fails unless `arrived` equals `sent`: a bench that lost or duplicated records is wrong,
/// whatever its speed.
pub fn require_arrived(what: &str, sent: u64, arrived: u64) -> Result<()> {
    if arrived != sent {
        bail!("{what}: sent {sent} records, {arrived} arrived in the destination");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn runs_and_no_judge_are_taken_out_and_the_rest_kept() {
        let (j, rest) = Judging::take(&args(&["--records", "5", "--runs", "5", "--no-judge", "--keep"])).unwrap();
        assert_eq!(j, Judging { runs: 5, judge: false });
        assert_eq!(rest, args(&["--records", "5", "--keep"]));
        let (j, rest) = Judging::take(&args(&["--runs=1"])).unwrap();
        assert_eq!((j, rest.len()), (Judging { runs: 1, judge: true }, 0));
        assert_eq!(Judging::take(&[]).unwrap().0, Judging { runs: DEFAULT_RUNS, judge: true });
        for bad in [&["--runs", "0"][..], &["--runs", "x"], &["--runs"]] {
            assert!(Judging::take(&args(bad)).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_median_is_the_lower_middle() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[170.0, 120.0, 160.0, 150.0]), 150.0);
        assert_eq!(median(&[7.0]), 7.0);
        assert_eq!(median(&[]), 0.0);
        // One slow run out of three does not decide it.
        assert_eq!(median(&[210_000.0, 90_000.0, 205_000.0]), 205_000.0);
    }

    #[test]
    fn a_miss_fails_unless_not_judged() {
        let mut v = Verdict::default();
        v.check("rate ≥ 10: 12", true);
        assert!(v.finish("b", Judging::default()));
        v.check("rss ≤ 48: 50", false);
        assert_eq!(v.missed().collect::<Vec<_>>(), ["rss ≤ 48: 50"]);
        assert!(!v.finish("b", Judging::default()));
        assert!(v.finish("b", Judging { runs: 1, judge: false }));
    }

    #[test]
    fn cpu_is_per_100k_records() {
        assert!((cpu_per_100k(Duration::from_millis(1500), 300_000) - 0.5).abs() < 1e-9);
        assert!(cpu_per_100k(Duration::from_secs(1), 0).is_finite());
    }

    #[test]
    fn arrivals_must_match_and_rows_are_counted() {
        assert!(require_arrived("x", 5, 5).is_ok());
        let e = require_arrived("bench: 5 records, run 1", 5, 4).unwrap_err().to_string();
        assert_eq!(e, "bench: 5 records, run 1: sent 5 records, 4 arrived in the destination");
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("w.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY); INSERT INTO items VALUES (1), (2), (3);")
            .unwrap();
        drop(c);
        assert_eq!(sqlite_rows(&db, "items").unwrap(), 3);
        assert!(sqlite_rows(&db, "nope").unwrap_err().to_string().contains("counting the rows of `nope`"));
    }
}
