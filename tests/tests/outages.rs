//! Issue 4, "done when": an API down past the retry budget ends each stream as its
//! `on_unavailable` policy says — `fail`, `pause` (and the next run probes and resumes), or
//! `use_cache` (the last good responses, counted as stale) — with the real binary.

use dovetail_e2e::vendor::{RestPipeline, RestStream, count, output_async, row_count, sink_items};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{FakeVendor, Faults, VendorConfig};
use serde_json::Value;

/// A short retry budget, so "down past the budget" takes a fraction of a second.
const SHORT_BUDGET: &str = "{ retry = { base_delay_ms = 5, max_delay_ms = 20, max_elapsed_ms = 300 } }";

const RECORDS: u64 = 300;

fn pipeline(base_url: &str, policy: &str) -> RestPipeline {
    RestPipeline::new(base_url)
        .http(SHORT_BUDGET)
        .stream(RestStream::items_cursor(100))
        .option("items", &format!("on_unavailable = \"{policy}\""))
}

fn assert_succeeded(out: &std::process::Output, report: &Value) {
    assert!(out.status.success(), "{}", show(out));
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
}

/// `dovetail status` output (text).
async fn status(s: &Scratch) -> String {
    let out = s.run_async(&["status"]).await;
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dovetail status` lists `vendor / items` under "paused streams", as an outage pause.
async fn assert_paused_in_status(s: &Scratch) {
    let text = status(s).await;
    let (_, paused) = text.split_once("paused streams").unwrap_or_else(|| panic!("status lists no pause:\n{text}"));
    let row: Vec<&str> =
        paused.lines().find(|l| l.starts_with("vendor")).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row.get(..3), Some(&["vendor", "items", "unavailable"][..]), "status:\n{text}");
    // Why comes next, the reason first (not the URL, which is stored apart) ...
    assert_eq!(row.get(3..5), Some(&["transient", "error:"][..]), "status:\n{text}");
    assert!(!row.iter().any(|c| c.starts_with("http")), "no URL in the narrow table:\n{text}");
    // ... and `--wide` shows where it happened too.
    let out = s.run_async(&["status", "--wide"]).await;
    let wide = String::from_utf8_lossy(&out.stdout);
    assert!(wide.contains("(at GET http://"), "status --wide:\n{wide}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fail_an_outage_fails_the_run_with_the_transient_code() {
    let vendor = FakeVendor::start(VendorConfig { records: RECORDS, ..VendorConfig::default() }).await.unwrap();
    vendor.set_down(true);
    let s = Scratch::new();
    pipeline(&vendor.base_url(), "fail").write_to(&s);
    let (out, report) = s.run_json_async(&[]).await;
    eprintln!("fail policy: exit {:?}, error: {}", out.status.code(), report["error"]);
    // Transient (6), not Unavailable (7): the stream's one logical request spent its retry
    // budget on 503s (a transient status) and that error is the cause. Unavailable is what
    // an open circuit breaker answers — after `failure_threshold` (default 5) consecutive
    // exhausted requests to the host — and this stream stops at its first exhausted request.
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert_eq!(report["exit_code"], 6, "{report:#}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("transient") && error.contains("503"), "{error}");
    assert_eq!(report["outcome"], "failed", "{report:#}");
    assert_eq!(report["streams"]["items"]["outcome"], "failed", "{report:#}");
    assert!(report["streams"]["items"]["paused"].is_null(), "{report:#}");
    assert!(vendor.stats().server_errors >= 1);
    assert!(!status(&s).await.contains("paused streams"), "a failed stream is not paused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pause_an_outage_pauses_the_stream_and_the_next_run_resumes_it() {
    let vendor = FakeVendor::start(VendorConfig { records: RECORDS, ..VendorConfig::default() }).await.unwrap();
    vendor.set_down(true);
    let s = Scratch::new();
    pipeline(&vendor.base_url(), "pause").write_to(&s);

    let (out, report) = s.run_json_async(&[]).await;
    eprintln!("pause policy: exit {:?}, paused: {}", out.status.code(), report["streams"]["items"]["paused"]);
    assert_eq!(report["outcome"], "paused", "{report:#}");
    assert_eq!(report["streams"]["items"]["outcome"], "paused", "{report:#}");
    assert!(report["streams"]["items"]["paused"].is_string(), "the report says why: {report:#}");
    // The run still exits with the cause's code, so a scheduler sees the data is not current.
    // (6, transient: see the `fail` test for why not 7.)
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert_eq!(report["exit_code"], 6, "{report:#}");
    assert_paused_in_status(&s).await;

    vendor.set_down(false);
    let (out, report) = s.run_json_async(&[]).await;
    assert_succeeded(&out, &report);
    assert_eq!(count(&report, "items", "written"), RECORDS, "{report:#}");
    assert!(report["streams"]["items"]["paused"].is_null(), "{report:#}");
    let text = status(&s).await;
    assert!(!text.contains("paused streams"), "the pause was not lifted:\n{text}");
    let ids: Vec<u64> = sink_items(&s, "items").iter().map(|r| r.0).collect();
    assert_eq!(ids, (1..=RECORDS).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_use_cache_an_outage_serves_the_last_good_pages_as_stale() {
    let vendor = FakeVendor::start(VendorConfig { records: RECORDS, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    // Full refresh: run 2 requests exactly the URLs run 1 cached.
    pipeline(&vendor.base_url(), "use_cache").option("items", "sync_mode = \"full_refresh\"").write_to(&s);

    let (out, report) = s.run_json_async(&[]).await;
    assert_succeeded(&out, &report);
    assert_eq!(count(&report, "items", "written"), RECORDS);
    assert_eq!(count(&report, "items", "stale_pages"), 0);

    vendor.set_down(true);
    vendor.reset_stats();
    let (out, report) = s.run_json_async(&[]).await;
    eprintln!("use_cache: exit {:?}, items: {}", out.status.code(), report["streams"]["items"]);
    assert_succeeded(&out, &report);
    assert!(vendor.stats().server_errors >= 1, "the API was asked first");
    assert_eq!(count(&report, "items", "stale_pages"), 3, "3 pages of 100, all from the cache: {report:#}");
    assert_eq!(count(&report, "items", "read"), RECORDS, "{report:#}");
    assert_eq!(count(&report, "items", "written"), 0, "the cached records are unchanged: {report:#}");
    assert_eq!(row_count(&s, "items"), RECORDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pause_an_outage_mid_sync_keeps_what_was_read_and_the_next_run_continues() {
    let records = 1000;
    // 100 ms per response: after page 3 the run has ~700 ms to go, far more than the test
    // needs to notice (stats polled every 2 ms) and switch the API off.
    let vendor = FakeVendor::start(VendorConfig {
        records,
        faults: Faults { latency_ms: 100, ..Faults::default() },
        ..VendorConfig::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    pipeline(&vendor.base_url(), "pause").write_to(&s);

    let run = tokio::spawn(output_async(s.cmd(&["run", "--json"])));
    while vendor.stats().pages_served < 3 {
        assert!(!run.is_finished(), "the run ended before page 3 was served");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    vendor.set_down(true);
    let out = run.await.unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert_eq!(report["outcome"], "paused", "{report:#}");
    let first = vendor.stats().pages_served;
    // A request that passed the down switch before it flipped is still answered: 3 or 4 pages.
    assert!((3..10).contains(&first), "pages served before the outage: {first}");
    assert_eq!(count(&report, "items", "written"), first * 100, "{report:#}");
    assert_eq!(row_count(&s, "items"), first * 100);
    assert_paused_in_status(&s).await;

    vendor.set_down(false);
    vendor.set_faults(Faults::default());
    vendor.reset_stats();
    let (out, report) = s.run_json_async(&[]).await;
    assert_succeeded(&out, &report);
    assert_eq!(report["streams"]["items"]["resumed"], true, "{report:#}");
    assert_eq!(count(&report, "items", "written"), records - first * 100, "{report:#}");
    assert_eq!(vendor.stats().pages_served, 10 - first, "pages read before the outage are not fetched again");
    assert!(!status(&s).await.contains("paused streams"), "the pause was not lifted");
    let ids: Vec<u64> = sink_items(&s, "items").iter().map(|r| r.0).collect();
    assert_eq!(ids, (1..=records).collect::<Vec<_>>());
}
