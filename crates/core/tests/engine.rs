//! Engine behaviour over the in-memory source, sink and state store.

use std::sync::Arc;

use async_trait::async_trait;
use dovetail_core::mapping::{CastType, Mapping};
use dovetail_core::testing::{MemorySink, MemorySource, MemoryState};
use dovetail_core::{
    Batch, CreateHint, Cx, DeleteMode, DeliveryStore, DriftClass, Error, OnUnavailable, Page, PauseKind, Pipeline,
    ReadRequest, RunOptions, RunOutcome, Sink, SinkStream, Source, StreamOptions, StreamSpec, SyncMode, WriteMode,
    WriteReport,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn people(n: u64) -> Vec<Value> {
    (1..=n).map(|i| json!({"id": i, "name": format!("p{i}"), "amount": "10.5"})).collect()
}

fn pipeline(src: &MemorySource, sink: &MemorySink, state: &MemoryState, opts: StreamOptions, batch: usize) -> Pipeline {
    Pipeline::builder("p")
        .source(src.clone())
        .sink(sink.clone())
        .state(state.clone())
        .stream("s", opts)
        .batch_size(batch)
        .build()
        .unwrap()
}

#[tokio::test]
async fn rerun_writes_nothing_and_changes_write_exactly_what_changed() {
    let (src, sink, state) =
        (MemorySource::new("s", &["id"], people(100)), MemorySink::default(), MemoryState::default());
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 7);
    let r1 = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r1.streams["s"].read, r1.streams["s"].written), (100, 100));
    let r2 = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r2.streams["s"].written, 0);
    assert_eq!(r2.streams["s"].skipped_unchanged, 100);
    let mut recs = people(100);
    for r in recs.iter_mut().take(10) {
        r["name"] = json!("changed");
    }
    src.set_records("s", recs);
    let r3 = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r3.streams["s"].written, r3.streams["s"].skipped_unchanged), (10, 90));
    assert_eq!(sink.writes("s"), 110);
    assert_eq!(sink.rows("s").iter().filter(|r| r["name"] == "changed").count(), 10);
    assert_eq!(r3.outcome, RunOutcome::Succeeded);
}

#[tokio::test]
async fn full_refresh_propagates_deletes() {
    let (src, sink, state) =
        (MemorySource::new("s", &["id"], people(20)), MemorySink::default(), MemoryState::default());
    let opts =
        StreamOptions { sync_mode: SyncMode::FullRefresh, delete_mode: DeleteMode::Delete, ..Default::default() };
    let p = pipeline(&src, &sink, &state, opts, 6);
    p.run(RunOptions::default()).await.unwrap();
    src.set_records("s", people(20).into_iter().filter(|r| r["id"].as_u64().unwrap() % 4 != 0).collect());
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.streams["s"].deleted, 5);
    assert_eq!(r.streams["s"].written, 0);
    let ids: Vec<u64> = sink.rows("s").iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 15);
    assert!(ids.iter().all(|i| i % 4 != 0));
    // A third run deletes nothing more.
    assert_eq!(p.run(RunOptions::default()).await.unwrap().streams["s"].deleted, 0);
}

/// `people(n)` with the given ids reported deleted by the source (tombstones).
fn with_tombstones(n: u64, gone: &[u64]) -> Vec<Value> {
    people(n)
        .into_iter()
        .map(|mut r| {
            if gone.contains(&r["id"].as_u64().unwrap()) {
                r[MemorySource::DELETED] = json!(true);
            }
            r
        })
        .collect()
}

fn ids(sink: &MemorySink) -> Vec<u64> {
    sink.rows("s").iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

/// An incremental stream deletes the keys its source reports deleted, counts them, forgets
/// them in the ledger (a key back later is written again), and a delete reported again
/// deletes nothing more.
#[tokio::test]
async fn incremental_streams_delete_what_the_source_reports_deleted() {
    let (src, sink, state) =
        (MemorySource::new("s", &["id"], people(10)), MemorySink::default(), MemoryState::default());
    let opts = StreamOptions { delete_mode: DeleteMode::Delete, ..Default::default() };
    let p = pipeline(&src, &sink, &state, opts, 4);
    p.run(RunOptions::default()).await.unwrap();
    src.set_records("s", with_tombstones(10, &[2, 7]));
    let s = p.run(RunOptions::default()).await.unwrap().streams["s"].clone();
    assert_eq!((s.read, s.written, s.deleted, s.skipped_unchanged), (8, 0, 2, 8), "{s:?}");
    assert_eq!(ids(&sink), [1, 10, 3, 4, 5, 6, 8, 9], "rows by key text");
    let s = p.run(RunOptions::default()).await.unwrap().streams["s"].clone();
    assert_eq!((s.written, s.deleted), (0, 0), "{s:?}");
    // Back at the source: the ledger forgot the key, so it is written again.
    src.set_records("s", with_tombstones(10, &[7]));
    let s = p.run(RunOptions::default()).await.unwrap().streams["s"].clone();
    assert_eq!((s.written, s.deleted, s.skipped_unchanged), (1, 0, 8), "{s:?}");
    assert!(ids(&sink).contains(&2));
}

/// Soft delete marks the row; `keep` ignores what the source reports deleted.
#[tokio::test]
async fn reported_deletes_follow_the_delete_mode() {
    let (src, sink, state) =
        (MemorySource::new("s", &["id"], people(3)), MemorySink::default(), MemoryState::default());
    let opts = StreamOptions { delete_mode: DeleteMode::SoftDelete, ..Default::default() };
    let p = pipeline(&src, &sink, &state, opts, 10);
    p.run(RunOptions::default()).await.unwrap();
    src.set_records("s", with_tombstones(3, &[3]));
    assert_eq!(p.run(RunOptions::default()).await.unwrap().streams["s"].deleted, 1);
    let rows = sink.rows("s");
    assert_eq!(
        rows.iter().filter(|r| r["_deleted"] == json!(true)).map(|r| r["id"].clone()).collect::<Vec<_>>(),
        [json!(3)]
    );

    let (src, sink, state) =
        (MemorySource::new("s", &["id"], people(3)), MemorySink::default(), MemoryState::default());
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 10);
    p.run(RunOptions::default()).await.unwrap();
    src.set_records("s", with_tombstones(3, &[3]));
    let s = p.run(RunOptions::default()).await.unwrap().streams["s"].clone();
    assert_eq!((s.read, s.deleted), (2, 0), "{s:?}");
    assert_eq!(ids(&sink), [1, 2, 3]);
}

