//! Drift through the engine: each class found at its JSON path, each policy applied
//! (warn, quarantine, pause), `column_type` drift reported by a sink, and a drift of one
//! field across 100,000 records stored and logged once.

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dovetail_core::drift::{DriftAction, DriftClass, DriftPolicy};
use dovetail_core::testing::{MemorySink, MemorySource, MemoryState};
use dovetail_core::{
    Batch, ColumnDrift, Cx, DeliveryStore, Error, HistoryStore, PauseKind, Pipeline, RunOptions, RunOutcome, Sink,
    SinkStream, StreamOptions, WriteReport,
};
use serde_json::{Value, json};

fn pipeline(
    src: &MemorySource,
    sink: impl Sink + 'static,
    state: &MemoryState,
    policy: DriftPolicy,
    batch: usize,
) -> Pipeline {
    Pipeline::builder("p")
        .source(src.clone())
        .sink(sink)
        .state(state.clone())
        .stream("s", StreamOptions::default())
        .batch_size(batch)
        .drift_policy(policy)
        .build()
        .unwrap()
}

/// A stored baseline, as a declared schema or an earlier run would leave it.
async fn with_baseline(state: &MemoryState, schema: Value) {
    state.save_baseline("p", "s", &schema).await.unwrap();
}

fn people(n: u64) -> Vec<Value> {
    (1..=n).map(|i| json!({"id": i, "name": format!("p{i}")})).collect()
}

fn people_schema() -> Value {
    json!({"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}, "required": ["id", "name"]})
}

/// What `dovetail drift accept p s` does, through the same core calls.
async fn accept(state: &MemoryState) {
    let mut baseline = state.baseline("p", "s").await.unwrap().unwrap();
    for e in state.drift_events(Some("p")).await.unwrap().iter().filter(|e| e.accepted_at.is_none()) {
        dovetail_core::drift::accept(&mut baseline, &e.path, e.change, &e.observed);
    }
    state.save_baseline("p", "s", &baseline).await.unwrap();
    state.accept_drift("p", "s", &dovetail_core::now_rfc3339()).await.unwrap();
    assert!(state.unpause("p", "s").await.unwrap(), "the stream was not paused");
}

/// Log lines written while `f` runs (the stream's tasks run on this thread's runtime).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines_with(&self, needle: &str) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }
}

#[tokio::test]
async fn one_field_drifting_in_100_000_records_is_one_stored_event_and_one_log_line() {
    let records: Vec<Value> = (1..=100_000u64).map(|i| json!({"id": i, "amount": format!("{i}.50")})).collect();
    let (src, state) = (MemorySource::new("s", &["id"], records), MemoryState::default());
    with_baseline(&state, dovetail_core::schema::infer([&json!({"id": 1, "amount": 2.5})])).await;
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let r = pipeline(&src, MemorySink::default(), &state, DriftPolicy::default(), 10_000)
        .run(RunOptions::default())
        .await
        .unwrap();
    drop(guard);
    let s = &r.streams["s"];
    assert_eq!((r.outcome, s.written), (RunOutcome::Succeeded, 100_000), "{:?}", r.error);
    let stored = state.drift_events(Some("p")).await.unwrap();
    let got: Vec<(&str, DriftClass, &str, &str, u64)> =
        stored.iter().map(|e| (e.path.as_str(), e.change, e.expected.as_str(), e.observed.as_str(), e.count)).collect();
    assert_eq!(got, [("/amount", DriftClass::TypeChanged, "number", "string", 100_000)]);
    assert_eq!(s.drift.len(), 1);
    let lines = logs.lines_with("response shape drifted");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("WARN") && lines[0].contains("/amount") && lines[0].contains("item 0"), "{}", lines[0]);
}

