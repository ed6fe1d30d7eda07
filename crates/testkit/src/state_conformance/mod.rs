//! The state conformance suite: what core's state contract promises, checked against a
//! store through the traits alone, so every backend (SQLite, the in-memory reference, the
//! PostgreSQL store to come) is held to the same behaviour.
//!
//! Checks come in two groups, one per contract: [`delivery`] checks use only
//! [`DeliveryStore`] methods, so a backend brought up delivery-first can run them alone;
//! [`history`] checks need the whole [`StateStore`]. Every method of both traits is the
//! subject of at least one check ([`CHECKS`] says which; a test of this crate parses
//! `state.rs` and fails when a method has none). Among them, a commit that fails midway must
//! leave nothing of itself behind: the store under test says how to make one fail
//! ([`Subject::failing_commits`]); without it that check fails rather than being skipped.
//!
//! A backend's `tests/conformance.rs` gives an async constructor of a fresh store and
//! invokes [`state_conformance!`](macro@crate::state_conformance), which writes one `#[test]` per
//! check (`state_conformance::delivery::lock_excludes_a_second_holder_until_released`, ...),
//! so a failure is named:
//!
//! ```text
//! async fn sqlite() -> Subject {
//!     let dir = tempfile::tempdir().unwrap();
//!     let path = dir.path().join("state.db");
//!     let store = SqliteState::open(&path).unwrap();
//!     Subject::new(store).keep(dir).failing_commits(move |position| { /* a trigger */ })
//! }
//! dovetail_testkit::state_conformance!(sqlite);
//! ```

pub mod delivery;
pub mod history;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use dovetail_core::explain::{ExplainBatch, Fetch, Outcome, Story};
use dovetail_core::state::{Checkpoint, Commit, CursorState, DeadLetter, LedgerEntry, OutboxEntry, PausedStream};
use dovetail_core::{ContentHash, DeliveryStore, Key, PauseKind, Provenance, StateStore};
use serde_json::{Value, json};

/// Arms a store so commits whose checkpoint position equals the value fail midway.
type ArmFn = Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A fresh store under test, and what the suite needs beyond the traits.
pub struct Subject {
    delivery: Arc<dyn DeliveryStore>,
    state: Option<Arc<dyn StateStore>>,
    fail_commits: Option<ArmFn>,
    keep: Vec<Box<dyn Any + Send>>,
    /// No store: the backend's server is missing and skipping was allowed ([`crate::pg`]).
    skipped: bool,
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subject")
            .field("history", &self.state.is_some())
            .field("failing_commits", &self.fail_commits.is_some())
            .finish_non_exhaustive()
    }
}

impl Subject {
    /// A store implementing both contracts: every check applies.
    pub fn new(store: impl StateStore + 'static) -> Subject {
        let state: Arc<dyn StateStore> = Arc::new(store);
        Subject { delivery: state.clone(), state: Some(state), fail_commits: None, keep: Vec::new(), skipped: false }
    }

    /// A store implementing the delivery contract only (run with
    /// `state_conformance!(make, delivery_only)`).
    pub fn delivery_only(store: impl DeliveryStore + 'static) -> Subject {
        Subject { delivery: Arc::new(store), state: None, fail_commits: None, keep: Vec::new(), skipped: false }
    }

    /// No store to check: its server does not exist here and the caller was allowed to skip
    /// (see [`crate::pg::database`], which already said so loudly). Every check returns at once.
    pub fn skipped() -> Subject {
        let mut s = Subject::delivery_only(dovetail_core::testing::MemoryState::default());
        s.skipped = true;
        s
    }

