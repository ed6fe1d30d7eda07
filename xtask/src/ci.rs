//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failure.
//!
//! 1. `cargo fmt --all --check`
//! 2. `cargo clippy --workspace --all-targets -- -D warnings`
//! 3. `cargo test --workspace` (plain cargo test: unit, integration and doc tests), with a
//!    throwaway PostgreSQL from the testkit; where none exists it fails under `CI=true`,
//!    and elsewhere prints how many PostgreSQL tests did not run
//! 4. contract: every connector's contract suite (`cargo xtask contract`, in-process),
//!    on the same debug build as the tests, printing the connector × check table
//! 5. tidy (in-process)
//! 6. demo smoke test: `dovetail run` on a temp copy of `examples/`, twice; the second run
//!    must write 0 records. Then `dovetail demo --json` (fake vendor with faults and a killed
//!    run, REST → SQLite) twice on the same copy, judged by its counts
//!    ([`check_demo_counts`]): sink rows + dead-lettered keys = vendor records, no duplicate
//!    key, every configured fault's counter ≥ 1 on the first (the sink-down one: its outbox
//!    all delivered), 0 written on the second.
//!
//! All steps share the debug profile and one target dir.

use std::fs;
use std::path::Path;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::{cargo, copy_dir, display_command, dovetail_cmd, fmt_duration, plain_output, target_dir};

/// How long one demo run may take before it is killed.
const DEMO_TIMEOUT: Duration = Duration::from_secs(300);

struct Step {
    name: &'static str,
    what: &'static str,
    run: fn(&Path) -> Result<()>,
}

const STEPS: &[Step] = &[
    Step { name: "fmt", what: "cargo fmt --all --check", run: |root| run_cargo(root, &["fmt", "--all", "--check"]) },
    Step {
        name: "clippy",
        what: "cargo clippy --workspace --all-targets -- -D warnings",
        run: |root| run_cargo(root, &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
    },
    Step { name: "test", what: "cargo test --workspace (PostgreSQL tests included)", run: run_tests },
    Step {
        name: "contract",
        what: "cargo xtask contract (every connector with a tests/contract.rs; same debug build)",
        run: |root| {
            if crate::contract::main(root, &[])? { Ok(()) } else { bail!("a contract check failed (table above)") }
        },
    },
    Step {
        name: "tidy",
        what: "cargo xtask tidy (in-process)",
        run: |root| {
            if crate::tidy::main(root)? { Ok(()) } else { bail!("tidy found violations (listed above)") }
        },
    },
    Step {
        name: "demo",
        what: "dovetail run on a copy of examples/, twice (the rerun writes 0); dovetail demo --json twice (sink rows + dead-lettered keys = vendor records, no duplicate key, every fault's counter ≥ 1, the outbox drained, the rerun writes 0); the pipeline_in_code example",
        run: demo,
    },
];

/// Runs every step; returns whether all passed.
pub fn main(root: &Path) -> Result<bool> {
    let total = Instant::now();
    let mut done: Vec<(&str, Duration)> = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        let n = i + 1;
        let of = STEPS.len();
        println!("\nci: step {n}/{of} {}: {}", step.name, step.what);
        let started = Instant::now();
        let result = (step.run)(root);
        let took = started.elapsed();
        match result {
            Ok(()) => {
                println!("ci: step {n}/{of} {} ok ({})", step.name, fmt_duration(took));
                done.push((step.name, took));
            }
            Err(e) => {
                println!("ci: step {} failed after {}: {e:#}", step.name, fmt_duration(took));
                let skipped: Vec<&str> = STEPS[n..].iter().map(|s| s.name).collect();
                println!(
                    "ci: FAILED at step {n}/{of} ({}) after {}; passed: {}; not run: {}",
                    step.name,
                    fmt_duration(total.elapsed()),
                    list(&done),
                    if skipped.is_empty() { "-".to_owned() } else { skipped.join(", ") }
                );
                return Ok(false);
            }
        }
    }
    println!("\nci: ok, {} steps passed in {} ({})", STEPS.len(), fmt_duration(total.elapsed()), list(&done));
    Ok(true)
}

fn list(done: &[(&str, Duration)]) -> String {
    if done.is_empty() {
        return "-".to_owned();
    }
    done.iter().map(|(name, d)| format!("{name} {}", fmt_duration(*d))).collect::<Vec<_>>().join(", ")
}

