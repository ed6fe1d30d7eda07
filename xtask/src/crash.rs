//! `cargo xtask crash [--kills N] [--seed S]`: the full crash sweep. Runs the crash harness
//! test (`tests/tests/crash_paths.rs`) with `DOVETAIL_CRASH_KILLS=N` (default 20), one path
//! at a time so kills land on an unloaded machine, and prints a table of what each path
//! found: path, failpoints, kills, lost, duplicated, refetched. Exits non-zero when a path
//! lost or duplicated a record, or the test failed otherwise. The fleet path
//! (`worker_rest_cursor_to_sqlite`, tests/src/crash/fleet.rs) kills a `dovetail worker` on
//! PostgreSQL state holding the stream's lease and has a second worker take over after the
//! lease (1 s) expired; it prints the same line and is tabulated with the others.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, display_command, flag_values, fmt_duration};

const USAGE: &str = "usage: cargo xtask crash [--kills N] [--seed S]";

/// Random kills per path when `--kills` is not given.
pub const DEFAULT_KILLS: u64 = 20;

/// One `crash-path:` line of the harness: `name key=value ...`.
struct Row {
    name: String,
    fields: Vec<(String, String)>,
}

impl Row {
    fn parse(line: &str) -> Option<Row> {
        let rest = line.split_once("crash-path: ")?.1;
        let mut words = rest.split_whitespace();
        let name = words.next()?.to_owned();
        let fields = words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Some(Row { name, fields })
    }

    fn get(&self, key: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == key).map_or("?", |(_, v)| v.as_str())
    }

    fn count(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap_or(u64::MAX)
    }
}

/// Runs the sweep; `Ok(false)` when a path lost or duplicated a record or the test failed.
pub fn main(root: &Path, args: &[String]) -> Result<bool> {
    let mut kills = DEFAULT_KILLS;
    let mut seed = None;
    for (name, value) in flag_values(args, &["--kills", "--seed"], USAGE)? {
        match name {
            "--kills" => kills = value.parse().with_context(|| format!("--kills {value}: not a count ({USAGE})"))?,
            _ => seed = Some(value.parse::<u64>().with_context(|| format!("--seed {value}: not a number ({USAGE})"))?),
        }
    }
    if kills == 0 {
        bail!("--kills must be at least 1 ({USAGE})");
    }
    let mut cmd = cargo(root);
    cmd.args(["test", "-p", "dovetail-e2e", "--test", "crash_paths", "--", "--nocapture", "--test-threads=1"]);
    cmd.env("DOVETAIL_CRASH_KILLS", kills.to_string());
    if let Some(s) = seed {
        cmd.env("DOVETAIL_CRASH_SEED", s.to_string());
    }
    println!("crash: {} (DOVETAIL_CRASH_KILLS={kills})", display_command(&cmd));
    let started = Instant::now();
    let out = cmd.stderr(Stdio::inherit()).output().context("run cargo test for the crash harness")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Row> = stdout.lines().filter_map(Row::parse).collect();

    println!(
        "\n{:<28} {:>10} {:>6} {:>5} {:>10} {:>9}",
        "path", "failpoints", "kills", "lost", "duplicated", "refetched"
    );
    let mut clean = out.status.success();
    for r in &rows {
        println!(
            "{:<28} {:>10} {:>6} {:>5} {:>10} {:>9}",
            r.name,
            r.get("failpoints"),
            r.get("kills"),
            r.get("lost"),
            r.get("duplicated"),
            r.get("refetched")
        );
        if r.count("lost") > 0 || r.count("duplicated") > 0 || r.count("rewritten") > 0 {
            clean = false;
            println!("  replay: cargo xtask crash --kills {kills} --seed {}", r.get("seed"));
        }
    }
    println!("\ncrash: {} paths, {kills} random kills each, in {}", rows.len(), fmt_duration(started.elapsed()));
    if rows.is_empty() {
        println!("crash: the harness printed no `crash-path:` line:\n{stdout}");
        return Ok(false);
    }
    if !out.status.success() {
        println!("crash: the harness test failed (its output is above)");
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::Row;

    #[test]
    fn a_harness_line_parses_into_its_columns() {
        let line = "crash-path: rest_page_to_sqlite failpoints=6 kills=20 lost=0 duplicated=2 refetched=n/a rewritten=0 seed=9";
        let r = Row::parse(line).expect("a crash-path line");
        assert_eq!(r.name, "rest_page_to_sqlite");
        assert_eq!((r.count("kills"), r.count("duplicated"), r.get("refetched")), (20, 2, "n/a"));
        // A missing count is never taken for 0.
        assert_eq!(r.count("absent"), u64::MAX);
        assert!(Row::parse("test rest_page_to_sqlite ... ok").is_none());
    }
}
