//! Issue 16, data points 1 and 5: the ledger is a memory of what the sink holds, never a
//! substitute. A SQLite table gone or rebuilt, a JSONL file gone or cut short, is refilled by
//! the next run; a JSONL batch written and never committed (kill -9) appears once; `reset
//! --ledger` rewrites everything and keeps destination ids; `check` names a missing table.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;

use dovetail_e2e::vendor::{FAST_HTTP, RestPipeline, RestStream, count, row_count};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{FakeVendor, Faults, VendorConfig};
use serde_json::Value;

/// `n` records `{id, name}` in `items.jsonl`, read in batches of `batch`, into `sink`.
fn setup(n: u64, batch: u64, sink: &str) -> Scratch {
    let s = Scratch::new();
    let lines: String = (1..=n).map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}}\n")).collect();
    s.write("items.jsonl", &lines);
    s.write(
        "dovetail.toml",
        &format!(
            r#"[pipelines.p]
batch_size = {batch}

[pipelines.p.source]
kind = "files"
[[pipelines.p.source.streams]]
name = "items"
path = "items.jsonl"
primary_key = ["id"]

[pipelines.p.sink]
{sink}
"#
        ),
    );
    s
}

const SQLITE: &str = "kind = \"sqlite\"\npath = \"out/warehouse.db\"";
const JSONL: &str = "kind = \"jsonl\"\ndir = \"out\"";

fn run_ok(s: &Scratch) -> (Value, String) {
    let (out, report) = s.run_json(&[]);
    assert!(out.status.success(), "{}", show(&out));
    (report, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn rows(s: &Scratch) -> u64 {
    s.db("out/warehouse.db").query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// Lines of the JSONL output by id.
fn lines_by_id(s: &Scratch) -> BTreeMap<u64, usize> {
    let text = std::fs::read_to_string(s.path("out/items.jsonl")).unwrap_or_default();
    let mut by_id = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        *by_id.entry(v["id"].as_u64().unwrap()).or_insert(0) += 1;
    }
    by_id
}

fn each_once(n: u64) -> BTreeMap<u64, usize> {
    (1..=n).map(|i| (i, 1)).collect()
}

#[test]
fn a_deleted_sqlite_sink_is_refilled_after_reset() {
    let s = setup(3, 100, SQLITE);
    let (report, _) = run_ok(&s);
    assert_eq!(count(&report, "items", "written"), 3, "{report:#}");
    std::fs::remove_dir_all(s.path("out")).unwrap();
    let out = s.run(&["reset", "p"]);
    assert!(out.status.success(), "{}", show(&out));
    let (report, stderr) = run_ok(&s);
    assert_eq!(count(&report, "items", "written"), 3, "{report:#}");
    assert!(stderr.contains("table `items` is gone") && stderr.contains("re-syncs"), "a warning says why:\n{stderr}");
    assert_eq!(rows(&s), 3);
}

#[test]
fn a_dropped_sqlite_table_is_refilled_without_a_reset() {
    let s = setup(3, 100, SQLITE);
    run_ok(&s);
    s.db("out/warehouse.db").execute_batch("DROP TABLE items").unwrap();
    let (report, _) = run_ok(&s);
    assert_eq!(count(&report, "items", "written"), 3, "{report:#}");
    assert_eq!(rows(&s), 3);
    let (report, _) = run_ok(&s);
    assert_eq!(count(&report, "items", "written"), 0, "a refilled sink is trusted again: {report:#}");
}

#[test]
fn a_rebuilt_sqlite_table_is_refilled() {
    let s = setup(3, 100, SQLITE);
    run_ok(&s);
    let db = s.db("out/warehouse.db");
    db.execute_batch(
        "DROP TABLE items; CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, _dovetail_synced_at TEXT)",
    )
    .unwrap();
    drop(db);
    let (report, stderr) = run_ok(&s);
    assert_eq!(count(&report, "items", "written"), 3, "{report:#}");
    assert!(stderr.contains("was rebuilt"), "{stderr}");
    assert_eq!(rows(&s), 3);
}

#[test]
fn a_deleted_jsonl_file_is_refilled() {
    let s = setup(3, 100, JSONL);
    run_ok(&s);
    std::fs::remove_file(s.path("out/items.jsonl")).unwrap();
    let (report, stderr) = run_ok(&s);
    assert_eq!(count(&report, "items", "written"), 3, "{report:#}");
    assert!(stderr.contains("is gone"), "{stderr}");
    assert_eq!(lines_by_id(&s), each_once(3));
}

#[test]
fn a_cut_short_jsonl_file_is_refilled() {
    let s = setup(3, 100, JSONL);
    run_ok(&s);
    let text = std::fs::read_to_string(s.path("out/items.jsonl")).unwrap();
    let first = text.lines().next().unwrap();
    std::fs::write(s.path("out/items.jsonl"), format!("{first}\n")).unwrap();
    let (report, stderr) = run_ok(&s);
    assert_eq!(count(&report, "items", "written"), 3, "{report:#}");
    assert!(stderr.contains("shorter"), "{stderr}");
    let by_id = lines_by_id(&s);
    assert_eq!(by_id.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3], "every record is there again");
}

#[test]
fn a_jsonl_batch_written_but_never_committed_appears_once() {
    // Killed after writing batch 1 (first run) and batch 3 (rerun), before their commits.
    let s = setup(50, 10, JSONL);
    for n in [1, 3] {
        let out = s.cmd(&["run"]).env("DOVETAIL_FAILPOINT", format!("after_sink_commit:{n}")).output().unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{}", show(&out));
    }
    let (report, _) = run_ok(&s);
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(lines_by_id(&s), each_once(50), "no duplicate lines");
}

#[test]
fn check_names_a_missing_table_of_a_stream_with_a_ledger() {
    let s = setup(3, 100, SQLITE);
    let out = s.run(&["check"]);
    assert!(out.status.success(), "a new pipeline has no table yet: {}", show(&out));
    run_ok(&s);
    s.db("out/warehouse.db").execute_batch("DROP TABLE items").unwrap();
    let out = s.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The next run heals it, so the check passes, with a warning naming the table.
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout.contains("warning: stream `items`: the sink's table `items` is gone"), "{}", show(&out));
    let (report, _) = run_ok(&s);
    assert_eq!(count(&report, "items", "written"), 3, "{report:#}");
    let out = s.run(&["check"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("warning"), "{}", show(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_ledger_rewrites_everything_and_keeps_destination_ids() {
    let vendor = FakeVendor::start(VendorConfig::default()).await.unwrap();
    let sink = format!(
        r#"kind = "rest"
base_url = "{}"
http = {FAST_HTTP}

[pipelines.p.sink.streams.items]
mode = "create"
path = "/v1/items"
body = {{ external_id = "{{{{id}}}}", name = "{{{{name}}}}" }}"#,
        vendor.base_url()
    );
    let s = setup(5, 100, &sink);
    let (out, report) = s.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), 5, "{report:#}");
    assert_eq!(vendor.stats().creations, 5);

    let out = s.run_async(&["reset", "--ledger", "p"]).await;
    assert!(out.status.success(), "{}", show(&out));
    vendor.reset_stats();
    let (out, report) = s.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), 5, "everything is written again: {report:#}");
    let stats = vendor.stats();
    // `creations` counts the objects the vendor holds; the requests tell creates from updates.
    assert_eq!(stats.by_path.get("/v1/items"), None, "no create: {stats:?}");
    assert_eq!(stats.by_path.get("/v1/items/{id}"), Some(&5), "five updates: {stats:?}");
    assert_eq!((stats.creations, stats.duplicate_creations), (5, 0), "{stats:?}");
    // The ledger is whole again.
    let (_, report) = s.run_json_async(&[]).await;
    assert_eq!(count(&report, "items", "written"), 0, "{report:#}");
}