/// A key written and then reported deleted in one batch is deleted, not written; deleted and
/// then back in a later page of the batch, it is written and not deleted. In a full refresh
/// the reported delete counts once (the pass's own delete propagation finds it gone).
#[tokio::test]
async fn a_reported_delete_and_a_record_of_the_same_key_keep_their_order() {
    let rows = vec![
        json!({"id": 1, "v": "a"}),
        json!({"id": 1, MemorySource::DELETED: true}),
        json!({"id": 2, MemorySource::DELETED: true}),
        json!({"id": 3, "v": "c"}),
        json!({"id": 2, "v": "back"}),
        json!({"id": 4, "v": "d"}),
    ];
    let (src, sink, state) = (MemorySource::new("s", &["id"], rows), MemorySink::default(), MemoryState::default());
    let opts =
        StreamOptions { sync_mode: SyncMode::FullRefresh, delete_mode: DeleteMode::Delete, ..Default::default() };
    // Pages of two merge into one batch of six.
    let p = pipeline(&src, &sink, &state, opts, 6);
    let s = p.run(RunOptions::default()).await.unwrap().streams["s"].clone();
    assert_eq!(ids(&sink), [2, 3, 4]);
    assert_eq!(sink.rows("s")[0]["v"], "back");
    assert_eq!((s.written, s.superseded), (3, 1), "{s:?}");
    // Nothing more on a rerun: the tombstone of 1 deletes nothing, 2 is unchanged.
    let s = p.run(RunOptions::default()).await.unwrap().streams["s"].clone();
    assert_eq!((s.written, s.deleted, s.skipped_unchanged), (0, 0, 3), "{s:?}");

    src.set_records(
        "s",
        vec![json!({"id": 2, "v": "back"}), json!({"id": 3, MemorySource::DELETED: true}), json!({"id": 4, "v": "d"})],
    );
    let s = p.run(RunOptions::default()).await.unwrap().streams["s"].clone();
    assert_eq!((s.written, s.deleted), (0, 1), "{s:?}");
    assert_eq!(ids(&sink), [2, 4]);
}

fn at(id: u64, t: u64) -> Value {
    json!({"id": id, "updated_at": format!("2024-01-01T00:00:{t:02}Z")})
}

#[tokio::test]
async fn records_sharing_a_cursor_value_across_checkpoints_are_neither_lost_nor_repeated() {
    let src = MemorySource::new("s", &["id"], vec![at(1, 1), at(2, 2), at(3, 3), at(4, 5), at(5, 5)])
        .with_cursor("s", "updated_at");
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 2);
    assert_eq!(p.run(RunOptions::default()).await.unwrap().streams["s"].written, 5);

    // New records share the boundary value 00:05 with already-delivered ids 4 and 5.
    let mut all = vec![at(1, 1), at(2, 2), at(3, 3), at(4, 5), at(5, 5), at(6, 5), at(7, 5), at(8, 6)];
    src.set_records("s", all.clone());
    let r = p.run(RunOptions::default()).await.unwrap();
    let s = &r.streams["s"];
    assert_eq!((s.read, s.filtered, s.written, s.skipped_unchanged), (5, 2, 3, 0), "{s:?}");

    // Interrupted inside a pass whose records all share 00:06.
    all.extend([at(9, 6), at(10, 6), at(11, 6)]);
    src.set_records("s", all);
    src.fail_at_page("s", Some(1));
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    assert_eq!(r.streams["s"].written, 1, "{:?}", r.streams["s"]);
    src.fail_at_page("s", None);
    let r = p.run(RunOptions::default()).await.unwrap();
    assert!(r.streams["s"].resumed);
    assert_eq!(r.streams["s"].written, 2);
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["s"].written, r.streams["s"].filtered), (0, 4));
    assert_eq!(sink.writes("s"), 11, "every record written exactly once");
    assert_eq!(sink.rows("s").len(), 11);
}

