//! Checks of the delivery contract ([`DeliveryStore`]): they
//! call nothing else, so a store that implements only that contract can run them.

use std::collections::BTreeSet;

use dovetail_core::state::{Checkpoint, Commit, LedgerEntry, LedgerVersion, PausedStream, PendingCreate};
use dovetail_core::{DeliveryStore, ErrorKind, Key, PauseKind};
use serde_json::{Value, json};

use super::{Subject, checkpoint, commit, entry, hash, key, pause, queued};

async fn keys_in_outbox(st: &dyn DeliveryStore, pipeline: &str, stream: &str) -> Vec<String> {
    st.outbox(pipeline, stream, usize::MAX).await.unwrap().iter().map(|e| e.key.as_str().to_owned()).collect()
}

async fn stale(st: &dyn DeliveryStore, pipeline: &str, stream: &str, pass: u64) -> BTreeSet<String> {
    st.stale_keys(pipeline, stream, pass, usize::MAX).await.unwrap().iter().map(|k| k.as_str().to_owned()).collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// A pipeline's run lock is refused (as a Busy error naming the pipeline) while held,
/// other pipelines lock freely, and dropping the lock frees it.
pub async fn lock_excludes_a_second_holder_until_released(s: Subject) {
    let st = s.delivery();
    let held = st.lock("p").await.expect("a free lock is taken");
    let err = st.lock("p").await.expect_err("a held lock is refused");
    assert_eq!(err.kind(), &ErrorKind::Busy, "{err}");
    assert!(err.message().contains("`p`"), "the refusal names the pipeline: {err}");
    let other = st.lock("q").await.expect("another pipeline's lock is independent");
    drop(held);
    let again = st.lock("p").await.expect("a released lock is free again");
    assert!(st.lock("q").await.is_err(), "q is still held");
    drop((again, other));
    st.lock("q").await.expect("q is free once released");
}

/// A committed checkpoint reads back equal (every field, big numbers included), only for
/// its own pipeline and stream; a commit without one leaves it; a later one replaces it.
pub async fn checkpoints_round_trip_per_stream_and_are_replaced(s: Subject) {
    let st = s.delivery();
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), None);
    let first = checkpoint(json!({"offset": 100, "cursor": "abc", "big": 123456789012345678901234567890u128}));
    st.commit(Commit { checkpoint: Some(first.clone()), ..commit("p", "s", 3) }).await.unwrap();
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), Some(first.clone()));
    assert_eq!(st.checkpoint("p", "t").await.unwrap(), None, "another stream has none");
    assert_eq!(st.checkpoint("q", "s").await.unwrap(), None, "another pipeline has none");

    st.commit(Commit { ledger: vec![entry("1", 1)], ..commit("p", "s", 3) }).await.unwrap();
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), Some(first), "a commit without a checkpoint keeps it");

    let second = Checkpoint { position: None, pass: 4, floor: None, max: None, pass_complete: false };
    st.commit(Commit { checkpoint: Some(second.clone()), ..commit("p", "s", 4) }).await.unwrap();
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), Some(second));
}

/// `reset` of one stream forgets its checkpoint and pause only; of a pipeline, every
/// stream's of that pipeline only; it counts checkpoints and keeps the ledger and outbox.
pub async fn reset_forgets_checkpoints_and_pauses_in_its_scope_only(s: Subject) {
    let st = s.delivery();
    for (p, s_) in [("p", "s"), ("p", "t"), ("q", "s")] {
        let mut c = commit(p, s_, 1);
        c.ledger = vec![entry("1", 1)];
        c.outbox_add = vec![queued("1", json!({"id": 1}))];
        c.checkpoint = Some(checkpoint(json!(format!("{p}/{s_}"))));
        st.commit(c).await.unwrap();
        st.pause(&pause(p, s_, PauseKind::Unavailable, "down")).await.unwrap();
    }
    assert_eq!(st.reset("p", Some("s")).await.unwrap(), 1);
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), None);
    assert_eq!(st.checkpoint("p", "t").await.unwrap(), Some(checkpoint(json!("p/t"))));
    assert_eq!(st.checkpoint("q", "s").await.unwrap(), Some(checkpoint(json!("q/s"))));
    let paused: Vec<(String, String)> =
        st.paused(None).await.unwrap().into_iter().map(|p| (p.pipeline, p.stream)).collect();
    assert_eq!(paused, [("p".into(), "t".into()), ("q".into(), "s".into())]);
    assert_eq!(st.ledger_lookup("p", "s", &[key("1")]).await.unwrap(), [Some(hash(1))], "the ledger stays");
    assert_eq!(st.outbox_len("p", "s").await.unwrap(), 1, "the outbox (writes still owed) stays");

    assert_eq!(st.reset("p", None).await.unwrap(), 1, "only p/t still had a checkpoint");
    assert_eq!(st.checkpoint("p", "t").await.unwrap(), None);
    assert_eq!(st.paused(Some("p")).await.unwrap(), []);
    assert_eq!(st.checkpoint("q", "s").await.unwrap(), Some(checkpoint(json!("q/s"))), "q is untouched");
    assert_eq!(st.paused(Some("q")).await.unwrap().len(), 1);
    assert_eq!(st.reset("nobody", None).await.unwrap(), 0);
}

