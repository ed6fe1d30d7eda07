//! A state database written by an earlier dovetail (`fixtures/state-v1.db`, made by
//! `fixtures/make-state-v1.sh` through the real binary) reads back with the same values:
//! run outcomes, stream outcomes in run reports, pause kinds and drift classes are stored as
//! strings, and whatever types the code uses for them must keep those strings.

// `stored(&value)` is written to hold whatever type the code keeps a value in (a `String`
// then, a `Copy` enum now), so the borrow clippy calls needless stays.
#![allow(clippy::needless_borrows_for_generic_args)]

use std::collections::BTreeSet;

use dovetail_core::state::{DeliveryStore, HistoryStore, PausedStream};
use dovetail_core::{DriftClass, ErrorKind, PauseKind, RunOutcome};
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
    // The same values as the enums the code holds them in.
    let typed: Vec<RunOutcome> = runs.iter().map(|r| r.outcome).collect();
    use RunOutcome::{Failed, Paused, Succeeded};
    assert_eq!(typed, [Succeeded, Paused, Failed, Paused, Succeeded]);
    assert_eq!(runs[0].outcome, RunOutcome::Succeeded);
    for r in &runs {
        let report = r.report.as_ref().unwrap();
        let parsed: RunOutcome = serde_json::from_value(report["outcome"].clone()).unwrap();
        let stream: RunOutcome = serde_json::from_value(report["streams"]["items"]["outcome"].clone()).unwrap();
        assert_eq!((parsed, stream), (r.outcome, r.outcome), "run {}", r.id);
    }
}

#[tokio::test]
async fn pause_kinds_read_back_as_written() {
    let (_dir, state) = open_copy();
    let mut paused: Vec<(String, String)> =
        state.paused(None).await.unwrap().into_iter().map(|p| (p.pipeline.clone(), stored(&p.kind))).collect();
    paused.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(paused, vec![("outage".into(), "unavailable".into()), ("strict".into(), "drift".into())]);
    let typed: Vec<(String, PauseKind)> =
        state.paused(None).await.unwrap().into_iter().map(|p| (p.pipeline, p.kind)).collect();
    assert_eq!(typed, [("outage".to_owned(), PauseKind::Unavailable), ("strict".to_owned(), PauseKind::Drift)]);
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
    let typed = |pipeline: &str| -> BTreeSet<(String, DriftClass)> {
        events.iter().filter(|e| e.pipeline == pipeline).map(|e| (e.path.clone(), e.change)).collect()
    };
    use DriftClass::{EnumValue, MissingField, NewField, NullValue, TypeChanged};
    let expected: BTreeSet<(String, DriftClass)> = [
        ("/active", NewField),
        ("/color", MissingField),
        ("/name", NullValue),
        ("/notes", NullValue),
        ("/owner/login", EnumValue),
        ("/price", NullValue),
        ("/price", TypeChanged),
        ("/tags", NullValue),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_owned(), c))
    .collect();
    assert_eq!(typed("sync"), expected);
    assert!(typed("strict").contains(&("/price".to_owned(), TypeChanged)));
}

/// What this code writes is what the earlier one wrote: the columns hold the same strings.
#[tokio::test]
async fn new_rows_are_stored_with_the_same_strings() {
    let (dir, state) = open_copy();
    let run = state.begin_run("fresh", "2026-01-01T00:00:00Z").await.unwrap();
    let done = state.begin_run("fresh", "2026-01-01T00:01:00Z").await.unwrap();
    state.finish_run(done, "2026-01-01T00:01:05Z", RunOutcome::Interrupted, &json!({})).await.unwrap();
    let pause = |stream: &str, kind| PausedStream {
        pipeline: "fresh".into(),
        stream: stream.into(),
        kind,
        reason: "why".into(),
        since: "2026-01-01T00:00:00Z".into(),
        until: None,
        location: None,
    };
    state.pause(&pause("a", PauseKind::Unavailable)).await.unwrap();
    state.pause(&pause("b", PauseKind::Drift)).await.unwrap();
    let events: Vec<_> = DriftClass::ALL
        .into_iter()
        .map(|change| dovetail_core::drift::DriftEvent {
            path: format!("/{change}"),
            change,
            expected: "number".into(),
            observed: "string".into(),
            count: 1,
            first_seen: "2026-01-01T00:00:00Z".into(),
            first_at: "item 0".into(),
        })
        .collect();
    state.record_drift("fresh", "a", &events).await.unwrap();
    drop(state);

    let db = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let column = |sql: &str| -> Vec<String> {
        let mut st = db.prepare(sql).unwrap();
        st.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(
        column(&format!("SELECT outcome FROM runs WHERE id IN ({run}, {done}) ORDER BY id")),
        ["running", "interrupted"]
    );
    assert_eq!(
        column("SELECT kind FROM paused_streams WHERE pipeline = 'fresh' ORDER BY stream"),
        ["unavailable", "drift"]
    );
    assert_eq!(
        column("SELECT change FROM drift_events WHERE pipeline = 'fresh' ORDER BY id"),
        ["type_changed", "null_value", "new_field", "missing_field", "enum_value", "column_type"]
    );
    // Taking the lock again marks the run a dead process left `running` as `abandoned`.
    let state = SqliteState::open(dir.path().join("state.db")).unwrap();
    drop(state.lock("fresh").await.unwrap());
    assert_eq!(column(&format!("SELECT outcome FROM runs WHERE id = {run}")), ["abandoned"]);
}

/// A name this dovetail does not know (a newer dovetail wrote it, or a hand edit) is an
/// error naming the table, the column and the value, not a panic or a silent default.
#[tokio::test]
async fn an_unknown_stored_name_is_refused_naming_table_column_and_value() {
    let cases = [
        (
            "UPDATE runs SET outcome = 'skipped' WHERE id = 1",
            "table `runs`, column `outcome`: unknown run outcome `skipped`",
        ),
        (
            "UPDATE paused_streams SET kind = 'quota' WHERE pipeline = 'outage'",
            "table `paused_streams`, column `kind`: unknown pause kind `quota`",
        ),
        (
            "UPDATE drift_events SET change = 'renamed_field' WHERE path = '/active'",
            "table `drift_events`, column `change`: unknown drift class `renamed_field`",
        ),
    ];
    for (edit, says) in cases {
        let (dir, state) = open_copy();
        rusqlite::Connection::open(dir.path().join("state.db")).unwrap().execute(edit, []).unwrap();
        let err = match () {
            _ if edit.contains("runs") => state.runs(None, 100).await.unwrap_err(),
            _ if edit.contains("paused_streams") => state.paused(None).await.unwrap_err(),
            _ => state.drift_events(None).await.unwrap_err(),
        };
        assert_eq!(err.kind(), &ErrorKind::Internal, "{err}");
        assert!(err.message().contains(says), "{edit}: {err}");
        assert!(err.message().contains("(known: "), "the message lists what is known: {err}");
    }
}
