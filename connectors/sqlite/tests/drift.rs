//! `column_type` drift: a value whose JSON type no longer fits the column the sink made for
//! its field is reported (never a crash or a failed batch), written or refused as the batch
//! says, remembered across sink instances, and taken in once accepted.

mod common;

use common::*;
use dovetail_core::drift::{DriftAction, DriftClass, DriftPolicy};
use dovetail_core::testing::{MemorySource, MemoryState};
use dovetail_core::{ColumnDrift, DeleteMode, DeliveryStore, HistoryStore, Pipeline, RunOptions, RunOutcome, Sink};
use serde_json::json;

#[tokio::test]
async fn a_value_that_no_longer_fits_its_column_is_reported_and_written_or_refused() {
    let (_dir, path, sink) = sink();
    let st = stream("items", &["id"], None, DeleteMode::Keep);
    sink.open(&st, &cx()).await.unwrap();
    let wr = sink.write(batch(&st, &[r#"{"id": 1, "price": 1.5, "tags": ["a"], "name": "a"}"#]), &cx()).await.unwrap();
    assert!(wr.drift.is_empty());
    // A new sink instance (a later run) knows what the columns were made for.
    let sink = sink_at(&path);
    sink.open(&st, &cx()).await.unwrap();
    let drifting = [
        r#"{"id": 2, "price": {"amount": 2}, "tags": ["b"], "name": "b"}"#,
        r#"{"id": 3, "price": 3, "tags": "c", "name": null}"#,
        r#"{"id": 4, "price": 4, "tags": [], "name": 4}"#,
        r#"{"id": 5, "price": 5, "tags": [], "name": "e"}"#,
    ];
    let wr = sink.write(batch(&st, &drifting), &cx()).await.unwrap();
    let got: Vec<(usize, &str, DriftClass, &str, &str)> = wr
        .drift
        .iter()
        .map(|(i, e)| (*i, e.path.as_str(), e.change, e.expected.as_str(), e.observed.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (0, "/price", DriftClass::ColumnType, "number", "object"),
            (1, "/tags", DriftClass::ColumnType, "array", "string"),
            (2, "/name", DriftClass::ColumnType, "string", "number")
        ]
    );
    assert!(wr.drift[0].1.first_at.contains("table `items`"), "{:?}", wr.drift[0].1);
    assert_eq!((wr.written, wr.rejected.len(), count(&path, "items")), (4, 0, 5), "written as SQLite allows");
    // Refused: left out of the write, the rest written.
    let b = batch(&st, &[r#"{"id": 6, "price": "six"}"#, r#"{"id": 7, "price": 7}"#])
        .with_column_drift(ColumnDrift::Refuse);
    let wr = sink.write(b, &cx()).await.unwrap();
    assert_eq!((wr.written, wr.drift.len(), wr.drift[0].0), (1, 1, 0));
    assert_eq!(rows(&path, "SELECT id FROM items WHERE id > 5"), vec![vec!["7".to_owned()]]);
    // Accepted: the column takes strings from now on, in this instance and later ones.
    let accepted = dovetail_core::drift::DriftEvent { observed: "string".into(), ..wr.drift[0].1.clone() };
    sink.accept_drift(&st, &[accepted], &cx()).await.unwrap();
    let b = batch(&st, &[r#"{"id": 6, "price": "six"}"#]).with_column_drift(ColumnDrift::Refuse);
    assert!(sink.write(b.clone(), &cx()).await.unwrap().drift.is_empty());
    let later = sink_at(&path);
    later.open(&st, &cx()).await.unwrap();
    let wr = later.write(b, &cx()).await.unwrap();
    assert_eq!((wr.written, wr.drift.len()), (1, 0));
    assert_eq!(
        rows(&path, &format!("SELECT json_types FROM {} WHERE column_name = 'price'", dovetail_sqlite::NOTES_TABLE)),
        vec![vec!["number|string".to_owned()]]
    );
}

#[tokio::test]
async fn a_table_made_by_hand_is_checked_by_declared_type_and_an_untyped_column_takes_anything() {
    let (_dir, path, sink) = sink();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    read(&path).execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, label TEXT, any_thing)").unwrap();
    let st = stream("t", &["id"], None, DeleteMode::Keep);
    sink.open(&st, &cx()).await.unwrap();
    let wr = sink
        .write(
            batch(
                &st,
                &[r#"{"id": 1, "n": "x", "label": "a", "any_thing": {"k": 1}}"#, r#"{"id": 2, "n": 2, "label": true}"#],
            ),
            &cx(),
        )
        .await
        .unwrap();
    let got: Vec<(usize, &str, &str)> =
        wr.drift.iter().map(|(i, e)| (*i, e.path.as_str(), e.expected.as_str())).collect();
    assert_eq!(got, [(0, "/n", "boolean|number"), (1, "/label", "string|array|object")]);
}

#[tokio::test]
async fn through_the_engine_column_drift_follows_the_pipeline_policy() {
    let records = vec![
        json!({"id": 1, "n": 1}),
        json!({"id": 2, "n": 2}),
        json!({"id": 3, "n": {"v": 3}}),
        json!({"id": 4, "n": 4}),
    ];
    let src = MemorySource::new("items", &["id"], records);
    let run = |policy: DriftPolicy| {
        let src = src.clone();
        async move {
            let (dir, path, sink) = sink();
            let state = MemoryState::default();
            // A baseline that allows the object, so only the sink sees the drift; the first
            // batch makes the column, for numbers.
            let baseline = json!({"type": "object", "properties": {"id": {"type": "integer"}, "n": {}}});
            state.save_baseline("p", "items", &baseline).await.unwrap();
            let p = Pipeline::builder("p")
                .source(src)
                .sink(sink)
                .state(state.clone())
                .batch_size(2)
                .drift_policy(policy)
                .build()
                .unwrap();
            let r = p.run(RunOptions::default()).await.unwrap();
            (dir, path, state, r)
        }
    };
    let (_d, path, state, r) = run(DriftPolicy::default()).await;
    assert_eq!((r.outcome, count(&path, "items")), (RunOutcome::Succeeded, 4));
    assert_eq!(r.streams["items"].drift[0].describe(), "/n: column_type (expected number, observed object)");
    assert_eq!(state.drift_events(Some("p")).await.unwrap()[0].count, 1);

    let (_d, path, state, r) = run(DriftPolicy::all(DriftAction::Quarantine)).await;
    assert_eq!((r.outcome, r.streams["items"].dead_lettered, count(&path, "items")), (RunOutcome::Succeeded, 1, 3));
    assert_eq!(state.dead_letters(Some("p"), None, 5).await.unwrap()[0].kind, "drift");

    let (_d, path, state, r) = run(DriftPolicy::default().with(DriftClass::ColumnType, DriftAction::Pause)).await;
    assert_eq!((r.outcome, r.streams["items"].outcome), (RunOutcome::Paused, RunOutcome::Paused));
    // The first batch is committed; the second (with the drift) is not, so it is re-read.
    assert_eq!(state.checkpoint("p", "items").await.unwrap().unwrap().position, Some(json!({"offset": 2})));
    assert!(count(&path, "items") >= 2);
}