/// A commit's sink mark is stored for its stream (a commit without one leaves it), per
/// pipeline and stream; a stream that never had one answers `None`.
pub async fn sink_mark_is_the_last_one_committed_for_its_stream(s: Subject) {
    let st = s.delivery();
    assert_eq!(st.sink_mark("p", "s").await.unwrap(), None);
    st.commit(Commit { sink_mark: Some("m1".into()), ..commit("p", "s", 1) }).await.unwrap();
    st.commit(Commit { sink_mark: Some("other".into()), ..commit("q", "s", 1) }).await.unwrap();
    assert_eq!(st.sink_mark("p", "s").await.unwrap().as_deref(), Some("m1"));
    st.commit(Commit { ledger: vec![entry("1", 1)], ..commit("p", "s", 1) }).await.unwrap();
    assert_eq!(st.sink_mark("p", "s").await.unwrap().as_deref(), Some("m1"), "a commit without a mark leaves it");
    st.commit(Commit { sink_mark: Some("m2".into()), ..commit("p", "s", 1) }).await.unwrap();
    assert_eq!(st.sink_mark("p", "s").await.unwrap().as_deref(), Some("m2"));
    assert_eq!(st.sink_mark("q", "s").await.unwrap().as_deref(), Some("other"));
    assert_eq!(st.sink_mark("p", "t").await.unwrap(), None);
    assert_eq!(st.reset("p", None).await.unwrap(), 0);
    assert_eq!(st.sink_mark("p", "s").await.unwrap().as_deref(), Some("m2"), "reset keeps the mark");
}

/// `forget_ledger` voids what the ledger remembers in its scope only: hashes (rows with a
/// destination id keep it when asked to, with a hash that matches nothing), the sink mark
/// and the checkpoint; the outbox and pauses stay.
pub async fn forget_ledger_voids_hashes_marks_and_checkpoints_in_its_scope(s: Subject) {
    let st = s.delivery();
    let with_id = |k: &str| LedgerEntry { key: key(k), hash: hash(7), dest_id: Some(format!("d-{k}")) };
    for (p, s_) in [("p", "s"), ("p", "t"), ("q", "s")] {
        st.commit(Commit {
            ledger: vec![entry("1", 1), with_id("2")],
            outbox_add: vec![queued("o", json!({"id": 1}))],
            checkpoint: Some(checkpoint(json!(format!("{p}/{s_}")))),
            sink_mark: Some(format!("{p}/{s_}")),
            ..commit(p, s_, 1)
        })
        .await
        .unwrap();
    }
    st.pause(&pause("p", "s", PauseKind::Unavailable, "down")).await.unwrap();
    let keys = [key("1"), key("2")];
    assert_eq!(st.forget_ledger("p", Some("s"), true).await.unwrap(), 2, "one row gone, one voided");
    let voided = st.ledger_lookup("p", "s", &keys).await.unwrap();
    assert_eq!(voided[0], None);
    assert!(voided[1].is_some_and(|h| h != hash(7)), "the kept row's hash matches nothing: {voided:?}");
    assert_eq!(st.ledger_dest_ids("p", "s", &keys).await.unwrap(), [None, Some("d-2".into())]);
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), None);
    assert_eq!(st.sink_mark("p", "s").await.unwrap(), None);
    assert_eq!(st.outbox_len("p", "s").await.unwrap(), 1, "the outbox stays");
    assert_eq!(st.paused(Some("p")).await.unwrap().len(), 1, "pauses stay");
    assert_eq!(st.ledger_lookup("p", "t", &keys).await.unwrap(), [Some(hash(1)), Some(hash(7))]);
    assert_eq!(st.sink_mark("p", "t").await.unwrap().as_deref(), Some("p/t"));

    assert_eq!(st.forget_ledger("p", None, false).await.unwrap(), 3, "p/s's kept row and p/t's two rows");
    assert!(!st.has_ledger("p", "s").await.unwrap() && !st.has_ledger("p", "t").await.unwrap());
    assert_eq!(st.ledger_dest_ids("p", "t", &keys).await.unwrap(), [None, None]);
    assert_eq!(st.checkpoint("p", "t").await.unwrap(), None);
    assert_eq!(st.ledger_lookup("q", "s", &keys).await.unwrap(), [Some(hash(1)), Some(hash(7))], "q is untouched");
    assert_eq!(st.checkpoint("q", "s").await.unwrap(), Some(checkpoint(json!("q/s"))));
    assert_eq!(st.sink_mark("q", "s").await.unwrap().as_deref(), Some("q/s"));
}

