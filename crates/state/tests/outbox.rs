//! The durable outbox and paused streams of `SqliteState` (schema migration 3).

use dovetail_core::state::{Checkpoint, Commit, DeliveryStore, LedgerEntry, OutboxEntry, PausedStream, StateStore};
use dovetail_core::testing::MemoryState;
use dovetail_core::{ContentHash, ErrorKind, Key, PauseKind};
use dovetail_state::SqliteState;
use serde_json::{Value, json};

fn key(s: &str) -> Key {
    Key::from_canonical(s)
}

fn hash(n: u8) -> ContentHash {
    ContentHash([n; 16])
}

fn commit_to(pipeline: &str, stream: &str) -> Commit {
    Commit { pipeline: pipeline.into(), stream: stream.into(), pass: 1, ..Commit::default() }
}

/// An entry as the engine queues it (id 0: not stored yet).
fn queued(k: &str) -> OutboxEntry {
    OutboxEntry {
        id: 0,
        key: key(k),
        hash: hash(k.len() as u8),
        data: json!({"id": k, "n": 1}),
        location: Some(format!("GET /v1/items item {k}")),
    }
}

fn add(pipeline: &str, stream: &str, keys: &[&str]) -> Commit {
    Commit { outbox_add: keys.iter().map(|k| queued(k)).collect(), ..commit_to(pipeline, stream) }
}

fn done(pipeline: &str, stream: &str, ids: &[i64]) -> Commit {
    Commit { outbox_done: ids.to_vec(), ..commit_to(pipeline, stream) }
}

fn checkpoint(pos: Value) -> Checkpoint {
    Checkpoint { position: Some(pos), pass: 1, ..Checkpoint::default() }
}

fn pause(pipeline: &str, stream: &str, kind: PauseKind) -> PausedStream {
    PausedStream {
        pipeline: pipeline.into(),
        stream: stream.into(),
        kind,
        reason: format!("{pipeline}/{stream}: sink down"),
        since: "2025-01-02T03:04:05Z".into(),
        until: None,
        location: None,
    }
}

async fn keys_of(st: &dyn StateStore, pipeline: &str, stream: &str) -> Vec<String> {
    st.outbox(pipeline, stream, usize::MAX).await.unwrap().into_iter().map(|e| e.key.as_str().to_owned()).collect()
}

async fn ids_of(st: &dyn StateStore, pipeline: &str, stream: &str) -> Vec<i64> {
    st.outbox(pipeline, stream, usize::MAX).await.unwrap().into_iter().map(|e| e.id).collect()
}

fn increasing(ids: &[i64]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1]) && ids.iter().all(|&id| id > 0)
}

#[tokio::test]
async fn outbox_keeps_queue_order_and_ids_increase_across_commits() {
    let dir = tempfile::tempdir().unwrap();
    let st = SqliteState::open(dir.path().join("state.db")).unwrap();
    assert!(st.outbox("p", "s", 10).await.unwrap().is_empty(), "a stream never committed has an empty outbox");
    assert_eq!(st.outbox_len("p", "s").await.unwrap(), 0);

    st.commit(add("p", "s", &["c", "a", "b"])).await.unwrap();
    st.commit(add("p", "s", &["e", "d"])).await.unwrap();
    assert_eq!(keys_of(&st, "p", "s").await, ["c", "a", "b", "e", "d"], "queue order, not key order");
    let ids = ids_of(&st, "p", "s").await;
    assert!(increasing(&ids), "{ids:?}");
    assert_eq!(st.outbox_len("p", "s").await.unwrap(), 5);

    // `limit` takes the oldest.
    let first = st.outbox("p", "s", 2).await.unwrap();
    assert_eq!(first.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..2]);
    assert!(st.outbox("p", "s", 0).await.unwrap().is_empty());

    // Everything stored comes back as queued, with its new id.
    let all = st.outbox("p", "s", 10).await.unwrap();
    assert_eq!(all[0], OutboxEntry { id: ids[0], ..queued("c") });

    // Deliver the newest and the second: a later entry still gets a larger id than any
    // before it (ids are never reused), and the rest keep their order.
    let mut c = done("p", "s", &[ids[4], ids[1]]);
    c.outbox_add = vec![queued("f")];
    st.commit(c).await.unwrap();
    assert_eq!(keys_of(&st, "p", "s").await, ["c", "b", "e", "f"]);
    let after = ids_of(&st, "p", "s").await;
    assert!(increasing(&after), "{after:?}");
    assert!(after[3] > ids[4], "the id of the delivered newest entry is not reused: {after:?} vs {ids:?}");

    // The same commit may deliver entries and queue new ones; a drained outbox stays usable.
    st.commit(done("p", "s", &after)).await.unwrap();
    assert_eq!(st.outbox_len("p", "s").await.unwrap(), 0);
    st.commit(add("p", "s", &["g"])).await.unwrap();
    let g = ids_of(&st, "p", "s").await;
    assert!(g[0] > after[3], "{g:?} after {after:?}");
}

