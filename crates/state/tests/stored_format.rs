//! A state database written by an earlier dovetail (`fixtures/state-v1.db`, made by
//! `fixtures/make-state-v1.sh` through the real binary) reads back with the same values:
//! run outcomes, stream outcomes in run reports, pause kinds and drift classes are stored as
//! strings, and whatever types the code uses for them must keep those strings.

// `stored(&value)` is written to hold whatever type the code keeps a value in (a `String`
// then, a `Copy` enum now), so the borrow clippy calls needless stays.
#![allow(clippy::needless_borrows_for_generic_args)]

use std::collections::BTreeSet;

use dovetail_core::state::{DeliveryStore, HistoryStore};
use dovetail_state::SqliteState;
use serde_json::json;

fn open_copy() -> (tempfile::TempDir, SqliteState) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state-v1.db"), &path).unwrap();
    let state = SqliteState::open(&path).unwrap();
    (dir, state)
}

/// The stored string of a value, whatever type holds it in memory.
fn stored(v: impl serde::Serialize) -> String {
    let v = serde_json::to_value(v).unwrap();
    v.as_str().unwrap_or_else(|| panic!("stored as a string, not {v}")).to_owned()
}

#[tokio::test]
async fn run_outcomes_read_back_as_written() {
    let (_dir, state) = open_copy();
    let mut runs = state.runs(None, 100).await.unwrap();
    runs.sort_by_key(|r| r.id);
    let got: Vec<(&str, String)> = runs.iter().map(|r| (r.pipeline.as_str(), stored(&r.outcome))).collect();
    assert_eq!(
        got,
        vec![
            ("sync", "succeeded".to_owned()),
            ("outage", "paused".to_owned()),
            ("strict", "failed".to_owned()),
            ("strict", "paused".to_owned()),
            ("sync", "succeeded".to_owned()),
        ]
    );
    for r in &runs {
        let report = r.report.as_ref().expect("a finished run keeps its report");
        assert_eq!(report["outcome"], json!(stored(&r.outcome)), "run {}", r.id);
        assert_eq!(report["streams"]["items"]["outcome"], json!(stored(&r.outcome)), "run {}: its one stream", r.id);
    }
}

#[tokio::test]
async fn pause_kinds_read_back_as_written() {
    let (_dir, state) = open_copy();
    let mut paused: Vec<(String, String)> =
        state.paused(None).await.unwrap().into_iter().map(|p| (p.pipeline.clone(), stored(&p.kind))).collect();
    paused.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(paused, vec![("outage".into(), "unavailable".into()), ("strict".into(), "drift".into())]);
}

#[tokio::test]
async fn drift_classes_read_back_as_written() {
    let (_dir, state) = open_copy();
    let events = state.drift_events(None).await.unwrap();
    let classes = |pipeline: &str| -> BTreeSet<(String, String)> {
        events.iter().filter(|e| e.pipeline == pipeline).map(|e| (e.path.clone(), stored(&e.change))).collect()
    };
    let expected: BTreeSet<(String, String)> = [
        ("/active", "new_field"),
        ("/color", "missing_field"),
        ("/name", "null_value"),
        ("/notes", "null_value"),
        ("/owner/login", "enum_value"),
        ("/price", "null_value"),
        ("/price", "type_changed"),
        ("/tags", "null_value"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(classes("sync"), expected);
    assert!(events.iter().filter(|e| e.pipeline == "sync").all(|e| e.accepted_at.is_some()), "`drift accept` ran");
    assert!(classes("strict").contains(&("/price".to_owned(), "type_changed".to_owned())), "what paused `strict`");
}
