//! The files source over real JSON Lines files: pages, positions, resume, follow, rejects.

mod common;

use std::fs;
use std::io::Write;

use common::{done, ids, more, read, read_all, record_lines, source};
use dovetail_core::{Cx, ErrorKind, Location, Source};
use serde_json::{Value, json};

fn write(dir: &std::path::Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

fn orders(follow: bool) -> Value {
    json!([{ "name": "orders", "path": "orders.jsonl", "primary_key": ["id"], "follow": follow }])
}

fn xxh3_hex(b: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b))
}

#[tokio::test]
async fn reads_in_pages_with_exact_positions() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n{\"id\":4}\n{\"id\":5}\n";
    write(dir.path(), "orders.jsonl", text);
    let src = source(dir.path(), orders(false));

    let p1 = read(&src, "orders", None, 2).await.unwrap();
    assert_eq!(ids(&p1), ["1", "2"]);
    assert_eq!(record_lines(&p1), [1, 2]);
    assert!(p1.rejects.is_empty());
    assert_eq!(
        more(&p1),
        json!({"offset": 18, "line": 2, "prefix_len": 18, "prefix_hash": xxh3_hex(&text.as_bytes()[..18])})
    );
    let prov = &p1.records[0].provenance;
    assert_eq!((prov.connector.as_str(), prov.endpoint.as_str()), ("files", "orders.jsonl"));
    assert!(prov.fetched_at.ends_with('Z'), "{}", prov.fetched_at);
    assert!(std::sync::Arc::ptr_eq(prov, &p1.records[1].provenance), "one provenance per page");
    assert_eq!(p1.records[1].whereabouts(), "orders.jsonl line 2");

    let p2 = read(&src, "orders", Some(more(&p1)), 2).await.unwrap();
    assert_eq!(ids(&p2), ["3", "4"]);
    assert_eq!(more(&p2)["offset"], json!(36));
    let p3 = read(&src, "orders", Some(more(&p2)), 2).await.unwrap();
    assert_eq!(ids(&p3), ["5"]);
    assert_eq!(done(&p3), None, "a pass without follow keeps no position");

    // A page that ends exactly at the end of the file is already the last one.
    let pages = read_all(&src, "orders", None, 5).await;
    assert_eq!(pages.len(), 1);
    assert_eq!(ids(&pages[0]), ["1", "2", "3", "4", "5"]);
}

#[tokio::test]
async fn resume_continues_at_the_right_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "orders.jsonl", "{\"id\":1}\n\n  \n{\"id\":2}\r\n{\"id\":3}\n\n{\"id\":4}\n{\"id\":5}");
    let first = source(dir.path(), orders(false));
    let p1 = read(&first, "orders", None, 2).await.unwrap();
    assert_eq!(record_lines(&p1), [1, 4]);
    let pos = more(&p1);
    assert_eq!(pos["line"], json!(4));

    // A new source (a new run) continues from the stored position.
    let again = source(dir.path(), orders(false));
    let p2 = read(&again, "orders", Some(pos), 10).await.unwrap();
    assert_eq!(ids(&p2), ["3", "4", "5"]);
    assert_eq!(record_lines(&p2), [5, 7, 8], "blank lines count, the last line has no newline");
    assert_eq!(done(&p2), None);
}

#[tokio::test]
async fn corrupt_position_is_a_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "orders.jsonl", "{\"id\":1}\n");
    let src = source(dir.path(), orders(false));
    for bad in
        [json!({"cursor": "abc"}), json!("18"), json!({"offset": 9, "line": 1, "prefix_len": 9, "prefix_hash": 7})]
    {
        let e = read(&src, "orders", Some(bad.clone()), 10).await.unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::Permanent, "{bad}");
        assert!(e.message().starts_with("corrupt checkpoint for stream `orders`: "), "{}", e.message());
    }
}

#[tokio::test]
async fn replaced_or_truncated_file_restarts_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "orders.jsonl", "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n");
    let src = source(dir.path(), orders(false));
    let pos = more(&read(&src, "orders", None, 2).await.unwrap());

    // Replaced by a file at least as long, with a different beginning.
    write(dir.path(), "orders.jsonl", "{\"id\":7}\n{\"id\":8}\n{\"id\":9}\n");
    let p = read(&src, "orders", Some(pos.clone()), 10).await.unwrap();
    assert_eq!(ids(&p), ["7", "8", "9"]);
    assert_eq!(record_lines(&p), [1, 2, 3]);

    // Truncated below the offset.
    write(dir.path(), "orders.jsonl", "{\"id\":1}\n");
    let p = read(&src, "orders", Some(pos), 10).await.unwrap();
    assert_eq!(ids(&p), ["1"]);
    assert_eq!(record_lines(&p), [1]);
}

