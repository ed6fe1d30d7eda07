//! Issue 16, points 6 and 7: bad records are named for what they are, a stream whose every
//! record is dead-lettered fails, a huge bad record is stored once and bounded, and a
//! `records` pointer that finds nothing in a non-empty body fails `check` and `run`.
//! Against a scripted vendor (wiremock) serving one fixed body at `/v1/items`.

use dovetail_e2e::vendor::{RestPipeline, RestStream, count};
use dovetail_e2e::{Scratch, show};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A vendor answering every `GET /v1/items` with `body`.
async fn vendor(body: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/v1/items")).respond_with(body).mount(&server).await;
    server
}

/// A one-stream pipeline `items` reading `/v1/items` (records at `records`, when given).
fn pipeline(server: &MockServer, records: Option<&str>) -> RestPipeline {
    let mut s = RestStream::new("items", "/v1/items");
    if let Some(p) = records {
        s = s.line(&format!("records = {p:?}"));
    }
    RestPipeline::new(&server.uri()).stream(s)
}

/// `dovetail dead-letters list --json`.
async fn dead_letters(scratch: &Scratch) -> Vec<Value> {
    let out = scratch.run_async(&["dead-letters", "list", "--json"]).await;
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("dead letters as JSON")
}

fn reasons(letters: &[Value]) -> Vec<String> {
    letters.iter().map(|d| d["reason"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_item_that_is_not_an_object_is_named_so() {
    let body = json!({"data": [{"id": 1}, "oops", {"id": 3}, 7]});
    let server = vendor(ResponseTemplate::new(200).set_body_json(body)).await;
    let scratch = Scratch::new();
    pipeline(&server, Some("/data")).write_to(&scratch);
    let (out, report) = scratch.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), 2, "{report}");
    assert_eq!(count(&report, "items", "dead_lettered"), 2, "{report}");
    let reasons = reasons(&dead_letters(&scratch).await);
    assert!(reasons.iter().any(|r| r.ends_with("item 1 is a string, not an object")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.ends_with("item 3 is a number, not an object")), "{reasons:?}");
    assert!(!reasons.iter().any(|r| r.contains("missing primary key")), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_or_array_as_a_primary_key_is_refused() {
    let body =
        json!({"data": [{"id": {"a": 1}, "n": "x"}, {"id": [2], "n": "y"}, {"id": "3"}, {"id": 4}, {"id": true}]});
    let server = vendor(ResponseTemplate::new(200).set_body_json(body)).await;
    let scratch = Scratch::new();
    pipeline(&server, Some("/data")).write_to(&scratch);
    let (out, report) = scratch.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), 3, "{report}");
    assert_eq!(count(&report, "items", "dead_lettered"), 2, "{report}");
    let letters = dead_letters(&scratch).await;
    let reasons = reasons(&letters);
    assert!(
        reasons.iter().any(|r| r
            .ends_with("item 0: primary key field `id` is an object; a key must be a string, a number or a boolean")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("item 1: primary key field `id` is an array")), "{reasons:?}");
    assert!(letters.iter().all(|d| d["path"] == "id"), "{letters:?}");
}

/// `{"data": [...]}` with `n` strings: records that are all dead-lettered.
fn all_bad(n: usize) -> ResponseTemplate {
    let items: Vec<Value> = (0..n).map(|i| json!(format!("bad {i}"))).collect();
    ResponseTemplate::new(200).set_body_json(json!({ "data": items }))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_whose_every_record_was_dead_lettered_fails() {
    let server = vendor(all_bad(10)).await;
    let scratch = Scratch::new();
    pipeline(&server, Some("/data")).write_to(&scratch);
    let (out, report) = scratch.run_json_async(&[]).await;
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    assert_eq!(report["streams"]["items"]["outcome"], "failed", "{report}");
    assert!(show(&out).contains("every one of the 10 records read was dead-lettered"), "{}", show(&out));
    // The dead letters are kept for replay.
    assert_eq!(dead_letters(&scratch).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn fewer_than_ten_all_bad_records_or_the_option_off_succeed() {
    let server = vendor(all_bad(9)).await;
    let scratch = Scratch::new();
    pipeline(&server, Some("/data")).write_to(&scratch);
    let (out, _) = scratch.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));

    let server = vendor(all_bad(12)).await;
    let scratch = Scratch::new();
    pipeline(&server, Some("/data")).option("items", "fail_when_all_dead_lettered = false").write_to(&scratch);
    let (out, report) = scratch.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "dead_lettered"), 12, "{report}");
}

fn bare_array(n: u64) -> ResponseTemplate {
    let items: Vec<Value> = (0..n).map(|i| json!({"id": i})).collect();
    ResponseTemplate::new(200).set_body_json(Value::Array(items))
}