    /// How to make this store's commits fail midway: once `arm(position)` has resolved,
    /// every commit whose checkpoint position equals `position` must fail *after* its
    /// ledger, outbox, dead-letter and explain parts were written and before it completes,
    /// as a failure inside the store's transaction would (for SQLite, a trigger refusing
    /// the checkpoint row, the commit's last statement). Other commits are unaffected.
    pub fn failing_commits<F, Fut>(mut self, arm: F) -> Subject
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.fail_commits = Some(Arc::new(move |v| Box::pin(arm(v))));
        self
    }

    /// Keep `guard` (a temp dir, a server) alive as long as the store is tested.
    pub fn keep(mut self, guard: impl Any + Send) -> Subject {
        self.keep.push(Box::new(guard));
        self
    }

    /// The delivery contract of the store under test.
    pub fn delivery(&self) -> &dyn DeliveryStore {
        &*self.delivery
    }

    /// The whole store under test; history checks need it.
    pub fn state(&self) -> &dyn StateStore {
        match &self.state {
            Some(s) => &**s,
            None => panic!(
                "this subject implements the delivery contract only (Subject::delivery_only): run it \
                 with `state_conformance!(make, delivery_only)`"
            ),
        }
    }

    /// Arm the midway failure for commits whose checkpoint position is `position`.
    pub(crate) async fn fail_commits_at(&self, position: Value) {
        let Some(arm) = &self.fail_commits else {
            panic!(
                "the subject gives no way to make a commit fail midway, so commit atomicity cannot be \
                 checked: give it one with Subject::failing_commits (this check is never skipped)"
            );
        };
        arm(position).await;
    }
}

/// Which contract a check holds a store to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// [`DeliveryStore`]: the checks in [`delivery`].
    Delivery,
    /// [`dovetail_core::HistoryStore`]: the checks in [`history`].
    History,
}

/// One check of the suite and the trait methods it is about.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// The contract.
    pub group: Group,
    /// The check's function (in [`delivery`] or [`history`]) and test name.
    pub name: &'static str,
    /// The trait methods whose promises it asserts (others may be called to set up or observe).
    pub covers: &'static [&'static str],
}