#[tokio::test]
async fn each_class_is_found_at_its_json_path_and_warn_lets_every_record_through() {
    let records = vec![
        json!({"id": 1, "name": "a", "state": "open", "owner": {"login": "x"}}),
        json!({"id": 2, "name": null, "state": "open", "owner": {"login": "x"}}),
        json!({"id": 3, "name": "c", "state": "archived", "owner": {"login": "x"}}),
        json!({"id": 4, "name": "d", "owner": {}}),
        json!({"id": 5, "name": "e", "owner": {"login": "x", "avatar": "u"}}),
        json!({"id": 6, "name": 7, "owner": {"login": "x"}}),
        json!({"id": 7, "name": "g", "owner": {"login": "x"}, "tags": [{"k": 1}, {"k": "one"}]}),
    ];
    let schema = json!({"type": "object", "required": ["id", "name", "owner"], "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "state": {"type": "string", "enum": ["open", "closed"]},
        "owner": {"type": "object", "required": ["login"], "properties": {"login": {"type": "string"}}},
        "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "integer"}}}}
    }});
    let (src, sink, state) = (MemorySource::new("s", &["id"], records), MemorySink::default(), MemoryState::default());
    with_baseline(&state, schema).await;
    let r = pipeline(&src, sink.clone(), &state, DriftPolicy::default(), 3).run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["s"].written, sink.rows("s").len()), (RunOutcome::Succeeded, 7, 7));
    let mut got: Vec<(String, DriftClass, String, String)> = r.streams["s"]
        .drift
        .iter()
        .map(|e| (e.path.clone(), e.change, e.observed.clone(), e.first_at.clone()))
        .collect();
    got.sort();
    let want = [
        ("/name", DriftClass::NullValue, "null", "item 1"),
        ("/name", DriftClass::TypeChanged, "integer", "item 5"),
        ("/owner/avatar", DriftClass::NewField, "string", "item 4"),
        ("/owner/login", DriftClass::MissingField, "absent", "item 3"),
        ("/state", DriftClass::EnumValue, "\"archived\"", "item 2"),
        ("/tags/*/k", DriftClass::TypeChanged, "string", "item 6"),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((path, change, observed, at), w) in got.iter().zip(want) {
        assert_eq!((path.as_str(), *change, observed.as_str()), (w.0, w.1, w.2));
        assert!(at.ends_with(w.3), "{path}: first seen at {at}, expected {}", w.3);
    }
}

#[tokio::test]
async fn quarantine_dead_letters_the_drifting_records_with_the_drift_as_reason_and_writes_the_rest() {
    let mut records = people(10);
    records[3]["extra"] = json!(true);
    records[6]["extra"] = json!("x");
    let (src, sink, state) = (MemorySource::new("s", &["id"], records), MemorySink::default(), MemoryState::default());
    with_baseline(&state, people_schema()).await;
    let policy = DriftPolicy::default().with(DriftClass::NewField, DriftAction::Quarantine);
    let r = pipeline(&src, sink.clone(), &state, policy, 3).run(RunOptions::default()).await.unwrap();
    let s = &r.streams["s"];
    assert_eq!((r.outcome, s.written, s.dead_lettered), (RunOutcome::Succeeded, 8, 2), "{:?}", r.error);
    assert!(sink.rows("s").iter().all(|row| row.get("extra").is_none()));
    let dead = state.dead_letters(Some("p"), Some("s"), 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0].kind.as_str(), dead[0].path.as_deref(), dead[0].key.as_deref()),
        ("drift", Some("/extra"), Some("4"))
    );
    assert!(
        dead[0].reason.contains("item 3")
            && dead[0].reason.contains("/extra: new_field (expected absent, observed boolean)"),
        "{}",
        dead[0].reason
    );
    assert_eq!(serde_json::from_str::<Value>(&dead[1].raw).unwrap(), json!({"id": 7, "name": "p7", "extra": "x"}));
    // The event is stored with both records counted, and the dead-letter threshold applies.
    assert_eq!(state.drift_events(Some("p")).await.unwrap()[0].count, 2);
    let (sink2, state2) = (MemorySink::default(), MemoryState::default());
    with_baseline(&state2, people_schema()).await;
    let p = Pipeline::builder("p")
        .source(src.clone())
        .sink(sink2.clone())
        .state(state2.clone())
        .batch_size(3)
        .max_dead_letters(Some(1))
        .drift_policy(policy)
        .build()
        .unwrap();
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    assert!(r.error.as_deref().unwrap_or("").contains("max_dead_letters"), "{:?}", r.error);
}

