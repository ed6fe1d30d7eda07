//! Explain stories and retention on real SQLite files: stories commit with their ledger rows
//! or not at all, the latest story wins, unchanged reads are found without a row per record,
//! and pruning by count and by age keeps the newest run and the ledger (and with it each
//! key's latest outcome; the pages of pruned runs go).

use std::sync::Arc;
use std::time::Duration;

use dovetail_core::explain::{ExplainBatch, Fetch, Outcome, Retention, Story};
use dovetail_core::state::{Checkpoint, Commit, DeadLetter, DeliveryStore, HistoryStore, LedgerEntry};
use dovetail_core::{ContentHash, Key, Provenance};
use dovetail_state::SqliteState;
use serde_json::json;

fn key(s: &str) -> Key {
    Key::from_canonical(s)
}

fn page(run: i64, url: &str) -> Arc<Provenance> {
    Arc::new(Provenance {
        connector: "rest".into(),
        endpoint: url.into(),
        fetched_at: format!("2026-01-0{run}T00:00:00Z"),
        request_id: Some(format!("req-{run}")),
        status: Some(200),
        ..Default::default()
    })
}

/// A commit of run `run` writing `written` (outcome, raw) and reading `unchanged` unchanged,
/// all from one page.
fn commit(run: i64, written: &[(&str, Outcome, &str)], unchanged: &[&str]) -> Commit {
    let stories = written
        .iter()
        .map(|(k, outcome, raw)| Story {
            key: key(k),
            fetch: Some(0),
            location: Some("item 0".into()),
            outcome: *outcome,
            reason: None,
            raw: Some((*raw).into()),
            item: None,
        })
        .collect();
    let fetch = Fetch {
        provenance: page(run, &format!("https://api.test/v1/items?page={run}")),
        unchanged: unchanged.iter().map(|k| key(k)).collect(),
    };
    Commit {
        pipeline: "p".into(),
        stream: "s".into(),
        pass: run as u64,
        ledger: written
            .iter()
            .map(|(k, ..)| LedgerEntry { key: key(k), hash: ContentHash([run as u8; 16]), dest_id: None })
            .collect(),
        checkpoint: Some(Checkpoint { pass: run as u64, ..Default::default() }),
        explain: Some(ExplainBatch {
            run_id: run,
            mapping: Some(r#"{"rename":{"name":"full_name"}}"#.into()),
            key_columns: vec!["id".to_owned()].into(),
            fetches: vec![fetch],
            stories,
            ..Default::default()
        }),
        ..Commit::default()
    }
}

#[tokio::test]
async fn the_latest_story_wins_and_unchanged_reads_are_found_in_their_page() {
    let dir = tempfile::tempdir().unwrap();
    let st = SqliteState::open(dir.path().join("state.db")).unwrap();
    st.commit(commit(1, &[("1", Outcome::Inserted, r#"{"id":1,"v":"a"}"#), ("2", Outcome::Inserted, "{}")], &[]))
        .await
        .unwrap();
    st.commit(commit(2, &[("1", Outcome::Updated, r#"{"id":1,"v":"b"}"#)], &["2", "22"])).await.unwrap();
    st.commit(commit(3, &[], &["1"])).await.unwrap();

    let one = st.key_history("p", "s", &key("1")).await.unwrap();
    let story = one.story.unwrap();
    assert_eq!((story.run_id, story.outcome), (2, Outcome::Updated));
    assert_eq!(story.raw.as_deref(), Some(r#"{"id":1,"v":"b"}"#));
    let fetch = story.fetch.unwrap();
    assert_eq!((fetch.method.as_str(), fetch.url.as_str()), ("GET", "https://api.test/v1/items?page=2"));
    assert_eq!((fetch.status, fetch.request_id.as_deref()), (Some(200), Some("req-2")));
    assert_eq!(one.unchanged.unwrap().run_id, 3, "read unchanged after the update");
    assert_eq!(one.mapping, Some(json!({"rename": {"name": "full_name"}})));
    assert_eq!(one.key_columns, ["id"]);
    assert_eq!(one.ledger.unwrap().pass, 2);

    // Key 2 was read unchanged in run 2; "22" in the same list must not match key "2" by prefix.
    let two = st.key_history("p", "s", &key("2")).await.unwrap();
    assert_eq!(two.story.unwrap().run_id, 1);
    assert_eq!(two.unchanged.unwrap().run_id, 2);
    let none = st.key_history("p", "s", &key("3")).await.unwrap();
    assert!(none.story.is_none() && none.unchanged.is_none() && none.ledger.is_none());
}

#[tokio::test]
async fn a_failed_commit_leaves_neither_the_ledger_row_nor_the_story() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let st = SqliteState::open(&path).unwrap();
    st.commit(commit(1, &[("1", Outcome::Inserted, "{}")], &[])).await.unwrap();
    // The checkpoint is the commit's last statement: make it fail after the story was written.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TRIGGER refuse BEFORE UPDATE ON checkpoints BEGIN SELECT RAISE(ABORT, 'refused'); END;")
        .unwrap();
    let err = st.commit(commit(2, &[("1", Outcome::Updated, "{}"), ("5", Outcome::Inserted, "{}")], &["9"])).await;
    assert!(err.is_err());
    let one = st.key_history("p", "s", &key("1")).await.unwrap();
    assert_eq!(one.story.unwrap().run_id, 1, "story of the failed commit rolled back");
    assert_eq!(one.ledger.unwrap().pass, 1, "ledger of the failed commit rolled back");
    let five = st.key_history("p", "s", &key("5")).await.unwrap();
    assert!(five.story.is_none() && five.ledger.is_none());
    assert!(st.key_history("p", "s", &key("9")).await.unwrap().unchanged.is_none(), "no fetch row either");
}

#[tokio::test]
async fn dead_lettered_stories_carry_their_reason_and_the_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let st = SqliteState::open(dir.path().join("state.db")).unwrap();
    let mut c = commit(1, &[], &[]);
    c.dead_letters.push(DeadLetter {
        id: 0,
        pipeline: "p".into(),
        stream: "s".into(),
        key: Some("7".into()),
        kind: "data".into(),
        reason: "amount is not a number".into(),
        path: Some("amount".into()),
        location: Some("item 7".into()),
        raw: r#"{"id":7}"#.into(),
        created_at: String::new(),
        raw_len: None,
        seen_count: 1,
    });
    c.explain.as_mut().unwrap().stories.push(Story {
        key: key("7"),
        fetch: None,
        location: Some("item 7".into()),
        outcome: Outcome::DeadLettered,
        reason: Some("amount is not a number".into()),
        raw: Some(r#"{"id":7}"#.into()),
        item: None,
    });
    st.commit(c).await.unwrap();
    let h = st.key_history("p", "s", &key("7")).await.unwrap();
    let s = h.story.unwrap();
    assert_eq!((s.outcome, s.reason.as_deref()), (Outcome::DeadLettered, Some("amount is not a number")));
    assert_eq!(h.dead_letter.unwrap().reason, "amount is not a number");
}

fn count(path: &std::path::Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn pruning_by_count_keeps_the_newest_runs_their_stories_and_the_whole_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let st = SqliteState::open(&path).unwrap();
    // Five runs; run r writes key r (and 2500 keys in run 1, to prune in several batches).
    for r in 1..=5 {
        let id = st.begin_run("p", &dovetail_core::now_rfc3339()).await.unwrap();
        assert_eq!(id, r);
        let k = r.to_string();
        let mut c = commit(r, &[(k.as_str(), Outcome::Inserted, "{}")], &["1"]);
        if r == 1 {
            let many: Vec<String> = (100..2600).map(|i| i.to_string()).collect();
            let x = c.explain.as_mut().unwrap();
            for m in &many {
                x.stories.push(Story {
                    key: key(m),
                    fetch: Some(0),
                    location: None,
                    outcome: Outcome::Inserted,
                    reason: None,
                    raw: None,
                    item: None,
                });
                c.ledger.push(LedgerEntry { key: key(m), hash: ContentHash([1; 16]), dest_id: None });
            }
        }
        st.commit(c).await.unwrap();
        st.finish_run(id, &dovetail_core::now_rfc3339(), dovetail_core::RunOutcome::Succeeded, &json!({}))
            .await
            .unwrap();
    }
    // Another pipeline's runs are not touched.
    st.begin_run("other", &dovetail_core::now_rfc3339()).await.unwrap();
    let r = Retention { runs: Some(2), batch: 1000, ..Retention::default() };
    let pruned = st.prune("p", &r).await.unwrap();
    assert_eq!((pruned.runs, pruned.fetches), (3, 3));
    let runs: Vec<i64> = st.runs(Some("p"), 10).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(runs, [5, 4]);
    assert_eq!(st.runs(Some("other"), 10).await.unwrap().len(), 1);
    assert_eq!(count(&path, "SELECT count(*) FROM ledger"), 2505, "the ledger is never pruned");
    // A story lives on its ledger row; the page it names (request, raw) went with run 1.
    let old = st.key_history("p", "s", &key("100")).await.unwrap().story.unwrap();
    assert_eq!((old.run_id, old.outcome), (1, Outcome::Inserted));
    assert!(old.fetch.is_none() && old.raw.is_none());
    assert_eq!(st.key_history("p", "s", &key("4")).await.unwrap().story.unwrap().run_id, 4);
    // Key 1 was read unchanged in runs 2..5; the kept runs still tell it.
    assert_eq!(st.key_history("p", "s", &key("1")).await.unwrap().unchanged.unwrap().run_id, 5);
    assert_eq!(count(&path, "SELECT count(*) FROM explain_runs"), 2);
    // Pruning again finds nothing.
    assert!(st.prune("p", &r).await.unwrap().is_empty());
}

#[tokio::test]
async fn pruning_by_age_keeps_the_latest_run_open_drift_and_owed_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let st = SqliteState::open(&path).unwrap();
    for (r, started) in [(1, "2020-01-01T00:00:00Z"), (2, "2020-02-01T00:00:00Z"), (3, "2020-03-01T00:00:00Z")] {
        st.begin_run("p", started).await.unwrap();
        st.commit(commit(r, &[(r.to_string().as_str(), Outcome::Inserted, "{}")], &[])).await.unwrap();
    }
    let mut dl = commit(9, &[], &[]);
    dl.explain = None;
    dl.dead_letters.push(DeadLetter {
        id: 0,
        pipeline: "p".into(),
        stream: "s".into(),
        key: None,
        kind: "data".into(),
        reason: "bad".into(),
        path: None,
        location: None,
        raw: "x".into(),
        created_at: "2020-01-01T00:00:00Z".into(),
        raw_len: None,
        seen_count: 1,
    });
    st.commit(dl).await.unwrap();
    let e = |path: &str, seen: &str| dovetail_core::drift::DriftEvent {
        path: path.into(),
        change: dovetail_core::DriftClass::NewField,
        expected: "absent".into(),
        observed: "string".into(),
        count: 1,
        first_seen: seen.into(),
        first_at: "item 0".into(),
    };
    st.record_drift("p", "s", &[e("/old_accepted", "2020-01-01T00:00:00Z"), e("/old_open", "2020-01-01T00:00:00Z")])
        .await
        .unwrap();
    st.accept_drift("p", "s", "2020-01-02T00:00:00Z").await.unwrap();
    st.record_drift("p", "s", &[e("/old_open", "2020-01-03T00:00:00Z")]).await.unwrap();

    let r = Retention { runs: None, max_age: Some(Duration::from_secs(86_400)), ..Retention::default() };
    let pruned = st.prune("p", &r).await.unwrap();
    assert_eq!((pruned.runs, pruned.fetches, pruned.drift_events, pruned.dead_letters), (2, 2, 1, 0));
    let runs = st.runs(Some("p"), 10).await.unwrap();
    assert_eq!(runs.len(), 1, "the latest run survives however old");
    assert_eq!(runs[0].id, 3);
    assert_eq!(st.key_history("p", "s", &key("3")).await.unwrap().story.unwrap().run_id, 3);
    let drift: Vec<String> = st.drift_events(Some("p")).await.unwrap().into_iter().map(|d| d.path).collect();
    assert_eq!(drift, ["/old_open"], "open drift stays");
    assert_eq!(st.dead_letters(Some("p"), None, 10).await.unwrap().len(), 1, "owed dead letters stay by default");
    assert_eq!(count(&path, "SELECT count(*) FROM ledger"), 3);

    // Only when configured do old dead letters go.
    let r = Retention { dead_letters_max_age: Some(Duration::from_secs(86_400)), ..r };
    assert_eq!(st.prune("p", &r).await.unwrap().dead_letters, 1);
}
