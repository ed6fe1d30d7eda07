//! End to end through the binary: JSONL into SQLite with `dovetail run`, reruns, status,
//! dead letters and their replay, delete propagation, dry runs, SIGINT and the run lock.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(config: &str, records: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dovetail.toml"), config).unwrap();
        std::fs::write(dir.path().join("orders.jsonl"), records).unwrap();
        Project { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dovetail"));
        c.current_dir(self.dir.path()).args(args).env_remove("RUST_LOG").env_remove("DOVETAIL_CONFIG");
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    /// `dovetail run --json ARGS`: the exit code and the report.
    fn run_json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["-q", "run", "--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)));
        (out.status.code().unwrap(), report)
    }
    fn rows(&self, sql: &str) -> i64 {
        let db = rusqlite::Connection::open(self.path("out/warehouse.db")).unwrap();
        db.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn records(n: usize, version: &str) -> String {
    (1..=n).map(|i| format!("{{\"id\": {i}, \"amount\": \"{i}.50\", \"note\": \"{version}\"}}\n")).collect()
}

const CONFIG: &str = r#"[pipelines.orders]
batch_size = 25

[pipelines.orders.source]
kind = "files"
[[pipelines.orders.source.streams]]
name = "orders"
path = "orders.jsonl"
primary_key = ["id"]

[pipelines.orders.sink]
kind = "sqlite"
path = "out/warehouse.db"

[pipelines.orders.streams.orders.mapping]
rename = { id = "order_id" }
cast = { amount = "number" }
"#;

fn stream(report: &Value) -> &Value {
    &report["streams"]["orders"]
}

#[test]
fn rerun_change_status_and_dead_letter_replay() {
    let mut data = records(100, "v1");
    data.push_str("not json\n{\"id\": 101, \"amount\": \"lots\"}\n");
    let p = Project::new(CONFIG, &data);

    let (code, r) = p.run_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((stream(&r)["written"].as_u64(), stream(&r)["dead_lettered"].as_u64()), (Some(100), Some(2)));
    assert_eq!(p.rows("SELECT count(*) FROM orders"), 100);

    let (code, r) = p.run_json(&[]);
    assert_eq!(code, 0);
    assert_eq!((stream(&r)["written"].as_u64(), stream(&r)["skipped_unchanged"].as_u64()), (Some(0), Some(100)));

    let changed: String = records(100, "v1")
        .lines()
        .enumerate()
        .map(|(i, l)| if i % 10 == 0 { l.replace("v1", "v2") } else { l.to_owned() } + "\n")
        .collect();
    std::fs::write(p.path("orders.jsonl"), format!("{changed}not json\n{{\"id\": 101, \"amount\": \"lots\"}}\n"))
        .unwrap();
    let out = p.run(&["-q", "run"]);
    assert_eq!(out.status.code(), Some(0));
    let summary = text(&out.stdout);
    assert!(summary.starts_with("pipeline `orders`: succeeded"), "{summary}");
    let row: Vec<&str> = summary.lines().find(|l| l.starts_with("orders ")).unwrap().split_whitespace().collect();
    assert_eq!(row[..7], ["orders", "102", "10", "90", "0", "0", "2"], "{summary}");
    assert_eq!(p.rows("SELECT count(*) FROM orders WHERE note = 'v2'"), 10);

    let out = p.run(&["-q", "status"]);
    let status = text(&out.stdout);
    assert_eq!(status.lines().count(), 4, "{status}");
    assert!(status.lines().nth(1).unwrap().contains("succeeded"));

    let out = p.run(&["-q", "dead-letters", "list", "--json"]);
    let letters: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(letters.len(), 2, "the ledger keeps one dead letter per bad input: {letters:?}");
    let cast = letters.iter().find(|d| d["path"] == "amount").expect("the failed cast is a dead letter");
    let id = cast["id"].as_i64().unwrap().to_string();
    let out = p.run(&["-q", "dead-letters", "show", &id]);
    let shown = text(&out.stdout);
    assert!(shown.contains("raw:\n") && shown.contains("\"lots\"") && shown.contains("path      amount"), "{shown}");

    // Fix the mapping, then replay: the cast failure is delivered, the broken line still fails.
    std::fs::write(p.path("dovetail.toml"), CONFIG.replace("cast = { amount = \"number\" }", "")).unwrap();
    let out = p.run(&["-q", "dead-letters", "replay"]);
    let said = text(&out.stdout);
    assert!(said.contains("1 delivered") && said.contains("1 still failing"), "{said}\n{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(9), "still-failing dead letters exit with the data code");
    assert_eq!(p.rows("SELECT count(*) FROM orders WHERE order_id = 101"), 1);
    let out = p.run(&["-q", "dead-letters", "list", "--json"]);
    assert_eq!(serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap().len(), 1);

    // A pipeline renamed in the config keeps its history in `status`, newest first, `--limit` per pipeline.
    std::fs::write(p.path("dovetail.toml"), CONFIG.replace("pipelines.orders", "pipelines.shop")).unwrap();
    let out = p.run(&["-q", "status", "--limit", "2"]);
    let status = text(&out.stdout);
    let ids: Vec<&str> = status.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(ids, ["3", "2"], "{status}");
    assert!(status.lines().skip(1).all(|l| l.split_whitespace().nth(1) == Some("orders")), "{status}");
}

#[test]
fn full_refresh_propagates_deletes_and_dry_runs_write_nothing() {
    let config =
        format!("{CONFIG}[pipelines.orders.streams.orders]\nsync_mode = \"full_refresh\"\ndelete = \"delete\"\n");
    let p = Project::new(&config, &records(20, "v1"));
    assert_eq!(p.run_json(&[]).0, 0);
    assert_eq!(p.rows("SELECT count(*) FROM orders"), 20);

    std::fs::write(p.path("orders.jsonl"), records(17, "v2")).unwrap();
    let (code, r) = p.run_json(&["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(r["dry_run"], true);
    assert_eq!(p.rows("SELECT count(*) FROM orders WHERE note = 'v2'"), 0, "a dry run writes nothing");

    let (code, r) = p.run_json(&["orders", "--stream", "orders"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((stream(&r)["written"].as_u64(), stream(&r)["deleted"].as_u64()), (Some(17), Some(3)));
    assert_eq!(p.rows("SELECT count(*) FROM orders"), 17);
}

#[test]
fn json_logs_go_to_stderr() {
    let p = Project::new(CONFIG, &records(3, "v1"));
    let out = p.run(&["--log-format", "json", "run"]);
    assert_eq!(out.status.code(), Some(0));
    let logs = text(&out.stderr);
    assert!(logs.lines().count() >= 2);
    for line in logs.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

/// Off a terminal, progress is a `progress` log line per stream and interval, with growing counts.
#[test]
fn progress_lines_off_a_terminal_report_growing_counts() {
    let p = Project::new(CONFIG, &records(200, "v1"));
    let out = p.cmd(&["--log-format", "json", "run"]).env("DOVETAIL_PROGRESS_SECS", "0.000001").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let reads: Vec<u64> = text(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "progress")
        .map(|v| {
            assert_eq!(v["fields"]["stream"], "orders", "{v}");
            assert!(v["fields"]["records_per_s"].is_u64(), "{v}");
            v["fields"]["read"].as_u64().unwrap()
        })
        .collect();
    // 200 records in batches of 25: a line per batch at this interval, counts rising to 200.
    assert_eq!(reads, (1..=8).map(|b| b * 25).collect::<Vec<u64>>());
    // 0 turns them off.
    let out = p.cmd(&["--log-format", "json", "run"]).env("DOVETAIL_PROGRESS_SECS", "0").output().unwrap();
    assert!(!text(&out.stderr).contains("\"progress\""), "{}", text(&out.stderr));
}

/// Start `dovetail run` and return once the sink table holds some rows.
fn start(p: &Project) -> (std::process::Child, BufReader<std::process::ChildStderr>) {
    let mut child = p.cmd(&["run"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("run started") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "dovetail ended before the run started");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while committed(p) == 0 {
        assert!(std::time::Instant::now() < deadline, "no rows written after 30 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, err)
}

fn committed(p: &Project) -> i64 {
    let Ok(db) =
        rusqlite::Connection::open_with_flags(p.path("out/warehouse.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    db.query_row("SELECT count(*) FROM orders", [], |r| r.get(0)).unwrap_or(0)
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
}

#[test]
fn sigint_commits_and_exits_130_and_a_live_run_is_never_joined() {
    let n = 60_000;
    let p = Project::new(&CONFIG.replace("batch_size = 25", "batch_size = 200"), &records(n, "v1"));
    let (child, _err) = start(&p);

    let second = p.run(&["run"]);
    assert_eq!(second.status.code(), Some(11), "a held lock is Busy: {}", text(&second.stderr));
    let refusal = text(&second.stderr);
    assert!(refusal.contains(&format!("process {}", child.id())), "the refusal names the live process: {refusal}");

    signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("interrupted"));
    let committed = p.rows("SELECT count(*) FROM orders");
    assert!(committed > 0 && committed < n as i64, "interrupted after {committed} rows");

    let (code, r) = p.run_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(stream(&r)["resumed"], true);
    assert!(stream(&r)["read"].as_u64().unwrap() < n as u64, "the rerun resumed instead of starting over: {r}");
    assert_eq!(p.rows("SELECT count(*) FROM orders"), n as i64);
    assert_eq!(p.rows("SELECT count(DISTINCT order_id) FROM orders"), n as i64);
}

#[test]
fn sigterm_also_stops_gracefully() {
    let p = Project::new(&CONFIG.replace("batch_size = 25", "batch_size = 200"), &records(60_000, "v1"));
    let (child, _err) = start(&p);
    signal(child.id(), "-TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
}
