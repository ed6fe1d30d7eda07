//! Explain capture through the real engine: each record's story is committed with its batch
//! (inserted, updated, dead-lettered with the reason), the latest run wins, a rerun records
//! unchanged reads without rewriting stories, and the capture modes keep what they promise.

use dovetail_core::explain::{ExplainCapture, Outcome};
use dovetail_core::mapping::{CastType, Mapping};
use dovetail_core::testing::{MemorySink, MemorySource, MemoryState};
use dovetail_core::{HistoryStore, Key, Pipeline, RunOptions, StreamOptions};
use serde_json::{Value, json};

fn rows(names: &[&str]) -> Vec<Value> {
    names.iter().enumerate().map(|(i, n)| json!({"id": i + 1, "name": n, "amount": "1.50"})).collect()
}

fn pipeline(src: &MemorySource, state: &MemoryState, capture: ExplainCapture) -> Pipeline {
    let mapping = Mapping::builder().rename("name", "full_name").cast("amount", CastType::Number).build();
    Pipeline::builder("p")
        .source(src.clone())
        .sink(MemorySink::default())
        .state(state.clone())
        .stream("s", StreamOptions { mapping: Some(std::sync::Arc::new(mapping)), ..Default::default() })
        .batch_size(2)
        .explain(capture)
        .build()
        .unwrap()
}

async fn story(state: &MemoryState, key: &str) -> dovetail_core::explain::KeyHistory {
    state.key_history("p", "s", &Key::from_canonical(key)).await.unwrap()
}

#[tokio::test]
async fn stories_follow_inserts_updates_unchanged_reads_and_dead_letters() {
    let (src, state) = (MemorySource::new("s", &["id"], rows(&["a", "b", "c"])), MemoryState::default());
    let p = pipeline(&src, &state, ExplainCapture::Full);
    let r1 = p.run(RunOptions::default()).await.unwrap();
    let one = story(&state, "1").await;
    let s = one.story.unwrap();
    assert_eq!((s.run_id, s.outcome), (r1.run_id, Outcome::Inserted));
    assert_eq!(
        s.raw.as_deref(),
        Some(r#"{"amount":"1.50","id":1,"name":"a"}"#),
        "the raw input, not the mapped output"
    );
    assert_eq!(s.location.as_deref(), Some("item 0"));
    let f = s.fetch.unwrap();
    assert_eq!((f.url.as_str(), f.run_id), ("memory:s", r1.run_id));
    assert_eq!(one.mapping.unwrap()["rename"]["name"], "full_name");
    assert_eq!(one.key_columns, ["id"]);

    // Run 2: b changes, c's amount no longer casts, a is unchanged.
    let mut next = rows(&["a", "B", "c"]);
    next[2]["amount"] = json!("lots");
    src.set_records("s", next);
    let r2 = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r2.streams["s"].skipped_unchanged, 1);
    let a = story(&state, "1").await;
    assert_eq!(a.story.unwrap().run_id, r1.run_id, "an unchanged read does not rewrite the story");
    assert_eq!(a.unchanged.unwrap().run_id, r2.run_id, "but it is recorded with its page");
    let b = story(&state, "2").await.story.unwrap();
    assert_eq!((b.run_id, b.outcome), (r2.run_id, Outcome::Updated), "the latest run wins");
    assert!(b.raw.unwrap().contains("\"B\""));
    let c = story(&state, "3").await;
    let cs = c.story.unwrap();
    assert_eq!((cs.run_id, cs.outcome), (r2.run_id, Outcome::DeadLettered));
    assert!(cs.reason.as_deref().unwrap().contains("amount"), "{:?}", cs.reason);
    assert_eq!(cs.raw.as_deref(), Some(r#"{"amount":"lots","id":3,"name":"c"}"#));
    assert_eq!(cs.fetch.unwrap().run_id, r2.run_id, "a dead letter points at its page");
    assert!(c.dead_letter.is_some());
}

#[tokio::test]
async fn metadata_capture_keeps_no_raw_and_off_keeps_nothing() {
    let (src, state) = (MemorySource::new("s", &["id"], rows(&["a"])), MemoryState::default());
    pipeline(&src, &state, ExplainCapture::Metadata).run(RunOptions::default()).await.unwrap();
    let s = story(&state, "1").await.story.unwrap();
    assert_eq!(s.outcome, Outcome::Inserted);
    assert!(s.raw.is_none() && s.fetch.is_some());

    let (src, state) = (MemorySource::new("s", &["id"], rows(&["a"])), MemoryState::default());
    pipeline(&src, &state, ExplainCapture::Off).run(RunOptions::default()).await.unwrap();
    let h = story(&state, "1").await;
    assert!(h.story.is_none() && h.unchanged.is_none());
    assert!(h.ledger.is_some(), "the ledger still knows the key");
}

#[tokio::test]
async fn a_dry_run_captures_nothing() {
    let (src, state) = (MemorySource::new("s", &["id"], rows(&["a"])), MemoryState::default());
    let p = pipeline(&src, &state, ExplainCapture::Full);
    p.run(RunOptions { dry_run: true, ..Default::default() }).await.unwrap();
    assert!(story(&state, "1").await.story.is_none());
}