#[tokio::test]
async fn bad_records_go_to_dead_letters_and_replay_after_a_mapping_fix() {
    let mut recs = people(10);
    recs[2]["amount"] = json!("12,50");
    recs[5]["amount"] = json!("n/a");
    recs[7].as_object_mut().unwrap().remove("id");
    let (src, sink, state) = (MemorySource::new("s", &["id"], recs), MemorySink::default(), MemoryState::default());
    let strict = Mapping::builder().cast("amount", CastType::Number).build();
    let p = pipeline(&src, &sink, &state, StreamOptions { mapping: Some(Arc::new(strict)), ..Default::default() }, 4);
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["s"].written, r.streams["s"].dead_lettered), (7, 3));
    assert_eq!(r.outcome, RunOutcome::Succeeded);
    let dls = dovetail_core::HistoryStore::dead_letters(&state, Some("p"), None, 100).await.unwrap();
    assert_eq!(dls.len(), 3);
    let cast = dls.iter().find(|d| d.raw.contains("12,50")).unwrap();
    assert_eq!(cast.path.as_deref(), Some("amount"));
    assert!(
        cast.reason.contains("memory:s item 2") && cast.reason.contains("cannot cast a string \"12,50\" to number"),
        "{}",
        cast.reason
    );
    let nokey = dls.iter().find(|d| d.path.as_deref() == Some("id")).unwrap();
    assert!(nokey.reason.contains("missing primary key field `id`"), "{}", nokey.reason);

    // Fix: amounts become text; the record without an id still fails.
    let lenient = Mapping::builder().cast("amount", CastType::String).build();
    let fixed =
        pipeline(&src, &sink, &state, StreamOptions { mapping: Some(Arc::new(lenient)), ..Default::default() }, 4);
    let rr = fixed.replay_dead_letters(None, CancellationToken::new()).await.unwrap();
    assert_eq!((rr.streams["s"].written, rr.streams["s"].dead_lettered), (2, 1));
    let left = dovetail_core::HistoryStore::dead_letters(&state, Some("p"), None, 100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].path.as_deref(), Some("id"));
    assert_eq!(sink.rows("s").len(), 9);
}

#[tokio::test]
async fn dead_letter_threshold_fails_the_run_but_keeps_good_records() {
    let recs: Vec<Value> =
        (1..=50).map(|i| if i % 5 == 0 { json!({"id": i, "n": "x"}) } else { json!({"id": i, "n": "1"}) }).collect();
    let (src, sink, state) = (MemorySource::new("s", &["id"], recs), MemorySink::default(), MemoryState::default());
    let m = Mapping::builder().cast("n", CastType::Integer).build();
    let p = Pipeline::builder("p")
        .source(src)
        .sink(sink.clone())
        .state(state)
        .stream_mapping("s", m)
        .batch_size(10)
        .max_dead_letters(Some(3))
        .build()
        .unwrap();
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    assert_eq!(r.exit_code, dovetail_core::ErrorKind::Data.exit_code());
    assert!(r.error.as_deref().unwrap().contains("max_dead_letters = 3"));
    assert_eq!(r.streams["s"].dead_lettered, 4);
    assert_eq!(sink.rows("s").len(), 16, "the good records of the committed batches are kept");
}

#[tokio::test]
async fn dry_run_writes_and_commits_nothing() {
    let (src, sink, state) =
        (MemorySource::new("s", &["id"], people(12)), MemorySink::default(), MemoryState::default());
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 5);
    let r = p.run(RunOptions { dry_run: true, ..Default::default() }).await.unwrap();
    assert_eq!(r.streams["s"].written, 12);
    assert_eq!(sink.writes("s"), 0);
    assert!(dovetail_core::DeliveryStore::checkpoint(&state, "p", "s").await.unwrap().is_none());
    assert!(dovetail_core::HistoryStore::runs(&state, None, 10).await.unwrap().is_empty());
    assert_eq!(p.run(RunOptions::default()).await.unwrap().streams["s"].written, 12);
}

#[tokio::test]
async fn exact_numbers_survive_the_engine() {
    let rec: Value =
        serde_json::from_str(r#"{"id": 12345678901234567890, "price": 1234567890.12345678901234567890}"#).unwrap();
    let (src, sink, state) =
        (MemorySource::new("s", &["id"], vec![rec]), MemorySink::default(), MemoryState::default());
    let m = Mapping::builder().cast("price", CastType::Number).build();
    let p = pipeline(&src, &sink, &state, StreamOptions { mapping: Some(Arc::new(m)), ..Default::default() }, 5);
    p.run(RunOptions::default()).await.unwrap();
    let row = &sink.rows("s")[0];
    assert_eq!(row["id"].to_string(), "12345678901234567890");
    assert_eq!(row["price"].to_string(), "1234567890.12345678901234567890");
}

/// A source that asks the run to stop after serving `after` pages, like a SIGTERM would.
struct StopAfter(MemorySource, CancellationToken, u64);

#[async_trait]
impl Source for StopAfter {
    fn kind(&self) -> &'static str {
        "stop-after"
    }
    fn streams(&self) -> Vec<StreamSpec> {
        self.0.streams()
    }
    async fn check(&self, cx: &Cx) -> Result<(), Error> {
        self.0.check(cx).await
    }
    async fn read(&self, req: &ReadRequest, cx: &Cx) -> Result<Page, Error> {
        let page = self.0.read(req, cx).await;
        if self.0.pages_served() >= self.2 {
            self.1.cancel();
        }
        page
    }
}