const fn check(group: Group, name: &'static str, covers: &'static [&'static str]) -> Check {
    Check { group, name, covers }
}

/// Every check, in the order the macro writes them.
pub const CHECKS: &[Check] = &[
    check(Group::Delivery, "lock_excludes_a_second_holder_until_released", &["lock"]),
    check(Group::Delivery, "checkpoints_round_trip_per_stream_and_are_replaced", &["checkpoint", "commit"]),
    check(Group::Delivery, "reset_forgets_checkpoints_and_pauses_in_its_scope_only", &["reset"]),
    check(Group::Delivery, "ledger_lookup_answers_in_key_order_within_its_stream", &["ledger_lookup", "commit"]),
    check(Group::Delivery, "ledger_versions_mark_a_key_written_twice_in_one_pass", &["ledger_versions", "commit"]),
    check(Group::Delivery, "ledger_dest_ids_are_kept_until_replaced", &["ledger_dest_ids", "commit"]),
    check(
        Group::Delivery,
        "pending_creates_are_kept_per_key_until_cleared",
        &["record_pending_create", "pending_creates", "clear_pending_create"],
    ),
    check(
        Group::Delivery,
        "a_commit_storing_a_destination_id_clears_its_pending_create",
        &["commit", "pending_creates"],
    ),
    check(Group::Delivery, "record_write_request_takes_one_request_id_per_key", &["record_write_request"]),
    check(Group::Delivery, "has_ledger_is_true_for_a_stream_with_rows", &["has_ledger"]),
    check(Group::Delivery, "sink_mark_is_the_last_one_committed_for_its_stream", &["sink_mark", "commit"]),
    check(Group::Delivery, "forget_ledger_voids_hashes_marks_and_checkpoints_in_its_scope", &["forget_ledger"]),
    check(Group::Delivery, "stale_keys_are_the_rows_of_older_passes", &["stale_keys", "commit"]),
    check(Group::Delivery, "a_large_commit_writes_every_row_and_the_last_row_of_a_key_wins", &["commit"]),
    check(Group::Delivery, "a_commit_failing_midway_leaves_nothing_behind", &["commit"]),
    check(Group::Delivery, "outbox_keeps_queue_order_exact_records_and_its_stream", &["outbox", "commit"]),
    check(Group::Delivery, "outbox_holds_a_key_once_and_the_newest_version_wins", &["outbox", "commit"]),
    check(Group::Delivery, "outbox_len_counts_one_stream", &["outbox_len"]),
    check(Group::Delivery, "outbox_depths_list_waiting_streams_in_order", &["outbox_depths"]),
    check(Group::Delivery, "pause_replaces_and_unpause_says_whether_it_was_paused", &["pause", "unpause"]),
    check(Group::Delivery, "paused_lists_by_pipeline_and_stream", &["paused"]),
    check(Group::Delivery, "baselines_round_trip_per_stream_and_are_replaced", &["baseline", "save_baseline"]),
    check(Group::History, "runs_are_listed_newest_first_filtered_and_limited", &["begin_run", "runs"]),
    check(Group::History, "finish_run_stores_the_outcome_and_refuses_an_unknown_run", &["finish_run"]),
    check(Group::History, "run_pipelines_names_each_pipeline_once_in_order", &["run_pipelines"]),
    check(Group::History, "dead_letters_commit_with_their_batch_and_list_oldest_first", &["dead_letters", "commit"]),
    check(Group::History, "dead_letter_fetches_one_by_id", &["dead_letter"]),
    check(Group::History, "dead_letter_counts_group_by_reason_or_path", &["dead_letter_counts", "commit"]),
    check(Group::History, "the_same_dead_letter_seen_again_is_counted_not_duplicated", &["commit", "dead_letters"]),
    check(
        Group::History,
        "a_huge_raw_input_is_kept_cut_and_deduplicated_by_its_whole_text",
        &["commit", "dead_letter"],
    ),
    check(Group::History, "resolved_dead_letters_go_with_their_story", &["commit", "dead_letter", "key_history"]),
    check(Group::History, "a_commit_failing_midway_leaves_no_dead_letter_or_story", &["commit"]),
    check(Group::History, "record_drift_counts_repeats_and_reopens_accepted_rows", &["record_drift"]),
    check(Group::History, "drift_events_list_newest_first_and_filter_by_pipeline", &["drift_events"]),
    check(Group::History, "accept_drift_marks_the_open_rows_of_one_stream", &["accept_drift"]),
    check(Group::History, "key_history_tells_the_latest_story_and_later_unchanged_reads", &["key_history"]),
    check(Group::History, "key_history_of_a_dead_lettered_key_has_its_reason", &["key_history"]),
    check(Group::History, "write_request_is_the_last_one_noted_for_its_key", &["write_request"]),
    // History: it reads request ids back (`write_request`), which the delivery group cannot.
    check(Group::History, "forget_ledger_forgets_the_request_ids_of_its_scope", &["write_request"]),
    check(Group::History, "prune_by_count_keeps_the_newest_runs_and_the_whole_ledger", &["prune"]),
    check(Group::History, "prune_by_age_keeps_the_latest_run_open_drift_and_owed_dead_letters", &["prune"]),
];

/// Run one check on a fresh store, on a runtime of its own (what each generated test does).
pub fn run<M, MF, C, CF>(make: M, check: C)
where
    M: FnOnce() -> MF,
    MF: Future<Output = Subject>,
    C: FnOnce(Subject) -> CF,
    CF: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the state conformance suite");
    rt.block_on(async {
        let subject = make().await;
        if !subject.skipped {
            check(subject).await;
        }
    });
}

/// Panics unless `names` are exactly the checks of `group` in [`CHECKS`], in order: the
/// macro's list and the table cannot drift apart.
pub fn assert_listed(group: Group, names: &[&str]) {
    let table: Vec<&str> = CHECKS.iter().filter(|c| c.group == group).map(|c| c.name).collect();
    assert_eq!(names, table, "state_conformance! and CHECKS list different {group:?} checks");
}