/// A pending create reads back per key (in the order asked, with its idempotency key and
/// time), only in its own pipeline and stream; recording it again replaces it; neither a
/// reset nor forgetting the ledger drops it; clearing it says whether one was pending.
pub async fn pending_creates_are_kept_per_key_until_cleared(s: Subject) {
    let st = s.delivery();
    let keys = [key("[1,\"a\"]"), key("missing"), key("2")];
    assert_eq!(st.pending_creates("p", "s", &keys).await.unwrap(), [None, None, None]);
    let pend = |k: &Key, idem: &str, at: &str| PendingCreate {
        key: k.clone(),
        idempotency_key: idem.into(),
        since: at.into(),
    };
    let pending = |k: &Key, idem: &str, at: &str| Some(pend(k, idem, at));
    st.record_pending_create("p", "s", &pend(&keys[0], "idem-1", "2026-01-01T00:00:00Z")).await.unwrap();
    st.record_pending_create("p", "s", &pend(&keys[2], "idem-2", "2026-01-01T00:00:01Z")).await.unwrap();
    st.record_pending_create("q", "s", &pend(&keys[0], "idem-q", "2026-01-01T00:00:02Z")).await.unwrap();
    assert_eq!(
        st.pending_creates("p", "s", &keys).await.unwrap(),
        [
            pending(&keys[0], "idem-1", "2026-01-01T00:00:00Z"),
            None,
            pending(&keys[2], "idem-2", "2026-01-01T00:00:01Z")
        ]
    );
    assert_eq!(st.pending_creates("p", "t", &keys[..1]).await.unwrap(), [None], "another stream has none");

    st.record_pending_create("p", "s", &pend(&keys[0], "idem-1b", "2026-01-03T00:00:00Z")).await.unwrap();
    st.commit(Commit { ledger: vec![entry("2", 2)], ..commit("p", "s", 1) }).await.unwrap();
    st.reset("p", None).await.unwrap();
    st.forget_ledger("p", None, false).await.unwrap();
    assert_eq!(
        st.pending_creates("p", "s", &keys[..1]).await.unwrap(),
        [pending(&keys[0], "idem-1b", "2026-01-03T00:00:00Z")],
        "recorded again it is replaced; reset and forget_ledger keep it"
    );

    assert!(st.clear_pending_create("p", "s", &keys[0]).await.unwrap());
    assert!(!st.clear_pending_create("p", "s", &keys[0]).await.unwrap(), "nothing left to clear");
    assert!(!st.clear_pending_create("p", "s", &keys[1]).await.unwrap());
    assert_eq!(
        st.pending_creates("p", "s", &keys).await.unwrap(),
        [None, None, pending(&keys[2], "idem-2", "2026-01-01T00:00:01Z")]
    );
    assert_eq!(
        st.pending_creates("q", "s", &keys[..1]).await.unwrap(),
        [pending(&keys[0], "idem-q", "2026-01-01T00:00:02Z")],
        "another pipeline's stays"
    );
}

/// A commit whose ledger row stores a key's destination id clears that key's pending
/// create with it (one transaction: a crash cannot leave one beside a committed id); a row
/// without an id, another stream's and another pipeline's pending creates stay.
pub async fn a_commit_storing_a_destination_id_clears_its_pending_create(s: Subject) {
    let st = s.delivery();
    let pend = |k: &str| PendingCreate {
        key: key(k),
        idempotency_key: format!("idem-{k}"),
        since: "2026-01-01T00:00:00Z".into(),
    };
    for (p, stream, k) in [("p", "s", "a"), ("p", "s", "b"), ("p", "t", "a"), ("q", "s", "a")] {
        st.record_pending_create(p, stream, &pend(k)).await.unwrap();
    }
    let created = LedgerEntry { key: key("a"), hash: hash(1), dest_id: Some("cus_a".into()) };
    st.commit(Commit { ledger: vec![created, entry("b", 2)], ..commit("p", "s", 1) }).await.unwrap();
    assert_eq!(
        st.pending_creates("p", "s", &[key("a"), key("b")]).await.unwrap(),
        [None, Some(pend("b"))],
        "the key whose id was committed is no longer pending; the one without an id is"
    );
    assert_eq!(st.pending_creates("p", "t", &[key("a")]).await.unwrap(), [Some(pend("a"))], "another stream's stays");
    assert_eq!(st.pending_creates("q", "s", &[key("a")]).await.unwrap(), [Some(pend("a"))], "another pipeline's stays");
}

/// A write's request id is accepted per key, again for the same key (replacing it), and
/// for a key the ledger does not hold yet (a create noted before its commit).
pub async fn record_write_request_takes_one_request_id_per_key(s: Subject) {
    let st = s.delivery();
    st.record_write_request("p", "s", &key("1"), "req_1").await.unwrap();
    st.record_write_request("p", "s", &key("1"), "req_2").await.unwrap();
    st.record_write_request("p", "t", &key("1"), "req_t").await.unwrap();
    st.record_write_request("q", "s", &key("[1,\"a\"]"), "req_q").await.unwrap();
}