#[tokio::test]
async fn outbox_done_removes_exactly_the_named_ids_and_only_of_its_stream() {
    let st = SqliteState::open_in_memory().unwrap();
    st.commit(add("p", "s", &["s1", "s2", "s3"])).await.unwrap();
    st.commit(add("p", "t", &["t1", "t2"])).await.unwrap();
    st.commit(add("q", "s", &["q1"])).await.unwrap();
    let s = ids_of(&st, "p", "s").await;
    let t = ids_of(&st, "p", "t").await;
    let q = ids_of(&st, "q", "s").await;

    // Stream p/s names one of its own ids, ids of p/t and q/s, and an id that never existed.
    st.commit(done("p", "s", &[s[1], t[0], q[0], 999_999])).await.unwrap();
    assert_eq!(keys_of(&st, "p", "s").await, ["s1", "s3"]);
    assert_eq!(keys_of(&st, "p", "t").await, ["t1", "t2"], "another stream's ids are left alone");
    assert_eq!(keys_of(&st, "q", "s").await, ["q1"], "another pipeline's ids are left alone");

    // Naming an id twice, or again later, is harmless.
    st.commit(done("p", "s", &[s[0], s[0]])).await.unwrap();
    st.commit(done("p", "s", &[s[0]])).await.unwrap();
    assert_eq!(keys_of(&st, "p", "s").await, ["s3"]);
    // A stream never committed before may name ids too (it registers, removes nothing).
    st.commit(done("p", "new", &[t[1]])).await.unwrap();
    assert_eq!(keys_of(&st, "p", "t").await, ["t1", "t2"]);
    assert_eq!(st.outbox_len("p", "new").await.unwrap(), 0);
}

#[tokio::test]
async fn outbox_streams_and_pipelines_are_kept_apart() {
    let st = SqliteState::open_in_memory().unwrap();
    st.commit(add("p", "s", &["1", "2"])).await.unwrap();
    st.commit(add("p", "t", &["3"])).await.unwrap();
    st.commit(add("q", "s", &["4", "5", "6"])).await.unwrap();
    // A stream with a checkpoint but nothing queued.
    st.commit(Commit { checkpoint: Some(checkpoint(json!(1))), ..commit_to("q", "t") }).await.unwrap();

    assert_eq!(keys_of(&st, "p", "s").await, ["1", "2"]);
    assert_eq!(keys_of(&st, "p", "t").await, ["3"]);
    assert_eq!(keys_of(&st, "q", "s").await, ["4", "5", "6"]);
    assert!(keys_of(&st, "q", "t").await.is_empty());
    assert!(keys_of(&st, "r", "s").await.is_empty());
    let lens = [("p", "s", 2), ("p", "t", 1), ("q", "s", 3), ("q", "t", 0), ("r", "s", 0)];
    for (p, s, n) in lens {
        assert_eq!(st.outbox_len(p, s).await.unwrap(), n, "{p}/{s}");
    }
    // Ids are global, so they increase across streams too.
    let mut all = ids_of(&st, "p", "s").await;
    all.extend(ids_of(&st, "p", "t").await);
    all.extend(ids_of(&st, "q", "s").await);
    assert!(increasing(&all), "{all:?}");
}

