//! The files source over real CSV files: header mapping, nulls, bad rows, resume, line numbers.

mod common;

use std::fs;
use std::io::Write;

use common::{done, more, read, read_all, record_lines, source};
use dovetail_core::{ErrorKind, Location, Source};
use serde_json::{Value, json};

fn stream(extra: Value) -> Value {
    let mut s = json!({ "name": "orders", "path": "orders.csv", "primary_key": ["id"] });
    s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!([s])
}

#[tokio::test]
async fn rows_become_objects_with_empty_cells_as_null() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("orders.csv"), "id,name,email\n1,Ada,\n2,,bob@example.com\n").unwrap();

    let p = read(&source(dir.path(), stream(json!({}))), "orders", None, 10).await.unwrap();
    assert_eq!(
        p.records.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
        [
            json!({"id": "1", "name": "Ada", "email": null}),
            json!({"id": "2", "name": null, "email": "bob@example.com"})
        ]
    );
    assert_eq!(record_lines(&p), [2, 3]);
    assert_eq!(p.records[0].whereabouts(), "orders.csv line 2");
    assert_eq!(done(&p), None);

    let p = read(&source(dir.path(), stream(json!({"empty_as_null": false}))), "orders", None, 10).await.unwrap();
    assert_eq!(p.records[0].data, json!({"id": "1", "name": "Ada", "email": ""}));
}

#[tokio::test]
async fn wrong_field_count_is_rejected_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("orders.csv"),
        "id,name,email,total\n1,Ada,a@x,10\n2,\"Bob, Jr\",b@x\n3,Cy,c@x,30\n4,Di,d@x,40,extra\n",
    )
    .unwrap();
    let src = source(dir.path(), stream(json!({})));
    let p = read(&src, "orders", None, 10).await.unwrap();
    assert_eq!(record_lines(&p), [2, 4]);
    assert_eq!(p.rejects.len(), 2);
    assert_eq!(p.rejects[0].location, Some(Location::Line(3)));
    assert_eq!(p.rejects[0].reason, "orders.csv line 3: expected 4 fields (id,name,email,total), found 3");
    assert_eq!(p.rejects[0].raw, "2,\"Bob, Jr\",b@x", "raw is the row re-encoded as CSV");
    assert_eq!(p.rejects[1].reason, "orders.csv line 5: expected 4 fields (id,name,email,total), found 5");

    // Replay reads the header from the file: a fixed row decodes, a broken one does not.
    assert_eq!(
        src.decode_raw("orders", "2,\"Bob, Jr\",b@x,20").unwrap(),
        json!({"id": "2", "name": "Bob, Jr", "email": "b@x", "total": "20"})
    );
    assert!(src.decode_raw("orders", &p.rejects[0].raw).unwrap_err().reason.contains("expected 4 fields"));
}

#[tokio::test]
async fn resume_mid_file_keeps_the_header_mapping_and_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("orders.csv"), "id;name\n1;a\n2;b\n3;c\n4;d\n").unwrap();
    let src = source(dir.path(), stream(json!({"delimiter": ";"})));
    let p1 = read(&src, "orders", None, 2).await.unwrap();
    let pos = more(&p1);
    assert_eq!((pos["offset"].clone(), pos["line"].clone()), (json!(16), json!(3)));

    let again = source(dir.path(), stream(json!({"delimiter": ";"})));
    let p2 = read(&again, "orders", Some(pos), 2).await.unwrap();
    assert_eq!(p2.records[0].data, json!({"id": "3", "name": "c"}));
    assert_eq!(record_lines(&p2), [4, 5]);
    assert_eq!(done(&p2), None, "the page ended at the end of the file");
}

#[tokio::test]
async fn line_numbers_are_exact_with_crlf_blank_lines_and_multiline_fields() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\r\nid,note\r\n1,\"two\r\nlines\"\r\n\r\n\n2,plain\r\n3,\"a\nb\nc\"\n4,last";
    fs::write(dir.path().join("orders.csv"), text).unwrap();
    let src = source(dir.path(), stream(json!({})));

    // Page by page with size 1, so every position is resumed from.
    let pages = read_all(&src, "orders", None, 1).await;
    let got: Vec<(u64, Value)> =
        pages.iter().flat_map(|p| p.records.iter().map(|r| (record_lines_of(r), r.data.clone()))).collect();
    assert_eq!(
        got,
        [
            (3, json!({"id": "1", "note": "two\r\nlines"})),
            (7, json!({"id": "2", "note": "plain"})),
            (8, json!({"id": "3", "note": "a\nb\nc"})),
            (11, json!({"id": "4", "note": "last"})),
        ]
    );
    assert!(pages.iter().all(|p| p.rejects.is_empty()));

    // Any page size reads the same rows at the same lines.
    for size in 2..=5 {
        let pages = read_all(&src, "orders", None, size).await;
        let again: Vec<(u64, Value)> =
            pages.iter().flat_map(|p| p.records.iter().map(|r| (record_lines_of(r), r.data.clone()))).collect();
        assert_eq!(again, got, "page size {size}");
    }
}

fn record_lines_of(r: &dovetail_core::Record) -> u64 {
    match r.location {
        Some(Location::Line(n)) => n,
        other => panic!("no line: {other:?}"),
    }
}

#[tokio::test]
async fn bad_headers_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), stream(json!({})));
    for (text, why) in [
        ("id,name,id\n1,a,b\n", "names column `id` twice"),
        ("id,,name\n1,a,b\n", "empty name in column 2"),
        ("", "no header row"),
    ] {
        fs::write(dir.path().join("orders.csv"), text).unwrap();
        let e = read(&src, "orders", None, 10).await.unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::Permanent);
        assert!(e.message().contains("`orders.csv`") && e.message().contains(why), "{}", e.message());
    }
}

#[tokio::test]
async fn follow_waits_for_complete_rows_and_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.csv");
    fs::write(&path, "id,na").unwrap();
    let src = source(dir.path(), stream(json!({"follow": true})));

    let p = read(&src, "orders", None, 10).await.unwrap();
    assert!(p.records.is_empty());
    let resume = done(&p).expect("follow keeps a position");
    assert_eq!(resume["offset"], json!(0));

    let append = |s: &str| fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(s.as_bytes()).unwrap();
    append("me\n1,a\n2,b");
    let p = read(&src, "orders", Some(resume), 10).await.unwrap();
    assert_eq!(p.records.iter().map(|r| r.data.clone()).collect::<Vec<_>>(), [json!({"id": "1", "name": "a"})]);
    let resume = done(&p).unwrap();
    assert_eq!((resume["offset"].clone(), resume["line"].clone()), (json!(12), json!(2)));

    append("x\n");
    let p = read(&src, "orders", Some(resume), 10).await.unwrap();
    assert_eq!(p.records[0].data, json!({"id": "2", "name": "bx"}));
    assert_eq!(record_lines(&p), [3]);
}
