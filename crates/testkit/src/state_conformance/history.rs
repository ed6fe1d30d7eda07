//! Checks of the history contract ([`HistoryStore`](dovetail_core::HistoryStore)). What they
//! read back is written by the delivery contract's commit (dead letters, stories), so they
//! need the whole [`StateStore`].

use std::time::Duration;

use dovetail_core::drift::DriftEvent;
use dovetail_core::explain::{Outcome, Retention, Story};
use dovetail_core::state::{Checkpoint, Commit, DeadLetter, LedgerEntry};
use dovetail_core::{DriftClass, RunOutcome, StateStore, now_rfc3339};
use serde_json::{Value, json};

use super::{Subject, commit, dead, entry, explained, hash, key};

fn drift(path: &str, observed: &str, count: u64, seen: &str) -> DriftEvent {
    DriftEvent {
        path: path.into(),
        change: DriftClass::TypeChanged,
        expected: "number".into(),
        observed: observed.into(),
        count,
        first_seen: seen.into(),
        first_at: format!("GET /v1/items {path}"),
    }
}

async fn reasons(st: &dyn StateStore, pipeline: Option<&str>, stream: Option<&str>) -> Vec<String> {
    st.dead_letters(pipeline, stream, usize::MAX).await.unwrap().into_iter().map(|d| d.reason).collect()
}

/// Run ids increase; a run begins `running` with no end or report; `runs` lists newest
/// first, of one pipeline or all, at most `limit`.
pub async fn runs_are_listed_newest_first_filtered_and_limited(s: Subject) {
    let st = s.state();
    assert_eq!(st.runs(None, 10).await.unwrap(), []);
    let mut ids = Vec::new();
    for (p, t) in [("p", "2026-01-01T00:00:00Z"), ("q", "2026-01-02T00:00:00Z"), ("p", "2026-01-03T00:00:00Z")] {
        ids.push(st.begin_run(p, t).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let all = st.runs(None, 10).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[2], ids[1], ids[0]]);
    let newest = &all[0];
    assert_eq!((newest.pipeline.as_str(), newest.started_at.as_str()), ("p", "2026-01-03T00:00:00Z"));
    assert_eq!((newest.outcome, &newest.finished_at, &newest.report), (RunOutcome::Running, &None, &None));
    let p: Vec<i64> = st.runs(Some("p"), 10).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(p, [ids[2], ids[0]]);
    let one: Vec<i64> = st.runs(None, 1).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(one, [ids[2]]);
    assert_eq!(st.runs(Some("nobody"), 10).await.unwrap(), []);
}

