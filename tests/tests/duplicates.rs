//! A key that comes more than once in one pass of the source, through the `dovetail`
//! binary: the last record wins, the earlier ones are counted `superseded` and not written,
//! and reruns over unchanged data write nothing (no flip-flop between the versions).

use dovetail_e2e::{Scratch, show};
use serde_json::Value;

const CONFIG: &str = r#"
[pipelines.p]
batch_size = 4

[pipelines.p.source]
kind = "files"
[[pipelines.p.source.streams]]
name = "items"
path = "items.jsonl"
primary_key = ["id"]

[pipelines.p.sink]
kind = "sqlite"
path = "out/p.db"
"#;

/// Ids 1..=30, one line each, with key 8 twice in one batch (`first`, `second`) and key 20
/// three times, each version at least three batches of 4 from the next. `versions_of_20`
/// are the names of key 20's lines, in order.
fn source(versions_of_20: &[&str]) -> String {
    let mut lines: Vec<String> =
        (1..=30).filter(|i| *i != 8 && *i != 20).map(|i| format!(r#"{{"id": {i}, "name": "item-{i}"}}"#)).collect();
    lines.insert(4, r#"{"id": 8, "name": "first"}"#.into());
    lines.insert(6, r#"{"id": 8, "name": "second"}"#.into());
    for (n, v) in versions_of_20.iter().enumerate() {
        lines.insert((1 + 14 * n).min(lines.len()), format!(r#"{{"id": 20, "name": "{v}"}}"#));
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn count(report: &Value, field: &str) -> u64 {
    report["streams"]["items"][field].as_u64().unwrap_or_else(|| panic!("no {field} in {report}"))
}

fn name_of(s: &Scratch, id: i64) -> String {
    s.db("out/p.db").query_row("SELECT name FROM items WHERE id = ?1", [id], |r| r.get(0)).unwrap()
}

#[test]
fn the_last_record_of_a_key_wins_and_reruns_write_nothing() {
    let s = Scratch::new();
    s.write("items.jsonl", &source(&["v1", "v2", "v3"]));
    s.write("dovetail.toml", CONFIG);
    for run in 1..=4 {
        let (out, r) = s.run_json(&[]);
        assert!(out.status.success(), "run {run}: {}", show(&out));
        assert_eq!((name_of(&s, 8), name_of(&s, 20)), ("second".into(), "v3".into()), "run {run}: {r}");
        let rows: u64 = s.db("out/p.db").query_row("SELECT count(*) FROM items", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 30, "run {run}");
        assert_eq!(count(&r, "read"), 33, "run {run}: {r}");
        if run == 1 {
            // `first` is dropped within its batch; key 20's earlier versions were written
            // before the later ones were read: the sink ends with the last.
            assert_eq!(count(&r, "superseded"), 1, "run {run}: {r}");
            assert_eq!(count(&r, "written"), 32, "run {run}: {r}");
        } else {
            assert_eq!(count(&r, "written"), 0, "run {run}: {r}");
            assert_eq!(count(&r, "superseded"), 3, "run {run}: {r}");
            assert_eq!(count(&r, "skipped_unchanged"), 30, "run {run}: {r}");
        }
    }
    let text = String::from_utf8_lossy(&s.run(&["run"]).stdout).to_string();
    assert!(text.contains("superseded"), "the human summary shows the superseded count:\n{text}");

    // An earlier version changes: still superseded, nothing written.
    s.write("items.jsonl", &source(&["v1", "v2-changed", "v3"]));
    let (_, r) = s.run_json(&[]);
    assert_eq!((count(&r, "written"), count(&r, "superseded")), (0, 3), "{r}");
    assert_eq!(name_of(&s, 20), "v3");

    // The last version changes: written once.
    s.write("items.jsonl", &source(&["v1", "v2-changed", "v3-changed"]));
    let (_, r) = s.run_json(&[]);
    assert_eq!((count(&r, "written"), count(&r, "superseded")), (1, 3), "{r}");
    assert_eq!(name_of(&s, 20), "v3-changed");

    // The last version goes: the one before it is now the last, and is written.
    s.write("items.jsonl", &source(&["v1", "v2-changed"]));
    let (_, r) = s.run_json(&[]);
    assert_eq!((count(&r, "written"), count(&r, "superseded")), (1, 2), "{r}");
    assert_eq!(name_of(&s, 20), "v2-changed");
    let (_, r) = s.run_json(&[]);
    assert_eq!((count(&r, "written"), count(&r, "superseded")), (0, 2), "{r}");
    assert_eq!(name_of(&s, 20), "v2-changed");
}

const INCREMENTAL: &str = r#"
[pipelines.p]
batch_size = 4

[pipelines.p.source]
kind = "files"
[[pipelines.p.source.streams]]
name = "items"
path = "items.jsonl"
primary_key = ["id"]
cursor_field = "updated_at"

[pipelines.p.sink]
kind = "sqlite"
path = "out/p.db"
"#;

fn line(id: u64, t: u64, name: &str) -> String {
    format!("{{\"id\": {id}, \"updated_at\": \"2024-01-01T00:{:02}:{:02}Z\", \"name\": \"{name}\"}}\n", t / 60, t % 60)
}

#[test]
fn a_crash_after_a_held_record_neither_loses_nor_flip_flops_it() {
    // Pass 1 writes key 8 twice (t=1 and t=20): the ledger marks it repeated. Pass 2 brings
    // its new version first among 21 new records, so it is held back while the records after
    // it are written; the run is killed after the held record's batch commits (batches of 4:
    // five of the first pass's 20 lines, filtered by the cursor, then the held record's). The rerun must
    // still end with that version (no checkpoint passed it), and a rerun after writes nothing.
    let s = Scratch::new();
    let mut text = line(8, 1, "first");
    text.extend((1..=18).map(|i| line(100 + i, 1 + i, "old")));
    text.push_str(&line(8, 20, "second"));
    s.write("items.jsonl", &text);
    s.write("dovetail.toml", INCREMENTAL);
    let (out, _) = s.run_json(&[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(name_of(&s, 8), "second");

    text.push_str(&line(8, 30, "third"));
    text.extend((1..=20).map(|i| line(200 + i, 30 + i, "new")));
    s.write("items.jsonl", &text);
    let out = s.cmd(&["run"]).env("DOVETAIL_FAILPOINT", "after_checkpoint:6").output().unwrap();
    assert!(!out.status.success(), "the failpoint aborts the run: {}", show(&out));
    let cp: String =
        s.db(".dovetail/state.db").query_row("SELECT checkpoint FROM checkpoints", [], |r| r.get(0)).unwrap();
    let cp: Value = serde_json::from_str(&cp).unwrap();
    assert_eq!(cp["pass_complete"], false, "{cp}");
    assert!(
        cp["position"]["line"].as_u64().unwrap() <= 20,
        "the checkpoint stays before the held record (line 21): {cp}"
    );
    assert_eq!(name_of(&s, 8), "second", "the held record was not written before the crash");

    let (out, r) = s.run_json(&[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(name_of(&s, 8), "third", "the resumed run read the held record again: {r}");
    let rows: u64 = s.db("out/p.db").query_row("SELECT count(*) FROM items", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 1 + 18 + 20);
    let (_, r) = s.run_json(&[]);
    assert_eq!(count(&r, "written"), 0, "{r}");
    assert_eq!(name_of(&s, 8), "third");
}
