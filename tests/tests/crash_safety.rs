//! `dovetail run` stopped from outside: a failpoint abort keeps its log, a second run is
//! refused while one is live, and SIGTERM commits and the rerun resumes. Kills at failpoints
//! and at random moments on every source × sink path are the crash harness's
//! (tests/tests/crash_paths.rs).

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use dovetail_e2e::{Scratch, show, spawn_until};
use serde_json::Value;

const RECORDS: u64 = 200_000;
const BATCH: u64 = 1000;

fn value_of(i: u64) -> u64 {
    (i * 7919) % 100_003
}

fn setup() -> Scratch {
    let s = Scratch::new();
    let mut f = std::io::BufWriter::new(std::fs::File::create(s.path("events.jsonl")).unwrap());
    for i in 0..RECORDS {
        writeln!(
            f,
            r#"{{"id": {i}, "kind": "event-{}", "value": {}, "big": 1234567890123456789{}}}"#,
            i % 13,
            value_of(i),
            i % 10
        )
        .unwrap();
    }
    f.flush().unwrap();
    s.write(
        "dovetail.toml",
        &format!(
            r#"
[pipelines.events]
batch_size = {BATCH}

[pipelines.events.source]
kind = "files"
[[pipelines.events.source.streams]]
name = "events"
path = "events.jsonl"
primary_key = ["id"]

[pipelines.events.sink]
kind = "sqlite"
path = "warehouse.db"
"#
        ),
    );
    s
}

/// Lines of the source file covered by the committed checkpoint (0 when none).
fn committed_lines(s: &Scratch) -> u64 {
    if !s.path(".dovetail/state.db").exists() {
        return 0;
    }
    let db = s.db(".dovetail/state.db");
    let cp: Option<String> = db.query_row("SELECT checkpoint FROM checkpoints LIMIT 1", [], |r| r.get(0)).ok();
    let Some(cp) = cp else { return 0 };
    let cp: Value = serde_json::from_str(&cp).unwrap();
    if cp["pass_complete"] == Value::Bool(true) {
        return RECORDS;
    }
    cp["position"]["line"].as_u64().unwrap_or(0)
}

fn assert_sink_exact(s: &Scratch) {
    let db = s.db("warehouse.db");
    let (count, distinct, min, max): (u64, u64, u64, u64) = db
        .query_row("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    assert_eq!((count, distinct, min, max), (RECORDS, RECORDS, 0, RECORDS - 1), "every key exactly once");
    let mut stmt = db.prepare("SELECT id, value, kind, CAST(big AS TEXT) FROM events").unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
        })
        .unwrap();
    for row in rows {
        let (id, value, kind, big) = row.unwrap();
        assert_eq!(value, value_of(id), "final value of {id}");
        assert_eq!(kind, format!("event-{}", id % 13));
        assert_eq!(big, format!("1234567890123456789{}", id % 10), "exact 20-digit integer of {id}");
    }
}

#[test]
fn a_failpoint_abort_keeps_the_log_lines_written_before_it() {
    let s = setup();
    // The first batch comes well inside the interval at which buffered log lines are written
    // out, so without a flush before the abort these lines would be lost.
    let out = s.cmd(&["run"]).env("DOVETAIL_FAILPOINT", "mid_batch:1").output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let starting = stderr.find("run starting").unwrap_or_else(|| panic!("no `run starting` line:\n{stderr}"));
    let started = stderr.find("run started").unwrap_or_else(|| panic!("no `run started` line:\n{stderr}"));
    let abort = stderr.find("failpoint `mid_batch` reached").unwrap_or_else(|| panic!("no abort line:\n{stderr}"));
    assert!(starting < started && started < abort, "lines out of order:\n{stderr}");
}

#[test]
fn a_second_run_while_one_is_live_is_refused_naming_the_process() {
    let s = setup();
    let (mut live, _) = spawn_until(s.cmd(&["run"]), "run started");
    let out = s.run(&["run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = live.kill();
    let _ = live.wait();
    assert_eq!(out.status.code(), Some(11), "a held lock is Busy: {}", show(&out));
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(&live.id().to_string()), "the message names the live process {}: {stderr}", live.id());
    let next = stderr.lines().find(|l| l.contains("what to do:")).unwrap_or_default();
    assert!(next.contains(&format!("wait for process {}", live.id())) && next.contains("or stop it"), "{stderr}");
    assert!(!next.contains("config"), "{stderr}");
}

#[test]
fn sigterm_stops_cleanly_commits_and_the_rerun_resumes() {
    let s = setup();
    let (mut child, _) = spawn_until(s.cmd(&["run"]), "run started");
    // Wait for the first committed batch so the signal lands mid-run.
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed_lines(&s) == 0 {
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let committed = committed_lines(&s);
    if committed < RECORDS {
        assert_eq!(status.code(), Some(130), "interrupted exit code");
        let (out, report) = s.run_json(&[]);
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(report["streams"]["events"]["resumed"], Value::Bool(true));
        assert_eq!(report["streams"]["events"]["read"].as_u64().unwrap(), RECORDS - committed);
    }
    assert_sink_exact(&s);
}