/// A finished run carries its end, outcome and report (exact JSON) and leaves other runs
/// alone; finishing a run that does not exist is an error.
pub async fn finish_run_stores_the_outcome_and_refuses_an_unknown_run(s: Subject) {
    let st = s.state();
    let a = st.begin_run("p", "2026-01-01T00:00:00Z").await.unwrap();
    let b = st.begin_run("p", "2026-01-01T00:01:00Z").await.unwrap();
    let report: Value =
        serde_json::from_str(r#"{"streams":{"s":{"written":3}},"bytes":123456789012345678901234567890}"#).unwrap();
    st.finish_run(a, "2026-01-01T00:00:09Z", RunOutcome::Succeeded, &report).await.unwrap();
    let runs = st.runs(Some("p"), 10).await.unwrap();
    let (done, running) = (runs.iter().find(|r| r.id == a).unwrap(), runs.iter().find(|r| r.id == b).unwrap());
    assert_eq!(done.finished_at.as_deref(), Some("2026-01-01T00:00:09Z"));
    assert_eq!(done.outcome, RunOutcome::Succeeded);
    assert_eq!(done.report.as_ref().map(Value::to_string), Some(report.to_string()));
    assert_eq!((running.outcome, &running.report), (RunOutcome::Running, &None));
    assert!(st.finish_run(b + 1000, "2026-01-01T00:00:09Z", RunOutcome::Failed, &json!({})).await.is_err());
}

/// Each pipeline with a run, once, by name.
pub async fn run_pipelines_names_each_pipeline_once_in_order(s: Subject) {
    let st = s.state();
    assert_eq!(st.run_pipelines().await.unwrap(), Vec::<String>::new());
    for p in ["zeta", "alpha", "zeta", "mid", "alpha"] {
        st.begin_run(p, "2026-01-01T00:00:00Z").await.unwrap();
    }
    assert_eq!(st.run_pipelines().await.unwrap(), ["alpha", "mid", "zeta"]);
}

/// Dead letters arrive with their batch's commit and come back oldest first with every
/// field (a given `created_at` kept, an empty one filled), filtered by pipeline, stream or
/// both, at most `limit`.
pub async fn dead_letters_commit_with_their_batch_and_list_oldest_first(s: Subject) {
    let st = s.state();
    let mut first = dead("p", "s", "line 1", "one");
    first.key = None;
    first.path = None;
    let mut unstamped = dead("p", "s", "line 3", "three");
    unstamped.created_at = String::new();
    st.commit(Commit { dead_letters: vec![first.clone(), dead("p", "t", "line 2", "two")], ..commit("p", "s", 1) })
        .await
        .unwrap();
    st.commit(Commit { dead_letters: vec![unstamped, dead("q", "s", "line 4", "four")], ..commit("p", "s", 1) })
        .await
        .unwrap();
    let all = st.dead_letters(None, None, 10).await.unwrap();
    assert_eq!(all.iter().map(|d| d.reason.as_str()).collect::<Vec<_>>(), ["one", "two", "three", "four"]);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    let got = &all[0];
    let want = first;
    assert_eq!(
        (&got.pipeline, &got.stream, &got.key, &got.kind, &got.path, &got.location, &got.raw, &got.created_at),
        (&want.pipeline, &want.stream, &want.key, &want.kind, &want.path, &want.location, &want.raw, &want.created_at)
    );
    assert_eq!(got.seen_count, 1);
    assert!(!all[2].created_at.is_empty(), "an empty created_at is filled in");
    assert_eq!(reasons(st, Some("p"), None).await, ["one", "two", "three"]);
    assert_eq!(reasons(st, Some("p"), Some("s")).await, ["one", "three"]);
    assert_eq!(reasons(st, None, Some("s")).await, ["one", "three", "four"]);
    let two: Vec<String> = st.dead_letters(Some("p"), None, 2).await.unwrap().into_iter().map(|d| d.reason).collect();
    assert_eq!(two, ["one", "two"], "limit takes the oldest");
}

/// Dead letters counted in total, per reason and per path (no path is a group of its own),
/// most first and then by value, filtered like the list; the total of nothing is 0.
pub async fn dead_letter_counts_group_by_reason_or_path(s: Subject) {
    use dovetail_core::state::{DeadLetterCount, DeadLetterGroup};
    let st = s.state();
    let mut no_path = dead("p", "s", "line 4", "bad date");
    no_path.path = None;
    // A reason that starts with its location groups with the same reason elsewhere.
    let located = dead("p", "s", "line 2", "line 2: bad amount");
    let letters = vec![
        dead("p", "s", "line 1", "bad amount"),
        located,
        dead("p", "s", "line 3", "bad date"),
        no_path,
        dead("q", "s", "line 5", "bad amount"),
    ];
    st.commit(Commit { dead_letters: letters, ..commit("p", "s", 1) }).await.unwrap();
    let counts = |v: Vec<DeadLetterCount>| v.into_iter().map(|c| (c.value, c.count)).collect::<Vec<_>>();
    let some = |v: &str| Some(v.to_owned());
    assert_eq!(counts(st.dead_letter_counts(None, None, None).await.unwrap()), [(None, 5)]);
    assert_eq!(counts(st.dead_letter_counts(Some("p"), Some("s"), None).await.unwrap()), [(None, 4)]);
    let by_reason = st.dead_letter_counts(Some("p"), None, Some(DeadLetterGroup::Reason)).await.unwrap();
    assert_eq!(counts(by_reason), [(some("bad amount"), 2), (some("bad date"), 2)]);
    let by_reason = st.dead_letter_counts(None, Some("s"), Some(DeadLetterGroup::Reason)).await.unwrap();
    assert_eq!(counts(by_reason), [(some("bad amount"), 3), (some("bad date"), 2)]);
    let by_path = st.dead_letter_counts(Some("p"), None, Some(DeadLetterGroup::Path)).await.unwrap();
    assert_eq!(counts(by_path), [(some("amount"), 3), (None, 1)]);
    assert_eq!(counts(st.dead_letter_counts(Some("nobody"), None, None).await.unwrap()), [(None, 0)]);
    assert!(st.dead_letter_counts(Some("nobody"), None, Some(DeadLetterGroup::Path)).await.unwrap().is_empty());
}

/// One dead letter by id, as listed; `None` for an id never stored.
pub async fn dead_letter_fetches_one_by_id(s: Subject) {
    let st = s.state();
    st.commit(Commit { dead_letters: vec![dead("p", "s", "a", "1"), dead("p", "s", "b", "2")], ..commit("p", "s", 1) })
        .await
        .unwrap();
    let listed = st.dead_letters(None, None, 10).await.unwrap();
    for d in &listed {
        assert_eq!(st.dead_letter(d.id).await.unwrap().as_ref(), Some(d));
    }
    let past = listed.iter().map(|d| d.id).max().unwrap() + 1000;
    assert_eq!(st.dead_letter(past).await.unwrap(), None);
}

/// The same raw input at the same place, stored again, is one dead letter seen twice with
/// the latest reason; at another place it is another dead letter.
pub async fn the_same_dead_letter_seen_again_is_counted_not_duplicated(s: Subject) {
    let st = s.state();
    st.commit(Commit { dead_letters: vec![dead("p", "s", "line 1", "first")], ..commit("p", "s", 1) }).await.unwrap();
    let id = st.dead_letters(None, None, 10).await.unwrap()[0].id;
    st.commit(Commit { dead_letters: vec![dead("p", "s", "line 1", "again")], ..commit("p", "s", 2) }).await.unwrap();
    let all = st.dead_letters(None, None, 10).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].id, all[0].seen_count, all[0].reason.as_str()), (id, 2, "again"));
    st.commit(Commit { dead_letters: vec![dead("p", "s", "line 2", "elsewhere")], ..commit("p", "s", 2) })
        .await
        .unwrap();
    st.commit(Commit { dead_letters: vec![dead("p", "t", "line 1", "other stream")], ..commit("p", "t", 2) })
        .await
        .unwrap();
    assert_eq!(reasons(st, None, None).await, ["again", "elsewhere", "other stream"]);
}

