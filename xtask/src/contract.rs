//! `cargo xtask contract [NAME ...]`: run each connector's contract suite
//! (`connectors/NAME/tests/contract.rs`, built on dovetail-testkit's `SourceContract`) and
//! print a table connector × check. The suites print one line per check,
//! `contract: <connector> <check> pass|fail|skip|n/a <reason>`; this parses them. A skip
//! (the connector stated why) is counted apart from passes, with its reason under the
//! table. Fails on any failed check, on a named connector without a contract test, and on a suite that fails
//! without printing a failed check (it did not build, or panicked).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// One parsed `contract:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Connector name as the suite reports it.
    pub connector: String,
    /// Check name.
    pub check: String,
    /// `pass`, `fail`, `skip` or `n/a`.
    pub outcome: String,
    /// Why (may be empty for a pass).
    pub reason: String,
}

/// The `contract:` lines of a suite's output.
pub fn parse(output: &str) -> Vec<Line> {
    output
        .lines()
        .filter_map(|l| {
            // `cargo test -q` prints a `.` per finished test without a newline, so a line
            // may start with dots from another test of the same file.
            let rest = l.trim_start_matches(|c: char| c == '.' || c.is_whitespace()).strip_prefix("contract: ")?;
            let mut parts = rest.splitn(4, ' ');
            let (connector, check, outcome) = (parts.next()?, parts.next()?, parts.next()?);
            if !matches!(outcome, "pass" | "fail" | "skip" | "n/a") {
                return None;
            }
            Some(Line {
                connector: connector.to_owned(),
                check: check.to_owned(),
                outcome: outcome.to_owned(),
                reason: parts.next().unwrap_or("").trim().to_owned(),
            })
        })
        .collect()
}

/// Connector directories under `connectors/` with a `tests/contract.rs`, sorted.
fn with_contract(root: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(root.join("connectors")).context("reading connectors/")? {
        let entry = entry?;
        if !entry.path().join("Cargo.toml").is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join("tests/contract.rs").is_file() { with.push(name) } else { without.push(name) }
    }
    with.sort();
    without.sort();
    Ok((with, without))
}

