//! Issue 20, getting started, against the fake vendor through the real binary: `run --limit`
//! over a paginated REST listing stops fetching at the limit and leaves the pass open for
//! the next run; `preview` reads pages without touching the state or the sink.

use dovetail_e2e::vendor::{RestPipeline, RestStream, count, row_count};
use dovetail_e2e::{Scratch, show};
use dovetail_fake_vendor::{FakeVendor, VendorConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_run_fetches_only_the_pages_it_needs_and_the_next_run_completes_the_pass() {
    let vendor = FakeVendor::start(VendorConfig { records: 500, ..VendorConfig::default() }).await.unwrap();
    let s = Scratch::new();
    RestPipeline::new(&vendor.base_url()).stream(RestStream::items_cursor(50)).write_to(&s);

    let (out, report) = s.run_json_async(&["--limit", "120"]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!((count(&report, "items", "read"), count(&report, "items", "written")), (120, 120), "{report:#}");
    assert_eq!(report["streams"]["items"]["limited"], true, "{report:#}");
    assert_eq!(vendor.stats().pages_served, 3, "no page past the limit is fetched");
    assert_eq!(row_count(&s, "items"), 120);

    // Preview reads from the start and changes nothing: same rows, no new run in the history.
    let out = s.run_async(&["preview", "vendor", "items", "--limit", "70"]).await;
    assert!(out.status.success(), "{}", show(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("preview of `vendor` / `items`: 70 records; more follow. Nothing was written."), "{said}");
    assert_eq!(vendor.stats().pages_served, 5);
    assert_eq!(row_count(&s, "items"), 120);
    let runs: i64 = s.db(".dovetail/state.db").query_row("SELECT count(*) FROM runs", [], |r| r.get(0)).unwrap();
    assert_eq!(runs, 1, "preview records no run");

    // The rest of the pass: the cut page is read again, what was written is skipped.
    let (out, report) = s.run_json_async(&[]).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&report, "items", "written"), 380, "{report:#}");
    assert_eq!(count(&report, "items", "skipped_unchanged"), 20, "{report:#}");
    assert!(report["streams"]["items"].get("limited").is_none());
    assert_eq!(row_count(&s, "items"), 500);
}