#[tokio::test]
async fn pause_stops_at_the_last_checkpoint_and_drift_accept_lets_the_next_run_through() {
    let mut records = people(10);
    records[4]["name"] = json!(5);
    let (src, sink, state) = (MemorySource::new("s", &["id"], records), MemorySink::default(), MemoryState::default());
    with_baseline(&state, people_schema()).await;
    let policy = DriftPolicy::default().with(DriftClass::TypeChanged, DriftAction::Pause);
    let p = pipeline(&src, sink.clone(), &state, policy, 3);
    let r = p.run(RunOptions::default()).await.unwrap();
    let s = &r.streams["s"];
    assert_eq!((r.outcome, s.outcome, r.exit_code), (RunOutcome::Paused, RunOutcome::Paused, 9), "{r:?}");
    let why = s.paused.as_deref().unwrap();
    assert!(why.contains("item 4") && why.contains("/name: type_changed (expected string, observed integer)"), "{why}");
    assert!(why.contains("dovetail drift accept p s"), "{why}");
    // The page with the drift (records 4-6) is neither written nor committed.
    assert_eq!((sink.rows("s").len(), s.written), (3, 3));
    let cp = state.checkpoint("p", "s").await.unwrap().unwrap();
    assert_eq!(cp.position, Some(json!({"offset": 3})));
    let paused = state.paused(Some("p")).await.unwrap();
    assert_eq!((paused.len(), paused[0].kind), (1, PauseKind::Drift));
    assert_eq!(state.drift_events(Some("p")).await.unwrap().len(), 1, "the drift seen is stored");
    // Held until accepted.
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["s"].outcome, sink.rows("s").len()), (RunOutcome::Paused, 3));
    accept(&state).await;
    let r = p.run(RunOptions::default()).await.unwrap();
    let s = &r.streams["s"];
    assert_eq!((r.outcome, s.written, sink.rows("s").len()), (RunOutcome::Succeeded, 7, 10), "{:?}", r.error);
    assert!(s.drift.is_empty(), "{:?}", s.drift);
    assert!(state.paused(Some("p")).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_record_drifting_in_several_classes_gets_the_strictest_policy() {
    let mut records = people(4);
    records[1]["extra"] = json!(1); // new_field only: quarantined
    records[2]["extra"] = json!(1);
    records[2]["name"] = json!(null); // and null_value: pause wins
    let (src, sink, state) = (MemorySource::new("s", &["id"], records), MemorySink::default(), MemoryState::default());
    with_baseline(&state, people_schema()).await;
    let policy = DriftPolicy::all(DriftAction::Quarantine).with(DriftClass::NullValue, DriftAction::Pause);
    let r = pipeline(&src, sink.clone(), &state, policy, 10).run(RunOptions::default()).await.unwrap();
    let s = &r.streams["s"];
    assert_eq!((s.outcome, s.written, sink.rows("s").len()), (RunOutcome::Paused, 0, 0), "{s:?}");
    assert!(s.paused.as_deref().unwrap().contains("/name: null_value"), "{s:?}");
    // Warn for null values: record 3 is quarantined for its new field instead.
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    with_baseline(&state, people_schema()).await;
    let policy = DriftPolicy::all(DriftAction::Quarantine).with(DriftClass::NullValue, DriftAction::Warn);
    let r = pipeline(&src, sink.clone(), &state, policy, 10).run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["s"].written, r.streams["s"].dead_lettered), (2, 2));
}

/// A sink whose column `n` was made for numbers: a string there is `column_type` drift.
#[derive(Clone, Default)]
struct NumberColumnSink(MemorySink);