/// The table: one row per check, one column per connector.
pub fn table(connectors: &[String], lines: &[Line]) -> String {
    let mut checks: Vec<&str> = Vec::new();
    for l in lines {
        if !checks.contains(&l.check.as_str()) {
            checks.push(&l.check);
        }
    }
    let cell: BTreeMap<(&str, &str), &Line> =
        lines.iter().map(|l| ((l.check.as_str(), l.connector.as_str()), l)).collect();
    let w = checks.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
    let cw: Vec<usize> = connectors.iter().map(|c| c.len().max(4)).collect();
    let mut out = format!("{:w$}", "check");
    for (c, cw) in connectors.iter().zip(&cw) {
        out.push_str(&format!("  {c:cw$}"));
    }
    out.push('\n');
    for check in &checks {
        out.push_str(&format!("{check:w$}"));
        for (c, cw) in connectors.iter().zip(&cw) {
            let v = match cell.get(&(*check, c.as_str())).map(|l| l.outcome.as_str()) {
                Some("pass") => "pass",
                Some("fail") => "FAIL",
                Some("skip") => "skip",
                Some(_) => "n/a",
                // The connector ran no suite of this kind (a source-only or sink-only crate).
                None => "n/a",
            };
            out.push_str(&format!("  {v:cw$}"));
        }
        out.push('\n');
    }
    let mut out: String = out.lines().map(|l| format!("{}\n", l.trim_end())).collect();
    let mut notes: Vec<Line> = lines.iter().filter(|l| l.outcome != "pass").cloned().collect();
    for check in &checks {
        for c in connectors {
            if !cell.contains_key(&(*check, c.as_str())) {
                let (kind, has) = if check.starts_with("sink_") { ("sink", "source") } else { ("source", "sink") };
                let reason = format!("{c} has no {kind}: it is a {has}-only connector");
                notes.push(Line { connector: c.clone(), check: (*check).to_owned(), outcome: "n/a".into(), reason });
            }
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for l in notes {
            let tag = match l.outcome.as_str() {
                "fail" => "FAIL",
                "skip" => "skip",
                _ => "n/a",
            };
            out.push_str(&format!("{} {} {tag}: {}\n", l.connector, l.check, l.reason));
        }
    }
    let count = |o: &str| lines.iter().filter(|l| l.outcome == o).count();
    out.push_str(&format!(
        "\n{} pass, {} skip (stated why), {} n/a, {} fail\n",
        count("pass"),
        count("skip"),
        count("n/a"),
        count("fail")
    ));
    out
}

/// Runs `contract [NAME ...]` in the workspace at `root`; `Ok(false)` when something failed.
pub fn main(root: &Path, args: &[String]) -> Result<bool> {
    let (with, without) = with_contract(root)?;
    let names: Vec<String> = if args.is_empty() { with.clone() } else { args.to_vec() };
    if names.is_empty() {
        bail!("contract: no connector under connectors/ has a tests/contract.rs");
    }
    let mut ok = true;
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for name in &names {
        if !with.contains(name) {
            let why = if without.contains(name) { "has no tests/contract.rs" } else { "is no connector crate" };
            problems.push(format!("{name}: connectors/{name} {why}"));
            ok = false;
            continue;
        }
        println!("contract: running dovetail-{name}");
        let out = crate::util::cargo(root)
            .args(["test", "-q", "-p", &format!("dovetail-{name}"), "--test", "contract", "--", "--nocapture"])
            .output()
            .with_context(|| format!("running the contract test of {name}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let found = parse(&text);
        let failed = found.iter().any(|l| l.outcome == "fail");
        if found.is_empty() || (!out.status.success() && !failed) {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            problems.push(format!(
                "{name}: the contract test {} and reported {} check(s)\n{}",
                if out.status.success() { "passed" } else { "failed" },
                found.len(),
                tail.join("\n")
            ));
            ok = false;
        }
        ok &= !failed;
        // The table's columns are the names given; a suite reports under its connector name.
        lines.extend(found.into_iter().map(|l| Line { connector: name.clone(), ..l }));
    }
    println!("\n{}", table(&names, &lines));
    for p in &problems {
        println!("contract: {p}");
    }
    if !args.is_empty() || without.is_empty() {
        return Ok(ok);
    }
    println!("contract: connectors without a contract test: {}", without.join(", "));
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_the_table_marks_failures() {
        let out = "running 1 test\ncontract: gh a_check pass streams: x, y\ncontract: gh other fail it broke\n\
                   contract: gh third n/a no fixture\ncontract: gh bad maybe what\ntest x ... ok\n\
                   ..contract: gh dotted pass quiet test output\ncontract: gh fourth skip vendor cannot: no 429\n";
        let lines = parse(out);
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[3].check, "dotted");
        assert_eq!(lines[1].reason, "it broke");
        let t = table(&["gh".to_owned()], &lines);
        assert!(t.contains("a_check  pass"), "{t}");
        assert!(t.contains("other    FAIL"), "{t}");
        assert!(t.contains("gh other FAIL: it broke"), "{t}");
        assert!(t.contains("gh third n/a: no fixture"), "{t}");
        // A skip is its own cell and count, with its reason: never a pass.
        assert!(t.contains("fourth   skip"), "{t}");
        assert!(t.contains("gh fourth skip: vendor cannot: no 429"), "{t}");
        assert!(t.contains("2 pass, 1 skip (stated why), 1 n/a, 1 fail"), "{t}");
        // A connector that ran no suite of a kind shows n/a with why, never a blank.
        let mut both = lines.clone();
        both.push(Line {
            connector: "db".into(),
            check: "sink_replay".into(),
            outcome: "pass".into(),
            reason: "".into(),
        });
        let t = table(&["db".to_owned(), "gh".to_owned()], &both);
        assert!(t.contains("gh sink_replay n/a: gh has no sink: it is a source-only connector"), "{t}");
        assert!(t.contains("db a_check n/a: db has no source: it is a sink-only connector"), "{t}");
        assert!(!t.contains(" - "), "{t}");
    }
}
