//! `dovetail explain` through the real binary: an inserted, an updated, an unchanged and a
//! dead-lettered record of a JSONL → SQLite pipeline with a mapping, in text and `--json`,
//! and an unknown key's error.

use std::path::Path;

use serde_json::{Value, json};

mod common;

use common::{dovetail, text};

const CONFIG: &str = r#"[state]
explain = "full"

[pipelines.shop.source]
kind = "files"

[[pipelines.shop.source.streams]]
name = "customers"
path = "customers.jsonl"
primary_key = ["id"]

[pipelines.shop.sink]
kind = "sqlite"
path = "warehouse.db"

[pipelines.shop.streams.customers.mapping]
rename = { name = "full_name" }
cast = { amount = "number" }
drop = ["note"]
constant = { source = "shop" }
"#;

fn run(dir: &Path, lines: &[&str]) {
    std::fs::write(dir.join("customers.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = dovetail(dir, &["run", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

fn explain_json(dir: &Path, key: &str) -> Value {
    let out = dovetail(dir, &["explain", "shop", "customers", key, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn explain_tells_inserted_updated_unchanged_and_dead_lettered_records() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dovetail.toml"), CONFIG).unwrap();
    run(
        dir.path(),
        &[r#"{"id": 1, "name": "Ada", "amount": "12.50", "note": "x"}"#, r#"{"id": 2, "name": "Bob", "amount": "3"}"#],
    );
    run(
        dir.path(),
        &[
            r#"{"id": 1, "name": "Ada", "amount": "12.50", "note": "x"}"#,
            r#"{"id": 2, "name": "Bobby", "amount": "3"}"#,
            r#"{"id": 3, "name": "Cy", "amount": "oops"}"#,
            r#"{"id": 4, "name": "Di", "amount": "1"}"#,
        ],
    );

    // Unchanged in run 2, inserted in run 1: the story keeps the insert and tells the reread.
    let one = explain_json(dir.path(), "1");
    assert_eq!(one["write"]["outcome"], "inserted");
    assert_eq!(one["write"]["run_id"], 1);
    assert_eq!(one["write"]["unchanged_since"]["run_id"], 2);
    assert_eq!(one["fetched_by"]["url"], "customers.jsonl");
    assert_eq!(one["fetched_by"]["method"], "READ");
    assert_eq!(one["location"], "line 1");
    assert_eq!(one["raw"], json!({"id": 1, "name": "Ada", "amount": "12.50", "note": "x"}));
    // Exact numbers: the cast keeps "12.50" as 12.50, not 12.5.
    let want: Value =
        serde_json::from_str(r#"{"id": 1, "full_name": "Ada", "amount": 12.50, "source": "shop"}"#).unwrap();
    assert_eq!(one["output"], want);
    let changes: Vec<(String, String)> = one["diff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (d["change"].as_str().unwrap().to_owned(), d["from"].as_str().or(d["to"].as_str()).unwrap().to_owned())
        })
        .collect();
    for want in [("cast", "amount"), ("unchanged", "id"), ("renamed", "name"), ("dropped", "note"), ("added", "source")]
    {
        assert!(changes.contains(&(want.0.to_owned(), want.1.to_owned())), "{want:?} not in {changes:?}");
    }
    assert_eq!(one["mapping_changed"], false);
    assert!(one["write"]["ledger"]["hash"].as_str().unwrap().len() == 32);

    let two = explain_json(dir.path(), "2");
    assert_eq!(two["write"]["outcome"], "updated");
    assert_eq!(two["write"]["run_id"], 2);
    assert_eq!(two["raw"]["name"], "Bobby");
    assert!(two["write"]["unchanged_since"].is_null());

    let four = explain_json(dir.path(), r#"{"id": 4}"#);
    assert_eq!(four["write"]["outcome"], "inserted");
    assert_eq!(four["write"]["run_id"], 2);

    let three = explain_json(dir.path(), "3");
    assert_eq!(three["write"]["outcome"], "dead_lettered");
    let reason = three["write"]["reason"].as_str().unwrap();
    assert!(reason.contains("line 3") && reason.contains("amount"), "{reason}");
    assert!(three["write"]["dead_letter_id"].is_i64());
    assert_eq!(three["fetched_by"]["url"], "customers.jsonl");
    assert!(three["mapping_error"].as_str().unwrap().contains("oops"));

    // The text form has every section, in order.
    let out = dovetail(dir.path(), &["explain", "shop", "customers", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    let mut at = 0;
    for section in ["Fetched by", "Raw", "Mapping", "Output diff", "Write outcome"] {
        let i =
            t[at..].find(&format!("\n{section}\n")).unwrap_or_else(|| panic!("no `{section}` after byte {at}:\n{t}"));
        at += i + 1;
    }
    assert!(t.contains("renamed    name → full_name"), "{t}");
    assert!(t.contains("inserted in run #1"), "{t}");
    assert!(t.contains("read unchanged in run #2"), "{t}");
    let t3 = text(&dovetail(dir.path(), &["explain", "shop", "customers", "3"]).stdout);
    assert!(t3.contains("dead-lettered in run #2") && t3.contains("dovetail dead-letters show"), "{t3}");

    // A changed mapping is pointed out; the story shows the mapping applied then.
    let changed = CONFIG.replace("constant = { source = \"shop\" }", "constant = { source = \"web\" }");
    std::fs::write(dir.path().join("dovetail.toml"), changed).unwrap();
    let one = explain_json(dir.path(), "1");
    assert_eq!(one["mapping_changed"], true);
    assert_eq!(one["output"]["source"], "shop");
}

#[test]
fn by_default_the_outcome_and_request_are_kept_but_not_the_raw_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dovetail.toml"), CONFIG.replace("explain = \"full\"", "")).unwrap();
    run(dir.path(), &[r#"{"id": 1, "name": "Ada", "amount": "1"}"#, r#"{"id": 2, "name": "Bo", "amount": "x"}"#]);
    let one = explain_json(dir.path(), "1");
    assert_eq!(one["write"]["outcome"], "inserted");
    assert_eq!(one["fetched_by"]["url"], "customers.jsonl");
    assert_eq!(one["location"], "line 1");
    assert!(one["raw"].is_null() && one["diff"].as_array().unwrap().is_empty());
    let out = dovetail(dir.path(), &["explain", "shop", "customers", "1"]);
    assert!(text(&out.stdout).contains("explain = \"full\""), "{}", text(&out.stdout));
    // A dead letter keeps its raw input whatever the capture.
    let two = explain_json(dir.path(), "2");
    assert_eq!(two["write"]["outcome"], "dead_lettered");
    assert_eq!(two["raw"]["amount"], "x");
}

#[test]
fn an_unknown_key_is_a_clear_error_with_the_expected_form() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dovetail.toml"), CONFIG).unwrap();
    run(dir.path(), &[r#"{"id": 1, "name": "Ada", "amount": "1"}"#]);
    let out = dovetail(dir.path(), &["explain", "shop", "customers", "99"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("no record with key 99 or \"99\"") && err.contains("(id)"), "{err}");
    let out = dovetail(dir.path(), &["explain", "shop", "customers", r#"{"nope": 1}"#]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("names no `id`"), "{}", text(&out.stderr));
    let out = dovetail(dir.path(), &["explain", "shop", "nope", "1"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no stream `nope`"), "{}", text(&out.stderr));
}

#[test]
fn retention_from_config_prunes_run_history_after_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = CONFIG.replace("explain = \"full\"", "explain = \"full\"\n\n[state.retention]\nruns = 2");
    std::fs::write(dir.path().join("dovetail.toml"), config).unwrap();
    for name in ["a", "b", "c", "d"] {
        run(
            dir.path(),
            &[&format!(r#"{{"id": 1, "name": "{name}", "amount": "1"}}"#), r#"{"id": 2, "name": "x", "amount": "1"}"#],
        );
    }
    let out = dovetail(dir.path(), &["status", "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<i64> = runs["runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [4, 3], "only the newest two runs are kept");
    // Key 1 was updated by run 4: its whole story is kept. Key 2 was inserted by run 1,
    // whose page is gone; the outcome on its ledger row survives, and run 4 read it unchanged.
    let one = explain_json(dir.path(), "1");
    assert_eq!((one["write"]["outcome"].as_str(), one["raw"]["name"].as_str()), (Some("updated"), Some("d")));
    let two = explain_json(dir.path(), "2");
    assert_eq!(two["write"]["outcome"], "inserted");
    assert_eq!(two["write"]["run_id"], 1);
    assert!(two["raw"].is_null());
    assert_eq!(two["write"]["unchanged_since"]["run_id"], 4);
}

#[test]
fn a_bad_retention_age_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = CONFIG.replace("explain = \"full\"", "explain = \"full\"\n\n[state.retention]\nmax_age = \"3 days\"");
    std::fs::write(dir.path().join("dovetail.toml"), config).unwrap();
    std::fs::write(dir.path().join("customers.jsonl"), "").unwrap();
    let out = dovetail(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("state.retention.max_age") && err.contains("\"30d\"") && err.contains("dovetail.toml:5:"),
        "{err}"
    );
}

#[test]
fn a_replayed_dead_letter_is_explained_as_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dovetail.toml"), CONFIG).unwrap();
    run(dir.path(), &[r#"{"id": 1, "name": "Ada", "amount": "oops"}"#]);
    assert_eq!(explain_json(dir.path(), "1")["write"]["outcome"], "dead_lettered");
    // The fix: no cast any more; the replay delivers it.
    std::fs::write(dir.path().join("dovetail.toml"), CONFIG.replace("cast = { amount = \"number\" }\n", "")).unwrap();
    let out = dovetail(dir.path(), &["dead-letters", "replay"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let one = explain_json(dir.path(), "1");
    assert_eq!(one["write"]["outcome"], "written", "{one:#}");
    assert!(one["write"]["ledger"]["hash"].is_string());
    assert!(one["write"]["dead_letter_id"].is_null());
}