#[tokio::test]
async fn outbox_and_checkpoint_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let st = SqliteState::open(&path).unwrap();
    let mut c = add("p", "s", &["1", "2"]);
    c.ledger = vec![LedgerEntry { key: key("0"), hash: hash(9), dest_id: None }];
    c.checkpoint = Some(checkpoint(json!({"page": 2})));
    st.commit(c).await.unwrap();

    // Another handle on the file sees the queued batch and the checkpoint that passes it.
    let other = SqliteState::open(&path).unwrap();
    assert_eq!(keys_of(&other, "p", "s").await, ["1", "2"]);
    assert_eq!(other.checkpoint("p", "s").await.unwrap(), Some(checkpoint(json!({"page": 2}))));
    assert_eq!(other.ledger_lookup("p", "s", &[key("0")]).await.unwrap(), vec![Some(hash(9))]);
    let before = other.outbox("p", "s", 10).await.unwrap();

    // Make the checkpoint, the last statement of a commit, fail: the outbox must not move.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER boom BEFORE UPDATE ON checkpoints WHEN NEW.checkpoint LIKE '%boom%'
           BEGIN SELECT RAISE(ABORT, 'forced failure'); END;",
    )
    .unwrap();
    let mut c = add("p", "s", &["3"]);
    c.outbox_done = vec![before[0].id];
    c.checkpoint = Some(checkpoint(json!("boom")));
    let err = st.commit(c).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Internal);
    assert!(err.report().contains("forced failure"), "{}", err.report());
    assert_eq!(st.outbox("p", "s", 10).await.unwrap(), before, "neither removed nor added");
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), Some(checkpoint(json!({"page": 2}))));

    // And a failing outbox insert (a hash of the wrong size cannot be built, so use a trigger
    // again) takes the checkpoint and the ledger down with it.
    conn.execute_batch(
        "CREATE TRIGGER boom_outbox BEFORE INSERT ON outbox WHEN NEW.key = 'bad'
           BEGIN SELECT RAISE(ABORT, 'outbox refused'); END;",
    )
    .unwrap();
    let mut c = add("p", "s", &["4", "bad"]);
    c.ledger = vec![LedgerEntry { key: key("0"), hash: hash(1), dest_id: None }];
    c.checkpoint = Some(checkpoint(json!({"page": 3})));
    let err = st.commit(c).await.unwrap_err();
    assert!(err.report().contains("outbox refused"), "{}", err.report());
    assert_eq!(st.outbox("p", "s", 10).await.unwrap(), before);
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), Some(checkpoint(json!({"page": 2}))));
    assert_eq!(st.ledger_lookup("p", "s", &[key("0")]).await.unwrap(), vec![Some(hash(9))]);

    // The store works afterwards.
    let mut c = done("p", "s", &[before[0].id]);
    c.checkpoint = Some(checkpoint(json!({"page": 4})));
    st.commit(c).await.unwrap();
    assert_eq!(keys_of(&other, "p", "s").await, ["2"]);
    assert_eq!(other.checkpoint("p", "s").await.unwrap(), Some(checkpoint(json!({"page": 4}))));
}

#[tokio::test]
async fn outbox_records_round_trip_exactly_numbers_included() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let text = r#"{"big":98765432109876543210,"neg":-12345678901234567890123,"dec":123456789012345.678901234567890123,"tiny":0.000000000000000000000000000001,"exp":1.5e400,"f":0.1,"zero":-0.0,"s":"été \"quoted\" \n\u0000","nested":{"a":[1,2.50,{"b":null}],"t":true},"empty":{}}"#;
    let data: Value = serde_json::from_str(text).unwrap();
    let entries = vec![
        OutboxEntry {
            id: 0,
            key: key(r#"[98765432109876543210,"x"]"#),
            hash: hash(1),
            data: data.clone(),
            location: None,
        },
        OutboxEntry { id: 0, key: key("2"), hash: ContentHash(*b"0123456789abcdef"), data: json!([]), location: None },
        OutboxEntry {
            id: 0,
            key: key("3"),
            hash: hash(3),
            data: json!("just a string"),
            location: Some(String::new()),
        },
    ];
    let st = SqliteState::open(&path).unwrap();
    st.commit(Commit { outbox_add: entries.clone(), ..commit_to("p", "s") }).await.unwrap();

    let got = st.outbox("p", "s", 10).await.unwrap();
    assert_eq!(got.len(), 3);
    for (g, e) in got.iter().zip(&entries) {
        assert_eq!(OutboxEntry { id: 0, ..g.clone() }, *e);
    }
    assert_eq!(serde_json::to_string(&got[0].data).unwrap(), serde_json::to_string(&data).unwrap());
    let big = got[0].data["big"].to_string();
    assert_eq!(big, "98765432109876543210");
    assert_eq!(got[0].data["neg"].to_string(), "-12345678901234567890123");
    assert_eq!(got[0].data["dec"].to_string(), "123456789012345.678901234567890123");
    assert_eq!(got[0].data["tiny"].to_string(), "0.000000000000000000000000000001");
    assert_eq!(got[0].data["nested"]["a"][1].to_string(), "2.50");
    assert_eq!(ContentHash::of(&got[0].data), ContentHash::of(&data), "the content hash is unchanged");

    // On disk the digits are stored as text, not as a float.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let stored: String = conn.query_row("SELECT data FROM outbox ORDER BY id LIMIT 1", [], |r| r.get(0)).unwrap();
    assert!(stored.contains("98765432109876543210"), "{stored}");
    assert!(stored.contains("123456789012345.678901234567890123"), "{stored}");
}