#[tokio::test]
async fn cancellation_flushes_commits_and_resumes() {
    let src = MemorySource::new("s", &["id"], people(50));
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let cancel = CancellationToken::new();
    let p = Pipeline::builder("p")
        .source(StopAfter(src.clone(), cancel.clone(), 2))
        .sink(sink.clone())
        .state(state.clone())
        .batch_size(10)
        .build()
        .unwrap();
    let r = p.run(RunOptions { cancel, ..Default::default() }).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Interrupted);
    assert_eq!(r.exit_code, 130);
    let first = r.streams["s"].written;
    assert!((20..50).contains(&first), "pages read before the stop are flushed: {first}");
    let p2 = Pipeline::builder("p").source(src).sink(sink.clone()).state(state).batch_size(10).build().unwrap();
    let r2 = p2.run(RunOptions::default()).await.unwrap();
    assert!(r2.streams["s"].resumed);
    assert_eq!(r2.streams["s"].read, 50 - first);
    assert_eq!(sink.writes("s"), 50);
}

#[tokio::test]
async fn second_concurrent_run_is_refused() {
    let (src, sink, state) =
        (MemorySource::new("s", &["id"], people(1)), MemorySink::default(), MemoryState::default());
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 5);
    let _held = dovetail_core::DeliveryStore::lock(&state, "p").await.unwrap();
    let err = p.run(RunOptions::default()).await.err().unwrap();
    assert_eq!(*err.kind(), dovetail_core::ErrorKind::Busy);
    assert!(err.to_string().contains("already running"));
}

#[tokio::test]
async fn an_initial_load_skips_lookups_and_a_repeated_key_keeps_its_last_record() {
    // Same key twice in one batch of an initial load: the earlier record is superseded (not
    // written), the last one wins, and the next run finds everything unchanged.
    let recs = vec![json!({"id": 1, "v": "a"}), json!({"id": 2, "v": "b"}), json!({"id": 1, "v": "c"})];
    let (src, sink, state) = (MemorySource::new("s", &["id"], recs), MemorySink::default(), MemoryState::default());
    assert!(!dovetail_core::DeliveryStore::has_ledger(&state, "p", "s").await.unwrap());
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 10);
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["s"].written, r.streams["s"].superseded), (2, 1));
    assert_eq!(sink.rows("s"), vec![json!({"id": 1, "v": "c"}), json!({"id": 2, "v": "b"})]);
    assert!(dovetail_core::DeliveryStore::has_ledger(&state, "p", "s").await.unwrap());
    src.set_records("s", vec![json!({"id": 2, "v": "b"}), json!({"id": 1, "v": "c"})]);
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["s"].written, r.streams["s"].skipped_unchanged), (0, 2));
}

#[tokio::test]
async fn more_repeated_keys_than_can_be_held_still_end_with_their_last_records() {
    // Six keys, each twice, the second versions after all the first ones, in batches of 2:
    // a rerun holds at most one batch's worth of earlier records, writes the overflow, and
    // the sink still ends with every key's last record; nothing is ever left behind.
    let recs: Vec<Value> =
        ["a", "b"].iter().flat_map(|v| (1..=6).map(move |i| json!({"id": i, "v": format!("{v}{i}")}))).collect();
    let (src, sink, state) = (MemorySource::new("s", &["id"], recs), MemorySink::default(), MemoryState::default());
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 2);
    for run in 1..=4 {
        let r = p.run(RunOptions::default()).await.unwrap();
        let last: Vec<Value> = (1..=6).map(|i| json!({"id": i, "v": format!("b{i}")})).collect();
        assert_eq!(sink.rows("s"), last, "run {run}: {:?}", r.streams["s"]);
        assert_eq!(r.streams["s"].read, 12);
    }
}

#[tokio::test]
async fn a_key_that_starts_repeating_ends_with_its_last_record_and_then_writes_nothing() {
    // The ledger knows key 1 as `second`; the source now has `first` three batches before it.
    let (src, sink, state) = (
        MemorySource::new("s", &["id"], vec![json!({"id": 1, "v": "second"})]),
        MemorySink::default(),
        MemoryState::default(),
    );
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 2);
    p.run(RunOptions::default()).await.unwrap();
    let mut recs = vec![json!({"id": 1, "v": "first"})];
    recs.extend((2..=7).map(|i| json!({"id": i, "v": "x"})));
    recs.push(json!({"id": 1, "v": "second"}));
    src.set_records("s", recs);
    for run in 1..=3 {
        let r = p.run(RunOptions::default()).await.unwrap();
        let s = &r.streams["s"];
        assert_eq!(sink.rows("s")[0], json!({"id": 1, "v": "second"}), "run {run}: {s:?}");
        if run > 1 {
            assert_eq!((s.written, s.superseded, s.skipped_unchanged), (0, 1, 7), "run {run}: {s:?}");
        }
    }
}