/// `cargo test --workspace`. PostgreSQL tests need `initdb` (or `DOVETAIL_TEST_PG_URL`):
/// without it, CI (`CI=true`) fails; elsewhere they run as skipped (the testkit's
/// `DOVETAIL_ALLOW_NO_PG`) and one loud line says how many did not run.
fn run_tests(root: &Path) -> Result<()> {
    if std::env::var_os("DOVETAIL_TEST_PG_URL").is_some() || has_initdb() {
        return run_cargo(root, &["test", "--workspace"]);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        bail!(
            "no PostgreSQL here (no `initdb` on PATH or in /usr/lib/postgresql/*/bin, no DOVETAIL_TEST_PG_URL): CI \
             must run the PostgreSQL tests; install it (`apt-get install -y postgresql`, as .ci/run does)"
        );
    }
    let log = std::env::temp_dir().join(format!("dovetail-pg-skipped-{}", std::process::id()));
    let _ = fs::remove_file(&log);
    let mut cmd = cargo(root);
    cmd.args(["test", "--workspace"]).env("DOVETAIL_ALLOW_NO_PG", "1").env("DOVETAIL_PG_SKIP_LOG", &log);
    println!("ci: running: {} (DOVETAIL_ALLOW_NO_PG=1: no PostgreSQL here)", display_command(&cmd));
    let status = cmd.status().with_context(|| format!("starting `{}`", display_command(&cmd)))?;
    let skipped = fs::read_to_string(&log).map(|t| t.lines().count()).unwrap_or(0);
    let _ = fs::remove_file(&log);
    println!(
        "\nci: !!! {skipped} PostgreSQL test(s) DID NOT RUN: no PostgreSQL on this machine. Install it \
         (Debian: `apt-get install -y postgresql`) or set DOVETAIL_TEST_PG_URL=postgres://user:password@host:port !!!\n"
    );
    if !status.success() {
        bail!("`{}` exited with {status}", display_command(&cmd));
    }
    Ok(())
}

/// Whether PostgreSQL's `initdb` is on PATH or under /usr/lib/postgresql/*/bin.
fn has_initdb() -> bool {
    let on_path =
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("initdb").is_file()));
    on_path
        || fs::read_dir("/usr/lib/postgresql")
            .map(|dirs| dirs.flatten().any(|d| d.path().join("bin/initdb").is_file()))
            .unwrap_or(false)
}

fn run_cargo(root: &Path, args: &[&str]) -> Result<()> {
    let mut cmd = cargo(root);
    cmd.args(args);
    println!("ci: running: {}", display_command(&cmd));
    let status = cmd.status().with_context(|| format!("starting `{}`", display_command(&cmd)))?;
    if !status.success() {
        bail!("`{}` exited with {status}", display_command(&cmd));
    }
    Ok(())
}

/// Whether a `dovetail run` summary says it wrote 0 records.
///
/// Understands the runner's table (a header line with a `written` column, then one row per
/// stream) and inline forms (`written 0`, `written: 0`, `written=0`, `0 written`). True if
/// at least one count is found and every count is 0. Change this when the summary changes.
pub fn reports_zero_written(stdout: &str) -> bool {
    let lines: Vec<&str> = stdout.lines().collect();
    let is_num = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let mut counts: Vec<u64> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let header: Vec<&str> = lines[i].split_whitespace().collect();
        if let Some(col) = header.iter().position(|c| c.eq_ignore_ascii_case("written")) {
            // Table: rows below the header with a number in that column.
            let rows: Vec<&str> = lines[i + 1..]
                .iter()
                .map(|l| l.split_whitespace().nth(col).unwrap_or(""))
                .take_while(|cell| is_num(cell))
                .collect();
            if !rows.is_empty() {
                counts.extend(rows.iter().filter_map(|c| c.parse::<u64>().ok()));
                i += 1 + rows.len();
                continue;
            }
        }
        // Inline: the number right after `written` (past spaces, `:` or `=`), else right before.
        let lower = lines[i].to_ascii_lowercase();
        for (at, _) in lower.match_indices("written") {
            let after = lower[at + "written".len()..].trim_start_matches([' ', '\t', ':', '=']);
            let after: String = after.chars().take_while(char::is_ascii_digit).collect();
            let before = lower[..at].trim_end_matches([' ', '\t']);
            let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            let before = &before[before.len() - digits..];
            if let Ok(n) = if after.is_empty() { before.parse() } else { after.parse() } {
                counts.push(n);
            }
        }
        i += 1;
    }
    !counts.is_empty() && counts.iter().all(|&n| n == 0)
}

/// Entries of `examples/` that a developer's local runs leave behind; not copied.
fn is_local_state(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    name == ".dovetail"
        || name == "out"
        || [".db", ".db-wal", ".db-shm", ".db-journal"].iter().any(|ext| name.ends_with(ext))
}

