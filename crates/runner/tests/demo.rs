//! `dovetail demo --json` through the binary: the counts it prints come from the vendor, the
//! sink and the state, and they add up — a lost or doubled record shows.

mod common;

use std::path::Path;

use common::{dovetail, text};
use serde_json::Value;

fn demo_json(dir: &Path, config: &Path) -> Value {
    let out = dovetail(dir, &["demo", "--json", "--records", "900", "--demo-config", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}"))
}

/// The example demo config copied into `dir/examples`; its path.
fn demo_config(dir: &Path) -> std::path::PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let to = dir.join("examples");
    std::fs::create_dir_all(&to).unwrap();
    for f in ["demo.toml", "demo-vendor.toml"] {
        std::fs::copy(examples.join(f), to.join(f)).unwrap();
    }
    to.join("demo.toml")
}

fn n(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("{pointer} missing in {v:#}"))
}

#[test]
fn the_demo_accounts_for_every_record_through_a_crash_a_sink_outage_and_a_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let config = demo_config(tmp.path());

    let first = demo_json(tmp.path(), &config);
    assert_eq!(n(&first, "/vendor_records"), 900, "{first:#}");
    assert_eq!(n(&first, "/sink_rows") + n(&first, "/dead_lettered_keys"), 900, "a record was lost: {first:#}");
    assert_eq!(n(&first, "/duplicate_keys"), 0);
    // The child run was killed after a third of the records were served, and resumed.
    assert_eq!(first["crash"]["killed"], true, "{:#}", first["crash"]);
    assert_eq!(first["crash"]["resumed"], true, "{:#}", first["crash"]);
    assert!(n(&first, "/crash/at_records_served") >= 300);
    assert!(n(&first, "/written") < 900, "the killed run had committed some: {first:#}");
    let faults = first["faults"].as_object().unwrap();
    for fault in ["crash", "malformed_page", "sink_down", "error_503", "dropped_connections", "rate_limit", "nulls"] {
        assert!(faults.get(fault).and_then(Value::as_u64).unwrap_or(0) >= 1, "{fault}: {faults:?}");
    }
    // Record 2200 is past the 900 served: no drift is configured to show.
    assert!(!faults.contains_key("drift"), "{faults:?}");
    // The vendor's own counters agree with the fault counters.
    assert_eq!(n(&first, "/faults/dropped_connections"), n(&first, "/vendor/dropped"));
    assert_eq!(n(&first, "/vendor/malformed_pages"), 1, "the malformed page is answered so once");
    assert_eq!(first["exit_code"], 0, "the run after the malformed page succeeded");
    // The sink was locked partway through a run: what it could not take waited in the
    // outbox, and the next run delivered all of it.
    assert!(n(&first, "/outbox/queued") >= 1, "{:#}", first["outbox"]);
    assert_eq!(n(&first, "/outbox/delivered"), n(&first, "/outbox/queued"), "{:#}", first["outbox"]);
    assert_eq!(n(&first, "/outbox/pending"), 0, "{:#}", first["outbox"]);
    assert_eq!(n(&first, "/faults/sink_down"), n(&first, "/outbox/delivered"));

    let second = demo_json(tmp.path(), &config);
    assert_eq!(n(&second, "/written"), 0, "{second:#}");
    assert_eq!(n(&second, "/sink_rows") + n(&second, "/dead_lettered_keys"), 900);
    assert_eq!(n(&second, "/duplicate_keys"), 0);
    assert_eq!(second["crash"]["killed"], false, "only a first run is crashed");
    assert!(!second["faults"].as_object().unwrap().contains_key("malformed_page"));
    assert!(!second["faults"].as_object().unwrap().contains_key("sink_down"));
    assert_eq!(n(&second, "/outbox/queued"), 0, "{:#}", second["outbox"]);
}

/// The demo's "What happened" tells the last run's faults with the vendor's counts for that
/// run: a malformed page an earlier run of the demo met (and retried) is not told again as
/// "1 listing page … (0 undecodable bodies retried)".
#[test]
fn the_story_counts_the_vendor_faults_of_its_own_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = demo_config(tmp.path());
    let out = dovetail(tmp.path(), &["demo", "--records", "900", "--demo-config", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    let (runs, story) = stdout.rsplit_once("What happened:").unwrap_or_else(|| panic!("no story:\n{stdout}"));
    // The told run's own summary: its last `source http:` line.
    let last_http = runs.lines().rfind(|l| l.trim_start().starts_with("source http:")).unwrap_or_default();
    assert!(!story.contains("(0 undecodable bodies retried)"), "{stdout}");
    if !last_http.contains("undecodable body") {
        assert!(!story.contains("does not parse"), "the told run met no malformed page:\n{stdout}");
    }
}