#[async_trait]
impl Sink for NumberColumnSink {
    fn kind(&self) -> &'static str {
        "number-column"
    }
    async fn check(&self, cx: &Cx) -> Result<(), Error> {
        self.0.check(cx).await
    }
    async fn open(&self, stream: &SinkStream, cx: &Cx) -> Result<(), Error> {
        self.0.open(stream, cx).await
    }
    async fn write(&self, batch: Batch, cx: &Cx) -> Result<WriteReport, Error> {
        let mut drift = Vec::new();
        let mut keep = Vec::new();
        for (i, r) in batch.records.iter().enumerate() {
            if r.data.get("n").is_some_and(Value::is_string) {
                let e = dovetail_core::drift::DriftEvent {
                    path: "/n".into(),
                    change: DriftClass::ColumnType,
                    expected: "number".into(),
                    observed: "string".into(),
                    count: 1,
                    first_seen: dovetail_core::now_rfc3339(),
                    first_at: r.whereabouts(),
                };
                drift.push((i, e));
                if batch.column_drift == ColumnDrift::Refuse {
                    continue;
                }
            }
            keep.push(r.clone());
        }
        let inner = Batch::new(batch.stream.clone(), keep.into());
        let mut wr = self.0.write(inner, cx).await?;
        wr.drift = drift;
        Ok(wr)
    }
}

#[tokio::test]
async fn a_value_that_no_longer_fits_its_sink_column_is_drift_handled_per_policy() {
    let records: Vec<Value> =
        (1..=6u64).map(|i| if i % 3 == 0 { json!({"id": i, "n": "many"}) } else { json!({"id": i, "n": i}) }).collect();
    let src = MemorySource::new("s", &["id"], records);
    let run = |policy: DriftPolicy| {
        let src = src.clone();
        async move {
            let (sink, state) = (NumberColumnSink::default(), MemoryState::default());
            let r = pipeline(&src, sink.clone(), &state, policy, 10).run(RunOptions::default()).await.unwrap();
            (r, sink.0.rows("s").len(), state)
        }
    };
    let (r, rows, state) = run(DriftPolicy::default()).await;
    let s = &r.streams["s"];
    assert_eq!((r.outcome, s.written, rows), (RunOutcome::Succeeded, 6, 6));
    let stored = state.drift_events(Some("p")).await.unwrap();
    assert_eq!((stored.len(), stored[0].change, stored[0].count), (1, DriftClass::ColumnType, 2));

    let (r, rows, state) = run(DriftPolicy::default().with(DriftClass::ColumnType, DriftAction::Quarantine)).await;
    let s = &r.streams["s"];
    assert_eq!((r.outcome, s.written, s.dead_lettered, rows), (RunOutcome::Succeeded, 4, 2, 4));
    let dead = state.dead_letters(Some("p"), None, 10).await.unwrap();
    assert_eq!((dead[0].kind.as_str(), dead[0].path.as_deref()), ("drift", Some("/n")));
    assert!(dead[0].reason.contains("/n: column_type (expected number, observed string)"), "{}", dead[0].reason);
    // The ledger does not know the refused records: a later run writes them once they fit.
    assert!(
        state
            .ledger_lookup("p", "s", &[dead[0].key.clone().map(dovetail_core::Key::from_canonical).unwrap()])
            .await
            .unwrap()[0]
            .is_none()
    );

    let (r, _, state) = run(DriftPolicy::all(DriftAction::Pause)).await;
    assert_eq!((r.outcome, r.exit_code), (RunOutcome::Paused, 9));
    assert!(r.streams["s"].paused.as_deref().unwrap().contains("/n: column_type"), "{r:?}");
    assert!(state.checkpoint("p", "s").await.unwrap().is_none(), "the batch with the drift is not committed");
    assert_eq!(state.paused(Some("p")).await.unwrap()[0].kind, PauseKind::Drift);
    assert_eq!(state.drift_events(Some("p")).await.unwrap()[0].count, 1);
}