/// Lookups answer in the order of the keys asked (repeats and misses included), from
/// their own pipeline and stream only.
pub async fn ledger_lookup_answers_in_key_order_within_its_stream(s: Subject) {
    let st = s.delivery();
    st.commit(Commit { ledger: vec![entry("[1,\"a\"]", 1), entry("3", 3)], ..commit("p", "s", 1) }).await.unwrap();
    st.commit(Commit { ledger: vec![entry("3", 30)], ..commit("q", "s", 1) }).await.unwrap();
    st.commit(Commit { ledger: vec![entry("3", 31)], ..commit("p", "t", 1) }).await.unwrap();
    let keys = [key("3"), key("missing"), key("[1,\"a\"]"), key("3")];
    assert_eq!(st.ledger_lookup("p", "s", &keys).await.unwrap(), [Some(hash(3)), None, Some(hash(1)), Some(hash(3))]);
    assert_eq!(st.ledger_lookup("q", "s", &keys[..1]).await.unwrap(), [Some(hash(30))]);
    assert_eq!(st.ledger_lookup("p", "t", &keys[..1]).await.unwrap(), [Some(hash(31))]);
    assert_eq!(st.ledger_lookup("p", "nope", &keys).await.unwrap(), [None; 4]);
    assert!(st.ledger_lookup("p", "s", &[]).await.unwrap().is_empty());
    st.commit(Commit { ledger: vec![entry("3", 4)], ..commit("p", "s", 2) }).await.unwrap();
    assert_eq!(st.ledger_lookup("p", "s", &keys[..1]).await.unwrap(), [Some(hash(4))], "an upsert replaces");
}

/// A destination id stays with its key when later rows carry none, is replaced by a new
/// one, and is answered in key order for its own stream only.
pub async fn ledger_dest_ids_are_kept_until_replaced(s: Subject) {
    let st = s.delivery();
    let with =
        |k: &str, n: u8, id: Option<&str>| LedgerEntry { key: key(k), hash: hash(n), dest_id: id.map(Into::into) };
    st.commit(Commit { ledger: vec![with("1", 1, Some("cus_1")), with("2", 2, None)], ..commit("p", "s", 1) })
        .await
        .unwrap();
    let keys = [key("2"), key("1"), key("9")];
    assert_eq!(st.ledger_dest_ids("p", "s", &keys).await.unwrap(), [None, Some("cus_1".into()), None]);
    st.commit(Commit { ledger: vec![with("1", 5, None)], ..commit("p", "s", 2) }).await.unwrap();
    assert_eq!(st.ledger_dest_ids("p", "s", &keys[1..2]).await.unwrap(), [Some("cus_1".into())], "kept");
    assert_eq!(st.ledger_lookup("p", "s", &keys[1..2]).await.unwrap(), [Some(hash(5))], "while the hash moved");
    st.commit(Commit { ledger: vec![with("1", 6, Some("cus_9")), with("2", 6, Some("cus_2"))], ..commit("p", "s", 3) })
        .await
        .unwrap();
    assert_eq!(st.ledger_dest_ids("p", "s", &keys).await.unwrap(), [Some("cus_2".into()), Some("cus_9".into()), None]);
    assert_eq!(st.ledger_dest_ids("q", "s", &keys).await.unwrap(), [None, None, None], "another pipeline");
}

/// `false` lets an initial load skip every lookup, so a stream with ledger rows must answer
/// `true` — whatever other pipelines or streams hold, and after some of its rows went.
/// (`false` for an empty stream is an optimisation; the trait's default answers `true`.)
pub async fn has_ledger_is_true_for_a_stream_with_rows(s: Subject) {
    let st = s.delivery();
    st.commit(Commit { ledger: vec![entry("1", 1), entry("2", 2)], ..commit("p", "s", 1) }).await.unwrap();
    st.commit(Commit { ledger: vec![entry("1", 1)], ..commit("q", "t", 1) }).await.unwrap();
    assert!(st.has_ledger("p", "s").await.unwrap());
    assert!(st.has_ledger("q", "t").await.unwrap());
    st.commit(Commit { forget: vec![key("1")], ..commit("p", "s", 2) }).await.unwrap();
    assert!(st.has_ledger("p", "s").await.unwrap(), "one row is left");
    for (p, s_) in [("p", "t"), ("q", "s"), ("nobody", "s")] {
        if !st.has_ledger(p, s_).await.unwrap() {
            assert_eq!(st.ledger_lookup(p, s_, &[key("1"), key("2")]).await.unwrap(), [None, None], "{p}/{s_}");
        }
    }
}

