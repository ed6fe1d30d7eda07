//! Issue 4, "done when": the REST sink creates each record once at the fake vendor — through
//! connections dropped after the vendor created the object, and through an outage that parks
//! the records in the outbox until the next run. Kills and reruns are the crash harness's
//! path `files_to_rest_create` (tests/tests/crash_paths.rs).

use std::collections::BTreeSet;

use dovetail_e2e::vendor::{FAST_HTTP, count};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{AuthMode, FakeVendor, Faults, VendorConfig};
use serde_json::Value;

const RECORDS: u64 = 300;

/// The source file's ids in file order: a permutation of 1..=300, so "in source order" and
/// "in id order" differ.
fn file_order() -> Vec<u64> {
    (0..RECORDS).map(|i| (i * 7) % RECORDS + 1).collect()
}

/// A JSONL file of `{id, name}` records → `POST /v1/items` with `{external_id, name}`.
fn setup(base_url: &str, sink_extra: &str, pipeline_extra: &str) -> Scratch {
    let s = Scratch::new();
    let lines: String = file_order().iter().map(|id| format!("{{\"id\":{id},\"name\":\"thing {id}\"}}\n")).collect();
    s.write("things.jsonl", &lines);
    s.write(
        "dovetail.toml",
        &format!(
            r#"[pipelines.export]
{pipeline_extra}

[pipelines.export.source]
kind = "files"
[[pipelines.export.source.streams]]
name = "things"
path = "things.jsonl"
primary_key = ["id"]

[pipelines.export.sink]
kind = "rest"
base_url = "{base_url}"
http = {FAST_HTTP}

[pipelines.export.sink.streams.things]
mode = "create"
path = "/v1/items"
body = {{ external_id = "{{{{id}}}}", name = "{{{{name}}}}" }}
{sink_extra}
"#
        ),
    );
    s
}

/// Every created object's `external_id`, in creation order.
fn created_external_ids(created: &[Value]) -> Vec<u64> {
    created.iter().map(|o| o["external_id"].as_u64().unwrap_or_else(|| panic!("external_id of {o}"))).collect()
}

fn assert_each_created_once(created: &[Value]) {
    let ids = created_external_ids(created);
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), RECORDS as usize, "objects created");
    assert_eq!(distinct, (1..=RECORDS).collect(), "each record once");
    for o in created {
        assert_eq!(o["name"], format!("thing {}", o["external_id"]), "{o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_after_the_create_is_retried_as_a_replay() {
    let faults = Faults { drop_after_create_ratio: 0.2, ..Faults::default() };
    let vendor = FakeVendor::start(VendorConfig { faults, ..VendorConfig::default() }).await.unwrap();
    let s = setup(&vendor.base_url(), "", "");
    let (out, report) = s.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(count(&report, "things", "written"), RECORDS, "{report:#}");
    let stats = vendor.stats();
    eprintln!("dropped after create: {}, replays: {}", stats.dropped, stats.idempotent_replays);
    assert!(stats.dropped > 0, "{stats:?}");
    // Every dropped create was retried with its Idempotency-Key and answered from the store.
    assert_eq!(stats.idempotent_replays, stats.dropped, "{stats:?}");
    assert_eq!(stats.duplicate_creations, 0, "{stats:?}");
    assert_eq!(stats.creations, RECORDS, "{stats:?}");
    assert_each_created_once(&vendor.created());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_parks_the_records_in_the_outbox_until_the_next_run() {
    let vendor = FakeVendor::start(VendorConfig::default()).await.unwrap();
    vendor.set_down(true);
    // One request at a time, so the creation order is the delivery order.
    let s = setup(&vendor.base_url(), "concurrency = 1", "batch_size = 100");

    let (out, report) = s.run_json_async(&[]).await;
    eprintln!("sink down: exit {:?}, streams {}", out.status.code(), report["streams"]);
    // Default policy `fail`: the run fails with the cause's code, 503s past the retry
    // budget being Transient (6) — as a source in the same outage exits.
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert_eq!(report["exit_code"], 6, "{report:#}");
    assert_eq!(report["outcome"], "failed", "{report:#}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("outbox") && error.contains("503"), "{error}");
    assert_eq!(count(&report, "things", "outbox_queued"), RECORDS, "{report:#}");
    assert_eq!(count(&report, "things", "outbox_pending"), RECORDS, "{report:#}");
    assert_eq!(count(&report, "things", "written"), 0, "{report:#}");
    assert_eq!(vendor.stats().creations, 0);
    // `dovetail status` says what waits, and where.
    let status = s.run_async(&["status"]).await;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("waiting in the outbox") && text.contains("things") && text.contains("300"), "{text}");

    vendor.set_down(false);
    vendor.reset_stats();
    let (out, report) = s.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(count(&report, "things", "outbox_delivered"), RECORDS, "{report:#}");
    assert_eq!(count(&report, "things", "outbox_pending"), 0, "{report:#}");
    let stats = vendor.stats();
    assert_eq!(stats.creations, RECORDS, "{stats:?}");
    assert_eq!(stats.duplicate_creations, 0, "{stats:?}");
    let created = vendor.created();
    assert_each_created_once(&created);
    // Delivered oldest first: creation order (obj_1, obj_2, ...) is the file's order.
    assert_eq!(created_external_ids(&created), file_order());
    let obj_ids: Vec<String> = created.iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(obj_ids, (1..=RECORDS).map(|n| format!("obj_{n}")).collect::<Vec<_>>());

    // A third run has nothing left to send.
    let (out, report) = s.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "things", "written"), 0, "{report:#}");
    assert_eq!(vendor.stats().creations, RECORDS);
}