/// A 600-record vendor listing written 10 at a time into `sink` (a `[pipelines.vendor.sink]`
/// body): `files` are deleted once `written` sees the first records, while the run goes on.
/// That run must fail with exit 8 and the next one write all 600 again.
async fn delete_during_a_run(sink: &str, files: &[&str], written: fn(&Scratch) -> bool) -> Scratch {
    // 60 pages of 10, 40 ms each: the run is still writing when the test deletes the sink.
    let faults = Faults { latency_ms: 40, ..Faults::default() };
    let vendor = FakeVendor::start(VendorConfig { records: 600, faults, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    let toml = RestPipeline::new(&vendor.base_url())
        .pipeline_line("batch_size = 10")
        .stream(RestStream::items_cursor(10))
        .toml()
        .replace("kind = \"sqlite\"\npath = \"out.db\"", sink);
    s.write("dovetail.toml", &toml);
    let run = s.cmd(&["run"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let started = std::time::Instant::now();
    while !written(&s) {
        assert!(started.elapsed().as_secs() < 30, "the run never wrote a record");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for f in files {
        let _ = std::fs::remove_file(s.path(f));
    }
    let out = tokio::task::spawn_blocking(move || run.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(8), "a run that lost its sink does not succeed: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("was deleted during the run"), "{}", show(&out));

    let (out, report) = s.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), 600, "{report:#}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_sink_deleted_during_a_run_fails_the_run_and_the_next_refills_it() {
    let written = |s: &Scratch| {
        s.path("out.db").exists()
            && s.db("out.db").query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0)).unwrap_or(0) > 0
    };
    let sink = "kind = \"sqlite\"\npath = \"out.db\"";
    let s = delete_during_a_run(sink, &["out.db", "out.db-wal", "out.db-shm"], written).await;
    assert_eq!(row_count(&s, "items"), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonl_file_deleted_during_a_run_fails_the_run_and_the_next_refills_it() {
    let written = |s: &Scratch| std::fs::metadata(s.path("out/items.jsonl")).is_ok_and(|m| m.len() > 0);
    let s = delete_during_a_run(JSONL, &["out/items.jsonl"], written).await;
    assert_eq!(lines_by_id(&s), each_once(600));
}
