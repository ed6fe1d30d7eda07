//! The contract suite's own checks, on small local sources built over the records the
//! contract hands them: a faithful source passes, and sources that break one promise each
//! (lose a record, coerce every value to text, silently drop a record without its key) fail
//! the check that guards that promise — so a pass means something.

use dovetail_core::Error;
use dovetail_core::testing::MemorySource;
use dovetail_testkit::{Outcome, SourceContract};
use serde_json::{Value, json};

/// How the source misbehaves: the fault is applied to the records it is built over, so
/// the source itself is the real in-memory one.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// The last record of the stream never arrives.
    LosesTheLast,
    /// Every top-level value becomes a string: a changed type is invisible.
    Stringifies,
    /// A record without `id` is dropped instead of passed on for a dead letter.
    DropsKeyless,
}

fn faulty(stream: &str, records: &[Value], fault: Fault) -> Result<MemorySource, Error> {
    let mut records = records.to_vec();
    match fault {
        Fault::LosesTheLast => {
            records.pop();
        }
        Fault::DropsKeyless => records.retain(|r| r.get("id").is_some()),
        Fault::Stringifies => {
            for r in records.iter_mut().filter_map(Value::as_object_mut) {
                for (k, v) in r.iter_mut() {
                    if k != "id" {
                        *v = Value::String(v.to_string());
                    }
                }
            }
        }
        Fault::None => {}
    }
    Ok(MemorySource::new(stream, &["id"], records))
}

fn records() -> Vec<Value> {
    (1..=4).map(|i| json!({ "id": i, "name": format!("n{i}"), "qty": i * 2 })).collect()
}

async fn outcomes(fault: Fault) -> Vec<(&'static str, Outcome)> {
    SourceContract::local_records("faulty", move |stream, data| faulty(stream, data, fault))
        .records("items", records())
        .results()
        .await
        .into_iter()
        .map(|r| (r.check, r.outcome))
        .collect()
}

fn outcome<'a>(all: &'a [(&'static str, Outcome)], check: &str) -> &'a Outcome {
    &all.iter().find(|(c, _)| *c == check).unwrap_or_else(|| panic!("no check `{check}`")).1
}

#[tokio::test]
async fn a_faithful_local_source_passes_and_the_http_checks_say_why_not() {
    let all = outcomes(Fault::None).await;
    for check in [
        "syncs_each_stream_to_the_last_page",
        "fresh_start_reads_everything",
        "drift_on_changed_field_type",
        "bad_record_dead_lettered_rest_continue",
        "rerun_writes_nothing",
    ] {
        assert_eq!(outcome(&all, check).label(), "pass", "{check}: {:?}", outcome(&all, check));
    }
    let drift = outcome(&all, "drift_on_changed_field_type").reason();
    assert!(drift.contains("type_changed at /name"), "{drift}");
    for check in ["stops_at_the_last_page", "refreshes_on_401"] {
        let o = outcome(&all, check);
        assert_eq!(o.label(), "n/a", "{check}: {o:?}");
        assert!(!o.reason().is_empty(), "{check} is n/a without a reason");
    }
    // A check that lacks its input is not n/a: the contract must give it or say why not,
    // and the failure says what to give.
    for (check, give) in [
        ("schemas_match_snapshots", ".snapshots_dir("),
        ("mappings_match_snapshots", ".snapshots_dir("),
        ("config_rejects_an_unknown_key", ".example_config::<Config>("),
        ("no_fixture_secret_in_output", ".skip(\"no_fixture_secret_in_output\", reason)"),
    ] {
        let o = outcome(&all, check);
        assert_eq!(o.label(), "fail", "{check}: {o:?}");
        assert!(o.reason().contains(give), "{check}: {o:?}");
    }
    let failed = all.iter().filter(|(_, o)| o.label() == "fail").count();
    assert_eq!(failed, 4, "only the checks missing their input fail: {all:?}");
}

#[tokio::test]
async fn a_source_losing_a_record_fails_the_fresh_start() {
    let all = outcomes(Fault::LosesTheLast).await;
    let o = outcome(&all, "fresh_start_reads_everything");
    assert_eq!(o.label(), "fail", "{o:?}");
    assert!(o.reason().contains("4 record(s) given"), "{o:?}");
}

#[tokio::test]
async fn a_source_hiding_type_changes_fails_the_drift_check() {
    let all = outcomes(Fault::Stringifies).await;
    let o = outcome(&all, "drift_on_changed_field_type");
    assert_eq!(o.label(), "fail", "{o:?}");
    assert!(o.reason().contains("no type_changed drift event"), "{o:?}");
}

#[tokio::test]
async fn a_source_dropping_a_bad_record_silently_fails_the_dead_letter_check() {
    let all = outcomes(Fault::DropsKeyless).await;
    let o = outcome(&all, "bad_record_dead_lettered_rest_continue");
    assert_eq!(o.label(), "fail", "{o:?}");
    assert!(o.reason().contains("0 dead letter(s)"), "{o:?}");
}
