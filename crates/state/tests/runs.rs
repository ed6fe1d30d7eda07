//! Run history.

use dovetail_core::state::{DeliveryStore, HistoryStore};
use dovetail_core::{ErrorKind, RunOutcome};
use dovetail_state::{ABANDONED, RUNNING, SqliteState};
use serde_json::json;

#[tokio::test]
async fn runs_are_listed_newest_first_with_their_report() {
    let dir = tempfile::tempdir().unwrap();
    let st = SqliteState::open(dir.path().join("state.db")).unwrap();
    let a = st.begin_run("p", "2024-01-01T00:00:00Z").await.unwrap();
    let b = st.begin_run("q", "2024-01-01T00:01:00Z").await.unwrap();
    let c = st.begin_run("p", "2024-01-01T00:02:00Z").await.unwrap();
    assert!(a < b && b < c);

    let report: serde_json::Value =
        serde_json::from_str(r#"{"streams": {"users": {"written": 3, "amount": 1.10}}, "ok": true}"#).unwrap();
    st.finish_run(a, "2024-01-01T00:00:30Z", RunOutcome::Succeeded, &report).await.unwrap();

    let all = st.runs(None, 10).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![c, b, a]);
    let p = st.runs(Some("p"), 10).await.unwrap();
    assert_eq!(p.iter().map(|r| r.id).collect::<Vec<_>>(), vec![c, a]);
    assert_eq!(st.runs(Some("p"), 1).await.unwrap()[0].id, c);
    // The pipelines in the history, each once, by name; the in-memory store agrees.
    assert_eq!(st.run_pipelines().await.unwrap(), ["p", "q"]);
    let mem = dovetail_core::testing::MemoryState::default();
    for name in ["q", "p", "q"] {
        mem.begin_run(name, "2024-01-01T00:00:00Z").await.unwrap();
    }
    assert_eq!(mem.run_pipelines().await.unwrap(), ["p", "q"]);

    let (running, done) = (&p[0], &p[1]);
    assert_eq!(running.outcome, RUNNING);
    assert_eq!(running.finished_at, None);
    assert_eq!(running.report, None);
    assert_eq!(done.outcome, RunOutcome::Succeeded);
    assert_eq!(done.started_at, "2024-01-01T00:00:00Z");
    assert_eq!(done.finished_at.as_deref(), Some("2024-01-01T00:00:30Z"));
    assert_eq!(done.report.as_ref(), Some(&report));
    // Exact decimal text survives (serde_json arbitrary_precision).
    assert_eq!(done.report.as_ref().unwrap()["streams"]["users"]["amount"].to_string(), "1.10");
}

#[tokio::test]
async fn finishing_an_unknown_run_is_an_error() {
    let st = SqliteState::open_in_memory().unwrap();
    let err = st.finish_run(42, "t", RunOutcome::Failed, &json!({})).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Internal);
    assert!(err.message().contains("42"), "{err}");
}

#[tokio::test]
async fn taking_the_lock_marks_runs_of_a_dead_process_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (crashed, finished, other) = {
        // A process that started runs and died without finishing one of them.
        let st = SqliteState::open(&path).unwrap();
        let lock = st.lock("p").await.unwrap();
        let finished = st.begin_run("p", "t1").await.unwrap();
        st.finish_run(finished, "t2", RunOutcome::Failed, &json!({"error": "x"})).await.unwrap();
        let crashed = st.begin_run("p", "t3").await.unwrap();
        let other = st.begin_run("q", "t4").await.unwrap();
        drop(lock);
        (crashed, finished, other)
    };

    let st = SqliteState::open(&path).unwrap();
    let _lock = st.lock("p").await.unwrap();
    let runs = st.runs(None, 10).await.unwrap();
    let outcome = |id| runs.iter().find(|r| r.id == id).unwrap().outcome;
    assert_eq!(outcome(crashed), ABANDONED);
    assert_eq!(outcome(finished), RunOutcome::Failed);
    assert_eq!(outcome(other), RUNNING, "another pipeline's run is not ours to judge");
    assert_eq!(runs.iter().find(|r| r.id == crashed).unwrap().finished_at, None);

    // A run begun under the current lock stays running until finished.
    let now = st.begin_run("p", "t5").await.unwrap();
    assert_eq!(st.runs(Some("p"), 1).await.unwrap()[0].id, now);
    assert_eq!(st.runs(Some("p"), 1).await.unwrap()[0].outcome, RUNNING);
}