#[tokio::test]
async fn no_checkpoint_passes_a_held_record_of_an_incremental_stream() {
    // Key 1 repeats in the first pass (t=1 and t=8), so the ledger marks it repeated. In the
    // next pass its new version (t=10) is held back while later records are written; the
    // run fails at a later page. The committed checkpoint must not pass the held record: the
    // next run reads it again and, it being the last version, writes it.
    let v =
        |id: u64, t: u64, name: &str| json!({"id": id, "updated_at": format!("2024-01-01T00:00:{t:02}Z"), "v": name});
    let mut first = vec![v(1, 1, "first")];
    first.extend((2..=7).map(|i| v(i, i, "x")));
    first.push(v(1, 8, "second"));
    let (src, sink, state) = (
        MemorySource::new("s", &["id"], first.clone()).with_cursor("s", "updated_at"),
        MemorySink::default(),
        MemoryState::default(),
    );
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 2);
    p.run(RunOptions::default()).await.unwrap();
    assert_eq!(sink.rows("s")[0]["v"], "second");

    let mut second = first;
    second.push(v(1, 10, "third"));
    second.extend((20..=27).map(|i| v(i, i + 1, "y")));
    src.set_records("s", second);
    // Pages of 2 after the floor (t=8, inclusive): [1@8, 1@10], [20, 21], [22, 23], [24, 25]…
    src.fail_at_page("s", Some(3));
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.streams["s"].outcome, RunOutcome::Failed, "{:?}", r.streams["s"]);
    assert_eq!(sink.rows("s")[0]["v"], "second", "a held record is not written by a run that stops early");
    assert!(sink.rows("s").iter().any(|r| r["id"] == 23), "the records after it were delivered");
    let cp = state.checkpoint("p", "s").await.unwrap().unwrap();
    assert!(!cp.pass_complete);
    assert_eq!(cp.position, None, "the checkpoint stays before the held record's page: {cp:?}");

    src.fail_at_page("s", None);
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.streams["s"].outcome, RunOutcome::Succeeded);
    assert_eq!(sink.rows("s")[0]["v"], "third", "{:?}", r.streams["s"]);
    assert_eq!(sink.rows("s").len(), 7 + 8);
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.streams["s"].written, 0, "{:?}", r.streams["s"]);
}

#[tokio::test]
async fn from_backfills_an_incremental_stream_and_the_ledger_absorbs_the_overlap() {
    let src = MemorySource::new("s", &["id"], (1..=6).map(|i| at(i, i)).collect()).with_cursor("s", "updated_at");
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 2);
    assert_eq!(p.run(RunOptions::default()).await.unwrap().streams["s"].written, 6);
    // A normal rerun reads only from the checkpoint's cursor (the boundary record is filtered).
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["s"].read, r.streams["s"].written), (1, 0));

    // One old record changed without its cursor moving: only a backfill can see it.
    let mut recs: Vec<Value> = (1..=6).map(|i| at(i, i)).collect();
    recs[2]["name"] = json!("fixed");
    src.set_records("s", recs);
    let opts = RunOptions { from: Some(json!("2024-01-01T00:00:03Z")), ..Default::default() };
    let r = p.run(opts).await.unwrap();
    let s = &r.streams["s"];
    assert_eq!((s.read, s.written, s.skipped_unchanged), (4, 1, 3), "{s:?}");
    assert_eq!(sink.rows("s").iter().filter(|r| r["name"] == "fixed").count(), 1);
    // The checkpoint is back at the maximum: the next run reads from there again.
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["s"].read, r.streams["s"].written), (1, 0));

    // `--from` on a stream without a cursor is refused, naming the stream.
    let plain = MemorySource::new("s", &["id"], people(3));
    let p = pipeline(&plain, &sink, &MemoryState::default(), StreamOptions::default(), 2);
    let opts = RunOptions { from: Some(json!(1)), streams: vec!["s".into()], ..Default::default() };
    let e = p.run(opts).await.expect_err("refused");
    assert!(e.to_string().contains("stream `s`") && e.to_string().contains("cursor"), "{e}");
}

/// A create-only sink that remembers the hints it was given and answers with destination ids.
#[derive(Clone, Default)]
struct CreateSink {
    seen: Arc<std::sync::Mutex<Vec<(String, CreateHint)>>>,
}