/// The files source re-reads its whole file each run: a second run while the sink is still
/// down queues every record again, which replaces its waiting entry instead of adding a
/// second one, so the outbox holds each record once and each is created once when the
/// sink is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_for_two_runs_holds_each_record_once_in_the_outbox() {
    let vendor = FakeVendor::start(VendorConfig::default()).await.unwrap();
    vendor.set_down(true);
    let s = setup(&vendor.base_url(), "", "batch_size = 100");
    for run in 1..=2 {
        let (out, report) = s.run_json_async(&[]).await;
        assert_eq!(out.status.code(), Some(6), "run {run}: {}", show(&out));
        assert_eq!(count(&report, "things", "outbox_pending"), RECORDS, "run {run}: {report:#}");
    }
    let status = s.run_async(&["status", "--json"]).await;
    let status: Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&status)));
    assert_eq!(status["outbox"][0]["stream"], "things", "{status:#}");
    assert_eq!(status["outbox"][0]["waiting"], RECORDS, "each record waits once: {status:#}");

    vendor.set_down(false);
    let (out, report) = s.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "things", "outbox_delivered"), RECORDS, "{report:#}");
    assert_eq!(count(&report, "things", "outbox_pending"), 0, "{report:#}");
    let stats = vendor.stats();
    assert_eq!(stats.creations, RECORDS, "{stats:?}");
    assert_eq!(stats.duplicate_creations, 0, "{stats:?}");
    assert_each_created_once(&vendor.created());
}

/// A files → REST sink pipeline whose sink has `sink_lines` (auth, `check_path`).
fn check_setup(base_url: &str, sink_lines: &str) -> Scratch {
    let s = Scratch::new();
    s.write("things.jsonl", "{\"id\":1,\"name\":\"one\"}\n");
    s.write(
        "dovetail.toml",
        &format!(
            r#"[pipelines.export.source]
kind = "files"
[[pipelines.export.source.streams]]
name = "things"
path = "things.jsonl"
primary_key = ["id"]

[pipelines.export.sink]
kind = "rest"
base_url = "{base_url}"
http = {FAST_HTTP}
{sink_lines}

[pipelines.export.sink.streams.things]
mode = "create"
path = "/v1/items"
"#
        ),
    );
    s
}

async fn check(s: &Scratch) -> std::process::Output {
    let mut cmd = s.cmd(&["check"]);
    cmd.env("SINK_SECRET", "sek");
    dovetail_e2e::vendor::output_async(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_gets_a_token_and_probes_the_api_and_refused_credentials_fail_it() {
    // Issue 16: the sink's `check` said OK without contacting the API.
    let auth = AuthMode::Bearer { token: "right".into() };
    let vendor = FakeVendor::start(VendorConfig { auth, ..VendorConfig::default() }).await.unwrap();
    let base = vendor.base_url();
    let good = check_setup(&base, "auth = { type = \"bearer\", token = \"right\" }\ncheck_path = \"/v1/items\"");
    let out = check(&good).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(vendor.stats().by_path.get("/v1/items").copied(), Some(1), "one GET to the check path");
    // A refused token fails the check as Auth (exit 4), at the default check path: the base URL.
    let bad = check_setup(&base, "auth = { type = \"bearer\", token = \"wrong\" }");
    let out = check(&bad).await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("401"), "{}", show(&out));

    // OAuth2: the check fetches a token first; a rejected client secret fails it as Auth.
    let auth = AuthMode::OAuth2 {
        client_id: "cid".into(),
        client_secret: "sek".into(),
        refresh_token: None,
        token_lifetime_secs: 3600.0,
        rotate_refresh_tokens: false,
    };
    let vendor = FakeVendor::start(VendorConfig { auth, ..VendorConfig::default() }).await.unwrap();
    let base = vendor.base_url();
    let oauth = |secret: &str| {
        format!(
            "auth = {{ type = \"oauth2_client_credentials\", token_url = \"{base}/oauth/token\", client_id = \"cid\", client_secret = \"{secret}\" }}\ncheck_path = \"/v1/items\""
        )
    };
    let out = check(&check_setup(&base, &oauth("${SINK_SECRET}"))).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(vendor.stats().token_grants.get("client_credentials").copied(), Some(1), "{}", show(&out));
    // `token_url` merely contains "token": it is no literal secret.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("literal secret"), "{}", show(&out));
    let out = check(&check_setup(&base, &oauth("wrong"))).await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`client_secret` is a literal secret") && !err.contains("`token_url`"), "{err}");
}

#[test]
fn check_refuses_an_out_of_range_key_naming_file_line_and_key() {
    let s = check_setup("https://crm.example.com", "http = { timeout_ms = 0 }");
    let text = std::fs::read_to_string(s.path("dovetail.toml")).unwrap();
    s.write("dovetail.toml", &text.replace(&format!("http = {FAST_HTTP}\n"), ""));
    let out = s.run(&["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dovetail.toml:11:") && err.contains("must be between 1 and 3600000, found 0"), "{err}");
    assert!(err.contains("`timeout_ms`"), "{err}");
}
