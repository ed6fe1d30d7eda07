//! Behaviour of `SqliteState` against real SQLite files.

use dovetail_core::state::{Checkpoint, Commit, CursorState, DeadLetter, DeliveryStore, HistoryStore, LedgerEntry};
use dovetail_core::{ContentHash, ErrorKind, Key};
use dovetail_state::{SCHEMA_VERSION, SqliteState};
use serde_json::json;

fn key(s: &str) -> Key {
    Key::from_canonical(s)
}

fn hash(n: u8) -> ContentHash {
    ContentHash([n; 16])
}

fn entry(k: &str, n: u8) -> LedgerEntry {
    LedgerEntry { key: key(k), hash: hash(n), dest_id: None }
}

fn commit(pass: u64) -> Commit {
    Commit { pipeline: "p".into(), stream: "s".into(), pass, ..Commit::default() }
}

fn dead(stream: &str, reason: &str) -> DeadLetter {
    DeadLetter {
        id: 0,
        pipeline: "p".into(),
        stream: stream.into(),
        key: Some("1".into()),
        kind: "data".into(),
        reason: reason.into(),
        path: Some("amount".into()),
        location: Some("orders.jsonl line 17".into()),
        raw: format!(r#"{{"id":1,"amount":"{reason}"}}"#),
        created_at: String::new(),
        raw_len: None,
        seen_count: 1,
    }
}

fn checkpoint(pos: serde_json::Value) -> Checkpoint {
    Checkpoint {
        position: Some(pos),
        pass: 1,
        floor: Some(CursorState { value: json!("2024-01-01"), keys: vec!["1".into()] }),
        max: None,
        pass_complete: false,
    }
}

fn versions(path: &std::path::Path) -> Vec<i64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut st = conn.prepare("SELECT version FROM schema_version ORDER BY version").unwrap();
    st.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[tokio::test]
async fn migrations_are_recorded_and_idempotent_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/state.db");
    let st = SqliteState::open(&path).unwrap();
    assert!(path.exists(), "open creates parent directories and the file");
    let expected: Vec<i64> = (1..=SCHEMA_VERSION).collect();
    assert_eq!(versions(&path), expected);
    let mut c = commit(1);
    c.ledger.push(entry("1", 7));
    st.commit(c).await.unwrap();
    drop(st);

    let st = SqliteState::open(&path).unwrap();
    assert_eq!(versions(&path), expected, "reopening applies nothing twice");
    assert_eq!(st.ledger_lookup("p", "s", &[key("1")]).await.unwrap(), vec![Some(hash(7))]);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn newer_schema_is_refused_with_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteState::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("INSERT INTO schema_version VALUES (?1, 'later')", [SCHEMA_VERSION + 1]).unwrap();
    let err = SqliteState::open(&path).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(err.message().contains(&format!("schema version {}", SCHEMA_VERSION + 1)), "{err}");
    assert!(err.message().contains("newer dovetail"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = SqliteState::open(&path).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(err.message().contains("state.db"), "{err}");
}

#[tokio::test]
async fn commit_makes_ledger_checkpoint_and_dead_letters_visible_together() {
    let dir = tempfile::tempdir().unwrap();
    let st = SqliteState::open(dir.path().join("state.db")).unwrap();
    let mut c = commit(1);
    c.ledger = vec![entry("1", 1), entry("2", 2)];
    c.dead_letters = vec![dead("s", "bad amount")];
    c.checkpoint = Some(checkpoint(json!({"line": 3})));
    st.commit(c).await.unwrap();

    // A second handle on the same file sees everything.
    let other = SqliteState::open(dir.path().join("state.db")).unwrap();
    assert_eq!(other.ledger_lookup("p", "s", &[key("1"), key("2")]).await.unwrap(), vec![Some(hash(1)), Some(hash(2))]);
    assert_eq!(other.checkpoint("p", "s").await.unwrap(), Some(checkpoint(json!({"line": 3}))));
    let dl = other.dead_letters(Some("p"), Some("s"), 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].reason, "bad amount");
    assert!(!dl[0].created_at.is_empty(), "created_at is filled in");
}

#[tokio::test]
async fn a_failing_commit_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let st = SqliteState::open(&path).unwrap();
    let mut c = commit(1);
    c.ledger = vec![entry("keep", 1), entry("gone", 2)];
    c.dead_letters = vec![dead("s", "old")];
    c.checkpoint = Some(checkpoint(json!("before")));
    st.commit(c).await.unwrap();
    let old_dl = st.dead_letters(None, None, 10).await.unwrap()[0].id;

    // Force the last statement of a commit (the checkpoint) to fail.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER boom_i BEFORE INSERT ON checkpoints WHEN NEW.checkpoint LIKE '%boom%'
           BEGIN SELECT RAISE(ABORT, 'forced failure'); END;
         CREATE TRIGGER boom_u BEFORE UPDATE ON checkpoints WHEN NEW.checkpoint LIKE '%boom%'
           BEGIN SELECT RAISE(ABORT, 'forced failure'); END;",
    )
    .unwrap();
    for stream in ["s", "fresh"] {
        let mut c = commit(2);
        c.stream = stream.into();
        c.ledger = vec![entry("keep", 9), entry("new", 9)];
        c.touched = vec![key("keep")];
        c.forget = vec![key("gone")];
        c.dead_letters = vec![dead(stream, "new")];
        c.resolved_dead_letters = vec![old_dl];
        c.checkpoint = Some(checkpoint(json!("boom")));
        let err = st.commit(c).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Internal);
        assert!(err.report().contains("forced failure"), "{}", err.report());
        assert!(err.to_string().contains(&format!("stream `{stream}`")), "{err}");
    }

    let keys = [key("keep"), key("gone"), key("new")];
    assert_eq!(st.ledger_lookup("p", "s", &keys).await.unwrap(), vec![Some(hash(1)), Some(hash(2)), None]);
    assert_eq!(st.ledger_lookup("p", "fresh", &keys).await.unwrap(), vec![None, None, None]);
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), Some(checkpoint(json!("before"))));
    assert_eq!(st.stale_keys("p", "s", 2, 10).await.unwrap().len(), 2, "no pass was bumped");
    let dl = st.dead_letters(None, None, 10).await.unwrap();
    assert_eq!(dl.iter().map(|d| d.reason.as_str()).collect::<Vec<_>>(), vec!["old"]);

    // The connection is usable afterwards, also for the stream whose registration rolled back.
    let mut c = commit(2);
    c.stream = "fresh".into();
    c.ledger = vec![entry("new", 5)];
    c.checkpoint = Some(checkpoint(json!("fine")));
    st.commit(c).await.unwrap();
    assert_eq!(st.ledger_lookup("p", "fresh", &[key("new")]).await.unwrap(), vec![Some(hash(5))]);
    assert_eq!(st.checkpoint("p", "fresh").await.unwrap(), Some(checkpoint(json!("fine"))));
}

