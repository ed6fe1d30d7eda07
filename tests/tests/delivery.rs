//! Delivery semantics through the `dovetail` binary: unchanged reruns, changed records,
//! full-refresh deletes, dead letters with file/line/field and their replay, exact numbers.

use dovetail_e2e::{Scratch, show};
use serde_json::Value;

fn customers(n: u64, changed: &[u64]) -> String {
    (1..=n)
        .map(|i| {
            let name = if changed.contains(&i) { format!("renamed-{i}") } else { format!("customer-{i}") };
            format!("{{\"id\": {i}, \"name\": \"{name}\", \"tier\": {}}}\n", i % 3)
        })
        .collect()
}

fn config(sync: &str, mapping: &str) -> String {
    format!(
        r#"
[pipelines.crm]
batch_size = 64

[pipelines.crm.source]
kind = "files"
[[pipelines.crm.source.streams]]
name = "customers"
path = "customers.jsonl"
primary_key = ["id"]

[pipelines.crm.sink]
kind = "sqlite"
path = "out/crm.db"

[pipelines.crm.streams.customers]
{sync}

[pipelines.crm.streams.customers.mapping]
{mapping}
"#
    )
}

fn stream(report: &Value, name: &str, field: &str) -> u64 {
    report["streams"][name][field].as_u64().unwrap_or_else(|| panic!("no {field} in {report}"))
}