/// Writes the state conformance suite into the calling test file: a module
/// `state_conformance` with one `#[test]` per check, each on a fresh store from `make`
/// (an `async fn() -> Subject` in the calling module). With `delivery_only`, only the
/// delivery group.
#[macro_export]
macro_rules! state_conformance {
    ($make:ident) => {
        mod state_conformance {
            $crate::__state_conformance_delivery!($make);
            $crate::__state_conformance_group!(
                History,
                history,
                $make,
                [
                    runs_are_listed_newest_first_filtered_and_limited,
                    finish_run_stores_the_outcome_and_refuses_an_unknown_run,
                    run_pipelines_names_each_pipeline_once_in_order,
                    dead_letters_commit_with_their_batch_and_list_oldest_first,
                    dead_letter_fetches_one_by_id,
                    dead_letter_counts_group_by_reason_or_path,
                    the_same_dead_letter_seen_again_is_counted_not_duplicated,
                    a_huge_raw_input_is_kept_cut_and_deduplicated_by_its_whole_text,
                    resolved_dead_letters_go_with_their_story,
                    a_commit_failing_midway_leaves_no_dead_letter_or_story,
                    record_drift_counts_repeats_and_reopens_accepted_rows,
                    drift_events_list_newest_first_and_filter_by_pipeline,
                    accept_drift_marks_the_open_rows_of_one_stream,
                    key_history_tells_the_latest_story_and_later_unchanged_reads,
                    key_history_of_a_dead_lettered_key_has_its_reason,
                    write_request_is_the_last_one_noted_for_its_key,
                    forget_ledger_forgets_the_request_ids_of_its_scope,
                    prune_by_count_keeps_the_newest_runs_and_the_whole_ledger,
                    prune_by_age_keeps_the_latest_run_open_drift_and_owed_dead_letters,
                ]
            );
        }
    };
    ($make:ident, delivery_only) => {
        mod state_conformance {
            $crate::__state_conformance_delivery!($make);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __state_conformance_delivery {
    ($make:ident) => {
        $crate::__state_conformance_group!(
            Delivery,
            delivery,
            $make,
            [
                lock_excludes_a_second_holder_until_released,
                checkpoints_round_trip_per_stream_and_are_replaced,
                reset_forgets_checkpoints_and_pauses_in_its_scope_only,
                ledger_lookup_answers_in_key_order_within_its_stream,
                ledger_versions_mark_a_key_written_twice_in_one_pass,
                ledger_dest_ids_are_kept_until_replaced,
                pending_creates_are_kept_per_key_until_cleared,
                a_commit_storing_a_destination_id_clears_its_pending_create,
                record_write_request_takes_one_request_id_per_key,
                has_ledger_is_true_for_a_stream_with_rows,
                sink_mark_is_the_last_one_committed_for_its_stream,
                forget_ledger_voids_hashes_marks_and_checkpoints_in_its_scope,
                stale_keys_are_the_rows_of_older_passes,
                a_large_commit_writes_every_row_and_the_last_row_of_a_key_wins,
                a_commit_failing_midway_leaves_nothing_behind,
                outbox_keeps_queue_order_exact_records_and_its_stream,
                outbox_holds_a_key_once_and_the_newest_version_wins,
                outbox_len_counts_one_stream,
                outbox_depths_list_waiting_streams_in_order,
                pause_replaces_and_unpause_says_whether_it_was_paused,
                paused_lists_by_pipeline_and_stream,
                baselines_round_trip_per_stream_and_are_replaced,
            ]
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __state_conformance_group {
    ($group:ident, $module:ident, $make:ident, [$($check:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $check() {
                    $crate::state_conformance::run(super::super::$make, $crate::state_conformance::$module::$check);
                }
            )*

            #[test]
            fn every_check_of_the_group_is_run() {
                $crate::state_conformance::assert_listed(
                    $crate::state_conformance::Group::$group,
                    &[$(stringify!($check)),*],
                );
            }
        }
    };
}

// Fixtures shared by the checks. Pipelines are `p` and `q`, streams `s` and `t`.

pub(crate) fn key(s: &str) -> Key {
    Key::from_canonical(s)
}

pub(crate) fn hash(n: u8) -> ContentHash {
    ContentHash([n; 16])
}

pub(crate) fn entry(k: &str, n: u8) -> LedgerEntry {
    LedgerEntry { key: key(k), hash: hash(n), dest_id: None }
}

/// An empty commit of `pipeline`/`stream` in `pass`.
pub(crate) fn commit(pipeline: &str, stream: &str, pass: u64) -> Commit {
    Commit { pipeline: pipeline.into(), stream: stream.into(), pass, ..Commit::default() }
}

/// A checkpoint using every field, at `position`.
pub(crate) fn checkpoint(position: Value) -> Checkpoint {
    Checkpoint {
        position: Some(position),
        pass: 3,
        floor: Some(CursorState { value: json!("2024-01-01T00:00:00Z"), keys: vec!["1".into(), "[2,\"b\"]".into()] }),
        max: Some(CursorState { value: json!(12345678901234567890u64), keys: vec![] }),
        pass_complete: true,
    }
}

/// A record owed to the sink.
pub(crate) fn queued(k: &str, data: Value) -> OutboxEntry {
    OutboxEntry { id: 0, key: key(k), hash: hash(7), data, location: Some(format!("item {k}")) }
}

pub(crate) fn pause(pipeline: &str, stream: &str, kind: PauseKind, reason: &str) -> PausedStream {
    PausedStream {
        pipeline: pipeline.into(),
        stream: stream.into(),
        kind,
        reason: reason.into(),
        since: "2026-01-01T00:00:00Z".into(),
        until: None,
        location: Some(format!("GET https://api.example.com/{stream}")),
    }
}

/// A dead letter of `pipeline`/`stream` at `location` (the same raw input at the same place
/// is the same dead letter).
pub(crate) fn dead(pipeline: &str, stream: &str, location: &str, reason: &str) -> DeadLetter {
    DeadLetter {
        id: 0,
        pipeline: pipeline.into(),
        stream: stream.into(),
        key: Some("7".into()),
        kind: "data".into(),
        reason: reason.into(),
        path: Some("amount".into()),
        location: Some(location.into()),
        raw: r#"{"id":7,"amount":"seven"}"#.into(),
        created_at: "2026-01-02T03:04:05Z".into(),
        raw_len: None,
        seen_count: 1,
    }
}

/// A fetched page of run `run`.
pub(crate) fn page(run: i64, unchanged: &[&str]) -> Fetch {
    Fetch {
        provenance: Arc::new(Provenance {
            connector: "rest".into(),
            endpoint: format!("https://api.test/v1/items?page={run}"),
            fetched_at: format!("2026-01-0{}T00:00:00Z", run.clamp(1, 9)),
            request_id: Some(format!("req-{run}")),
            status: Some(200),
            ..Default::default()
        }),
        unchanged: unchanged.iter().map(|k| key(k)).collect(),
    }
}

/// A commit of run `run` to `p`/`s` writing `written` (key, outcome, raw) from one page that
/// also read `unchanged` unchanged, with each written key's ledger row and story.
pub(crate) fn explained(run: i64, written: &[(&str, Outcome, &str)], unchanged: &[&str]) -> Commit {
    let stories = written
        .iter()
        .map(|(k, outcome, raw)| Story {
            key: key(k),
            fetch: Some(0),
            location: Some(format!("item {k}")),
            outcome: *outcome,
            reason: None,
            raw: Some((*raw).into()),
            item: None,
        })
        .collect();
    let pass = u64::try_from(run).unwrap_or(0);
    Commit {
        ledger: written.iter().map(|(k, ..)| entry(k, run as u8)).collect(),
        checkpoint: Some(Checkpoint { pass, ..Checkpoint::default() }),
        explain: Some(ExplainBatch {
            run_id: run,
            mapping: Some(r#"{"rename":{"name":"full_name"}}"#.into()),
            key_columns: vec!["id".to_owned()].into(),
            fetches: vec![page(run, unchanged)],
            stories,
            ..ExplainBatch::default()
        }),
        ..commit("p", "s", pass)
    }
}