#[tokio::test]
async fn outbox_and_pauses_survive_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (before, newest) = {
        let st = SqliteState::open(&path).unwrap();
        st.commit(add("p", "s", &["1", "2", "3"])).await.unwrap();
        let ids = ids_of(&st, "p", "s").await;
        // Deliver the newest before closing: its id must still not come back after reopening.
        st.commit(done("p", "s", &[ids[2]])).await.unwrap();
        st.pause(&pause("p", "s", PauseKind::Unavailable)).await.unwrap();
        (st.outbox("p", "s", 10).await.unwrap(), ids[2])
    };
    let st = SqliteState::open(&path).unwrap();
    assert_eq!(st.outbox("p", "s", 10).await.unwrap(), before);
    assert_eq!(st.outbox_len("p", "s").await.unwrap(), 2);
    assert_eq!(st.paused(None).await.unwrap(), vec![pause("p", "s", PauseKind::Unavailable)]);
    st.commit(add("p", "s", &["4"])).await.unwrap();
    let ids = ids_of(&st, "p", "s").await;
    assert!(ids[2] > newest, "ids are not reused across reopen: {ids:?}, deleted {newest}");
}

#[tokio::test]
async fn pause_upserts_unpause_reports_and_paused_filters_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let st = SqliteState::open(dir.path().join("state.db")).unwrap();
    assert!(st.paused(None).await.unwrap().is_empty());
    for (p, s) in [("q", "b"), ("p", "z"), ("q", "a"), ("p", "a"), ("P", "a")] {
        st.pause(&pause(p, s, PauseKind::Unavailable)).await.unwrap();
    }
    let names =
        |v: Vec<PausedStream>| v.into_iter().map(|p| format!("{}/{}", p.pipeline, p.stream)).collect::<Vec<_>>();
    assert_eq!(names(st.paused(None).await.unwrap()), ["P/a", "p/a", "p/z", "q/a", "q/b"]);
    assert_eq!(names(st.paused(Some("p")).await.unwrap()), ["p/a", "p/z"]);
    assert_eq!(names(st.paused(Some("q")).await.unwrap()), ["q/a", "q/b"]);
    assert!(st.paused(Some("nope")).await.unwrap().is_empty());

    // Pausing again replaces kind, reason and time.
    let drift = PausedStream {
        reason: "new field `x`".into(),
        since: "2025-02-01T00:00:00Z".into(),
        until: None,
        location: None,
        ..pause("p", "z", PauseKind::Drift)
    };
    st.pause(&drift).await.unwrap();
    assert_eq!(st.paused(Some("p")).await.unwrap(), vec![pause("p", "a", PauseKind::Unavailable), drift]);

    assert!(st.unpause("p", "z").await.unwrap());
    assert!(!st.unpause("p", "z").await.unwrap(), "already resumed");
    assert!(!st.unpause("p", "never").await.unwrap());
    assert!(!st.unpause("x", "a").await.unwrap());
    assert_eq!(names(st.paused(None).await.unwrap()), ["P/a", "p/a", "q/a", "q/b"]);

    // A second handle on the file sees the same pauses.
    let other = SqliteState::open(dir.path().join("state.db")).unwrap();
    assert_eq!(other.paused(None).await.unwrap(), st.paused(None).await.unwrap());
}