fn demo(root: &Path) -> Result<()> {
    let examples = root.join("examples");
    require_example(&examples)?;
    run_cargo(root, &["build", "-p", "dovetail-runner", "--bin", "dovetail"])?;
    let bin = target_dir(root).join("debug").join("dovetail");
    if !bin.is_file() {
        bail!("{} was not built", bin.display());
    }
    demo_runs(&bin, &examples)?;
    vendor_demo_runs(&bin, &examples)?;
    // The pipeline-in-code example must keep running, not just compiling.
    run_cargo(root, &["run", "-q", "-p", "dovetail-runner", "--example", "pipeline_in_code"])
}

/// The demo needs the bundled example: its absence is a failure, never a skip.
fn require_example(examples: &Path) -> Result<()> {
    if !examples.join("dovetail.toml").is_file() {
        bail!(
            "examples/dovetail.toml does not exist: the demo smoke test needs the bundled example \
             (a runnable config and sample data in examples/, issue 2)"
        );
    }
    Ok(())
}

/// Runs `bin run --config dovetail.toml` twice in a temp copy of `examples`.
fn demo_runs(bin: &Path, examples: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("dovetail-ci-demo-").tempdir().context("creating a temp dir")?;
    let dir = tmp.path().join("examples");
    copy_dir(examples, &dir, &is_local_state)?;
    let config = dir.join("dovetail.toml");

    let first = run_demo(bin, &dir, &config, "first")?;
    if !first.success {
        bail!("first `dovetail run` exited with {}", first.status);
    }
    let second = run_demo(bin, &dir, &config, "second")?;
    if !second.success {
        bail!("second `dovetail run` exited with {}", second.status);
    }
    if !reports_zero_written(&second.stdout) {
        let hint = if reports_zero_written(&second.stderr) {
            " (the summary is on stderr; the runner should print its report on stdout)"
        } else {
            ""
        };
        bail!(
            "second `dovetail run` did not report 0 written on stdout{hint}; \
             see the output above (matcher: ci::reports_zero_written)"
        );
    }
    Ok(())
}

/// Runs `bin demo --json` twice on a temp copy of `examples/demo.toml` and judges the
/// counts it prints, never its phrases: see [`check_demo_counts`].
fn vendor_demo_runs(bin: &Path, examples: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("dovetail-ci-vendor-demo-").tempdir().context("creating a temp dir")?;
    let dir = tmp.path().join("examples");
    copy_dir(examples, &dir, &is_local_state)?;
    let config = dir.join("demo.toml");
    let args = [std::ffi::OsStr::new("demo"), "--json".as_ref(), "--demo-config".as_ref(), config.as_os_str()];
    for (label, first) in [("demo-first", true), ("demo-second", false)] {
        let run = run_demo_with(bin, &dir, &args, label)?;
        if !run.success {
            bail!("{label}: `dovetail demo --json` exited with {}", run.status);
        }
        check_demo_counts(&run.stdout, first).with_context(|| format!("{label}: `dovetail demo --json`"))?;
    }
    Ok(())
}

/// What `dovetail demo --json` must show: every record the vendor holds is a sink row or a
/// dead-lettered key, no key twice; on the first run every configured fault's counter is at
/// least 1 and the killed run was resumed; on the second, nothing is written.
pub fn check_demo_counts(stdout: &str, first: bool) -> Result<()> {
    let v: serde_json::Value =
        stdout.lines().rev().find_map(|l| serde_json::from_str(l.trim()).ok()).context("printed no JSON object")?;
    let n = |pointer: &str| {
        v.pointer(pointer)
            .and_then(serde_json::Value::as_u64)
            .with_context(|| format!("`{pointer}` missing or not a count"))
    };
    let (vendor, rows, dead, dups) =
        (n("/vendor_records")?, n("/sink_rows")?, n("/dead_lettered_keys")?, n("/duplicate_keys")?);
    if rows + dead != vendor {
        bail!(
            "the vendor holds {vendor} records, the sink {rows} rows and {dead} keys are dead-lettered: {rows} + {dead} ≠ {vendor}"
        );
    }
    if dups != 0 {
        bail!("{dups} keys are in the sink more than once");
    }
    if first {
        let faults = v.get("faults").and_then(serde_json::Value::as_object).context("`faults` missing")?;
        if faults.is_empty() {
            bail!("no fault configured");
        }
        let unseen: Vec<&str> =
            faults.iter().filter(|(_, c)| c.as_u64().unwrap_or(0) == 0).map(|(k, _)| k.as_str()).collect();
        if !unseen.is_empty() {
            bail!("configured faults that did not happen (counter 0): {}", unseen.join(", "));
        }
        // The sink was down partway: what waited in the outbox was all delivered.
        if faults.contains_key("sink_down")
            && (n("/outbox/pending")? != 0 || n("/outbox/delivered")? != n("/outbox/queued")?)
        {
            bail!(
                "the outbox queued {} records while the sink was down, delivered {} and still holds {}",
                n("/outbox/queued")?,
                n("/outbox/delivered")?,
                n("/outbox/pending")?
            );
        }
        if !faults.contains_key("crash") {
            bail!("the first run staged no crash (faults: {})", faults.keys().cloned().collect::<Vec<_>>().join(", "));
        }
    } else if n("/written")? != 0 {
        bail!("the second run wrote {} records (it must write 0)", n("/written")?);
    }
    Ok(())
}