/// A raw input longer than `DEAD_LETTER_RAW_MAX` is stored cut to it, with its full length;
/// a shorter one is kept whole. Two long inputs that share their first MiB are two dead
/// letters (deduplicated by the whole text), the same one again is one seen twice.
pub async fn a_huge_raw_input_is_kept_cut_and_deduplicated_by_its_whole_text(s: Subject) {
    use dovetail_core::state::DEAD_LETTER_RAW_MAX;
    let st = s.state();
    let big = |tail: &str| {
        // A multi-byte character across the cut: it is kept whole or not at all.
        let mut raw = "x".repeat(DEAD_LETTER_RAW_MAX - 1);
        raw.push('é');
        raw.push_str(tail);
        raw
    };
    let letter = |raw: String| DeadLetter { raw, ..dead("p", "s", "line 1", "too big") };
    let (a, b) = (big("first tail"), big("other tail"));
    st.commit(Commit { dead_letters: vec![letter(a.clone())], ..commit("p", "s", 1) }).await.unwrap();
    st.commit(Commit { dead_letters: vec![letter(b)], ..commit("p", "s", 1) }).await.unwrap();
    st.commit(Commit { dead_letters: vec![letter(a.clone())], ..commit("p", "s", 1) }).await.unwrap();
    let all = st.dead_letters(None, None, 10).await.unwrap();
    assert_eq!(all.len(), 2, "two texts, two dead letters");
    assert_eq!(all.iter().map(|d| d.seen_count).collect::<Vec<_>>(), [2, 1]);
    let got = st.dead_letter(all[0].id).await.unwrap().unwrap();
    assert_eq!(got.raw.len(), DEAD_LETTER_RAW_MAX - 1, "cut at a character boundary, within the bound");
    assert!(a.starts_with(&got.raw));
    assert_eq!(got.raw_len, Some(a.len() as u64));
    st.commit(Commit { dead_letters: vec![letter("{\"small\":1}".into())], ..commit("p", "s", 1) }).await.unwrap();
    let small = st.dead_letters(None, None, 10).await.unwrap().pop().unwrap();
    assert_eq!((small.raw.as_str(), small.raw_len), ("{\"small\":1}", None));
}

