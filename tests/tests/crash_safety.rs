//! Kill `dovetail run` at named failpoints and at random moments, rerun at once each time,
//! and prove the sink ends with exactly the source records — and that every rerun resumed
//! from its last committed position.

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
fn killed_runs_lose_nothing_and_duplicate_nothing() {
    let s = setup();
    let mut kills = 0;
    // (failpoint, hit number, fewest and most batches whose checkpoint the killed run has
    // committed). State commits run in order up to two batches behind the sink (plus the one
    // in progress), so a crash at or inside a sink write finds 1 to 4 commits still pending;
    // `after_checkpoint` fires right after its own commit.
    let failpoints: [(&str, u64, (u64, u64)); 6] = [
        ("after_sink_commit", 5, (1, 4)),
        ("mid_batch", 6, (2, 5)),
        ("after_checkpoint", 5, (5, 5)),
        ("after_sink_commit", 20, (16, 19)),
        ("mid_batch", 17, (13, 16)),
        ("after_checkpoint", 11, (11, 11)),
    ];
    for (name, n, committed) in failpoints {
        let before = committed_lines(&s);
        let out = s.cmd(&["run"]).env("DOVETAIL_FAILPOINT", format!("{name}:{n}")).output().unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "failpoint {name}:{n} must abort the process\n{}",
            show(&out)
        );
        kills += 1;
        if before > 0 {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let resumed = stderr
                .lines()
                .any(|l| l.contains("resuming from checkpoint") && l.contains(&format!("\"line\":{before}")));
            assert!(resumed, "the run after a kill resumes from line {before}:\n{stderr}");
        }
        let after = committed_lines(&s);
        let batches = (after - before) / BATCH;
        assert!(
            after >= before && (after - before).is_multiple_of(BATCH) && (committed.0..=committed.1).contains(&batches),
            "after {name}:{n} the run resumed at line {before} and committed {batches} batches (expected {committed:?})"
        );
    }

    // Random moments: SIGKILL while the run is busy; the rerun starts at once.
    let mut seed: u64 = 0x5eed_1234;
    let mut random_kills = 0;
    while random_kills < 3 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let before = committed_lines(&s);
        let started = Instant::now();
        let (mut child, _) = spawn_until(s.cmd(&["run"]), "run started");
        assert!(started.elapsed() < Duration::from_secs(10), "a lock left by a dead process must not delay the rerun");
        std::thread::sleep(Duration::from_millis(30 + seed % 250));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        if status.signal() == Some(libc::SIGKILL) {
            kills += 1;
            random_kills += 1;
        }
        let after = committed_lines(&s);
        assert!(after >= before, "a checkpoint never moves back ({before} → {after}, {status:?})");
        if after == RECORDS {
            break;
        }
    }
    assert!(kills >= 8, "at least 8 kills, had {kills}");

    let before = committed_lines(&s);
    let (out, report) = s.run_json(&[]);
    assert!(out.status.success(), "{}", show(&out));
    let st = &report["streams"]["events"];
    if before < RECORDS {
        assert_eq!(st["resumed"], Value::Bool(before > 0), "{report}");
        assert_eq!(st["read"].as_u64().unwrap(), RECORDS - before, "the final run read only what was not committed");
    }
    assert_sink_exact(&s);

    // And the next run finds nothing to write.
    let (out, report) = s.run_json(&[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["streams"]["events"]["written"], 0);
    assert_eq!(report["streams"]["events"]["skipped_unchanged"].as_u64().unwrap(), RECORDS);
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
