//! Issue 20, "tables that show the reason": through the binary, a run that dead-letters most
//! of what it read says so with the next step; `dead-letters list` shows the reason first,
//! says how many of how many it printed, and `--group-by reason|path` counts them (also as
//! `--json`).

use std::path::Path;

use serde_json::Value;

mod common;

use common::{dovetail, text};

const CONFIG: &str = r#"[pipelines.shop.source]
kind = "files"

[[pipelines.shop.source.streams]]
name = "orders"
path = "orders.jsonl"
primary_key = ["id"]

[pipelines.shop.sink]
kind = "sqlite"
path = "warehouse.db"

[pipelines.shop.streams.orders.mapping]
cast = { amount = "number" }
"#;

/// 3 orders that map and 7 whose amount is not a number.
fn setup(dir: &Path) {
    std::fs::write(dir.join("dovetail.toml"), CONFIG).unwrap();
    let mut lines: Vec<String> = (1..=3).map(|i| format!(r#"{{"id": {i}, "amount": "{i}.50"}}"#)).collect();
    lines.extend((4..=10).map(|i| format!(r#"{{"id": {i}, "amount": "n/a"}}"#)));
    std::fs::write(dir.join("orders.jsonl"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn most_records_dead_lettered_is_said_and_the_list_counts_and_groups_them() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let out = dovetail(dir.path(), &["run", "-q"]);
    let said = text(&out.stdout);
    let note = said.lines().find(|l| l.contains("were dead-lettered")).unwrap_or_else(|| panic!("{said}"));
    insta::assert_snapshot!("quarantine_note", note.trim());

    let out = dovetail(dir.path(), &["dead-letters", "list", "--limit", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(listed.lines().next().unwrap().starts_with("id  pipeline  stream  reason"), "reason first:\n{listed}");
    assert!(listed.contains("2 of 7 dead letters"), "{listed}");

    let out = dovetail(dir.path(), &["dead-letters", "list", "--group-by", "reason"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    insta::assert_snapshot!("grouped_by_reason", text(&out.stdout));

    let out = dovetail(dir.path(), &["dead-letters", "list", "--group-by", "path", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let groups: Value = serde_json::from_slice(&out.stdout).unwrap();
    let total: u64 = groups.as_array().unwrap().iter().map(|g| g["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 7, "{groups:#}");
}