#[async_trait]
impl Sink for CreateSink {
    fn kind(&self) -> &'static str {
        "create"
    }
    fn write_mode(&self) -> WriteMode {
        WriteMode::CreateWithIdempotencyKey
    }
    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        Ok(())
    }
    async fn open(&self, _s: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        Ok(())
    }
    async fn write(&self, batch: Batch, _cx: &Cx) -> Result<WriteReport, Error> {
        assert_eq!(batch.hints.len(), batch.records.len());
        let mut seen = self.seen.lock().unwrap();
        let mut dest_ids = Vec::new();
        for (r, h) in batch.records.iter().zip(batch.hints.iter()) {
            let key = r.key.as_ref().unwrap().as_str().to_owned();
            dest_ids.push(Some(h.dest_id.clone().unwrap_or_else(|| format!("obj-{key}"))));
            seen.push((key, h.clone()));
        }
        Ok(WriteReport { written: batch.records.len() as u64, dest_ids, ..Default::default() })
    }
}

#[tokio::test]
async fn create_only_sinks_get_stable_idempotency_keys_and_the_destination_ids_of_earlier_runs() {
    let src = MemorySource::new("s", &["id"], people(3));
    let (sink, state) = (CreateSink::default(), MemoryState::default());
    let p = Pipeline::builder("p").source(src.clone()).sink(sink.clone()).state(state.clone()).build().unwrap();
    p.run(RunOptions::default()).await.unwrap();
    let first: Vec<(String, CreateHint)> = sink.seen.lock().unwrap().drain(..).collect();
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|(_, h)| h.dest_id.is_none() && h.idempotency_key.starts_with("dt-")));

    // The same content under a fresh ledger (a crash before the commit) gets the same keys.
    let again = Pipeline::builder("p").source(src.clone()).sink(sink.clone()).state(MemoryState::default());
    again.build().unwrap().run(RunOptions::default()).await.unwrap();
    let replayed: Vec<(String, CreateHint)> = sink.seen.lock().unwrap().drain(..).collect();
    assert_eq!(replayed, first);

    // A changed record: a new key, and the destination id the first run stored.
    let mut recs = people(3);
    recs[1]["name"] = json!("changed");
    src.set_records("s", recs);
    p.run(RunOptions::default()).await.unwrap();
    let changed: Vec<(String, CreateHint)> = sink.seen.lock().unwrap().drain(..).collect();
    assert_eq!(changed.len(), 1);
    let (key, hint) = &changed[0];
    assert_eq!(hint.dest_id.as_deref(), Some(format!("obj-{key}").as_str()));
    let old = &first.iter().find(|(k, _)| k == key).unwrap().1;
    assert_ne!(hint.idempotency_key, old.idempotency_key);
}

#[tokio::test]
async fn pause_stops_a_stream_whose_source_is_down_and_the_next_run_probes_and_resumes() {
    let src = MemorySource::new("s", &["id"], people(10));
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let opts = StreamOptions { on_unavailable: OnUnavailable::Pause, ..Default::default() };
    let p = pipeline(&src, &sink, &state, opts, 3);
    src.fail_at_page("s", Some(2));
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Paused);
    assert_eq!(r.exit_code, dovetail_core::ErrorKind::Transient.exit_code());
    let s = &r.streams["s"];
    assert_eq!((s.outcome, s.written), (RunOutcome::Paused, 6));
    assert!(s.paused.as_ref().unwrap().contains("injected failure"), "{s:?}");
    let paused = state.paused(Some("p")).await.unwrap();
    assert_eq!((paused.len(), paused[0].kind), (1, PauseKind::Unavailable));

    // Still down: still paused, nothing lost. Back: resumes at the checkpoint and unpauses.
    assert_eq!(p.run(RunOptions::default()).await.unwrap().outcome, RunOutcome::Paused);
    src.fail_at_page("s", None);
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.outcome, r.streams["s"].written), (RunOutcome::Succeeded, 4));
    assert!(r.streams["s"].resumed);
    assert!(state.paused(None).await.unwrap().is_empty());
    assert_eq!(sink.writes("s"), 10);
}

#[tokio::test]
async fn records_for_a_down_sink_wait_in_the_outbox_and_the_next_run_delivers_them_first_in_order() {
    let src = MemorySource::new("s", &["id"], people(7));
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 3);
    sink.fail_writes(true);
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Failed);
    let s = &r.streams["s"];
    assert_eq!((s.written, s.outbox_queued, s.outbox_pending), (0, 7, 7), "{s:?}");
    assert!(s.error.as_ref().unwrap().contains("7 records wait in the outbox"), "{s:?}");
    let queued: Vec<u64> =
        state.outbox("p", "s", 100).await.unwrap().iter().map(|e| e.data["id"].as_u64().unwrap()).collect();
    assert_eq!(queued, (1..=7).collect::<Vec<_>>());
    // The checkpoint passed the queued records: the source is not read again for them.
    let cp = state.checkpoint("p", "s").await.unwrap().unwrap();
    assert!(cp.pass_complete);

    // The sink is back: the outbox is delivered first, so the new pass finds every record
    // in the ledger and writes nothing twice.
    sink.fail_writes(false);
    let r = p.run(RunOptions::default()).await.unwrap();
    let s = &r.streams["s"];
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!((s.outbox_delivered, s.outbox_pending, s.skipped_unchanged), (7, 0, 7), "{s:?}");
    assert_eq!(sink.writes("s"), 7, "each record written exactly once");
    assert_eq!(sink.rows("s").len(), 7);
}