#[tokio::test]
async fn follow_keeps_the_offset_and_waits_for_a_partial_last_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "orders.jsonl", "{\"id\":1}\n{\"id\":2}\n{\"id\":3,\"na");
    let src = source(dir.path(), orders(true));

    let p1 = read(&src, "orders", None, 10).await.unwrap();
    assert_eq!(ids(&p1), ["1", "2"]);
    assert!(p1.rejects.is_empty(), "the partial line is not read, so not rejected");
    let resume = done(&p1).expect("follow keeps a position");
    assert_eq!((resume["offset"].clone(), resume["line"].clone()), (json!(18), json!(2)));

    // Nothing new: an empty page, same position.
    let p2 = read(&src, "orders", Some(resume.clone()), 10).await.unwrap();
    assert!(p2.records.is_empty() && p2.rejects.is_empty());
    assert_eq!(done(&p2), Some(resume.clone()));

    // The writer finishes the line and appends another.
    let mut f = fs::OpenOptions::new().append(true).open(dir.path().join("orders.jsonl")).unwrap();
    f.write_all(b"me\":\"c\"}\n{\"id\":4}\n").unwrap();
    drop(f);
    let p3 = read(&src, "orders", Some(resume), 10).await.unwrap();
    assert_eq!(ids(&p3), ["3", "4"]);
    assert_eq!(record_lines(&p3), [3, 4]);
    assert_eq!(p3.records[0].data, json!({"id": 3, "name": "c"}));
    assert_eq!(done(&p3).unwrap()["offset"], json!(47));

    // Without follow the same partial line is parsed (and here rejected).
    write(dir.path(), "orders.jsonl", "{\"id\":1}\n{\"id\":3,\"na");
    let p = read(&source(dir.path(), orders(false)), "orders", None, 10).await.unwrap();
    assert_eq!(ids(&p), ["1"]);
    assert_eq!(p.rejects.len(), 1);
    assert_eq!(p.rejects[0].location, Some(Location::Line(2)));
}

#[tokio::test]
async fn malformed_lines_are_rejected_and_good_lines_still_delivered() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "orders.jsonl", "{\"id\":1}\n{\"id\": 2,\n[1,2]\n{\"id\":4}\n\"text\"\n{\"id\":6}\n");
    let src = source(dir.path(), orders(false));
    let p = read(&src, "orders", None, 100).await.unwrap();
    assert_eq!(ids(&p), ["1", "4", "6"]);
    assert_eq!(record_lines(&p), [1, 4, 6]);
    let r: Vec<_> = p.rejects.iter().map(|r| (r.location, r.raw.as_str())).collect();
    assert_eq!(
        r,
        [
            (Some(Location::Line(2)), "{\"id\": 2,"),
            (Some(Location::Line(3)), "[1,2]"),
            (Some(Location::Line(5)), "\"text\"")
        ]
    );
    assert!(p.rejects[0].reason.starts_with("orders.jsonl line 2: invalid JSON: "), "{}", p.rejects[0].reason);
    assert_eq!(p.rejects[1].reason, "orders.jsonl line 3: expected a JSON object, found an array");
    assert_eq!(p.rejects[2].reason, "orders.jsonl line 5: expected a JSON object, found a string");

    // Rejects count towards the page size, so a flood of them stays bounded.
    let small = read(&src, "orders", None, 2).await.unwrap();
    assert_eq!((small.records.len(), small.rejects.len()), (1, 1));

    // Replay: a fixed raw line decodes; a still-broken one is rejected again.
    assert_eq!(src.decode_raw("orders", "{\"id\": 2}").unwrap(), json!({"id": 2}));
    assert!(src.decode_raw("orders", "[1,2]").unwrap_err().reason.contains("expected a JSON object"));
}

#[tokio::test]
async fn exact_numbers_survive() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "orders.jsonl",
        "{\"id\":98765432109876543210,\"price\":0.123456789012345678901234567891,\"qty\":1.50}\n",
    );
    let src = source(dir.path(), orders(false));
    let p = read(&src, "orders", None, 10).await.unwrap();
    let text = serde_json::to_string(&p.records[0].data).unwrap();
    assert_eq!(text, "{\"id\":98765432109876543210,\"price\":0.123456789012345678901234567891,\"qty\":1.50}");
    assert_eq!(p.records[0].data["id"].to_string(), "98765432109876543210");
}

#[tokio::test]
async fn a_byte_order_mark_and_invalid_utf8_do_not_stop_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"\xEF\xBB\xBF{\"id\":1}\n{\"id\":\"\xFF\"}\n".to_vec();
    bytes.extend_from_slice(b"{\"id\":3}\n");
    fs::write(dir.path().join("orders.jsonl"), bytes).unwrap();
    let p = read(&source(dir.path(), orders(false)), "orders", None, 10).await.unwrap();
    assert_eq!(ids(&p), ["1", "3"]);
    assert_eq!(p.rejects.len(), 1);
    assert_eq!(p.rejects[0].location, Some(Location::Line(2)));
    assert!(p.rejects[0].raw.contains('\u{FFFD}'));
    assert_eq!(p.rejects[0].reason, "orders.jsonl line 2: invalid UTF-8 at byte 8");
}

#[tokio::test]
async fn check_names_a_missing_file_and_unknown_streams_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), orders(false));
    let e = src.check(&Cx::default()).await.unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::Config);
    assert!(e.message().contains("stream `orders`") && e.message().contains("orders.jsonl"), "{}", e.message());

    write(dir.path(), "orders.jsonl", "");
    src.check(&Cx::default()).await.unwrap();
    let empty = read(&src, "orders", None, 10).await.unwrap();
    assert!(empty.records.is_empty());
    assert_eq!(done(&empty), None);

    let e = read(&src, "customers", None, 10).await.unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::Config);
    assert!(e.message().contains("no stream `customers`"), "{}", e.message());
}

#[tokio::test]
async fn a_file_missing_at_read_time_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), orders(false));
    let e = read(&src, "orders", None, 10).await.unwrap_err();
    // A missing file is the config's `path`, as `check` says (exit 3 in both).
    assert_eq!(*e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("cannot open `orders.jsonl`"), "{e}");
    assert_eq!(e.context().stream.as_deref(), Some("orders"));
}