/// A replayed dead letter named in `resolved_dead_letters` is gone, with its dead-letter
/// story; the others stay.
pub async fn resolved_dead_letters_go_with_their_story(s: Subject) {
    let st = s.state();
    let mut c = explained(1, &[], &[]);
    c.dead_letters = vec![dead("p", "s", "line 7", "bad amount"), dead("p", "s", "line 8", "bad date")];
    c.dead_letters[1].key = Some("8".into());
    c.explain.as_mut().unwrap().stories.push(dead_story("7", "bad amount"));
    st.commit(c).await.unwrap();
    let listed = st.dead_letters(None, None, 10).await.unwrap();
    assert_eq!(
        st.key_history("p", "s", &key("7")).await.unwrap().story.map(|s| s.outcome),
        Some(Outcome::DeadLettered)
    );

    let replay =
        Commit { resolved_dead_letters: vec![listed[0].id], ledger: vec![entry("7", 2)], ..commit("p", "s", 2) };
    st.commit(replay).await.unwrap();
    assert_eq!(st.dead_letter(listed[0].id).await.unwrap(), None);
    assert_eq!(st.dead_letter(listed[1].id).await.unwrap().as_ref(), Some(&listed[1]));
    let h = st.key_history("p", "s", &key("7")).await.unwrap();
    assert!(h.story.is_none() && h.dead_letter.is_none(), "{h:?}");
    assert_eq!(h.ledger.map(|l| l.hash), Some(hash(2).to_hex()), "the replay's write is what is known");
}