#[tokio::test]
async fn a_full_outbox_stops_the_stream_at_its_checkpoint() {
    let src = MemorySource::new("s", &["id"], people(10));
    let (sink, state) = (MemorySink::default(), MemoryState::default());
    let p = Pipeline::builder("p")
        .source(src.clone())
        .sink(sink.clone())
        .state(state.clone())
        .batch_size(3)
        .outbox_max(5)
        .stream("s", StreamOptions { on_unavailable: OnUnavailable::Pause, ..Default::default() })
        .build()
        .unwrap();
    sink.fail_writes(true);
    let r = p.run(RunOptions::default()).await.unwrap();
    let s = &r.streams["s"];
    assert_eq!((r.outcome, s.outbox_queued, s.outbox_pending), (RunOutcome::Paused, 3, 3), "{s:?}");
    assert!(s.paused.as_ref().unwrap().contains("outbox is full"), "{s:?}");
    sink.fail_writes(false);
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!((sink.rows("s").len(), sink.writes("s")), (10, 10));
}

#[tokio::test]
async fn a_field_that_changes_type_is_reported_once_with_its_path_and_count() {
    let mut recs = people(20);
    for r in recs.iter_mut().skip(10) {
        r["amount"] = json!(12.5);
        r["owner"] = json!({"login": 7});
    }
    for r in recs.iter_mut().take(10) {
        r["owner"] = json!({"login": "x"});
    }
    let (src, sink, state) = (MemorySource::new("s", &["id"], recs), MemorySink::default(), MemoryState::default());
    let r = pipeline(&src, &sink, &state, StreamOptions::default(), 5).run(RunOptions::default()).await.unwrap();
    let s = &r.streams["s"];
    assert_eq!((r.outcome, s.written), (RunOutcome::Succeeded, 20), "drift warns, it does not stop the stream");
    let got: Vec<(&str, DriftClass, &str, &str, u64)> = s
        .drift
        .iter()
        .map(|e| (e.path.as_str(), e.change, e.expected.as_str(), e.observed.as_str(), e.count))
        .collect();
    assert_eq!(
        got,
        [
            ("/amount", DriftClass::TypeChanged, "string", "number", 10),
            ("/owner/login", DriftClass::TypeChanged, "string", "integer", 10)
        ]
    );
    assert!(s.drift[0].first_at.contains("item 10"), "{:?}", s.drift[0]);
}

#[tokio::test]
async fn a_lookback_window_catches_a_record_whose_timestamp_lagged_and_skips_the_rest() {
    let late = |lookback: Option<u64>| async move {
        let mut src =
            MemorySource::new("s", &["id"], (1..=5).map(|i| at(i, i * 10)).collect()).with_cursor("s", "updated_at");
        if let Some(secs) = lookback {
            src = src.with_lookback("s", std::time::Duration::from_secs(secs));
        }
        let (sink, state) = (MemorySink::default(), MemoryState::default());
        let p = pipeline(&src, &sink, &state, StreamOptions::default(), 2);
        assert_eq!(p.run(RunOptions::default()).await.unwrap().streams["s"].written, 5);
        // Record 6 shows up late, stamped before the last run's maximum (00:00:50).
        let mut recs: Vec<Value> = (1..=5).map(|i| at(i, i * 10)).collect();
        recs.push(at(6, 45));
        src.set_records("s", recs);
        let r = p.run(RunOptions::default()).await.unwrap();
        (r.streams["s"].clone(), sink.rows("s").len())
    };
    // Without a lookback the late record is below the cursor and never delivered.
    let (s, rows) = late(None).await;
    assert_eq!((s.written, rows), (0, 5), "{s:?}");
    // A 15 s lookback re-reads 00:00:35 onward: the late record is written, the margin's
    // already-delivered record (00:00:40) is skipped by the ledger.
    let (s, rows) = late(Some(15)).await;
    assert_eq!((s.written, s.skipped_unchanged, rows), (1, 2, 6), "{s:?}");
}