/// Checkpoints the state holds for pipeline `vendor`.
fn checkpoints(scratch: &Scratch) -> i64 {
    let db = scratch.db(".dovetail/state.db");
    db.query_row("SELECT COUNT(*) FROM checkpoints WHERE pipeline = 'vendor'", [], |r| r.get(0)).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_records_pointer_that_finds_nothing_fails_check_and_run() {
    let server = vendor(bare_array(100)).await;
    let scratch = Scratch::new();
    pipeline(&server, Some("/data")).write_to(&scratch);
    let expected = "`records = \"/data\"` found nothing: the body is an array of 100 items";

    let out = scratch.run_async(&["check"]).await;
    assert!(!out.status.success(), "{}", show(&out));
    assert!(show(&out).contains(expected), "{}", show(&out));

    let (out, report) = scratch.run_json_async(&[]).await;
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    assert_eq!(report["streams"]["items"]["outcome"], "failed", "{report}");
    assert!(show(&out).contains(expected), "{}", show(&out));
    assert_eq!(checkpoints(&scratch), 0, "no checkpoint is stored for a listing that was not read");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_records_pointer_at_a_non_array_fails() {
    let server = vendor(ResponseTemplate::new(200).set_body_json(json!({"data": {"id": 1}}))).await;
    let scratch = Scratch::new();
    pipeline(&server, Some("/data")).write_to(&scratch);
    let expected = "`records = \"/data\"` is an object, not an array of records";
    let out = scratch.run_async(&["check"]).await;
    assert!(!out.status.success() && show(&out).contains(expected), "{}", show(&out));
    let out = scratch.run_async(&["run"]).await;
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    assert!(show(&out).contains(expected), "{}", show(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_listing_is_still_fine() {
    for body in [json!({"data": []}), json!({}), json!([]), json!({"data": null})] {
        let server = vendor(ResponseTemplate::new(200).set_body_json(body.clone())).await;
        let scratch = Scratch::new();
        pipeline(&server, Some("/data")).write_to(&scratch);
        let out = scratch.run_async(&["check"]).await;
        assert!(out.status.success(), "{body}: {}", show(&out));
        let (out, report) = scratch.run_json_async(&[]).await;
        assert!(out.status.success(), "{body}: {}", show(&out));
        assert_eq!(count(&report, "items", "read"), 0, "{report}");
    }
    // Without a pointer, a bare array is the records.
    let server = vendor(bare_array(100)).await;
    let scratch = Scratch::new();
    pipeline(&server, None).write_to(&scratch);
    let (out, report) = scratch.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), 100, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_bad_record_is_stored_once_cut_and_not_replayed() {
    // 3 MiB of text in a record without its key: dead-lettered.
    let huge = "x".repeat(3 << 20);
    let body = json!({"data": [{"id": 1}, {"name": huge}]});
    let server = vendor(ResponseTemplate::new(200).set_body_json(body)).await;
    let scratch = Scratch::new();
    pipeline(&server, Some("/data")).option("items", "sync_mode = \"full_refresh\"").write_to(&scratch);
    for _ in 0..2 {
        let (out, report) = scratch.run_json_async(&[]).await;
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(count(&report, "items", "dead_lettered"), 1, "{report}");
    }
    let db = scratch.db(".dovetail/state.db");
    let (n, stored, full, seen): (i64, i64, Option<i64>, i64) = db
        .query_row("SELECT COUNT(*), MAX(length(raw)), MAX(raw_len), MAX(seen_count) FROM dead_letters", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    assert_eq!((n, seen), (1, 2), "read twice, stored once");
    assert_eq!(stored, 1 << 20, "kept cut at 1 MiB");
    assert!(full.is_some_and(|f| f > 3 << 20), "{full:?}");
    // No index holds the raw text (it would store it a second time).
    let indexed: Vec<String> = db
        .prepare("SELECT sql FROM sqlite_master WHERE tbl_name = 'dead_letters' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!indexed.iter().any(|s| s.contains("location, raw)")), "{indexed:?}");
    drop(db);

    let out = scratch.run_async(&["dead-letters", "show", "1"]).await;
    assert!(
        show(&out).contains(&format!("raw (the first {} of", 1 << 20)),
        "{}",
        &show(&out)[..2000.min(show(&out).len())]
    );
    let out = scratch.run_async(&["dead-letters", "replay"]).await;
    assert_eq!(out.status.code(), Some(9), "{}", show(&out));
    assert!(show(&out).contains("only the first 1048576 were kept, so it cannot be replayed"), "{}", show(&out));
    assert_eq!(dead_letters(&scratch).await.len(), 1, "it stays");
}