fn dead_story(k: &str, reason: &str) -> Story {
    Story {
        key: key(k),
        fetch: None,
        location: Some(format!("line {k}")),
        outcome: Outcome::DeadLettered,
        reason: Some(reason.into()),
        raw: Some(format!(r#"{{"id":{k}}}"#)),
        item: None,
    }
}

/// A commit that fails after its dead letters and stories were written leaves neither: the
/// dead letter it resolved is still there, its new ones are not, and every key tells what it
/// told before.
pub async fn a_commit_failing_midway_leaves_no_dead_letter_or_story(s: Subject) {
    let st = s.state();
    let mut c = explained(1, &[("1", Outcome::Inserted, "{}")], &[]);
    c.dead_letters = vec![dead("p", "s", "line 7", "old")];
    c.explain.as_mut().unwrap().stories.push(dead_story("7", "old"));
    st.commit(c).await.unwrap();
    let old = st.dead_letters(None, None, 10).await.unwrap();
    let before_1 = st.key_history("p", "s", &key("1")).await.unwrap();
    let before_7 = st.key_history("p", "s", &key("7")).await.unwrap();

    let poison = Value::String("state-conformance: this commit must fail".into());
    s.fail_commits_at(poison.clone()).await;
    let mut c = explained(2, &[("1", Outcome::Updated, r#"{"v":2}"#), ("5", Outcome::Inserted, "{}")], &["9"]);
    c.dead_letters = vec![dead("p", "s", "line 8", "new")];
    c.dead_letters[0].key = Some("8".into());
    c.resolved_dead_letters = vec![old[0].id];
    c.explain.as_mut().unwrap().stories.push(dead_story("8", "new"));
    c.checkpoint = Some(Checkpoint { position: Some(poison), pass: 2, ..Checkpoint::default() });
    assert!(st.commit(c).await.is_err(), "the armed commit must fail");

    assert_eq!(st.dead_letters(None, None, 10).await.unwrap(), old);
    assert_eq!(st.key_history("p", "s", &key("1")).await.unwrap(), before_1);
    assert_eq!(st.key_history("p", "s", &key("7")).await.unwrap(), before_7);
    for k in ["5", "8", "9"] {
        let h = st.key_history("p", "s", &key(k)).await.unwrap();
        assert!(
            h.story.is_none() && h.unchanged.is_none() && h.ledger.is_none() && h.dead_letter.is_none(),
            "{k}: {h:?}"
        );
    }
}

/// One row per (path, change, observed shape): a repeat adds its count and moves the last
/// seen time and expected shape; a new observed shape is a new row; a repeat of an accepted
/// row opens it again.
pub async fn record_drift_counts_repeats_and_reopens_accepted_rows(s: Subject) {
    let st = s.state();
    st.record_drift("p", "s", &[drift("/price", "string", 3, "2026-01-01T00:00:00Z")]).await.unwrap();
    let mut again = drift("/price", "string", 2, "2026-01-02T00:00:00Z");
    again.expected = "number|null".into();
    st.record_drift("p", "s", &[again, drift("/price", "boolean", 1, "2026-01-02T00:00:00Z")]).await.unwrap();
    let rows = st.drift_events(Some("p")).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let price = rows.iter().find(|d| d.observed == "string").unwrap();
    assert_eq!(
        (price.count, price.first_seen.as_str(), price.last_seen.as_str()),
        (5, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
    );
    assert_eq!((price.expected.as_str(), price.first_at.as_str()), ("number|null", "GET /v1/items /price"));
    assert_eq!((price.pipeline.as_str(), price.stream.as_str(), price.change), ("p", "s", DriftClass::TypeChanged));
    assert_eq!(price.accepted_at, None);

    st.accept_drift("p", "s", "2026-01-03T00:00:00Z").await.unwrap();
    st.record_drift("p", "s", &[drift("/price", "string", 1, "2026-01-04T00:00:00Z")]).await.unwrap();
    let rows = st.drift_events(Some("p")).await.unwrap();
    let price = rows.iter().find(|d| d.observed == "string").unwrap();
    assert_eq!((price.count, price.accepted_at.as_deref()), (6, None), "seen again: open again");
    let boolean = rows.iter().find(|d| d.observed == "boolean").unwrap();
    assert_eq!(boolean.accepted_at.as_deref(), Some("2026-01-03T00:00:00Z"));
    st.record_drift("p", "t", &[drift("/price", "string", 1, "2026-01-04T00:00:00Z")]).await.unwrap();
    assert_eq!(st.drift_events(Some("p")).await.unwrap().len(), 3, "another stream's drift is its own row");
}

/// Drift history lists newest last-seen first (the later-recorded row first among equals),
/// accepted rows included, of one pipeline or all.
pub async fn drift_events_list_newest_first_and_filter_by_pipeline(s: Subject) {
    let st = s.state();
    assert_eq!(st.drift_events(None).await.unwrap(), []);
    st.record_drift("p", "s", &[drift("/a", "string", 1, "2026-01-01T00:00:00Z")]).await.unwrap();
    st.record_drift("p", "s", &[drift("/b", "string", 1, "2026-01-02T00:00:00Z")]).await.unwrap();
    st.record_drift("q", "s", &[drift("/q", "string", 1, "2026-01-03T00:00:00Z")]).await.unwrap();
    st.accept_drift("p", "s", "2026-01-03T00:00:00Z").await.unwrap();
    st.record_drift("p", "s", &[drift("/a", "string", 1, "2026-01-04T00:00:00Z")]).await.unwrap();
    st.record_drift("p", "s", &[drift("/c", "string", 1, "2026-01-02T00:00:00Z")]).await.unwrap();
    let paths = |rows: Vec<dovetail_core::StoredDrift>| rows.into_iter().map(|d| d.path).collect::<Vec<_>>();
    assert_eq!(paths(st.drift_events(None).await.unwrap()), ["/a", "/q", "/c", "/b"]);
    assert_eq!(paths(st.drift_events(Some("p")).await.unwrap()), ["/a", "/c", "/b"]);
    assert_eq!(paths(st.drift_events(Some("q")).await.unwrap()), ["/q"]);
    let b = st.drift_events(Some("p")).await.unwrap().pop().unwrap();
    assert_eq!(b.accepted_at.as_deref(), Some("2026-01-03T00:00:00Z"), "accepted rows are listed");
}

/// Accepting marks the open rows of one stream with the time and counts them; accepted,
/// other streams' and other pipelines' rows are left.
pub async fn accept_drift_marks_the_open_rows_of_one_stream(s: Subject) {
    let st = s.state();
    let seen = "2026-01-01T00:00:00Z";
    st.record_drift("p", "s", &[drift("/a", "string", 1, seen), drift("/b", "string", 1, seen)]).await.unwrap();
    st.record_drift("p", "t", &[drift("/a", "string", 1, seen)]).await.unwrap();
    st.record_drift("q", "s", &[drift("/a", "string", 1, seen)]).await.unwrap();
    assert_eq!(st.accept_drift("p", "s", "2026-01-05T00:00:00Z").await.unwrap(), 2);
    assert_eq!(st.accept_drift("p", "s", "2026-01-06T00:00:00Z").await.unwrap(), 0, "nothing open is left");
    for d in st.drift_events(None).await.unwrap() {
        let want = (d.pipeline == "p" && d.stream == "s").then_some("2026-01-05T00:00:00Z");
        assert_eq!(d.accepted_at.as_deref(), want, "{d:?}");
    }
    assert_eq!(st.accept_drift("nobody", "s", "2026-01-06T00:00:00Z").await.unwrap(), 0);
}

/// A key's latest written story (request, raw, outcome), a later unchanged read of it (not
/// matched by key prefix), the run's mapping and key columns, and its ledger row.
pub async fn key_history_tells_the_latest_story_and_later_unchanged_reads(s: Subject) {
    let st = s.state();
    st.commit(explained(1, &[("1", Outcome::Inserted, r#"{"id":1,"v":"a"}"#), ("2", Outcome::Inserted, "{}")], &[]))
        .await
        .unwrap();
    st.commit(explained(2, &[("1", Outcome::Updated, r#"{"id":1,"v":"b"}"#)], &["2", "22"])).await.unwrap();
    st.commit(explained(3, &[], &["1"])).await.unwrap();

    let one = st.key_history("p", "s", &key("1")).await.unwrap();
    let story = one.story.expect("key 1 has a story");
    assert_eq!((story.run_id, story.outcome), (2, Outcome::Updated));
    assert_eq!(story.raw.as_deref(), Some(r#"{"id":1,"v":"b"}"#));
    let fetch = story.fetch.expect("the story's request");
    assert_eq!((fetch.method.as_str(), fetch.url.as_str()), ("GET", "https://api.test/v1/items?page=2"));
    assert_eq!((fetch.status, fetch.request_id.as_deref(), fetch.run_id), (Some(200), Some("req-2"), 2));
    assert_eq!(one.unchanged.map(|f| f.run_id), Some(3), "read unchanged after the update");
    assert_eq!(one.mapping, Some(json!({"rename": {"name": "full_name"}})));
    assert_eq!(one.key_columns, ["id"]);
    let ledger = one.ledger.expect("key 1's ledger row");
    assert_eq!((ledger.hash, ledger.pass, ledger.dest_id), (hash(2).to_hex(), 2, None));

    let two = st.key_history("p", "s", &key("2")).await.unwrap();
    assert_eq!(two.story.map(|s| s.run_id), Some(1));
    assert_eq!(two.unchanged.map(|f| f.run_id), Some(2), "\"22\" in the same list is another key");
    let none = st.key_history("p", "s", &key("3")).await.unwrap();
    assert!(none.story.is_none() && none.unchanged.is_none() && none.ledger.is_none(), "{none:?}");
    let elsewhere = st.key_history("p", "t", &key("1")).await.unwrap();
    assert!(elsewhere.story.is_none() && elsewhere.ledger.is_none(), "another stream's key: {elsewhere:?}");
}

/// A dead-lettered key's story carries the reason, and the key's newest dead letter comes
/// with it.
pub async fn key_history_of_a_dead_lettered_key_has_its_reason(s: Subject) {
    let st = s.state();
    let mut c = explained(1, &[], &[]);
    c.dead_letters = vec![dead("p", "s", "line 6", "older"), dead("p", "s", "line 7", "amount is not a number")];
    c.explain.as_mut().unwrap().stories.push(dead_story("7", "amount is not a number"));
    st.commit(c).await.unwrap();
    let h = st.key_history("p", "s", &key("7")).await.unwrap();
    let story = h.story.expect("a dead-letter story");
    assert_eq!(
        (story.outcome, story.reason.as_deref(), story.run_id),
        (Outcome::DeadLettered, Some("amount is not a number"), 1)
    );
    assert_eq!(story.raw.as_deref(), Some(r#"{"id":7}"#));
    assert_eq!(story.location.as_deref(), Some("line 7"));
    assert_eq!(h.dead_letter.map(|d| d.reason), Some("amount is not a number".into()), "the newest dead letter");
    assert!(h.ledger.is_none());
}

/// Pruning by count keeps the newest runs of that pipeline only, with their stories and
/// unchanged reads; older runs go with their pages (a story keeps its run and outcome, not
/// its request, raw record or mapping); the ledger is never pruned; a second pass prunes
/// nothing.
pub async fn prune_by_count_keeps_the_newest_runs_and_the_whole_ledger(s: Subject) {
    let st = s.state();
    let mut runs = Vec::new();
    for _ in 1..=5 {
        let run = st.begin_run("p", &now_rfc3339()).await.unwrap();
        let k = run.to_string();
        let mut c = explained(run, &[(k.as_str(), Outcome::Inserted, "{}")], &["0"]);
        if runs.is_empty() {
            // Key 0, and enough stories to take several pruning batches.
            let x = c.explain.as_mut().unwrap();
            for i in std::iter::once(0).chain(100..160) {
                x.stories.push(Story {
                    key: key(&i.to_string()),
                    fetch: Some(0),
                    location: None,
                    outcome: Outcome::Inserted,
                    reason: None,
                    raw: Some("{}".into()),
                    item: None,
                });
                c.ledger.push(LedgerEntry { key: key(&i.to_string()), hash: hash(1), dest_id: None });
            }
            x.fetches[0].unchanged.clear();
        }
        st.commit(c).await.unwrap();
        st.finish_run(run, &now_rfc3339(), RunOutcome::Succeeded, &json!({})).await.unwrap();
        runs.push(run);
    }
    st.begin_run("other", &now_rfc3339()).await.unwrap();
    let r = Retention { runs: Some(2), max_age: None, dead_letters_max_age: None, batch: 7 };
    let pruned = st.prune("p", &r).await.unwrap();
    assert_eq!((pruned.runs, pruned.fetches, pruned.drift_events, pruned.dead_letters), (3, 3, 0, 0), "{pruned:?}");
    let kept: Vec<i64> = st.runs(Some("p"), 10).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(kept, [runs[4], runs[3]]);
    assert_eq!(st.runs(Some("other"), 10).await.unwrap().len(), 1, "another pipeline's runs stay");

    let ledger_keys: Vec<_> =
        runs.iter().map(|r| key(&r.to_string())).chain((100..160).map(|i| key(&i.to_string()))).collect();
    let rows = st.ledger_lookup("p", "s", &ledger_keys).await.unwrap();
    assert!(rows.iter().all(Option::is_some), "the ledger is never pruned: {rows:?}");
    let old = st.key_history("p", "s", &key("100")).await.unwrap();
    let story = old.story.expect("a pruned run's written story keeps its run and outcome");
    assert_eq!((story.run_id, story.outcome), (runs[0], Outcome::Inserted));
    assert!(story.fetch.is_none() && story.raw.is_none(), "its page went with its run: {story:?}");
    assert_eq!(old.mapping, None, "so did the run's mapping");
    let kept_story = st.key_history("p", "s", &key(&runs[3].to_string())).await.unwrap();
    assert_eq!(kept_story.story.as_ref().map(|s| s.run_id), Some(runs[3]));
    assert!(kept_story.story.unwrap().fetch.is_some(), "a kept run keeps its page");
    assert_eq!(kept_story.mapping, Some(json!({"rename": {"name": "full_name"}})));
    let zero = st.key_history("p", "s", &key("0")).await.unwrap();
    assert_eq!(zero.unchanged.map(|f| f.run_id), Some(runs[4]), "kept runs still tell unchanged reads");
    assert!(st.prune("p", &r).await.unwrap().is_empty(), "pruning again finds nothing");
}

/// Pruning by age removes runs started before `max_age` (never a pipeline's latest run)
/// and accepted drift last seen before it; open drift stays; dead letters stay unless
/// `dead_letters_max_age` is set, then those not seen since go.
pub async fn prune_by_age_keeps_the_latest_run_open_drift_and_owed_dead_letters(s: Subject) {
    let st = s.state();
    let mut runs = Vec::new();
    for started in ["2020-01-01T00:00:00Z", "2020-02-01T00:00:00Z", "2020-03-01T00:00:00Z"] {
        let run = st.begin_run("p", started).await.unwrap();
        let k = run.to_string();
        st.commit(explained(run, &[(k.as_str(), Outcome::Inserted, "{}")], &[])).await.unwrap();
        runs.push(run);
    }
    let mut old = dead("p", "s", "line 1", "old");
    old.created_at = "2020-01-01T00:00:00Z".into();
    let mut fresh = dead("p", "s", "line 2", "fresh");
    fresh.created_at = String::new();
    let mut elsewhere = old.clone();
    elsewhere.pipeline = "q".into();
    st.commit(Commit { dead_letters: vec![old, fresh, elsewhere], ..commit("p", "s", 9) }).await.unwrap();
    let seen = "2020-01-01T00:00:00Z";
    st.record_drift("p", "s", &[drift("/accepted", "string", 1, seen), drift("/open", "string", 1, seen)])
        .await
        .unwrap();
    st.record_drift("q", "s", &[drift("/accepted", "string", 1, seen)]).await.unwrap();
    st.accept_drift("p", "s", "2020-01-02T00:00:00Z").await.unwrap();
    st.accept_drift("q", "s", "2020-01-02T00:00:00Z").await.unwrap();
    st.record_drift("p", "s", &[drift("/open", "string", 1, "2020-01-03T00:00:00Z")]).await.unwrap();

    let day = Duration::from_secs(86_400);
    let r = Retention { runs: None, max_age: Some(day), dead_letters_max_age: None, batch: 1000 };
    let pruned = st.prune("p", &r).await.unwrap();
    assert_eq!((pruned.runs, pruned.fetches, pruned.drift_events, pruned.dead_letters), (2, 2, 1, 0), "{pruned:?}");
    let kept: Vec<i64> = st.runs(Some("p"), 10).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(kept, [runs[2]], "the latest run stays however old");
    let story = st.key_history("p", "s", &key(&runs[2].to_string())).await.unwrap().story;
    assert_eq!(story.map(|s| s.run_id), Some(runs[2]));
    let left: Vec<(String, String)> =
        st.drift_events(None).await.unwrap().into_iter().map(|d| (d.pipeline, d.path)).collect();
    assert!(
        left.contains(&("p".into(), "/open".into())) && left.contains(&("q".into(), "/accepted".into())),
        "{left:?}"
    );
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(reasons(st, None, None).await, ["old", "fresh", "old"], "owed dead letters stay by default");

    let r = Retention { dead_letters_max_age: Some(day), ..r };
    assert_eq!(st.prune("p", &r).await.unwrap().dead_letters, 1);
    let left: Vec<(String, String)> =
        st.dead_letters(None, None, 10).await.unwrap().into_iter().map(|d| (d.pipeline, d.reason)).collect();
    assert_eq!(left, [("p".into(), "fresh".into()), ("q".into(), "old".into())]);
}

/// The request id a write noted reads back for its key — the last one noted, in its own
/// pipeline and stream only; a key with none has none.
pub async fn write_request_is_the_last_one_noted_for_its_key(s: Subject) {
    let st = s.state();
    assert_eq!(st.write_request("p", "s", &key("1")).await.unwrap(), None);
    st.record_write_request("p", "s", &key("1"), "req_1").await.unwrap();
    st.record_write_request("p", "s", &key("1"), "req_2").await.unwrap();
    st.record_write_request("p", "t", &key("1"), "req_t").await.unwrap();
    st.record_write_request("q", "s", &key("1"), "req_q").await.unwrap();
    assert_eq!(st.write_request("p", "s", &key("1")).await.unwrap().as_deref(), Some("req_2"));
    assert_eq!(st.write_request("p", "t", &key("1")).await.unwrap().as_deref(), Some("req_t"));
    assert_eq!(st.write_request("q", "s", &key("1")).await.unwrap().as_deref(), Some("req_q"));
    assert_eq!(st.write_request("p", "s", &key("2")).await.unwrap(), None);
}

/// Forgetting a ledger forgets the request ids noted for the keys of its scope (kept
/// destination ids or not: the next run writes every record again and notes new ones), and
/// only those.
pub async fn forget_ledger_forgets_the_request_ids_of_its_scope(s: Subject) {
    let st = s.state();
    let with_id = |k: &str| LedgerEntry { key: key(k), hash: hash(7), dest_id: Some(format!("d-{k}")) };
    for (p, s_) in [("p", "s"), ("p", "t"), ("q", "s")] {
        st.commit(Commit { ledger: vec![with_id("1")], ..commit(p, s_, 1) }).await.unwrap();
        st.record_write_request(p, s_, &key("1"), &format!("req_{p}{s_}")).await.unwrap();
        // Noted before a commit that never came: no ledger row holds the key.
        st.record_write_request(p, s_, &key("2"), "req_lost").await.unwrap();
    }
    st.forget_ledger("p", Some("s"), true).await.unwrap();
    assert_eq!(
        st.write_request("p", "s", &key("1")).await.unwrap(),
        None,
        "its destination id kept, its request id not"
    );
    assert_eq!(st.write_request("p", "s", &key("2")).await.unwrap(), None);
    assert_eq!(
        st.write_request("p", "t", &key("1")).await.unwrap().as_deref(),
        Some("req_pt"),
        "another stream's stays"
    );
    st.forget_ledger("p", None, false).await.unwrap();
    for k in ["1", "2"] {
        assert_eq!(st.write_request("p", "t", &key(k)).await.unwrap(), None, "key {k}");
    }
    assert_eq!(st.write_request("q", "s", &key("1")).await.unwrap().as_deref(), Some("req_qs"), "q is untouched");
    assert_eq!(st.write_request("q", "s", &key("2")).await.unwrap().as_deref(), Some("req_lost"));
}