#[tokio::test]
async fn reset_clears_the_pause_but_keeps_the_outbox() {
    let st = SqliteState::open_in_memory().unwrap();
    for (p, s) in [("p", "s"), ("p", "t"), ("q", "s")] {
        let mut c = add(p, s, &["1", "2"]);
        c.checkpoint = Some(checkpoint(json!(s)));
        st.commit(c).await.unwrap();
        st.pause(&pause(p, s, PauseKind::Unavailable)).await.unwrap();
    }
    // Paused without ever committing (no checkpoint, no stream row).
    st.pause(&pause("p", "fresh", PauseKind::Drift)).await.unwrap();
    let outbox_s = st.outbox("p", "s", 10).await.unwrap();

    assert_eq!(st.reset("p", Some("s")).await.unwrap(), 1);
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), None);
    assert_eq!(st.outbox("p", "s", 10).await.unwrap(), outbox_s, "the outbox is owed to the sink: kept");
    let names =
        |v: Vec<PausedStream>| v.into_iter().map(|p| format!("{}/{}", p.pipeline, p.stream)).collect::<Vec<_>>();
    assert_eq!(names(st.paused(None).await.unwrap()), ["p/fresh", "p/t", "q/s"]);

    assert_eq!(st.reset("p", Some("fresh")).await.unwrap(), 0, "no checkpoint to delete");
    assert_eq!(names(st.paused(None).await.unwrap()), ["p/t", "q/s"], "its pause is cleared all the same");

    assert_eq!(st.reset("p", None).await.unwrap(), 1);
    assert_eq!(names(st.paused(None).await.unwrap()), ["q/s"], "other pipelines keep their pauses");
    for (p, s) in [("p", "s"), ("p", "t"), ("q", "s")] {
        assert_eq!(st.outbox_len(p, s).await.unwrap(), 2, "{p}/{s}");
    }
    assert!(st.checkpoint("q", "s").await.unwrap().is_some());
}

/// The same script against `MemoryState` (core's reference) and `SqliteState` gives the same
/// answers. `reset` is left out: the SQLite store also clears pauses there (see its docs).
#[tokio::test]
async fn outbox_and_pauses_behave_like_the_memory_reference() {
    async fn script(st: &dyn StateStore) -> Vec<String> {
        let mut out = Vec::new();
        let mut log = |v: String| out.push(v);
        st.commit(add("p", "s", &["a", "b", "c"])).await.unwrap();
        st.commit(add("p", "t", &["x"])).await.unwrap();
        st.commit(add("p", "s", &["d"])).await.unwrap();
        let ids = ids_of(st, "p", "s").await;
        log(format!("{:?}", keys_of(st, "p", "s").await));
        log(format!("{}", increasing(&ids)));
        let t = ids_of(st, "p", "t").await;
        let mut c = done("p", "s", &[ids[0], ids[3], t[0]]);
        c.outbox_add = vec![queued("e")];
        st.commit(c).await.unwrap();
        let entries = st.outbox("p", "s", 2).await.unwrap();
        log(format!("{:?}", entries.iter().map(|e| (&e.key, e.hash, &e.data, &e.location)).collect::<Vec<_>>()));
        log(format!("{:?}", keys_of(st, "p", "s").await));
        log(format!("{:?}", keys_of(st, "p", "t").await));
        for (p, s) in [("p", "s"), ("p", "t"), ("p", "u"), ("q", "s")] {
            log(format!("{p}/{s}: {}", st.outbox_len(p, s).await.unwrap()));
        }
        for (p, s, k) in [
            ("q", "b", PauseKind::Drift),
            ("p", "z", PauseKind::Unavailable),
            ("p", "a", PauseKind::Unavailable),
            ("p", "z", PauseKind::Drift),
        ] {
            st.pause(&pause(p, s, k)).await.unwrap();
        }
        log(format!("{:?}", st.paused(None).await.unwrap()));
        log(format!("{:?}", st.paused(Some("p")).await.unwrap()));
        log(format!("{}", st.unpause("p", "z").await.unwrap()));
        log(format!("{}", st.unpause("p", "z").await.unwrap()));
        log(format!("{:?}", st.paused(None).await.unwrap()));
        out
    }
    let memory = script(&MemoryState::default()).await;
    let sqlite = script(&SqliteState::open_in_memory().unwrap()).await;
    assert_eq!(sqlite, memory);
}

#[tokio::test]
async fn outbox_depths_sum_each_stream_and_match_the_memory_reference() {
    let sqlite = SqliteState::open_in_memory().unwrap();
    let memory = MemoryState::default();
    for st in [&sqlite as &dyn StateStore, &memory] {
        st.commit(add("p", "a", &["1", "2", "3"])).await.unwrap();
        st.commit(add("p", "b", &["1"])).await.unwrap();
        st.commit(add("q", "a", &["1", "2"])).await.unwrap();
        let ids = ids_of(st, "p", "b").await;
        st.commit(done("p", "b", &ids)).await.unwrap();
        let all = st.outbox_depths(None).await.unwrap();
        assert_eq!(all, vec![("p".into(), "a".into(), 3), ("q".into(), "a".into(), 2)]);
        let p = st.outbox_depths(Some("p")).await.unwrap();
        assert_eq!(p, vec![("p".to_owned(), "a".to_owned(), 3)]);
    }
}
