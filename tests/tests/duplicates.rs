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