struct DemoRun {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

fn run_demo(bin: &Path, dir: &Path, config: &Path, label: &str) -> Result<DemoRun> {
    let args = [std::ffi::OsStr::new("run"), "--config".as_ref(), config.as_os_str()];
    run_demo_with(bin, dir, &args, label)
}

fn run_demo_with(bin: &Path, dir: &Path, args: &[&std::ffi::OsStr], label: &str) -> Result<DemoRun> {
    let logs = dir.parent().unwrap_or(dir);
    let out_path = logs.join(format!("{label}.stdout"));
    let err_path = logs.join(format!("{label}.stderr"));
    let mut cmd = dovetail_cmd(bin, dir, args, &out_path, &err_path)?;
    plain_output(&mut cmd);
    println!("ci: running ({label}): {}", display_command(&cmd));
    let mut child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
    let deadline = Instant::now() + DEMO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{label} `dovetail` did not finish within {}", fmt_duration(DEMO_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for line in text.lines() {
            println!("  {label} {name} | {line}");
        }
    }
    Ok(DemoRun { success: status.success(), status: status.to_string(), stdout, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_written_matcher() {
        assert!(reports_zero_written("pipeline demo: read 10, written 0, skipped 10\n"));
        assert!(reports_zero_written("customers  written: 0  skipped-unchanged: 3"));
        assert!(reports_zero_written("written=0 deleted=0"));
        assert!(reports_zero_written("logs\n0 written, 12 skipped as unchanged\n"));
        assert!(reports_zero_written("a: written 0\nb: written 0\n"));
        assert!(!reports_zero_written("pipeline demo: read 10, written 10, skipped 0\n"));
        assert!(!reports_zero_written("a: written 0\nb: written 3\n"));
        assert!(!reports_zero_written("nothing to see\n"));
        assert!(!reports_zero_written(""));
        assert!(!reports_zero_written("run `demo`: succeeded (dry run: nothing written or committed) in 3ms\n"));
        // The runner's table.
        let table = "run `demo`: succeeded in 12ms (run 2)\n\
            stream     read  written  unchanged  deleted  dead-lettered  seconds  outcome\n\
            customers    10        0         10        0              0     0.01  succeeded\n\
            orders        5        0          5        0              0     0.00  succeeded\n\
            total        15        0         15        0              0     0.02  succeeded\n";
        assert!(reports_zero_written(table));
        assert!(!reports_zero_written(&table.replace("orders        5        0", "orders        5        3")));
        assert!(!reports_zero_written("stream  read  written\n"));
    }

    #[test]
    fn local_state_is_not_copied() {
        assert!(is_local_state(Path::new("examples/.dovetail")));
        assert!(is_local_state(Path::new("examples/warehouse.db")));
        assert!(is_local_state(Path::new("examples/out")));
        assert!(!is_local_state(Path::new("examples/dovetail.toml")));
        assert!(!is_local_state(Path::new("examples/data/customers.jsonl")));
    }

    /// A stand-in `dovetail`: writes 3 on its first run in a directory, then `$SECOND`.
    fn fake_dovetail(dir: &Path, second: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("dovetail");
        let script = format!(
            r#"#!/bin/sh
[ "$1" = run ] && [ "$2" = --config ] && [ "$3" = "$PWD/dovetail.toml" ] || {{ echo "bad args: $*" >&2; exit 64; }}
[ -f "$PWD/data.jsonl" ] || {{ echo "data not copied" >&2; exit 65; }}
[ -f "$PWD/warehouse.db" ] && {{ echo "local state was copied" >&2; exit 66; }}
if [ -f .dovetail/ran ]; then n={second}; else mkdir -p .dovetail; touch .dovetail/ran; n=3; fi
echo "run \`demo\`: succeeded in 5ms (run 1)"
echo "stream     read  written  unchanged"
echo "customers     3       $n          0"
"#
        );
        fs::write(&bin, script).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    fn fake_examples(dir: &Path) -> std::path::PathBuf {
        let examples = dir.join("examples");
        fs::create_dir_all(&examples).unwrap();
        fs::write(examples.join("dovetail.toml"), "[pipelines.demo]\n").unwrap();
        fs::write(examples.join("data.jsonl"), "{}\n").unwrap();
        fs::write(examples.join("warehouse.db"), "left over from a local run").unwrap();
        examples
    }

    #[test]
    fn demo_passes_when_the_rerun_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = fake_dovetail(tmp.path(), "0");
        let examples = fake_examples(tmp.path());
        demo_runs(&bin, &examples).unwrap();
        // The repository copy stays clean.
        assert!(!examples.join(".dovetail").exists());
    }

    #[test]
    fn demo_fails_when_the_rerun_writes_again() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = fake_dovetail(tmp.path(), "3");
        let err = demo_runs(&bin, &fake_examples(tmp.path())).unwrap_err();
        assert!(err.to_string().contains("did not report 0 written"), "{err:#}");
    }

    #[test]
    fn demo_fails_when_a_run_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = fake_dovetail(tmp.path(), "0");
        let examples = fake_examples(tmp.path());
        fs::remove_file(examples.join("data.jsonl")).unwrap();
        let err = demo_runs(&bin, &examples).unwrap_err();
        assert!(err.to_string().contains("first `dovetail run` exited with exit status: 65"), "{err:#}");
    }

    #[test]
    fn demo_without_the_example_config_fails_loudly() {
        let tmp = tempfile::tempdir().unwrap();
        let err = require_example(&tmp.path().join("examples")).unwrap_err();
        assert!(err.to_string().contains("examples/dovetail.toml does not exist"), "{err:#}");
        assert!(require_example(&fake_examples(tmp.path())).is_ok());
    }

    #[test]
    fn the_demo_is_judged_by_its_counts() {
        let first = r#"{"vendor_records":3000,"sink_rows":2998,"duplicate_keys":0,"dead_lettered_keys":2,"written":2100,"faults":{"crash":1,"error_503":4,"rate_limit":3}}"#;
        check_demo_counts(first, true).unwrap();
        let lost = first.replace("2998", "2997");
        let e = check_demo_counts(&lost, true).unwrap_err().to_string();
        assert_eq!(
            e,
            "the vendor holds 3000 records, the sink 2997 rows and 2 keys are dead-lettered: 2997 + 2 ≠ 3000"
        );
        let twice = first.replace(r#""duplicate_keys":0"#, r#""duplicate_keys":1"#);
        assert!(
            check_demo_counts(&twice, true).unwrap_err().to_string().contains("1 keys are in the sink more than once")
        );
        let unseen = first.replace(r#""error_503":4"#, r#""error_503":0"#);
        assert!(check_demo_counts(&unseen, true).unwrap_err().to_string().contains("(counter 0): error_503"));
        let drained = first
            .replace(r#""crash":1,"#, r#""crash":1,"sink_down":300,"#)
            .replace(r#""written":2100"#, r#""written":2100,"outbox":{"queued":300,"delivered":300,"pending":0}"#);
        check_demo_counts(&drained, true).unwrap();
        let stuck = drained.replace(r#""delivered":300,"pending":0"#, r#""delivered":200,"pending":100"#);
        assert!(check_demo_counts(&stuck, true).unwrap_err().to_string().contains("delivered 200 and still holds 100"));
        let no_crash = first.replace(r#""crash":1,"#, "");
        assert!(check_demo_counts(&no_crash, true).unwrap_err().to_string().contains("staged no crash"));
        // The second run: counts still add up, nothing written; fault counters are not asked for.
        let second =
            first.replace(r#""written":2100"#, r#""written":0"#).replace(r#""error_503":4"#, r#""error_503":0"#);
        check_demo_counts(&second, false).unwrap();
        let again = first.replace(r#""written":2100"#, r#""written":5"#);
        assert!(check_demo_counts(&again, false).unwrap_err().to_string().contains("wrote 5 records"));
        assert!(check_demo_counts("What happened: 3000 records read", true).is_err(), "phrases are not counts");
        assert!(
            check_demo_counts(r#"{"vendor_records":3}"#, true)
                .unwrap_err()
                .to_string()
                .contains("`/sink_rows` missing")
        );
    }

    #[test]
    fn steps_are_in_the_documented_order() {
        let names: Vec<_> = STEPS.iter().map(|s| s.name).collect();
        assert_eq!(names, ["fmt", "clippy", "test", "contract", "tidy", "demo"]);
    }
}