/// Rows written or touched in a pass are not stale for it; forgotten rows are gone; older
/// passes' rows are, limited to `limit`, in their own stream only.
pub async fn stale_keys_are_the_rows_of_older_passes(s: Subject) {
    let st = s.delivery();
    let all = ["a", "b", "c", "d"].map(|k| entry(k, 1));
    st.commit(Commit { ledger: all.to_vec(), ..commit("p", "s", 1) }).await.unwrap();
    st.commit(Commit { ledger: vec![entry("z", 1)], ..commit("p", "t", 1) }).await.unwrap();
    st.commit(Commit {
        ledger: vec![entry("a", 2)],
        touched: vec![key("b")],
        forget: vec![key("c")],
        ..commit("p", "s", 2)
    })
    .await
    .unwrap();
    assert_eq!(stale(st, "p", "s", 1).await, set(&[]), "nothing is older than pass 1");
    assert_eq!(stale(st, "p", "s", 2).await, set(&["d"]));
    assert_eq!(stale(st, "p", "s", 3).await, set(&["a", "b", "d"]), "forgotten rows are gone");
    let two = st.stale_keys("p", "s", 3, 2).await.unwrap();
    assert_eq!(two.len(), 2, "limit");
    assert!(two.iter().all(|k| ["a", "b", "d"].contains(&k.as_str())), "{two:?}");
    assert_eq!(stale(st, "p", "t", 2).await, set(&["z"]), "another stream's rows are its own");
    assert_eq!(stale(st, "q", "s", 9).await, set(&[]));
    assert_eq!(st.ledger_lookup("p", "s", &[key("c")]).await.unwrap(), [None]);
}

/// Every row of a commit larger than any batching a store does is written, in order, and a
/// key written twice in one commit keeps its last row.
pub async fn a_large_commit_writes_every_row_and_the_last_row_of_a_key_wins(s: Subject) {
    let st = s.delivery();
    let n = 1234;
    let mut ledger: Vec<LedgerEntry> = (0..n).map(|i| entry(&i.to_string(), (i % 200) as u8)).collect();
    ledger.push(entry("7", 250));
    st.commit(Commit { ledger, ..commit("p", "s", 1) }).await.unwrap();
    let keys: Vec<Key> = (0..n).map(|i| key(&i.to_string())).collect();
    let got = st.ledger_lookup("p", "s", &keys).await.unwrap();
    for (i, h) in got.iter().enumerate() {
        let want = if i == 7 { 250 } else { (i % 200) as u8 };
        assert_eq!(*h, Some(hash(want)), "key {i}");
    }
}

/// A commit that fails after its ledger, outbox and touch parts were written leaves none of
/// them: old hashes, passes, destination ids, outbox and checkpoint as before, a new
/// stream unknown; and the store takes the next commit as usual.
pub async fn a_commit_failing_midway_leaves_nothing_behind(s: Subject) {
    let st = s.delivery();
    let before = checkpoint(json!("before"));
    st.commit(Commit {
        ledger: vec![entry("keep", 1), entry("gone", 2)],
        outbox_add: vec![queued("o1", json!({"n": 1})), queued("o2", json!({"n": 2}))],
        checkpoint: Some(before.clone()),
        ..commit("p", "s", 1)
    })
    .await
    .unwrap();
    st.commit(Commit {
        ledger: vec![LedgerEntry { key: key("keep"), hash: hash(1), dest_id: Some("d1".into()) }],
        ..commit("p", "s", 1)
    })
    .await
    .unwrap();
    let queue = st.outbox("p", "s", 10).await.unwrap();
    let poison = Value::String("state-conformance: this commit must fail".into());
    s.fail_commits_at(poison.clone()).await;
    for stream in ["s", "fresh"] {
        let c = Commit {
            ledger: vec![LedgerEntry { key: key("keep"), hash: hash(9), dest_id: Some("d9".into()) }, entry("new", 9)],
            touched: vec![key("gone")],
            forget: vec![key("keep")],
            outbox_add: vec![queued("o3", json!({"n": 3}))],
            outbox_done: queue.iter().map(|e| e.id).take(1).collect(),
            checkpoint: Some(Checkpoint { position: Some(poison.clone()), pass: 2, ..Checkpoint::default() }),
            sink_mark: Some("poisoned".into()),
            ..commit("p", stream, 2)
        };
        assert!(st.commit(c).await.is_err(), "the armed commit to {stream} must fail");
    }
    let keys = [key("keep"), key("gone"), key("new")];
    assert_eq!(st.ledger_lookup("p", "s", &keys).await.unwrap(), [Some(hash(1)), Some(hash(2)), None]);
    assert_eq!(st.ledger_dest_ids("p", "s", &keys[..1]).await.unwrap(), [Some("d1".into())]);
    assert_eq!(stale(st, "p", "s", 2).await, set(&["keep", "gone"]), "no pass was bumped");
    assert_eq!(st.outbox("p", "s", 10).await.unwrap(), queue, "the outbox is as it was");
    assert_eq!(st.checkpoint("p", "s").await.unwrap(), Some(before));
    assert_eq!(st.ledger_lookup("p", "fresh", &keys).await.unwrap(), [None, None, None]);
    assert_eq!(st.checkpoint("p", "fresh").await.unwrap(), None);
    assert_eq!(st.sink_mark("p", "s").await.unwrap(), None, "no sink mark was stored");
    assert_eq!(st.outbox_len("p", "fresh").await.unwrap(), 0);
    assert_eq!(st.outbox_depths(Some("p")).await.unwrap(), [("p".into(), "s".into(), 2)]);

    // The store goes on: the same commit without the poisoned checkpoint applies whole.
    let fine = checkpoint(json!("fine"));
    st.commit(Commit {
        ledger: vec![entry("new", 5)],
        outbox_add: vec![queued("o3", json!({"n": 3}))],
        checkpoint: Some(fine.clone()),
        ..commit("p", "fresh", 2)
    })
    .await
    .unwrap();
    assert_eq!(st.ledger_lookup("p", "fresh", &keys[2..]).await.unwrap(), [Some(hash(5))]);
    assert_eq!(st.checkpoint("p", "fresh").await.unwrap(), Some(fine));
    assert_eq!(keys_in_outbox(st, "p", "fresh").await, ["o3"]);
}