#[test]
fn rerun_writes_nothing_changes_write_exactly_ten_and_full_refresh_deletes() {
    let s = Scratch::new();
    s.write("customers.jsonl", &customers(500, &[]));
    s.write("dovetail.toml", &config("sync_mode = \"full_refresh\"\ndelete = \"delete\"", ""));
    let (out, r) = s.run_json(&[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stream(&r, "customers", "written"), 500);

    let (_, r) = s.run_json(&[]);
    assert_eq!(stream(&r, "customers", "written"), 0);
    assert_eq!(stream(&r, "customers", "skipped_unchanged"), 500);
    let text = String::from_utf8_lossy(&s.run(&["run"]).stdout).to_string();
    assert!(text.contains("500"), "the human summary shows the unchanged count:\n{text}");

    let changed: Vec<u64> = (1..=10).map(|i| i * 37).collect();
    s.write("customers.jsonl", &customers(500, &changed));
    let (_, r) = s.run_json(&[]);
    assert_eq!(stream(&r, "customers", "written"), 10);
    assert_eq!(stream(&r, "customers", "skipped_unchanged"), 490);
    let renamed: u64 = s
        .db("out/crm.db")
        .query_row("SELECT count(*) FROM customers WHERE name LIKE 'renamed-%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(renamed, 10);

    // 20 customers disappear from the source: a completed full refresh deletes their rows.
    let kept: String =
        customers(500, &changed).lines().filter(|l| !l.contains("\"id\": 4")).map(|l| format!("{l}\n")).collect();
    let gone = 500 - kept.lines().count() as u64;
    s.write("customers.jsonl", &kept);
    let (_, r) = s.run_json(&[]);
    assert_eq!(stream(&r, "customers", "deleted"), gone);
    let rows: u64 = s.db("out/crm.db").query_row("SELECT count(*) FROM customers", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 500 - gone);
    let left: u64 = s
        .db("out/crm.db")
        .query_row("SELECT count(*) FROM customers WHERE id = 4 OR id = 40", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn bad_records_are_dead_lettered_with_file_line_field_and_replayed_after_a_fix() {
    let s = Scratch::new();
    s.write(
        "customers.jsonl",
        concat!(
            "{\"id\": 1, \"name\": \"a\", \"score\": \"10\"}\n",
            "{\"id\": 2, \"name\": \"b\", \"score\": \"eleven\"}\n",
            "{\"id\": 3, \"name\": \"c\", \"score\n",
            "{\"name\": \"no key\", \"score\": \"4\"}\n",
            "{\"id\": 5, \"name\": \"e\", \"score\": \"5\"}\n",
        ),
    );
    s.write("orders.csv", "order_id,customer_id,total\n1,1,9.99\n2,2\n3,5,12.00\n");
    let cfg = |score_cast: &str| {
        format!(
            r#"
[pipelines.crm]
[pipelines.crm.source]
kind = "files"
[[pipelines.crm.source.streams]]
name = "customers"
path = "customers.jsonl"
primary_key = ["id"]
[[pipelines.crm.source.streams]]
name = "orders"
path = "orders.csv"
primary_key = ["order_id"]
[pipelines.crm.sink]
kind = "sqlite"
path = "out/crm.db"
[pipelines.crm.streams.customers.mapping]
cast = {{ score = "{score_cast}" }}
"#
        )
    };
    s.write("dovetail.toml", &cfg("integer"));
    let (out, r) = s.run_json(&[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!((stream(&r, "customers", "written"), stream(&r, "customers", "dead_lettered")), (2, 3));
    assert_eq!((stream(&r, "orders", "written"), stream(&r, "orders", "dead_lettered")), (2, 1));

    let out = s.run(&["dead-letters", "list", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 4, "{list:?}");
    let find = |needle: &str| {
        list.iter()
            .find(|d| d["reason"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no dead letter with {needle}: {list:?}"))
    };
    let cast = find("cannot cast");
    assert!(cast["reason"].as_str().unwrap().contains("customers.jsonl line 2"), "{cast}");
    assert_eq!(cast["path"], "score");
    let bad_json = find("invalid JSON");
    assert!(bad_json["reason"].as_str().unwrap().contains("customers.jsonl line 3"), "{bad_json}");
    let no_key = find("missing primary key");
    assert!(no_key["reason"].as_str().unwrap().contains("line 4"), "{no_key}");
    assert_eq!(no_key["path"], "id");
    let csv = find("expected 3 fields");
    assert!(csv["reason"].as_str().unwrap().contains("orders.csv line 3"), "{csv}");

    // A rerun does not pile up copies of the same dead letters.
    s.run_json(&[]);
    let again: Value = serde_json::from_slice(&s.run(&["dead-letters", "list", "--json"]).stdout).unwrap();
    assert_eq!(again.as_array().unwrap().len(), 4);

    // Fix the mapping; replay delivers the record that now passes and keeps the rest.
    s.write("dovetail.toml", &cfg("string"));
    let out = s.run(&["dead-letters", "replay"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains('1'), "{}", show(&out));
    let name: String =
        s.db("out/crm.db").query_row("SELECT score FROM customers WHERE id = 2", [], |r| r.get(0)).unwrap();
    assert_eq!(name, "eleven");
    let left: Value = serde_json::from_slice(&s.run(&["dead-letters", "list", "--json"]).stdout).unwrap();
    assert_eq!(left.as_array().unwrap().len(), 3);
}

#[test]
fn a_twenty_digit_integer_and_a_thirty_digit_decimal_arrive_unchanged() {
    let s = Scratch::new();
    s.write(
        "customers.jsonl",
        "{\"id\": 12345678901234567890, \"balance\": 1234567890.12345678901234567890, \"as_text\": \"98765432109876543210.123456789\"}\n",
    );
    s.write("dovetail.toml", &config("", "cast = { as_text = \"number\" }"));
    let (out, _) = s.run_json(&[]);
    assert!(out.status.success(), "{}", show(&out));
    let (id, balance, as_text): (String, String, String) = s
        .db("out/crm.db")
        .query_row("SELECT CAST(id AS TEXT), CAST(balance AS TEXT), CAST(as_text AS TEXT) FROM customers", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(id, "12345678901234567890");
    assert_eq!(balance, "1234567890.12345678901234567890");
    assert_eq!(as_text, "98765432109876543210.123456789");
}