/// `limit` stops a stream inside its pass: what was read is written and committed, the page
/// the limit cut is read again by the next run, no more pages are fetched, and neither the
/// cursor floor nor deletes move until a run completes the pass.
#[tokio::test]
async fn a_limited_run_stops_inside_the_pass_without_deletes_or_a_moved_floor() {
    let (src, sink, state) =
        (MemorySource::new("s", &["id"], people(20)), MemorySink::default(), MemoryState::default());
    let opts =
        StreamOptions { sync_mode: SyncMode::FullRefresh, delete_mode: DeleteMode::Delete, ..Default::default() };
    let p = pipeline(&src, &sink, &state, opts, 6);
    let r = p.run(RunOptions { limit: Some(8), ..Default::default() }).await.unwrap();
    let s = &r.streams["s"];
    assert_eq!((s.read, s.written, s.deleted), (8, 8, 0), "{s:?}");
    assert!(s.limited && r.outcome == RunOutcome::Succeeded && r.exit_code == 0, "{r:?}");
    assert_eq!(src.pages_served(), 2, "no page past the limit is fetched");
    let cp = state.checkpoint("p", "s").await.unwrap().unwrap();
    assert!(!cp.pass_complete, "{cp:?}");
    assert_eq!(cp.position, Some(json!({"offset": 6})), "the cut page is read again");

    // The rest of the pass completes the first load.
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!((r.streams["s"].written, r.streams["s"].skipped_unchanged), (12, 2), "{:?}", r.streams["s"]);
    assert!(r.streams["s"].resumed && !r.streams["s"].limited);
    assert_eq!(sink.rows("s").len(), 20);

    // Records gone from the source are not deleted by a limited pass, only by a complete one.
    src.set_records("s", people(20).into_iter().filter(|r| r["id"].as_u64().unwrap() % 4 != 0).collect());
    let r = p.run(RunOptions { limit: Some(14), ..Default::default() }).await.unwrap();
    assert_eq!((r.streams["s"].read, r.streams["s"].deleted), (14, 0), "{:?}", r.streams["s"]);
    assert!(r.streams["s"].limited);
    assert_eq!(sink.rows("s").len(), 20);
    // A limit the pass ends within is a complete pass.
    let r = p.run(RunOptions { limit: Some(100), ..Default::default() }).await.unwrap();
    assert_eq!((r.streams["s"].deleted, r.streams["s"].limited), (5, false), "{:?}", r.streams["s"]);
    assert_eq!(sink.rows("s").len(), 15);
}

/// An incremental stream's cursor floor stays where it was after a limited run.
#[tokio::test]
async fn a_limited_run_keeps_the_cursor_floor() {
    let recs: Vec<Value> = (1..=10).map(|i| at(i, i)).collect();
    let (src, sink, state) = (
        MemorySource::new("s", &["id"], recs).with_cursor("s", "updated_at"),
        MemorySink::default(),
        MemoryState::default(),
    );
    let p = pipeline(&src, &sink, &state, StreamOptions::default(), 4);
    let r = p.run(RunOptions { limit: Some(5), ..Default::default() }).await.unwrap();
    assert!(r.streams["s"].limited);
    let cp = state.checkpoint("p", "s").await.unwrap().unwrap();
    assert!(!cp.pass_complete && cp.floor.is_none(), "{cp:?}");
    let r = p.run(RunOptions::default()).await.unwrap();
    assert_eq!(r.streams["s"].written, 5, "{:?}", r.streams["s"]);
    let cp = state.checkpoint("p", "s").await.unwrap().unwrap();
    assert!(cp.pass_complete && cp.floor.is_some(), "{cp:?}");
}

/// A create-only sink that records a pending create through `Cx::pending` before each
/// create, and answers an id for every record but `id = 2` (whose outcome it leaves unknown).
struct PendingSink;

#[async_trait]
impl Sink for PendingSink {
    fn kind(&self) -> &'static str {
        "pending"
    }
    fn write_mode(&self) -> WriteMode {
        WriteMode::CreateWithIdempotencyKey
    }
    async fn check(&self, _cx: &Cx) -> Result<(), Error> {
        Ok(())
    }
    async fn open(&self, _s: &SinkStream, _cx: &Cx) -> Result<(), Error> {
        Ok(())
    }
    async fn write(&self, batch: Batch, cx: &Cx) -> Result<WriteReport, Error> {
        let store = cx.pending.as_ref().expect("the engine hands a run's sink its pending creates");
        let mut report = WriteReport::default();
        for (r, hint) in batch.records.iter().zip(batch.hints.iter()) {
            let key = r.key.clone().unwrap();
            let p = dovetail_core::state::PendingCreate {
                key: key.clone(),
                idempotency_key: hint.idempotency_key.clone(),
                since: dovetail_core::now_rfc3339(),
            };
            store.record(&batch.stream.name, &p).await?;
            let unknown = r.data["id"] == json!(2);
            report.dest_ids.push((!unknown).then(|| format!("obj_{}", key.as_str())));
            report.written += 1;
        }
        Ok(report)
    }
}

/// A sink's pending creates are cleared by the engine once the commit holding the
/// destination id is done; one whose id never came stays pending.
#[tokio::test]
async fn pending_creates_are_cleared_once_their_ids_are_committed() {
    let (src, state) = (MemorySource::new("s", &["id"], people(4)), MemoryState::default());
    let p = Pipeline::builder("p")
        .source(src)
        .sink(PendingSink)
        .state(state.clone())
        .stream("s", StreamOptions::default())
        .batch_size(2)
        .build()
        .unwrap();
    p.run(RunOptions::default()).await.unwrap();
    let keys: Vec<dovetail_core::Key> = (1..=4).map(|i| dovetail_core::Key::from_parts(&[&json!(i)])).collect();
    let pending = state.pending_creates("p", "s", &keys).await.unwrap();
    let still: Vec<bool> = pending.iter().map(Option::is_some).collect();
    assert_eq!(still, [false, true, false, false]);
}