/// Entries come back oldest first, ids increasing across commits, `limit` from the front,
/// each record exactly as queued (numbers keep their text); `outbox_done` removes exactly
/// the named ids of its own stream.
pub async fn outbox_keeps_queue_order_exact_records_and_its_stream(s: Subject) {
    let st = s.delivery();
    let exact: Value = serde_json::from_str(
        r#"{"id":"b","big":123456789012345678901234567890,"dec":0.1000000000000000055511151231257827,"nested":{"l":[1,"x",null,true]}}"#,
    )
    .unwrap();
    st.commit(Commit {
        outbox_add: vec![queued("a", json!({"id": "a"})), queued("b", exact.clone())],
        ..commit("p", "s", 1)
    })
    .await
    .unwrap();
    st.commit(Commit { outbox_add: vec![queued("x", json!({"id": "x"}))], ..commit("p", "t", 1) }).await.unwrap();
    st.commit(Commit { outbox_add: vec![queued("c", json!({"id": "c"}))], ..commit("p", "s", 1) }).await.unwrap();

    let all = st.outbox("p", "s", 10).await.unwrap();
    assert_eq!(all.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids increase in queue order: {all:?}");
    let b = &all[1];
    assert_eq!((&b.data, b.hash, b.location.as_deref()), (&exact, hash(7), Some("item b")));
    assert_eq!(b.data.to_string(), exact.to_string(), "numbers keep their exact text");
    let first = st.outbox("p", "s", 2).await.unwrap();
    assert_eq!(first, all[..2], "limit takes the oldest");

    let other = st.outbox("p", "t", 10).await.unwrap();
    // Removing a's id and t's id through s: only s's own entry goes.
    st.commit(Commit { outbox_done: vec![all[0].id, other[0].id], ..commit("p", "s", 1) }).await.unwrap();
    assert_eq!(keys_in_outbox(st, "p", "s").await, ["b", "c"]);
    assert_eq!(keys_in_outbox(st, "p", "t").await, ["x"], "another stream's id is left alone");
    // Removal and addition in one commit.
    st.commit(Commit {
        outbox_done: vec![all[2].id],
        outbox_add: vec![queued("d", json!({"id": "d"}))],
        ..commit("p", "s", 1)
    })
    .await
    .unwrap();
    let left = st.outbox("p", "s", 10).await.unwrap();
    assert_eq!(left.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["b", "d"]);
    assert!(left[1].id > all[2].id, "a new entry's id is past every earlier one");
    assert_eq!(st.outbox("q", "s", 10).await.unwrap(), []);
}

/// A key queued again for its stream supersedes the entry already waiting (in a later
/// commit or later in the same one): the newest version is kept, once, at the back of the
/// queue; the same key of another stream or pipeline is left alone.
pub async fn outbox_holds_a_key_once_and_the_newest_version_wins(s: Subject) {
    let st = s.delivery();
    let add = |k: &str, v: i64| queued(k, json!({"id": k, "v": v}));
    st.commit(Commit { outbox_add: vec![add("k", 1), add("j", 1)], ..commit("p", "s", 1) }).await.unwrap();
    st.commit(Commit { outbox_add: vec![add("k", 1)], ..commit("p", "t", 1) }).await.unwrap();
    st.commit(Commit { outbox_add: vec![add("k", 1)], ..commit("q", "s", 1) }).await.unwrap();
    st.commit(Commit { outbox_add: vec![add("k", 2)], ..commit("p", "s", 2) }).await.unwrap();
    assert_eq!(st.outbox_len("p", "s").await.unwrap(), 2, "k is queued once");
    let waiting = st.outbox("p", "s", 10).await.unwrap();
    assert_eq!(keys_in_outbox(st, "p", "s").await, ["j", "k"]);
    assert_eq!(waiting[1].data, json!({"id": "k", "v": 2}), "the newer version is kept");
    st.commit(Commit { outbox_add: vec![add("j", 3), add("j", 4)], ..commit("p", "s", 3) }).await.unwrap();
    let waiting = st.outbox("p", "s", 10).await.unwrap();
    let data: Vec<&Value> = waiting.iter().map(|e| &e.data).collect();
    assert_eq!(data, [&json!({"id": "k", "v": 2}), &json!({"id": "j", "v": 4})], "the last of one commit wins");
    assert_eq!(st.outbox_len("p", "t").await.unwrap(), 1, "another stream keeps its own");
    assert_eq!(st.outbox_len("q", "s").await.unwrap(), 1, "another pipeline keeps its own");
}

/// `outbox_len` counts the entries of one stream.
pub async fn outbox_len_counts_one_stream(s: Subject) {
    let st = s.delivery();
    assert_eq!(st.outbox_len("p", "s").await.unwrap(), 0);
    let three = ["1", "2", "3"].map(|k| queued(k, json!({"id": k})));
    st.commit(Commit { outbox_add: three.to_vec(), ..commit("p", "s", 1) }).await.unwrap();
    st.commit(Commit { outbox_add: vec![queued("9", json!({}))], ..commit("p", "t", 1) }).await.unwrap();
    st.commit(Commit { outbox_add: vec![queued("9", json!({}))], ..commit("q", "s", 1) }).await.unwrap();
    assert_eq!(st.outbox_len("p", "s").await.unwrap(), 3);
    let ids: Vec<i64> = st.outbox("p", "s", 2).await.unwrap().iter().map(|e| e.id).collect();
    st.commit(Commit { outbox_done: ids, ..commit("p", "s", 1) }).await.unwrap();
    assert_eq!(st.outbox_len("p", "s").await.unwrap(), 1);
    assert_eq!(st.outbox_len("p", "t").await.unwrap(), 1);
}

/// Depths list only streams with entries waiting, by pipeline then stream, optionally of
/// one pipeline.
pub async fn outbox_depths_list_waiting_streams_in_order(s: Subject) {
    let st = s.delivery();
    assert_eq!(st.outbox_depths(None).await.unwrap(), []);
    for (p, s_, n) in [("q", "s", 1), ("p", "t", 2), ("p", "s", 3), ("p", "u", 1)] {
        let add: Vec<_> = (0..n).map(|i| queued(&i.to_string(), json!({"i": i}))).collect();
        st.commit(Commit { outbox_add: add, ..commit(p, s_, 1) }).await.unwrap();
    }
    let drained: Vec<i64> = st.outbox("p", "u", 10).await.unwrap().iter().map(|e| e.id).collect();
    st.commit(Commit { outbox_done: drained, ..commit("p", "u", 1) }).await.unwrap();
    let row = |p: &str, s_: &str, n: u64| (p.to_owned(), s_.to_owned(), n);
    assert_eq!(st.outbox_depths(None).await.unwrap(), [row("p", "s", 3), row("p", "t", 2), row("q", "s", 1)]);
    assert_eq!(st.outbox_depths(Some("p")).await.unwrap(), [row("p", "s", 3), row("p", "t", 2)]);
    assert_eq!(st.outbox_depths(Some("nobody")).await.unwrap(), []);
}

/// A second pause of a stream replaces the first; `unpause` says whether there was one and
/// touches no other stream.
pub async fn pause_replaces_and_unpause_says_whether_it_was_paused(s: Subject) {
    let st = s.delivery();
    st.pause(&pause("p", "s", PauseKind::Unavailable, "sink down")).await.unwrap();
    st.pause(&pause("p", "t", PauseKind::Unavailable, "sink down")).await.unwrap();
    let drift = pause("p", "s", PauseKind::Drift, "price changed type");
    st.pause(&drift).await.unwrap();
    let now = st.paused(Some("p")).await.unwrap();
    assert_eq!(now.len(), 2, "replaced, not added: {now:?}");
    assert_eq!(now[0], drift);
    assert!(st.unpause("p", "s").await.unwrap());
    assert!(!st.unpause("p", "s").await.unwrap(), "already resumed");
    assert!(!st.unpause("q", "t").await.unwrap(), "never paused");
    assert_eq!(st.paused(None).await.unwrap(), [pause("p", "t", PauseKind::Unavailable, "sink down")]);
    // A pause that lifts by itself keeps its time, and a later pause without one drops it.
    let limited = PausedStream {
        until: Some("2026-01-01T00:30:00Z".into()),
        location: None,
        ..pause("p", "t", PauseKind::RateLimited, "rate limited")
    };
    st.pause(&limited).await.unwrap();
    assert_eq!(st.paused(Some("p")).await.unwrap(), [limited]);
    st.pause(&pause("p", "t", PauseKind::Unavailable, "sink down")).await.unwrap();
    assert_eq!(st.paused(Some("p")).await.unwrap()[0].until, None);
}

/// `paused` returns every field (the location kept apart from the reason, or none), ordered
/// by pipeline then stream, of one pipeline or all.
pub async fn paused_lists_by_pipeline_and_stream(s: Subject) {
    let st = s.delivery();
    assert_eq!(st.paused(None).await.unwrap(), []);
    let rows = [
        pause("q", "a", PauseKind::Drift, "x"),
        pause("p", "t", PauseKind::Unavailable, "y"),
        pause("p", "s", PauseKind::Drift, "z"),
    ];
    for r in &rows {
        st.pause(r).await.unwrap();
    }
    assert_eq!(st.paused(None).await.unwrap(), [rows[2].clone(), rows[1].clone(), rows[0].clone()]);
    assert_eq!(st.paused(Some("p")).await.unwrap(), [rows[2].clone(), rows[1].clone()]);
    assert_eq!(st.paused(Some("q")).await.unwrap(), [rows[0].clone()]);
    assert_eq!(rows[0].location.as_deref(), Some("GET https://api.example.com/a"), "kept apart from the reason");
    let mut nowhere = pause("r", "s", PauseKind::Drift, "w");
    nowhere.location = None;
    st.pause(&nowhere).await.unwrap();
    assert_eq!(st.paused(Some("r")).await.unwrap(), [nowhere]);
    assert_eq!(st.paused(Some("nobody")).await.unwrap(), []);
}

/// A saved baseline reads back equal for its own stream; saving again replaces it.
pub async fn baselines_round_trip_per_stream_and_are_replaced(s: Subject) {
    let st = s.delivery();
    assert_eq!(st.baseline("p", "s").await.unwrap(), None);
    let one = json!({"type": "object", "properties": {"id": {"type": "integer"}, "n": {"enum": [1, 2.5]}}});
    st.save_baseline("p", "s", &one).await.unwrap();
    assert_eq!(st.baseline("p", "s").await.unwrap(), Some(one.clone()));
    assert_eq!(st.baseline("p", "t").await.unwrap(), None);
    assert_eq!(st.baseline("q", "s").await.unwrap(), None);
    let two = json!({"type": "object"});
    st.save_baseline("p", "s", &two).await.unwrap();
    st.save_baseline("q", "s", &one).await.unwrap();
    assert_eq!(st.baseline("p", "s").await.unwrap(), Some(two));
    assert_eq!(st.baseline("q", "s").await.unwrap(), Some(one));
}

/// A key written again in the pass that wrote (or touched) it is marked repeated, for good;
/// one written once per pass is not. Lookups answer in key order, misses included.
pub async fn ledger_versions_mark_a_key_written_twice_in_one_pass(s: Subject) {
    let st = s.delivery();
    st.commit(Commit { ledger: vec![entry("1", 1), entry("2", 2), entry("3", 3)], ..commit("p", "s", 1) })
        .await
        .unwrap();
    // Pass 1 again: key 1 in a later batch, key 2 twice in one commit, key 3 touched then written.
    st.commit(Commit { ledger: vec![entry("1", 11)], ..commit("p", "s", 1) }).await.unwrap();
    st.commit(Commit { ledger: vec![entry("2", 12), entry("2", 22)], ..commit("p", "s", 2) }).await.unwrap();
    st.commit(Commit { touched: vec![key("3")], ..commit("p", "s", 3) }).await.unwrap();
    st.commit(Commit { ledger: vec![entry("3", 13)], ..commit("p", "s", 3) }).await.unwrap();
    st.commit(Commit { ledger: vec![entry("4", 4)], ..commit("p", "s", 3) }).await.unwrap();
    let keys = [key("1"), key("2"), key("3"), key("4"), key("9")];
    let got = st.ledger_versions("p", "s", &keys).await.unwrap();
    let want = |n: u8, repeated: bool| Some(LedgerVersion { hash: hash(n), repeated });
    assert_eq!(got, [want(11, true), want(22, true), want(13, true), want(4, false), None]);
    // Written once in a later pass: still marked (the source repeated the key once).
    st.commit(Commit { ledger: vec![entry("1", 21), entry("4", 14)], ..commit("p", "s", 4) }).await.unwrap();
    let got = st.ledger_versions("p", "s", &keys[..4]).await.unwrap();
    assert_eq!(got, [want(21, true), want(22, true), want(13, true), want(14, false)]);
    assert_eq!(st.ledger_versions("q", "s", &keys[..1]).await.unwrap(), [None], "another pipeline");
    assert_eq!(st.ledger_lookup("p", "s", &keys[..1]).await.unwrap(), [Some(hash(21))]);
}