#[tokio::test]
async fn ledger_lookup_keeps_order_and_streams_apart() {
    let st = SqliteState::open_in_memory().unwrap();
    let mut c = commit(1);
    c.ledger = vec![entry("[1,\"a\"]", 1), entry("3", 3)];
    st.commit(c).await.unwrap();
    let mut c = commit(1);
    c.pipeline = "other".into();
    c.ledger = vec![entry("3", 30)];
    st.commit(c).await.unwrap();

    let keys = [key("3"), key("missing"), key("[1,\"a\"]"), key("3")];
    assert_eq!(
        st.ledger_lookup("p", "s", &keys).await.unwrap(),
        vec![Some(hash(3)), None, Some(hash(1)), Some(hash(3))]
    );
    assert_eq!(st.ledger_lookup("other", "s", &keys[..1]).await.unwrap(), vec![Some(hash(30))]);
    assert_eq!(st.ledger_lookup("p", "nope", &keys).await.unwrap(), vec![None; 4]);
    assert!(st.ledger_lookup("p", "s", &[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn upsert_replaces_hash_and_keeps_a_known_destination_id() {
    let st = SqliteState::open_in_memory().unwrap();
    let mut c = commit(1);
    c.ledger = vec![LedgerEntry { key: key("1"), hash: hash(1), dest_id: Some("cus_1".into()) }];
    st.commit(c).await.unwrap();
    let mut c = commit(2);
    c.ledger = vec![entry("1", 2)];
    st.commit(c).await.unwrap();
    let got = st.ledger_entries("p", "s", &[key("1"), key("2")]).await.unwrap();
    assert_eq!(got, vec![Some(LedgerEntry { key: key("1"), hash: hash(2), dest_id: Some("cus_1".into()) }), None]);
}

#[tokio::test]
async fn a_large_commit_writes_every_ledger_row_in_order_whatever_statement_carries_it() {
    // 123 rows: two multi-row statements of 50 and 23 single rows. Key "7" comes again in
    // the second statement and key "110" again in the single rows: the later row wins, as
    // it would one row at a time.
    let st = SqliteState::open_in_memory().unwrap();
    let mut c = commit(1);
    c.ledger = (0..121).map(|i| entry(&i.to_string(), (i % 200) as u8)).collect();
    c.ledger[60] = LedgerEntry { key: key("7"), hash: hash(250), dest_id: Some("d7".into()) };
    c.ledger.push(entry("110", 251));
    c.ledger.push(entry("121", 121));
    st.commit(c).await.unwrap();
    let keys: Vec<Key> = (0..123).map(|i| key(&i.to_string())).collect();
    let got = st.ledger_entries("p", "s", &keys).await.unwrap();
    for (i, e) in got.iter().enumerate() {
        let want = match i {
            7 => LedgerEntry { key: key("7"), hash: hash(250), dest_id: Some("d7".into()) },
            60 => {
                assert_eq!(*e, None, "row 60 was replaced by key 7");
                continue;
            }
            110 => entry("110", 251),
            122 => {
                assert_eq!(*e, None);
                continue;
            }
            _ => entry(&i.to_string(), i as u8),
        };
        assert_eq!(e.as_ref(), Some(&want), "key {i}");
    }
}

#[tokio::test]
async fn touched_forget_and_stale_keys_across_passes() {
    let st = SqliteState::open_in_memory().unwrap();
    let mut c = commit(1);
    c.ledger = vec![entry("a", 1), entry("b", 1), entry("c", 1), entry("d", 1)];
    st.commit(c).await.unwrap();
    assert!(st.stale_keys("p", "s", 1, 10).await.unwrap().is_empty());

    // Pass 2: `a` changed, `b` was read unchanged, `c` and `d` are gone from the source.
    let mut c = commit(2);
    c.ledger = vec![entry("a", 2)];
    c.touched = vec![key("b")];
    st.commit(c).await.unwrap();
    let mut stale = st.stale_keys("p", "s", 2, 10).await.unwrap();
    stale.sort();
    assert_eq!(stale, vec![key("c"), key("d")]);
    assert_eq!(st.stale_keys("p", "s", 2, 1).await.unwrap().len(), 1, "limit applies");
    assert_eq!(st.ledger_lookup("p", "s", &[key("b")]).await.unwrap(), vec![Some(hash(1))]);

    // Delete propagation forgets them; the ledger no longer knows them.
    let mut c = commit(2);
    c.forget = stale;
    st.commit(c).await.unwrap();
    assert!(st.stale_keys("p", "s", 2, 10).await.unwrap().is_empty());
    let all = [key("a"), key("b"), key("c"), key("d")];
    assert_eq!(st.ledger_lookup("p", "s", &all).await.unwrap(), vec![Some(hash(2)), Some(hash(1)), None, None]);
    assert_eq!(st.stale_keys("p", "s", 3, 10).await.unwrap().len(), 2);
    assert!(st.stale_keys("p", "unknown", 3, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn reset_forgets_checkpoints_but_keeps_the_ledger() {
    let st = SqliteState::open_in_memory().unwrap();
    for s in ["s", "t"] {
        let mut c = commit(1);
        c.stream = s.into();
        c.ledger = vec![entry("1", 1)];
        c.checkpoint = Some(checkpoint(json!(s)));
        st.commit(c).await.unwrap();
    }
    let mut c = commit(1);
    c.pipeline = "q".into();
    c.checkpoint = Some(checkpoint(json!("q")));
    st.commit(c).await.unwrap();

    assert_eq!(st.reset("p", Some("s")).await.unwrap(), 1);
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), None);
    assert!(st.checkpoint("p", "t").await.unwrap().is_some());
    assert_eq!(st.reset("p", Some("s")).await.unwrap(), 0);
    assert_eq!(st.reset("p", None).await.unwrap(), 1);
    assert_eq!(st.checkpoint("p", "t").await.unwrap(), None);
    assert!(st.checkpoint("q", "s").await.unwrap().is_some(), "other pipelines untouched");
    for s in ["s", "t"] {
        assert_eq!(st.ledger_lookup("p", s, &[key("1")]).await.unwrap(), vec![Some(hash(1))]);
    }
}

#[tokio::test]
async fn dead_letters_list_filter_get_and_resolve() {
    let st = SqliteState::open_in_memory().unwrap();
    let mut c = commit(1);
    c.dead_letters = vec![dead("s", "one"), dead("t", "two"), dead("s", "three")];
    c.dead_letters[2].created_at = "2024-05-01T00:00:00Z".into();
    c.dead_letters[2].key = None;
    st.commit(c).await.unwrap();
    let mut c = commit(1);
    c.pipeline = "q".into();
    c.dead_letters = vec![DeadLetter { pipeline: "q".into(), ..dead("s", "four") }];
    st.commit(c).await.unwrap();

    let reasons = |v: Vec<DeadLetter>| v.into_iter().map(|d| d.reason).collect::<Vec<_>>();
    assert_eq!(reasons(st.dead_letters(None, None, 10).await.unwrap()), ["one", "two", "three", "four"]);
    assert_eq!(reasons(st.dead_letters(Some("p"), None, 10).await.unwrap()), ["one", "two", "three"]);
    assert_eq!(reasons(st.dead_letters(Some("p"), Some("s"), 10).await.unwrap()), ["one", "three"]);
    assert_eq!(reasons(st.dead_letters(None, Some("s"), 10).await.unwrap()), ["one", "three", "four"]);
    assert_eq!(reasons(st.dead_letters(None, None, 2).await.unwrap()), ["one", "two"]);

    let all = st.dead_letters(Some("p"), Some("s"), 10).await.unwrap();
    let third = st.dead_letter(all[1].id).await.unwrap().unwrap();
    assert_eq!(third, all[1]);
    assert_eq!(third.created_at, "2024-05-01T00:00:00Z", "a given created_at is kept");
    assert_eq!(third.key, None);
    assert_eq!(third.location.as_deref(), Some("orders.jsonl line 17"));
    assert_eq!(third.raw, r#"{"id":1,"amount":"three"}"#);

    let mut c = commit(1);
    c.resolved_dead_letters = vec![all[0].id, 999_999];
    st.commit(c).await.unwrap();
    assert_eq!(st.dead_letter(all[0].id).await.unwrap(), None);
    assert_eq!(reasons(st.dead_letters(Some("p"), None, 10).await.unwrap()), ["two", "three"]);
}

#[tokio::test]
async fn baselines_round_trip_and_replace() {
    let st = SqliteState::open_in_memory().unwrap();
    assert_eq!(st.baseline("p", "s").await.unwrap(), None);
    let v1 = json!({"fields": {"id": "integer", "amount": "1.10"}});
    st.save_baseline("p", "s", &v1).await.unwrap();
    assert_eq!(st.baseline("p", "s").await.unwrap(), Some(v1));
    let v2 = json!({"fields": {"id": "string"}});
    st.save_baseline("p", "s", &v2).await.unwrap();
    assert_eq!(st.baseline("p", "s").await.unwrap(), Some(v2));
    assert_eq!(st.baseline("p", "t").await.unwrap(), None);
}

#[tokio::test]
async fn the_same_dead_letter_seen_again_is_counted_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteState::open(dir.path().join("state.db")).unwrap();
    let mut c = commit(1);
    c.dead_letters = vec![dead("s", "x")];
    store.commit(c.clone()).await.unwrap();
    let mut again = dead("s", "x");
    again.reason = "x, with a newer reason".into();
    c.dead_letters = vec![again, dead("s", "other")];
    store.commit(c).await.unwrap();
    let all = store.dead_letters(Some("p"), Some("s"), 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].seen_count, 2);
    assert_eq!(all[0].reason, "x, with a newer reason");
    assert_eq!(all[1].seen_count, 1);
}

#[tokio::test]
async fn has_ledger_tells_an_initial_load_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteState::open(dir.path().join("state.db")).unwrap();
    assert!(!store.has_ledger("p", "s").await.unwrap());
    let mut c = commit(1);
    c.ledger.push(entry("1", 7));
    store.commit(c).await.unwrap();
    assert!(store.has_ledger("p", "s").await.unwrap());
    assert!(!store.has_ledger("p", "other").await.unwrap());
}
